"""Run every benchmark in its quick mode, one after the other (``make bench``).

Each bench starts what it needs (the Kafka broker, a local Ray cluster) and writes
bench/results/<name>.json and .md.  Pass ``--full`` for the sizes quoted in the README.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ("drift_throughput.py", []),
    ("concept_drift.py", []),
    ("drift_quality.py", []),
    ("continual_digits.py", []),
    ("parity_cost.py", ["--kafka"]),
    ("worker_throughput.py", []),
    ("dispatch_latency.py", []),
    ("rollback_speed.py", []),
    ("live_gate_power.py", []),
]


def main(argv: list[str]) -> int:
    mode = ["--full"] if "--full" in argv else ["--quick"]
    failed = []
    for script, extra in BENCHES:
        t0 = time.monotonic()
        print(f"== {script} {' '.join(mode + extra)}", flush=True)
        args = [a for a in mode if not (script == "worker_throughput.py" and a == "--quick")]  # its default is quick
        rc = subprocess.call([sys.executable, str(HERE / script), *args, *extra], cwd=HERE.parent)
        print(f"== {script}: exit {rc} after {time.monotonic() - t0:.0f}s", flush=True)
        if rc:
            failed.append(script)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
