"""Bounded soak of one drift worker: throughput, consumer lag, alert latency and resident memory over time.

One broker (driftloop's own on free loopback ports, or ``KAFKA_BOOTSTRAP_SERVERS`` when it names 127.0.0.1 only)
and one ``driftloop worker`` (defaults, label join on with ``worker.label_ttl_s`` 60 s so its store reaches
its steady size within the soak; 2 partitions; 1 s windows, 20 features, one feature shifted per wall-clock
second so windows keep opening alerts).  Events are stamped with the wall clock when sent.

1. ramp: steps of rising rate; a step is sustained when the producer kept the rate and the worker's backlog
   (events produced minus events counted) at the step's end is under one second of traffic;
2. soak: the highest sustained rate for ``--minutes`` (default 10), then twice that rate for ``--burst-s``
   (default 60), then no traffic until the backlog is 0 (bounded by ``--drain-s``).

Every second: events/s produced and counted (``driftloop_events_total``), the consumer-lag metric
(``driftloop_consumer_lag``, summed), the backlog, the worker's RSS.  Alert latency: the time an alert is read
from the alerts topic minus its window's end (event time = wall clock at send).

    .venv/bin/python bench/soak.py --quick       # about 5 minutes: short ramp, 2 minutes at the rate, 30 s burst
    .venv/bin/python bench/soak.py               # about 15 minutes

Results: bench/results/soak.json, soak.md and soak.png (matplotlib).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"
PARTITIONS = 2


@dataclasses.dataclass(frozen=True)
class Plan:
    """The soak's schedule (pure)."""

    ramp_rates: tuple[float, ...]
    ramp_step_s: float
    minutes: float
    burst_s: float
    drain_s: float

    @classmethod
    def make(cls, quick: bool, minutes: float | None, burst_s: float | None) -> "Plan":
        if quick:
            return cls((2000.0, 4000.0, 8000.0, 12000.0, 16000.0, 24000.0), 12.0, minutes or 2.0, burst_s or 30.0, 120.0)
        return cls((2000.0, 4000.0, 8000.0, 12000.0, 16000.0, 24000.0, 32000.0), 20.0, minutes or 10.0,
                   burst_s or 60.0, 180.0)


def sustained(target: float, produced_rate: float, backlog_end: float) -> bool:
    """A ramp step held: the producer reached 95% of the rate and the worker ended under one second behind."""
    return produced_rate >= 0.95 * target and backlog_end < target


def loopback_only(bootstrap: str) -> bool:
    """Only send traffic to this machine: every address must be 127.0.0.1 or localhost."""
    hosts = [b.strip().rsplit(":", 1)[0] for b in bootstrap.split(",") if b.strip()]
    return bool(hosts) and all(h in ("127.0.0.1", "localhost") for h in hosts)


class Events:
    """Fast live events: precomputed feature JSON, the wall clock stamped at send; feature ``sec % 20`` shifted."""

    def __init__(self, features: list[str], seed: int = 0, variants: int = 256) -> None:
        rng = np.random.default_rng(seed)
        self.n = len(features)
        self.frag: list[list[bytes]] = []  # [drifted feature or n for none][variant]
        for j in range(self.n + 1):
            x = np.round(rng.normal(0.0, 1.0, (variants, self.n)) + 10.0, 4)
            if j < self.n:
                x[:, j] += 8.0
            self.frag.append([json.dumps(dict(zip(features, row.tolist()))).encode() for row in x])
        self.i = 0

    def make(self, now: float, drift: bool) -> bytes:
        self.i += 1
        j = int(now) % self.n if drift else self.n
        f = self.frag[j][self.i % len(self.frag[j])]
        return b'{"event_id":"s-%d","model":"lat","model_version":"1","ts":%.4f,"features":%s}' % (self.i, now, f)


