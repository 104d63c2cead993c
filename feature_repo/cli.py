"""``driftloop features generate|apply|materialize|lookup``: the Feast repository, via Feast's Python API.

- ``generate``: write the seeded demo sources into ``<repo>/data`` (git-ignored);
- ``apply``: register entities, sources, views and services (``feast apply``);
- ``materialize``: incremental materialisation into the online store up to now (or ``--end``);
- ``lookup``: print the online values of a few entities (a quick check).

``--online redis --redis HOST:PORT`` uses the Redis online store instead of SQLite.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["generate", "apply", "materialize", "lookup", "all"],
                   help="what to do ('all' = generate, apply, materialize)")
    p.add_argument("--repo", default=None, help="feature repository folder (default: features.repo_path or feature_repo/)")
    p.add_argument("--online", choices=["sqlite", "redis"], default=None, help="online store (default: features.online_store)")
    p.add_argument("--redis", default=None, help="Redis address HOST:PORT for --online redis")
    p.add_argument("--end", default=None, help="materialise / generate up to this ISO time (default: now)")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: features.seed)")
    p.add_argument("--entity", action="append", default=[], help="lookup: KEY=VALUE entity key, repeatable")
    p.add_argument("--model", default="fraud", help="lookup: model whose feature service to read")


def run(args: argparse.Namespace) -> int:
    from streams import config as cfg

    from feature_repo.settings import load

    raw = cfg.load_file(args.config)
    settings = load(raw)
    repo = settings.repo if args.repo is None else Path(args.repo).resolve()
    online = args.online or settings.online_store
    redis = args.redis or settings.redis_connection or None
    end = _parse_time(args.end) if args.end else None

    if args.action in ("generate", "all"):
        from feature_repo.data_gen import generate

        g = generate(repo, seed=settings.seed if args.seed is None else args.seed, end=end, days=settings.days,
                     n_customers=settings.n_customers, n_merchants=settings.n_merchants,
                     n_transactions=settings.n_transactions)
        print(f"generated {g.n_customer_rows} customer rows, {g.n_merchant_rows} merchant rows, "
              f"{g.n_transactions} transactions in {g.data_dir} (newest snapshot {g.end.isoformat()})")
        if args.action == "generate":
            return 0

    from feature_repo import store as st

    fs = st.open_store(repo, online, redis)
    if args.action in ("apply", "all"):
        res = st.apply(fs)
        print(f"applied {len(res.applied)} objects to project {fs.project}" +
              (f", deleted {res.deleted}" if res.deleted else ""))
    if args.action in ("materialize", "all"):
        done = st.materialize(fs, end)
        print(f"materialised into the {online} online store up to {done.isoformat()}")
    if args.action == "lookup":
        entity = dict(kv.split("=", 1) for kv in args.entity) or {"customer_id": "c-1", "merchant_id": "m-1"}
        service = st.feature_service_for(fs, args.model)
        resp = fs.get_online_features(features=st.service_refs(service), entity_rows=[entity]).to_dict()
        print(json.dumps({k: v[0] for k, v in resp.items()}, indent=2, default=str))
    return 0


def _parse_time(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"--end {text!r} is not an ISO 8601 time (e.g. 2025-11-26T08:00:00Z)") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
