"""bench/soak.py inside a private journald (inspectd.testing.journald, tests/harness/; needs root), as tests/integration/test_soak.py runs it,
for long soaks on a machine whose own journal should not get 100,000 records:

    sudo .venv/bin/python bench/soak_in_private_journald.py --work /tmp/soak -- --frames 100000 --quota-mb 50 --json /tmp/soak/soak.json

Everything after ``--`` goes to bench/soak.py (``--work`` is passed on as WORK/work).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inspectd.testing.journald import private_journald

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("soak_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    soak_args = [a for a in args.soak_args if a != "--"]
    with private_journald(args.work / "journal") as journal:
        soak = journal.run_inside([sys.executable, str(ROOT / "bench" / "soak.py"), "--work", str(args.work / "work"), *soak_args])
        return soak.wait()


if __name__ == "__main__":
    sys.exit(main())
