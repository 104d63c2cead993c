"""``driftloop demo``: the whole loop on one machine, on embedded defaults.

``--domain tweets`` (the default): real health-news tweets (2013, then 2014) served by a
classifier on WordLlama's pretrained embeddings, a real change in the world, a retrain on a
local Ray cluster, the new version hot-swapped into the serving simulator, then a serving
pipeline bug caught by the training/serving parity check (streams/demo/tweets.py).
``--domain payments``: synthetic card payments and a model trained on the spot
(streams/demo/payments.py).

Every process it starts is stopped at the end (``--keep`` leaves them running); its files
(config, logs, the run directory that ``driftloop report`` reads, and report.html) stay in
``$DRIFTLOOP_HOME/demo/<run id>``.
"""

from __future__ import annotations

import argparse


def NEEDS_KAFKA(args: argparse.Namespace) -> bool:
    """Only a cluster of yours (config or KAFKA_BOOTSTRAP_SERVERS) must answer first (streams/cli/main.py checks it
    in seconds); without one the demo starts its own broker."""
    from streams import config as cfg

    return cfg.kafka_settings(cfg.load_file(getattr(args, "config", None))).external


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", choices=("tweets", "payments"), default="tweets",
                   help="tweets: real data and a pretrained backbone (default); payments: synthetic card payments")
    p.add_argument("--windows", type=int, default=6,
                   help="payments: event-time windows before and after the change (default 6)")
    p.add_argument("--rate", type=float, default=20.0, help="payments: events per second of event time (default 20)")
    p.add_argument("--window-seconds", type=float, default=60.0, help="payments: window length (default 60)")
    p.add_argument("--bad", type=int, default=200, help="malformed records mixed in (default 200)")
    p.add_argument("--timeout", type=float, default=480.0,
                   help="give up waiting for one step of the loop after this many seconds (default 480)")
    p.add_argument("--quick", action="store_true",
                   help="tweets: the same timeline on a shorter stream (the test suite runs it)")
    p.add_argument("--keep", "--keep-running", dest="keep_running", action="store_true",
                   help="leave Kafka, the worker, the dispatcher and Ray running afterwards, to explore")


def run(args: argparse.Namespace) -> int:
    if args.domain == "payments":
        from streams.demo.payments import run as run_domain
    else:
        from streams.demo.tweets import run as run_domain
    return run_domain(args)
