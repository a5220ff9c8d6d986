"""inspectd's runtime: everything that runs on the Pi.

Never imports torch, anomalib or lightning (tests/integration/test_runtime_isolation.py proves it).

    >>> from inspectd.daemon.runtime.images import read_image
    >>> from inspectd.daemon.runtime.model import Model
    >>> model = Model.load("models/demo-mug")                      # doctest: +SKIP
    >>> result = model.infer(read_image("part.png"))               # doctest: +SKIP
    >>> model.rule().judge()(result.score).verdict                 # doctest: +SKIP
    <Verdict.PASS: 'PASS'>
"""

import os

# inspectd's resize is a few small matrix products; OpenBLAS threads gain nothing there but
# keep spinning after it and take the cores from OpenVINO's inference (measured: 2x slower
# inference on 2 cores). Effective when this package is imported before numpy, as the CLI
# and the service do; export OPENBLAS_NUM_THREADS=1 yourself when embedding inspectd.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
