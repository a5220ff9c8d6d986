"""inspectd's workstation half: train PaDiM, export a model folder, verify it.

May import torch and anomalib; the daemon never imports this package.
"""
