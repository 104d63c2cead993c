"""Cost of the training/serving parity check, and what it takes from the worker's throughput.

Setup (in a temporary folder): the demo Feast repository generated, applied and materialised
into the SQLite online store; a reference profile from the offline store
(``feature_repo.offline.historical_table`` -> ``streams.judge.profile.build_profile``); inference
events whose store features come from the online values (``feature_repo.data_gen.serving_events``,
20 % of customers with a x100 serving bug on one feature, so mismatches are found and alerted).

Part 1, parity cost per event (``ParityStep.check``: lookups + comparison + windows), peers in
interleaved rounds on the same events, medians over rounds:

- batched + cached: one ``check`` per micro-batch of ``--batch`` events, default LRU/TTL cache;
- batched, no cache: the same with ``cache_size=0`` (one get_online_features per view per batch);
- unbatched, no cache: one ``check`` per event (one get_online_features per view per event);
- comparison only: ``ParityChecker.ingest`` with the stored rows given (no Feast at all).

Part 2, worker pipeline events/s with parity on and off, in the same run: the inputs path of the
worker in one process — ``parse_input`` of the raw JSON bytes, ``DriftEngine.ingest`` (windows,
watermark, judging), and with parity on also ``ParityStep.check`` + ``explain`` per micro-batch.
Kafka I/O is not in it (it would add the same cost to both sides, so the parity share measured
here is an upper bound of its share in the Kafka worker).  Goal: parity on costs <= 30 % of the
throughput with the SQLite store.

Rates are per CPU second of this process (``time.process_time``; the lookup thread included),
robust on a shared machine; wall rates are reported beside them.

    .venv/bin/python bench/parity_cost.py [--smoke|--quick|--full] [--out-dir DIR] [--batch N] [--kafka]

``--kafka`` adds Part 3: the real Faust worker (``driftloop worker`` with the parity step, as in
tests/test_feast_worker_e2e.py) on a local Kafka broker, parity off and on, same events; rate =
events per second of the inputs agent's batch processing time.
"""

from __future__ import annotations

import common  # noqa: F401  (first: threads, telemetry, sys.path)

import asyncio
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from common import fmt, md_table, parse_args, write_results

NAME = "parity_cost"
FEATURE = "customer_avg_amount_30d"
START = 1_764_115_200.0


@dataclass(frozen=True)
class Plan:
    rounds: int
    n_events: int
    n_unbatched: int
    n_customers: int
    n_merchants: int
    days: int
    n_transactions: int


PLANS = {
    "smoke": Plan(1, 2_000, 100, 100, 20, 5, 1_000),
    "quick": Plan(3, 60_000, 1_000, 500, 100, 14, 10_000),
    "full": Plan(5, 300_000, 5_000, 5_000, 500, 14, 50_000),
}


def build(tmp: Path, plan: Plan, seed: int):
    from feature_repo import REPO_PATH, data_gen
    from feature_repo import store as st
    from feature_repo.offline import historical_table
    from streams.judge.profile_build import build_profile

    repo = tmp / "repo"
    shutil.copytree(REPO_PATH, repo, ignore=shutil.ignore_patterns("data", "__pycache__", "*.db"))
    g = data_gen.generate(repo, seed=seed, days=plan.days, n_customers=plan.n_customers,
                          n_merchants=plan.n_merchants, n_transactions=plan.n_transactions)
    fs = st.open_store(repo)
    st.apply(fs)
    done = st.materialize(fs, datetime.now(timezone.utc) + timedelta(seconds=1))
    table = historical_table("fraud", "1", g.end - timedelta(days=min(5, plan.days)), g.end, repo)
    profile = build_profile(table, "fraud", "1", label_column=table.attrs["label_column"],
                            feature_columns=table.attrs["feature_columns"], source=table.attrs["source"])
    values = data_gen.latest_values(repo, done)
    return repo, profile, values


def make_step(repo: Path, cache: bool):
    from streams.adapters.feast_online import FeastOnlineClient, LookupConfig
    from streams.alerts.parity import ParityConfig
    from streams.adapters.parity_step import ParityStep

    lookup = LookupConfig(timeout_s=10.0, cache_size=50_000 if cache else 0)
    return ParityStep(FeastOnlineClient.from_repo(repo, config=lookup), ParityConfig())


def measure(fn: Callable[[], int]) -> dict[str, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    n = fn()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"n": n, "cpu_s": cpu, "wall_s": wall, "cpu_us_per_event": cpu / n * 1e6, "wall_us_per_event": wall / n * 1e6,
            "events_per_cpu_s": n / cpu if cpu else float("inf"), "events_per_wall_s": n / wall if wall else float("inf")}


