"""``driftloop worker``: run the Faust drift worker (see streams/adapters/faust_app.py) until interrupted.

Configuration: the ``worker``, ``drift``, ``kafka`` and ``topics`` sections of the config
file (``--config`` / ``$DRIFTLOOP_CONFIG``); a few options override the file for quick runs.
``--state-file PATH``: once ``/metrics`` answers, the worker writes ``{"pid", "metrics_port",
"metrics_url", "started_at"}`` there (JSON), so ``driftloop up``/``status`` find the port it serves.
"""

from __future__ import annotations

import argparse


NEEDS_KAFKA = True  # streams/cli/main.py checks the broker answers before run()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app-id", help="Faust app id / consumer group (worker.app_id)")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics (worker.metrics_port; 0 = off)")
    parser.add_argument("--data-dir", help="Faust data folder (worker.data_dir)")
    parser.add_argument("--loglevel", default=None, help="Faust log level (default info, debug with -v)")
    parser.add_argument("--state-file", help="write pid and /metrics port here (JSON) once /metrics answers")


def run(args: argparse.Namespace) -> int:
    import faust

    from streams import config as cfg
    from streams.adapters.faust_app import make_app

    raw = cfg.load_file(args.config)
    worker = dict(raw.get("worker") or {})
    if args.app_id:
        worker["app_id"] = args.app_id
    if args.metrics_port is not None:
        worker["metrics_port"] = args.metrics_port
    if args.data_dir:
        worker["data_dir"] = args.data_dir
    raw["worker"] = worker
    from streams.adapters.faust_app import load_settings
    from streams.adapters.kafka_admin import ensure_topics, wait_for_broker

    s = load_settings(raw)
    wait_for_broker(s.connection, timeout_s=60)
    t = s.topics
    ensure_topics(s.connection, [t.inputs, t.labels], partitions=s.partitions)
    ensure_topics(s.connection, [t.dlq(t.inputs), t.dlq(t.labels), t.alerts, t.labelled, t.retrain_requests],
                  partitions=s.partitions)
    from streams.adapters.kafka_admin import describe_topic

    for name in (t.inputs, t.labels):
        have = len(describe_topic(s.connection, name)["partitions"])
        if have != s.partitions:
            raise SystemExit(
                f"topic {name} has {have} partition(s) but the worker is configured for {s.partitions} "
                "(topics.partitions / worker.source_partitions); make them equal"
            )
    app = make_app(raw)
    if args.state_file:
        _announce(app, s.worker.metrics_port, args.state_file, s.worker.metrics_host)
    level = args.loglevel or ("debug" if args.verbose else "info")
    try:  # uvloop: about 17% more events/s for the worker (bench/results/worker_throughput.tuning.md)
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    _tune_gc(s.worker.gc_threshold)
    w = faust.Worker(app, loglevel=level, quiet=True, redirect_stdouts=False, loop=loop)
    w.execute_from_commandline()  # returns via SystemExit when stopped
    return 0


def _announce(app, port: int, path: str, host: str = "127.0.0.1") -> None:
    """Write the worker's state file once its /metrics answers (at once with ``metrics_port: 0``, /metrics off)."""
    import asyncio
    import json
    import os
    import time
    import urllib.request
    from pathlib import Path

    reach = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # every interface: ask through loopback
    url = f"http://{reach}:{port}/metrics" if port else None

    def write() -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "metrics_port": port or None, "metrics_url": url,
                                   "started_at": time.time()}))
        tmp.replace(p)

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as r:
                return r.status == 200
        except OSError:
            return False

    @app.task
    async def announce_state() -> None:
        loop = asyncio.get_running_loop()
        while url and not await loop.run_in_executor(None, answers):
            await asyncio.sleep(0.5)
        write()


def _tune_gc(threshold: int) -> None:
    """Fewer cyclic-GC passes: the worker allocates millions of short-lived objects per second (records,
    events, feature dicts) and, with the label join, holds millions of stored inputs; Python's default
    (a young collection every 700 allocations, each full pass walking everything alive) cost ~15 % of
    the events/s (bench/results/worker_throughput.tuning.md).  Objects alive at start-up are frozen out
    of the collector.  ``worker.gc_threshold: 0`` keeps Python's defaults."""
    if threshold <= 0:
        return
    import gc

    gc.freeze()
    gc.set_threshold(threshold, 20, 10)
