"""inspectd's runtime: everything that runs on the Pi.

Never imports torch, anomalib or lightning (tests/test_runtime_isolation.py proves it).

    >>> from inspectd.daemon.model import Model
    >>> model = Model.load("models/demo-mug")                      # doctest: +SKIP
    >>> result = model.infer(read_image("part.png"))               # doctest: +SKIP
    >>> result.score, result.threshold, result.anomalous           # doctest: +SKIP
"""