class Producer(threading.Thread):
    """Sends at ``self.rate`` events/s (changeable) in 10 ms slices; counts acknowledged sends."""

    def __init__(self, bootstrap: str, topic: str, features: list[str]) -> None:
        super().__init__(daemon=True, name="soak-producer")
        from kafka import KafkaProducer

        self.p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                               batch_size=512 * 1024, max_block_ms=60_000)
        self.topic, self.events = topic, Events(features)
        self.rate = 0.0
        self.sent = self.acked = self.failed = 0
        self.stop = threading.Event()
        self.warm_until = time.time() + 6.0  # no drift at first

    def _ack(self, _m) -> None:
        self.acked += 1

    def _err(self, _e) -> None:
        self.failed += 1

    def run(self) -> None:
        owed = 0.0
        last = time.monotonic()
        part = 0
        while not self.stop.is_set():
            now_m = time.monotonic()
            owed += self.rate * (now_m - last)
            last = now_m
            k = int(owed)
            owed -= k
            now = time.time()
            drift = now > self.warm_until
            for _ in range(k):
                self.p.send(self.topic, self.events.make(time.time(), drift), partition=part).add_callback(
                    self._ack).add_errback(self._err)
                part ^= 1
            self.sent += k
            if owed > self.rate:  # fell behind by more than a second: do not build an unbounded debt
                owed = self.rate
            time.sleep(0.01)
        self.p.flush(60)
        self.p.close(10)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler:
    """One row a second: phase, target rate, produced/acked, counted events, inputs lag metric, backlog, RSS."""

    def __init__(self, worker, producer: Producer, t0: float) -> None:
        self.w, self.p, self.t0 = worker, producer, t0
        # the inputs topic's series of driftloop_consumer_lag (a table changelog's stays a few records above 0)
        self.lag_prefix = "driftloop_consumer_lag{"
        self.lag_topic = f'topic="{producer.topic}"'
        self.rows: list[dict] = []
        self.phase = "ramp"
        self._last: dict | None = None

    def sample(self) -> dict:
        m = self.w.metrics()
        now = time.monotonic()
        counted = m.get("driftloop_events_total", 0.0)
        row = {"t": round(now - self.t0, 2), "phase": self.phase, "target": self.p.rate, "acked": self.p.acked,
               "counted": counted, "lag": sum(v for k, v in m.items() if k.startswith(self.lag_prefix) and self.lag_topic in k),
               "backlog": max(0.0, self.p.acked - counted), "rss_mb": round(rss_mb(self.w.proc.pid), 1)}
        if self._last is not None:
            dt = max(1e-6, now - self._last["_m"])
            row["produced_per_s"] = (row["acked"] - self._last["acked"]) / dt
            row["counted_per_s"] = (counted - self._last["counted"]) / dt
        row["_m"] = now
        self._last = row
        self.rows.append(row)
        return row

    def run_for(self, seconds: float, until=None) -> dict:
        end = time.monotonic() + seconds
        row = self.sample()
        while time.monotonic() < end:
            time.sleep(max(0.0, 1.0 - (time.monotonic() - row["_m"])))
            if not self.w.alive():
                raise RuntimeError("the worker exited: " + self.w.tail())
            row = self.sample()
            if until is not None and until(row):
                break
        return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short ramp, 2 minutes at the rate, a 30 s burst")
    ap.add_argument("--minutes", type=float, help="minutes at the sustained rate (default 10; quick 2)")
    ap.add_argument("--burst-s", type=float, help="seconds at twice the rate (default 60; quick 30)")
    ap.add_argument("--rate", type=float, help="skip the ramp: soak at this rate")
    ap.add_argument("--out", default=str(RESULTS), help="results folder")
    args = ap.parse_args(argv)
    plan = Plan.make(args.quick, args.minutes, args.burst_s)

    from worker_throughput import FEATURES, Worker, free_port, register_lat_reference

    from streams.adapters.kafka_admin import ensure_topics

    tmp = Path(tempfile.mkdtemp(prefix="driftloop-soak-"))
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap and not loopback_only(bootstrap):
        print(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} is not this machine: the soak only sends to 127.0.0.1; unset it "
              "to use a broker of its own", file=sys.stderr)
        return 2
    if not bootstrap:
        from infra.kafka.launcher import LocalKafka
        from streams.config import KafkaSettings

        port, cport = free_port(), free_port()
        broker = LocalKafka(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", port=port, controller_port=cport,
                                          heap="768m"), tmp / "kafka")
        bootstrap = broker.start()
    tag = uuid.uuid4().hex[:6]
    topics = {"inputs": f"bench.soak.{tag}.in", "labels": f"bench.soak.{tag}.lab", "alerts": f"bench.soak.{tag}.alerts",
              "labelled": f"bench.soak.{tag}.labelled", "retrain_requests": f"bench.soak.{tag}.rr",
              "partitions": PARTITIONS}
    ensure_topics(bootstrap, [topics["inputs"], topics["labels"], topics["alerts"]], partitions=PARTITIONS)
    register_lat_reference(tmp)
    drift = {"window_seconds": 1, "min_samples": 100, "open_after": 2, "close_after": 2}
    try:
        w = Worker(bootstrap, tmp, topics, "soak", drift, batch_within_s=0.05, label_ttl_s=60.0, lag_interval_s=1.0)
    except BaseException:
        if broker is not None:
            broker.stop()
        raise
    alerts: list[tuple[float, float]] = []  # (read at, relative t; latency s)
    stop_alerts = threading.Event()
    t0 = time.monotonic()

    def consume_alerts() -> None:
        from kafka import KafkaConsumer

        c = KafkaConsumer(topics["alerts"], bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                          enable_auto_commit=False, group_id=None, consumer_timeout_ms=200, fetch_max_wait_ms=10)
        seen: set[str] = set()
        while not stop_alerts.is_set():
            for r in c:
                a = json.loads(r.value)
                if a["alert_id"] not in seen:
                    seen.add(a["alert_id"])
                    alerts.append((round(time.monotonic() - t0, 2), time.time() - float(a["window"]["end"])))
        c.close()

    threading.Thread(target=consume_alerts, daemon=True).start()
    try:
        producer = Producer(bootstrap, topics["inputs"], FEATURES)
    except BaseException:
        w.stop()
        if broker is not None:
            broker.stop()
        raise
    sampler = Sampler(w, producer, t0)
    result: dict = {"command": "bench/soak.py" + (" --quick" if args.quick else ""), "machine": platform.node(),
                    "cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2),
                    "plan": dataclasses.asdict(plan), "partitions": PARTITIONS, "features": len(FEATURES),
                    "worker": {"label_ttl_s": 60.0, "window_seconds": 1}}
    try:
        from common import _git_state

        result["git"] = _git_state()
    except Exception:  # bench/common.py is optional here
        pass
    try:
        deadline = time.monotonic() + 120
        while not w.metrics() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(8.0)  # group join and assignment
        producer.start()
        ramp = []
        rate = args.rate
        if rate is None:
            for target in plan.ramp_rates:
                producer.rate = target
                sampler.phase = f"ramp {target:.0f}/s"
                a0 = producer.acked
                t_step = time.monotonic()
                end = sampler.run_for(plan.ramp_step_s)
                produced_rate = (producer.acked - a0) / (time.monotonic() - t_step)
                ok = sustained(target, produced_rate, end["backlog"])
                ramp.append({"target": target, "produced_per_s": round(produced_rate), "backlog_end": end["backlog"],
                             "sustained": ok})
                print(f"ramp {target:.0f}/s: produced {produced_rate:.0f}/s, backlog {end['backlog']:.0f} -> "
                      f"{'sustained' if ok else 'not sustained'}", flush=True)
                if not ok:
                    break
                rate = target
            producer.rate = 0.0
            sampler.phase = "ramp drain"
            sampler.run_for(plan.drain_s, until=lambda r: r["backlog"] == 0)
            rate = rate or plan.ramp_rates[0]
        result["ramp"], result["rate"] = ramp, rate
        print(f"soak at {rate:.0f}/s for {plan.minutes} min, then {2 * rate:.0f}/s for {plan.burst_s:.0f} s", flush=True)
        t_soak = time.monotonic() - t0
        producer.rate, sampler.phase = rate, "soak"
        sampler.run_for(plan.minutes * 60)
        t_burst = time.monotonic() - t0
        producer.rate, sampler.phase = 2 * rate, "burst"
        sampler.run_for(plan.burst_s)
        t_drain = time.monotonic() - t0
        producer.rate, sampler.phase = rate, "after burst"
        # back at the soak rate: lag must return to zero while traffic goes on
        last = sampler.run_for(plan.drain_s, until=lambda r: r["backlog"] < rate * 0.5 and r["lag"] < rate * 0.5)
        t_back = time.monotonic() - t0
        producer.rate, sampler.phase = 0.0, "drain"
        last = sampler.run_for(60.0, until=lambda r: r["backlog"] == 0 and r["lag"] == 0)
        result["phases"] = {"soak_start_s": t_soak, "burst_start_s": t_burst, "burst_end_s": t_drain,
                            "caught_up_s": t_back if last else None}
    finally:
        producer.stop.set()
        if producer.is_alive():
            producer.join(60)
        stop_alerts.set()
        final_metrics = w.metrics()
        w.stop()
        if broker is not None:
            broker.stop()
    rows = [{k: v for k, v in r.items() if k != "_m"} for r in sampler.rows]
    result.update(summarise(rows, alerts, result, final_metrics, producer))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "soak.quick" if args.quick else "soak"
    (out / f"{name}.json").write_text(json.dumps({**result, "rows": rows, "alerts": alerts}, indent=1) + "\n")
    plot(rows, alerts, result, out / f"{name}.png")
    (out / f"{name}.md").write_text(report(result, name))
    print(report(result, name))
    return 0


