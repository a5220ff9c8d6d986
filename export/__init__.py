"""inspectd's workstation half: train PaDiM, export a model folder, verify it.

May import torch and anomalib; the daemon never imports this package.
"""

import os

# torch's OpenMP threads spin while they wait for each other: on a machine whose cores are busy (a shared
# workstation, CI) a waiting thread holds a core the one it waits for needs. Measured here with the cores
# shared: verification's torch reference took 1.0-1.8 s a frame with 2 spinning threads, 0.11 s with passive ones.
# Read once, when torch loads: this package is imported before any of its modules imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
