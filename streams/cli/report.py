"""``driftloop report RUN_DIR [--out FILE]``: the run report page (streams/report) of an existing run directory.

The drift scores are judged with the ``drift`` section of ``--config`` (else ``$DRIFTLOOP_CONFIG``, else
the run directory's own ``driftloop.yaml`` when it has one, else the defaults), always with the run's
``window_seconds``.  Exit status 2 when the run directory, its run.json or inputs.jsonl is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (run.json, inputs.jsonl, ...; "
                        "`driftloop demo` writes one)")
    parser.add_argument("--out", metavar="FILE", help="where to write the page (default: RUN_DIR/report.html)")
    parser.add_argument("--min-samples", type=int, help="events a window needs for a drift score (default: config)")
    parser.add_argument("--reference-events", type=int,
                        help="events of a version without a reference profile that become its reference (default: config)")


def _config(args: argparse.Namespace, run_dir: Path):
    from streams.config import load_file, section
    from streams.judge.drift_config import DriftConfig

    path = getattr(args, "config", None) or os.environ.get("DRIFTLOOP_CONFIG")
    if not path and (run_dir / "driftloop.yaml").is_file():
        path = run_dir / "driftloop.yaml"
    sect = dict(load_file(path).get("drift") or {})
    if args.min_samples is not None:
        sect["min_samples"] = args.min_samples
    if args.reference_events is not None:
        sect["reference_events"] = args.reference_events
    return section(DriftConfig, sect, "drift")


def run(args: argparse.Namespace) -> int:
    from streams.config import ConfigError
    from streams.report import RunDirError, write_report

    run_dir = Path(args.run_dir)
    try:
        config = _config(args, run_dir)
    except (ConfigError, ValueError, TypeError) as exc:
        print(f"driftloop report: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        path = write_report(run_dir, args.out, config)
    except RunDirError as exc:
        print(f"driftloop report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"driftloop report: cannot write the page: {exc}; pass --out FILE in a writable folder", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0