def summarise(rows: list[dict], alerts: list, result: dict, final: dict, producer: Producer) -> dict:
    """Headline figures (pure apart from reading ``producer``'s counters)."""
    ph = result.get("phases", {})

    def between(a: float, b: float, key: str) -> list[float]:
        return [r[key] for r in rows if a <= r["t"] < b and key in r]

    soak_tp = between(ph.get("soak_start_s", 0) + 5, ph.get("burst_start_s", 0), "counted_per_s")
    burst_tp = between(ph.get("burst_start_s", 0), ph.get("burst_end_s", 0), "counted_per_s")
    soak_rss = between(ph.get("soak_start_s", 0), ph.get("burst_start_s", 0), "rss_mb")
    lat = np.array([x for _, x in alerts]) if alerts else np.array([])
    lat_soak = np.array([x for t, x in alerts if ph.get("soak_start_s", 0) <= t < ph.get("burst_start_s", 0)])
    q = len(soak_rss) // 4 if soak_rss else 0
    last = rows[-1] if rows else {}
    return {
        "summary": {
            "sustained_rate_per_s": result.get("rate"),
            "soak_counted_per_s_mean": round(float(np.mean(soak_tp)), 1) if soak_tp else None,
            "burst_counted_per_s_mean": round(float(np.mean(burst_tp)), 1) if burst_tp else None,
            "max_lag": max((r["lag"] for r in rows), default=0.0),
            "max_backlog": max((r["backlog"] for r in rows), default=0.0),
            "max_lag_in_soak": max(between(ph.get("soak_start_s", 0) + 5, ph.get("burst_start_s", 0), "lag"), default=0),
            "lag_at_end": last.get("lag"), "backlog_at_end": last.get("backlog"),
            "caught_up_after_burst_s": (ph["caught_up_s"] - ph["burst_end_s"]) if ph.get("caught_up_s") else None,
            "rss_mb_quarters_of_soak": [soak_rss[min(len(soak_rss) - 1, i * q)] for i in range(4)] + [soak_rss[-1]]
            if soak_rss else [],
            "rss_mb_max": max((r["rss_mb"] for r in rows), default=0.0),
            "alerts": len(alerts),
            "alert_latency_p50_s": float(np.percentile(lat, 50)) if lat.size else None,
            "alert_latency_p99_s": float(np.percentile(lat, 99)) if lat.size else None,
            "alert_latency_soak_p50_s": float(np.percentile(lat_soak, 50)) if lat_soak.size else None,
            "alert_latency_soak_p99_s": float(np.percentile(lat_soak, 99)) if lat_soak.size else None,
            "produced": producer.acked, "send_failures": producer.failed,
            "counted": final.get("driftloop_events_total"),
            "duplicates": final.get("driftloop_duplicate_events_total", 0.0),
            "late": final.get("driftloop_late_events_total", 0.0),
        }
    }


