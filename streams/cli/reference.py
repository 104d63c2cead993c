"""``driftloop reference``: build or inspect a reference profile.

``driftloop reference build --model M --version V --table PATH --out PROFILE.json``
profiles a CSV, Parquet or JSONL table of training data;
``driftloop reference build --model M --version V --start T0 --end T1 [--repo DIR] --out PROFILE.json``
profiles the model's training window from the Feast offline store.
``driftloop reference show PROFILE.json`` prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="build a profile from a table or the Feast offline store")
    b.add_argument("--model", required=True)
    b.add_argument("--version", required=True)
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", metavar="PATH", help="training data: .csv, .parquet or .jsonl (inference inputs)")
    src.add_argument("--start", help="Feast offline store: start of the training window (ISO 8601 or epoch seconds)")
    b.add_argument("--end", help="Feast offline store: end of the training window (with --start)")
    b.add_argument("--repo", help="Feast repository folder (default: the project's feature_repo)")
    b.add_argument("--out", required=True, metavar="PROFILE.json")
    b.add_argument("--label-column", help="label column (default: 'label' when present)")
    b.add_argument("--prediction-column", help="prediction column (default: 'prediction' when present)")
    b.add_argument("--score-column", help="score column (default: 'scores' or 'score' when present)")
    b.add_argument("--features", help="comma-separated feature columns (default: every other column)")
    b.add_argument("--n-bins", type=int, help="PSI bins per numeric feature (default: drift.n_bins, 10)")
    b.add_argument("--fine-bins", type=int, help="KS/Wasserstein bins per numeric feature (default: drift.fine_bins, 100)")
    b.add_argument("--top-k", type=int, help="categories kept per categorical feature (default: drift.top_k, 20)")
    b.add_argument("--kind", action="append", default=[], metavar="FEATURE=KIND",
                   help="force a feature's kind: numeric or categorical (repeatable); default: decided on the "
                        "whole column (numbers -> numeric, text such as postcodes -> categorical)")
    b.add_argument("--error", metavar="KIND[:TOLERANCE]",
                   help="what a labelled error is: mismatch (classifiers), absolute:TOL (|prediction - label| > TOL) "
                        "or relative:TOL (> TOL * |label|); default: mismatch, or for a numeric prediction "
                        "absolute with TOL = the 90th percentile of the reference absolute errors")
    s = sub.add_parser("show", help="print a summary of a profile")
    s.add_argument("profile", metavar="PROFILE.json")


def _build(args: argparse.Namespace) -> int:
    from streams.config import load_file, section
    from streams.judge.drift_config import DriftConfig
    from streams.judge.profile import ERROR_KINDS, ProfileError, load_table
    from streams.judge.profile_build import build_profile
    from streams.judge.tables import parse_kinds

    try:
        kinds = parse_kinds(args.kind)
        error = None
        if args.error:
            kind, _, tol = args.error.partition(":")
            if kind not in ERROR_KINDS or (kind != "mismatch" and not tol):
                raise ProfileError(f"--error {args.error!r}: expected mismatch, absolute:TOL or relative:TOL")
            error = (kind, float(tol) if tol else 0.0)
    except (ProfileError, ValueError) as exc:
        print(f"reference: {exc}", file=sys.stderr)
        return 2
    cfg = section(DriftConfig, load_file(getattr(args, "config", None)).get("drift"), "drift")
    if args.table:
        try:
            table = load_table(args.table, kinds)
        except ProfileError as exc:
            print(f"reference: {exc}", file=sys.stderr)
            return 2
        source = f"table {args.table}"
    else:
        if not args.end:
            print("reference: --start needs --end (the training window [start, end) in the Feast offline store)", file=sys.stderr)
            return 2
        from feature_repo.offline import historical_table

        try:
            table = historical_table(model=args.model, version=args.version, start=args.start, end=args.end,
                                     repo_path=args.repo)
        except (LookupError, ValueError, OSError) as exc:
            print(f"reference: the Feast offline store gave no training table: {exc}", file=sys.stderr)
            return 2
        source = f"feast offline store {args.start}..{args.end}"
    attrs = getattr(table, "attrs", {}) or {}
    if args.label_column and args.label_column not in table.columns:
        print(f"reference: --label-column {args.label_column!r} is not in the table; columns are "
              f"{[str(c) for c in table.columns][:20]}", file=sys.stderr)
        return 2
    label_column = args.label_column or attrs.get("label_column")
    feature_columns = [f.strip() for f in args.features.split(",")] if args.features else attrs.get("feature_columns")
    try:
        prof = build_profile(
            table, args.model, args.version,
            label_column=label_column if label_column in table.columns else None,
            prediction_column=args.prediction_column,
            score_column=args.score_column,
            feature_columns=feature_columns,
            kinds=kinds,
            error=error,
            n_bins=args.n_bins or cfg.n_bins,
            fine_bins=args.fine_bins or cfg.fine_bins,
            top_k=args.top_k or cfg.top_k,
            source=source,
        )
    except ProfileError as exc:
        print(f"reference: {exc}", file=sys.stderr)
        return 2
    path = prof.save(args.out)
    counts: dict[str, int] = {}
    for name, fp in prof.features.items():
        counts[fp.kind] = counts.get(fp.kind, 0) + 1
        if getattr(fp, "invalid", 0):
            print(f"reference: feature {name!r} is numeric; {fp.invalid} of {fp.n} values are not numbers and are "
                  f"counted invalid (use --kind {name}=categorical if it is not a number)", file=sys.stderr)
    print(f"wrote {path}: profile {prof.id} of {prof.model} v{prof.model_version}, {prof.n} rows, "
          f"features {counts}" + (f", reference error rate {prof.reference_error_rate:.4f} "
                                  f"(error: {prof.labels.error}" + (f" > {prof.labels.tolerance:g}" if prof.labels.tolerance is not None else "")
                                  + ")" if prof.labels else ""),
          file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    from streams.judge.profile import ProfileError, ReferenceProfile

    try:
        prof = ReferenceProfile.load(args.profile)
    except ProfileError as exc:
        print(f"reference: {exc}", file=sys.stderr)
        return 2
    out = {
        "id": prof.id, "model": prof.model, "model_version": prof.model_version, "n": prof.n, "source": prof.source,
        "features": {k: {"kind": v.kind, "buckets": v.n_buckets, "missing": v.missing, "invalid": getattr(v, "invalid", 0)}
                     for k, v in prof.features.items()},
        "prediction": None if prof.prediction is None else prof.prediction.kind,
        "score": prof.score is not None,
        "reference_error_rate": prof.reference_error_rate,
        "reference_ece": prof.reference_ece,
        "error": None if prof.labels is None else {"kind": prof.labels.error, "tolerance": prof.labels.tolerance},
    }
    print(json.dumps(out, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        return _build(args)
    if args.action == "show":
        return _show(args)
    print("usage: driftloop reference {build,show} ...; see driftloop reference --help", file=sys.stderr)
    return 2
