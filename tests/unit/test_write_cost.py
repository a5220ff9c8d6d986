"""Issue 17, class 8: what archiving a frame costs is learnt per frame and per byte.

After a 1x1 REJECT the archive estimated 11,424 s for a camera frame (its fixed cost divided by 3 bytes) and refused
rejects on an idle disk. Whatever the frames' sizes and however long each took, the estimate for a frame stays
within the costs seen, and a burst of rejects after a tiny one is archived whole.
"""

from __future__ import annotations

import math
import time

from hypothesis import given
from hypothesis import strategies as st

from conftest import synthetic_verdict
from inspectd.daemon.station.outputs.archive import ArchiveConfig, ArchiveOutput

SIZES = st.sampled_from([3, 300, 48 * 64 * 3, 640 * 480 * 3, 1536 * 864 * 3, 4056 * 3040 * 3])


@given(samples=st.lists(st.tuples(SIZES, st.floats(1e-5, 5.0)), min_size=1, max_size=20), size=SIZES)
def test_an_estimate_stays_within_the_costs_per_frame_and_per_byte_seen(samples, size):
    from inspectd.daemon.station.outputs.write_cost import Estimate

    cost = Estimate(per_frame=0.01, per_byte=200e-9)
    for nbytes, seconds in samples:
        cost.measured(nbytes, seconds)
    # no frame can cost more than the slowest frame seen plus the slowest byte rate seen (or the prior) times its bytes
    per_frame = max([0.01] + [seconds for _, seconds in samples])
    per_byte = max([200e-9] + [seconds / nbytes for nbytes, seconds in samples])
    assert math.isfinite(cost.of(1, size)) and 0 < cost.of(1, size) <= per_frame + per_byte * size


def test_a_burst_of_rejects_after_a_1x1_reject_is_archived_whole(tmp_path):
    seen: list = []
    archive = ArchiveOutput(ArchiveConfig(path=str(tmp_path / "rejects"), max_mb=500.0), seen.append)
    try:
        tiny = synthetic_verdict(1, 1, 1)
        archive.verdict(tiny)
        with archive.lock:  # written and measured (drain() would write the rest in its fast mode, unmeasured)
            assert archive.lock.wait_for(lambda: not archive.pending and archive.current is None, timeout=60)
        burst = [synthetic_verdict(frame, 480, 640) for frame in range(2, 11)]
        for verdict in burst:  # at once, as a line's rejects come: the estimate decides, before any of them is written
            archive.verdict(verdict)
        archive.drain(time.monotonic() + 120)
    finally:
        archive.close()
    assert [v.frame for v in burst if v.archived is None] == [], [n.message for n in seen]
    assert all(v.archived.is_file() for v in [tiny, *burst]) and not [n for n in seen if "behind" in n.message]