def plot(rows: list[dict], alerts: list, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    fig, ax = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    ax[0].plot(t, [r.get("produced_per_s", np.nan) for r in rows], label="produced (acked) events/s", lw=1)
    ax[0].plot(t, [r.get("counted_per_s", np.nan) for r in rows], label="counted by the worker events/s", lw=1)
    ax[0].plot(t, [r["target"] for r in rows], label="target rate", lw=1, ls="--", color="grey")
    ax[0].set_ylabel("events/s")
    ax[0].legend(loc="upper left", fontsize=8)
    ax[1].plot(t, [r["lag"] for r in rows], label="driftloop_consumer_lag, inputs topic", lw=1)
    ax[1].plot(t, [r["backlog"] for r in rows], label="produced - counted", lw=1, alpha=0.7)
    ax[1].set_ylabel("records behind")
    ax[1].legend(loc="upper left", fontsize=8)
    if alerts:
        ax[2].scatter([a for a, _ in alerts], [x for _, x in alerts], s=4)
        ax[2].set_yscale("log")
    ax[2].set_ylabel("alert latency (s)")
    ax[3].plot(t, [r["rss_mb"] for r in rows], lw=1)
    ax[3].set_ylabel("worker RSS (MB)")
    ax[3].set_xlabel("seconds since start")
    ph = result.get("phases", {})
    for a in ax:
        for key, colour in (("soak_start_s", "green"), ("burst_start_s", "red"), ("burst_end_s", "red")):
            if ph.get(key) is not None:
                a.axvline(ph[key], color=colour, lw=0.8, ls=":")
    fig.suptitle(f"driftloop soak: {result.get('rate', 0):.0f} events/s, then twice that "
                 f"({result['plan']['minutes']} min + {result['plan']['burst_s']:.0f} s burst), one worker")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(r: dict, name: str) -> str:
    s = r.get("summary", {})

    def f(x, nd=0):
        return "-" if x is None else (f"{x:,.{nd}f}" if isinstance(x, (int, float)) else str(x))

    ramp = ", ".join(f"{x['target']:.0f}/s {'ok' if x['sustained'] else 'NOT sustained'} "
                     f"(produced {x['produced_per_s']}/s, backlog {x['backlog_end']:.0f})" for x in r.get("ramp", []))
    return "\n".join([
        f"# Soak of one drift worker ({r['command']})", "",
        f"Machine {r['machine']} ({r['cpus']} cores, shared; load {r['load_before']} at start). One broker, 2 partitions, "
        f"20 features, 1 s windows, label join on (TTL 60 s), events stamped with the wall clock.", "",
        f"Ramp: {ramp or 'skipped (--rate)'}.", "",
        "| figure | value |", "| --- | --- |",
        f"| sustained rate (soak) | {f(s.get('sustained_rate_per_s'))} events/s; counted {f(s.get('soak_counted_per_s_mean'))}/s on average |",
        f"| burst (2x) | counted {f(s.get('burst_counted_per_s_mean'))}/s on average |",
        f"| consumer lag | max {f(s.get('max_lag'))} (in the soak {f(s.get('max_lag_in_soak'))}); at the end {f(s.get('lag_at_end'))} |",
        f"| backlog (produced - counted) | max {f(s.get('max_backlog'))}; at the end {f(s.get('backlog_at_end'))}; "
        f"caught up {f(s.get('caught_up_after_burst_s'), 1)} s after the burst |",
        f"| worker RSS (MB) at the soak's quarters and end | {', '.join(f(x) for x in s.get('rss_mb_quarters_of_soak', []))} (max {f(s.get('rss_mb_max'))}) |",
        f"| alert latency | p50 {f(s.get('alert_latency_p50_s'), 3)} s, p99 {f(s.get('alert_latency_p99_s'), 3)} s over "
        f"{s.get('alerts')} alerts (soak phase: p50 {f(s.get('alert_latency_soak_p50_s'), 3)}, p99 {f(s.get('alert_latency_soak_p99_s'), 3)}) |",
        f"| events | produced {f(s.get('produced'))}, counted {f(s.get('counted'))}, send failures {s.get('send_failures')}, "
        f"duplicates {f(s.get('duplicates'))}, late {f(s.get('late'))} |",
        "", f"Plot: `bench/results/{name}.png`.", "",
    ])


if __name__ == "__main__":
    sys.exit(main())