def parity_variant(repo: Path, events: list, batch: int, cache: bool) -> tuple[dict[str, float], dict[str, Any]]:
    step = make_step(repo, cache)
    extra: dict[str, Any] = {}

    async def run_all() -> int:
        await step.start([("fraud", "1")])
        alerts = []
        t0 = (time.process_time(), time.perf_counter())
        for i in range(0, len(events), batch):
            alerts += await step.check(events[i:i + batch])
        alerts += step.flush()
        extra["alerts"] = sorted({(a.feature, a.metric) for a in alerts})
        extra["t"] = (time.process_time() - t0[0], time.perf_counter() - t0[1])
        return len(events)

    try:
        res = measure(lambda: asyncio.run(run_all()))
    finally:
        step.close()
    cpu, wall = extra.pop("t")  # the store opening (warm-up) is not part of the per-event cost
    n = len(events)
    res.update(cpu_s=cpu, wall_s=wall, cpu_us_per_event=cpu / n * 1e6, wall_us_per_event=wall / n * 1e6,
               events_per_cpu_s=n / cpu, events_per_wall_s=n / wall)
    st = step.client.stats
    hits, misses = st.cache_hits, st.cache_misses
    extra.update(store_calls=st.store_calls, rows_requested=st.rows_requested,
                 cache_hit_rate=hits / (hits + misses) if hits + misses else 0.0, timeouts=st.timeouts)
    return res, extra


def checker_only(events: list, values: dict) -> tuple[dict[str, float], dict[str, Any]]:
    from streams.alerts.parity import ModelSchema, ParityChecker, ParityConfig

    feats = frozenset(f for d in values.values() for row in list(d.values())[:1] for f in row)
    request = frozenset(events[0].features) - feats
    checker = ParityChecker(ParityConfig(), {("fraud", "1"): ModelSchema(feats, request)})
    rows = [{**values["customer_id"][e.entity["customer_id"]], **values["merchant_id"][e.entity["merchant_id"]]}
            for e in events]
    out: dict[str, Any] = {}

    def run() -> int:
        alerts = []
        for i in range(0, len(events), 500):
            alerts += checker.ingest(events[i:i + 500], rows[i:i + 500])
        alerts += checker.flush()
        out["alerts"] = sorted({(a.feature, a.metric) for a in alerts})
        return len(events)

    return measure(run), out


def pipeline(raw: list[bytes], profile, repo: Path | None, batch: int) -> tuple[dict[str, float], dict[str, Any]]:
    from streams.judge.drift_config import DriftConfig
    from streams.judge.engine import DriftEngine
    from streams.contracts.validate import parse_input

    engine = DriftEngine(DriftConfig(), {("fraud", "1"): profile})
    step = make_step(repo, cache=True) if repo is not None else None
    out: dict[str, Any] = {}

    async def run_all() -> None:
        if step is not None:
            await step.start([("fraud", "1")])
        t0 = (time.process_time(), time.perf_counter())
        drift, parity = [], []
        for i in range(0, len(raw), batch):
            events = [parse_input(b) for b in raw[i:i + batch]]
            if step is not None:
                parity += await step.check(events)
            judged = engine.ingest(events)
            drift += step.explain(judged) if step is not None else judged
        if step is not None:
            parity += step.flush()
        drift += step.explain(engine.flush()) if step is not None else engine.flush()
        out["t"] = (time.process_time() - t0[0], time.perf_counter() - t0[1])
        out["drift_alerts"] = sorted({(a.feature, a.explained_by is not None) for a in drift if a.kind == "data_drift"})
        out["parity_alerts"] = sorted({(a.feature, a.metric) for a in parity})

    try:
        asyncio.run(run_all())
    finally:
        if step is not None:
            step.close()
    cpu, wall = out.pop("t")
    n = len(raw)
    return ({"n": n, "cpu_s": cpu, "wall_s": wall, "events_per_cpu_s": n / cpu, "events_per_wall_s": n / wall,
             "cpu_us_per_event": cpu / n * 1e6, "wall_us_per_event": wall / n * 1e6}, out)


