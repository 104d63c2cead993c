"""The fault table: run the fault suite (tests/test_faults.py, pytest marker ``faults``) and write what each case saw.

    .venv/bin/python bench/faults_report.py [--slow] [-k EXPR]

Each fault test appends its outcome (tests/faults.py ``FaultOutcome``) to a JSON-lines file named by
``DRIFTLOOP_FAULTS_OUT``; this script runs pytest with it set and writes ``bench/results/faults.json`` and
``faults.md``: fault, expectation, what happened, events lost, alerts duplicated (and missing), inputs counted
once, time to recover, and the test's pass/fail.  ``--from FILE`` renders an existing JSON-lines file instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"


def render(rows: list[dict], meta: dict) -> str:
    """The Markdown page (pure)."""
    lines = [
        "# Fault suite on the local three-node Kafka cluster",
        "",
        f"Run {meta.get('started', '?')} on {meta.get('machine', '?')}, checkout {meta.get('commit', '?')}; "
        f"pytest {meta.get('pytest_exit', '?')} (exit code), wall time {meta.get('wall_s', 0):.0f} s for the suite "
        f"({meta.get('selection', '')}).",
        "",
        "Counts are against the no-fault reference run on the same 16,000 events (tests/faults.py): *events lost* =",
        "reference judged events minus the fault run's; *inputs counted once* = every judged window's n equals the",
        "reference's (a window judged again after a restart counts the same n); *alerts duplicated* = distinct alert",
        "ids the reference does not have (consumers dedupe by `alert_id`; re-sent records of the same id are listed",
        "separately); *time to recover* = from the fault's end (restart, SIGCONT) until the worker group had",
        "committed every produced offset (wall clock on a shared 2-core machine: indicative only).",
        "",
        "| fault | expectation | what happened | events lost | inputs counted once | alerts duplicated / missing "
        "(re-sent records) | time to recover |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        c = r.get("counts")
        if c:
            lost = f"{c['events_lost']} of {c['events_counted'] + c['events_lost']:,} judged ({c['produced']:,} produced)"
            once = "yes" if c["windows_differing"] == 0 and c["events_double"] == 0 else (
                f"NO: {c['windows_differing']} window(s) differ, {c['events_double']} counted twice")
            once += f"; {c['windows']} windows" + (f", {c['windows_rejudged']} judged again" if c["windows_rejudged"] else "")
            dup = f"{c['alerts_duplicated']} / {c['alerts_missing']} of {c['alerts']} ({c['alerts_resent']})"
        else:
            lost = once = dup = "-"
        rec = f"{r['recover_s']:.1f} s" if r.get("recover_s") is not None else "-"
        lines.append(f"| {r['fault']} | {r['expectation']} | {r['happened']} | {lost} | {once} | {dup} | {rec} |")
    failed = meta.get("failed") or []
    if failed:
        lines += ["", "Failed or errored tests: " + ", ".join(f"`{f}`" for f in failed)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slow", action="store_true", help="also the fault cases marked slow")
    ap.add_argument("-k", default="", help="pytest -k expression (a subset of the cases)")
    ap.add_argument("--from", dest="from_file", help="render this JSON-lines file instead of running pytest")
    ap.add_argument("--out", default=str(OUT), help="folder of faults.json / faults.md")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    meta: dict = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
                  "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)"}
    if args.from_file:
        rows_file = Path(args.from_file)
    else:
        marker = "faults" if args.slow else "faults and not slow"
        basetemp = Path(tempfile.gettempdir()) / f"driftloop-faults-{os.getpid()}"  # worker logs kept for a look
        rows_file = Path(tempfile.gettempdir()) / f"driftloop-faults-{os.getpid()}.rows.jsonl"
        rows_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", "tests/test_faults.py", "-m", marker, "-q", "-p", "no:cacheprovider",
               "-rfE", "--durations=0", "--basetemp", str(basetemp)]
        print(f"pytest {' '.join(cmd[3:])}  (worker logs under {basetemp})", flush=True)
        if args.k:
            cmd += ["-k", args.k]
        meta["selection"] = f"-m '{marker}'" + (f" -k '{args.k}'" if args.k else "")
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "DRIFTLOOP_FAULTS_OUT": str(rows_file)},
                              capture_output=True, text=True)
        meta["wall_s"] = time.monotonic() - t0
        meta["pytest_exit"] = proc.returncode
        meta["failed"] = [ln.split(" ", 1)[1].split(" - ")[0] for ln in proc.stdout.splitlines()
                          if ln.startswith(("FAILED ", "ERROR "))]
        print(proc.stdout[-4000:])
    rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()] if rows_file.exists() else []
    (out / "faults.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (out / "faults.md").write_text(render(rows, meta))
    print(f"wrote {out / 'faults.md'} ({len(rows)} rows)")
    return 0 if meta.get("pytest_exit", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