def kafka_worker(values: dict, profile, repo: Path, n: int, seed: int, tmp: Path, rounds: int) -> dict[str, Any]:
    """The real Faust worker on a local Kafka broker, parity off and on (alternating rounds): events
    per second of the inputs agent's batch processing time (driftloop_batch_processing_seconds)."""
    import yaml

    from feature_repo.data_gen import Skew, serving_events
    from infra.kafka.launcher import LocalKafka
    from streams.config import KafkaSettings
    from tests.fixtures_kafka import free_ports
    from tests.test_feast_worker_e2e import ParityWorker
    from tests.test_worker_kafka import Setup

    port, cport = free_ports(2)
    kafka = LocalKafka(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", port=port, controller_port=cport,
                                     start_timeout_s=180.0, heap="512m"), tmp / "kafka")
    bootstrap = kafka.start()
    events = serving_events(values, n, seed=seed, start_ts=START, skews=[Skew(FEATURE, 100.0, 0.2)])
    records = [(e["event_id"].encode(), json.dumps(e).encode()) for e in events]
    out: dict[str, list[dict[str, float]]] = {"parity off": [], "parity on (SQLite)": []}
    try:
        for r in range(rounds):
            for name in (["parity off", "parity on (SQLite)"] if r % 2 == 0 else ["parity on (SQLite)", "parity off"]):
                run_dir = tmp / f"kafka-{r}-{name.split()[1]}"
                run_dir.mkdir()
                setup = Setup(bootstrap, run_dir, retrain={"enabled": False})
                profile.save(setup.refs / "fraud" / "1.json")
                conf = yaml.safe_load(setup.config.read_text())
                conf["drift"] = {"window_seconds": 60, "min_samples": 500}
                conf["features"] = {"repo_path": str(repo)}
                conf["parity"] = {"enabled": name != "parity off", "lookup": {"timeout_s": 2.0}}
                setup.config.write_text(yaml.safe_dump(conf))
                setup.produce("inputs", records)
                w = ParityWorker(setup, "w0")
                try:
                    setup.wait_done([w], timeout_s=600)
                    m = w.metrics()
                finally:
                    w.stop()
                proc_s = m.get('driftloop_batch_processing_seconds_sum{agent="inputs"}', float("nan"))
                n_ev = m.get("driftloop_events_total", float("nan"))
                res = {"events": n_ev, "inputs_processing_s": proc_s, "events_per_processing_s": n_ev / proc_s,
                       "parity_lookups": m.get("driftloop_parity_lookups_total", 0.0),
                       "alerts": m.get("driftloop_alerts_total", 0.0)}
                out[name].append(res)
                print(f"kafka round {r + 1}/{rounds} {name}: {res['events_per_processing_s']:,.0f} events per "
                      f"processing second ({n_ev:,.0f} events)", flush=True)
    finally:
        kafka.stop()
    off = statistics.median(x["events_per_processing_s"] for x in out["parity off"])
    on = statistics.median(x["events_per_processing_s"] for x in out["parity on (SQLite)"])
    return {"runs": out, "parity_off_events_per_processing_s": off, "parity_on_events_per_processing_s": on,
            "throughput_ratio_on_off": on / off, "parity_share_of_throughput": 1 - on / off,
            "goal_met": 1 - on / off <= 0.30}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, extra=[
        (("--batch",), {"type": int, "default": 500, "help": "micro-batch size (default 500)"}),
        (("--kafka",), {"action": "store_true",
                        "help": "also run the Faust worker on a local Kafka broker, parity off and on (minutes)"}),
        (("--kafka-events",), {"type": int, "default": 30_000, "help": "events per Kafka worker run"}),
    ])
    plan = PLANS[args.mode]
    from feature_repo.data_gen import Skew, serving_events
    from streams.contracts.validate import parse_input

    tmp = Path(tempfile.mkdtemp(prefix="parity-bench-"))
    try:
        t0 = time.perf_counter()
        repo, profile, values = build(tmp, plan, args.seed + 7)
        setup_s = time.perf_counter() - t0
        dicts = serving_events(values, plan.n_events, seed=args.seed, start_ts=START, skews=[Skew(FEATURE, 100.0, 0.2)])
        raw = [json.dumps(d).encode() for d in dicts]
        events = [parse_input(b) for b in raw]
        few = events[: plan.n_unbatched]

        peers: dict[str, Callable[[], tuple[dict[str, float], dict[str, Any]]]] = {
            "batched + cached": lambda: parity_variant(repo, events, args.batch, cache=True),
            "batched, no cache": lambda: parity_variant(repo, events, args.batch, cache=False),
            "unbatched, no cache": lambda: parity_variant(repo, few, 1, cache=False),
            "comparison only (no Feast)": lambda: checker_only(events, values),
        }
        workers = {
            "parity off": lambda: pipeline(raw, profile, None, args.batch),
            "parity on (SQLite)": lambda: pipeline(raw, profile, repo, args.batch),
        }
        # one-time costs (Feast's lazy imports, first SQLite connection, scipy) before any timing
        parity_variant(repo, events[: args.batch], args.batch, cache=True)
        pipeline(raw[: args.batch], profile, repo, args.batch)
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in [*peers, *workers]}
        info: dict[str, dict[str, Any]] = {}
        for r in range(plan.rounds):
            order = list(peers.items()) + list(workers.items())
            order = order[r % len(order):] + order[: r % len(order)]  # rotate: no peer always goes first
            for name, fn in order:
                res, extra = fn()
                runs[name].append(res)
                info[name] = extra
                print(f"round {r + 1}/{plan.rounds} {name}: {res['cpu_us_per_event']:.1f} us/event CPU, "
                      f"{res['events_per_cpu_s']:,.0f} events/CPU s", flush=True)
        kafka = kafka_worker(values, profile, repo, args.kafka_events, args.seed, tmp, max(2, plan.rounds - 1)) \
            if args.kafka else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[name])

    unb = med("unbatched, no cache", "cpu_us_per_event")
    cost_rows, cost = [], {}
    for name in peers:
        us, wus = med(name, "cpu_us_per_event"), med(name, "wall_us_per_event")
        cost[name] = {"cpu_us_per_event": us, "wall_us_per_event": wus, "speedup_vs_unbatched": unb / us,
                      "n_events": runs[name][0]["n"], **info[name]}
        cost_rows.append([name, runs[name][0]["n"], us, wus, unb / us, info[name].get("store_calls"),
                          info[name].get("cache_hit_rate")])
    off, on = med("parity off", "events_per_cpu_s"), med("parity on (SQLite)", "events_per_cpu_s")
    off_w, on_w = med("parity off", "events_per_wall_s"), med("parity on (SQLite)", "events_per_wall_s")
    share = 1.0 - on / off
    worker = {"parity_off_events_per_cpu_s": off, "parity_on_events_per_cpu_s": on,
              "parity_off_events_per_wall_s": off_w, "parity_on_events_per_wall_s": on_w,
              "throughput_ratio_on_off": on / off, "parity_share_of_throughput": share,
              "goal_max_share": 0.30, "goal_met": share <= 0.30,
              "alerts_off": info["parity off"], "alerts_on": info["parity on (SQLite)"]}
    payload = {"mode": args.mode, "plan": plan.__dict__, "batch": args.batch, "setup_s": setup_s,
               "parity_cost": cost, "worker_pipeline": worker, "runs": runs, "kafka_worker": kafka}
    md = [f"# {NAME} ({args.mode})", "",
          f"{plan.n_events:,} events, micro-batches of {args.batch}, {plan.n_customers} customers x "
          f"{plan.n_merchants} merchants, SQLite online store; medians of {plan.rounds} interleaved round(s). "
          "CPU = process CPU time (lookup thread included).", "",
          "## Parity check cost per event", "",
          md_table(["variant", "events", "CPU us/event", "wall us/event", "x faster than unbatched",
                    "store calls", "cache hit rate"], cost_rows), "",
          "## Worker inputs path (parse + drift engine), parity off vs on", "",
          md_table(["", "events/CPU s", "events/wall s"], [["parity off", off, off_w], ["parity on (SQLite)", on, on_w]]),
          "",
          f"Throughput with parity on = {fmt(on / off)} x parity off: parity takes {share:.1%} of the throughput "
          f"(goal <= 30 %: {'met' if share <= 0.30 else 'NOT met'}).", "",
          f"Alerts with parity on: parity {worker['alerts_on'].get('parity_alerts')}, data drift "
          f"(feature, explained) {worker['alerts_on'].get('drift_alerts')}; off: data drift "
          f"{worker['alerts_off'].get('drift_alerts')}.", "",
          "Kafka I/O is not in the pipeline figures; it adds the same cost with parity on and off, so the share "
          "above is an upper bound of parity's share in the Kafka worker."]
    if kafka is not None:
        md += ["", "## Faust worker on Kafka, parity off vs on", "",
               f"{args.kafka_events:,} events per run, one worker, medians of {len(kafka['runs']['parity off'])} runs "
               "each (alternating); rate = events / sum of the inputs agent's batch processing time "
               "(driftloop_batch_processing_seconds, which includes the parity step and the Kafka sends).", "",
               md_table(["", "events per processing s"], [["parity off", kafka["parity_off_events_per_processing_s"]],
                                                          ["parity on (SQLite)", kafka["parity_on_events_per_processing_s"]]]),
               "", f"Parity on = {fmt(kafka['throughput_ratio_on_off'])} x parity off: parity takes "
               f"{kafka['parity_share_of_throughput']:.1%} (goal <= 30 %: {'met' if kafka['goal_met'] else 'NOT met'})."]
    jpath, mpath = write_results(NAME, payload, "\n".join(md), args.out_dir)
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
