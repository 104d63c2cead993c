"""Dispatch latency: "retrain request published on Kafka -> Ray job RUNNING" on a warm local cluster.

Run: ``.venv/bin/python bench/dispatch_latency.py [--quick | --full] [--requests N]``

Starts a local Kafka broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` is set) and a local Ray
cluster (2 CPUs, token auth on), warms the cluster with one job, then, side by side and
interleaved, measures

* ``dispatcher``: publish a RetrainRequest on the requests topic -> the dispatcher
  (``trainers.cli.dispatcher.Dispatcher``: Kafka consumer group, ledger, Jobs API
  submission of ``python -m trainers.retrain_job``) -> the job's status is RUNNING;
* ``direct``: the same entrypoint submitted straight to ``JobSubmissionClient`` -> RUNNING
  (the Ray floor the dispatcher cannot beat).

Each job is stopped once RUNNING is seen (the latency ends there; training is not part of
it) and the next request waits until it has ended, so every request meets a warm, idle
cluster.  Status is polled every 50 ms.  Results: ``bench/results/dispatch_latency.json``
and ``.md`` with p50/p95 and the dispatcher/direct ratio.  Goal: p50 < 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from trainers.records import RetrainRequest

POLL_S = 0.05
GOAL_P50_S = 10.0


def wait_status(client, sid: str, want: set[str], timeout_s: float = 120.0) -> tuple[str, float]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = str(client.get_job_status(sid))
        st = st.split(".")[-1]
        if st in want:
            return st, time.time()
        time.sleep(POLL_S)
    raise TimeoutError(f"job {sid} did not reach {sorted(want)} within {timeout_s:.0f}s")


def stop_and_wait(client, sid: str) -> None:
    try:
        client.stop_job(sid)
    except Exception:
        pass
    wait_status(client, sid, {"STOPPED", "SUCCEEDED", "FAILED"}, 120.0)


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="n", action="store_const", const=5, help="5 requests per path")
    g.add_argument("--full", dest="n", action="store_const", const=20, help="20 requests per path")
    p.add_argument("--requests", type=int, help="requests per path (default 10)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    n = args.requests or args.n or 10

    from kafka import KafkaConsumer, KafkaProducer

    from trainers.cli.dispatcher import Dispatcher, JobsAdapter
    from trainers.dispatch.ray_cluster import start_local_cluster

    work = Path(tempfile.mkdtemp(prefix="dl-bench-dispatch-"))
    kafka = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    t_setup = time.perf_counter()
    if not bootstrap:
        from infra.kafka.launcher import LocalKafka
        from streams.config import KafkaSettings
        from trainers.dispatch.ray_cluster import free_port

        port, cport = free_port(), free_port()
        kafka = LocalKafka(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", port=port, controller_port=cport,
                                         start_timeout_s=180.0, heap="512m"), work / "kafka",
                           jvm_opts=["-XX:TieredStopAtLevel=1"])
        bootstrap = kafka.start()
    cluster = start_local_cluster(work / "ray", num_cpus=2, object_store_mb=200, timeout_s=180)
    setup_s = time.perf_counter() - t_setup
    print(f"setup: Kafka {bootstrap}, Ray {cluster.dashboard_url} in {setup_s:.1f}s", flush=True)
    try:
        from streams.adapters.kafka_admin import ensure_topics
        from trainers.dispatch.ray_cluster import job_client

        topic = f"bench.retrain-requests.{uuid.uuid4().hex[:8]}"
        ensure_topics(bootstrap, [topic], partitions=1)
        client = job_client(cluster.dashboard_url)
        settings = {"kafka": {"bootstrap_servers": bootstrap}, "trainers": {}}
        jobs = JobsAdapter(client, settings=settings, registry=str(work / "registry"), python=sys.executable,
                           extra_env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
        dispatcher = Dispatcher.open(work / "ledger.json", jobs, lambda r: None, max_attempts=3)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:6]}",
                                 enable_auto_commit=False, auto_offset_reset="earliest")
        consumer.poll(timeout_ms=2000)  # join the group before timing

        stop = threading.Event()

        def loop() -> None:  # the dispatcher's consume -> record -> commit -> submit path
            from streams.contracts.validate import decode_json

            while not stop.is_set():
                for msgs in consumer.poll(timeout_ms=100).values():
                    for m in msgs:
                        dispatcher.handle(RetrainRequest.from_dict(decode_json(m.value)))
                    consumer.commit()

        def submitted(request_id: str) -> bool:
            e = dispatcher.ledger.entries.get(request_id)
            return e is not None and e.submission_id in dispatcher.submit_times

        def request(i: int) -> RetrainRequest:
            return RetrainRequest("bench", "1", [f"bench-{uuid.uuid4().hex}"], ["data_drift"], 0.0, 1.0,
                                  reason=f"bench {i}")

        # warm-up: one job through each path, not measured
        th = threading.Thread(target=loop, daemon=True)
        th.start()
        warm = request(-1)
        producer.send(topic, warm.to_json().encode()).get(timeout=30)
        deadline = time.monotonic() + 120
        while not submitted(warm.request_id):
            if time.monotonic() > deadline:
                raise TimeoutError("the warm-up request was not submitted within 120 s")
            time.sleep(POLL_S)
        wsid = dispatcher.ledger.entries[warm.request_id].submission_id
        wait_status(client, wsid, {"RUNNING", "SUCCEEDED", "FAILED"})
        stop_and_wait(client, wsid)

        rows = []
        for i in range(n):
            # dispatcher path
            req = request(i)
            t0 = time.time()
            producer.send(topic, req.to_json().encode())
            producer.flush()
            while not submitted(req.request_id):
                time.sleep(0.01)
                if time.time() - t0 > 120:
                    raise TimeoutError("the dispatcher did not submit within 120 s")
            sid = dispatcher.ledger.entries[req.request_id].submission_id
            t_sub = dispatcher.submit_times[sid]
            _, t_run = wait_status(client, sid, {"RUNNING", "SUCCEEDED", "FAILED"})
            rows.append({"path": "dispatcher", "i": i, "total_s": t_run - t0, "to_submitted_s": t_sub - t0,
                         "submitted_to_running_s": t_run - t_sub})
            stop_and_wait(client, sid)
            # direct path (same entrypoint and runtime env)
            dreq = request(i)
            dsid = f"bench-direct-{uuid.uuid4().hex[:10]}"
            t0 = time.time()
            client.submit_job(entrypoint=jobs.entrypoint(dreq, dsid), submission_id=dsid,
                              runtime_env=jobs.runtime_env(), metadata=jobs.metadata(dreq, 1))
            t_sub = time.time()
            _, t_run = wait_status(client, dsid, {"RUNNING", "SUCCEEDED", "FAILED"})
            rows.append({"path": "direct", "i": i, "total_s": t_run - t0, "to_submitted_s": t_sub - t0,
                         "submitted_to_running_s": t_run - t_sub})
            stop_and_wait(client, dsid)
            print(f"{i + 1}/{n}: dispatcher {rows[-2]['total_s']:.2f}s, direct {rows[-1]['total_s']:.2f}s", flush=True)
        stop.set()
        th.join(timeout=5)
        consumer.close()
        producer.close()
    finally:
        cluster.stop()
        if kafka is not None:
            kafka.stop()

    summary = {}
    for path in ("dispatcher", "direct"):
        xs = [r["total_s"] for r in rows if r["path"] == path]
        summary[path] = {
            "n": len(xs), "p50_s": percentile(xs, 50), "p95_s": percentile(xs, 95), "max_s": max(xs),
            "to_submitted_p50_s": percentile([r["to_submitted_s"] for r in rows if r["path"] == path], 50),
            "submitted_to_running_p50_s": percentile([r["submitted_to_running_s"] for r in rows if r["path"] == path], 50),
        }
    ratio = summary["dispatcher"]["p50_s"] / summary["direct"]["p50_s"]
    load = os.getloadavg()
    out = {
        "bench": "dispatch_latency",
        "what": "retrain request published on Kafka -> Ray job RUNNING (warm local cluster, 2 CPUs, token auth on)",
        "requests_per_path": n,
        "summary": summary,
        "ratio_dispatcher_over_direct_p50": ratio,
        "goal_p50_s": GOAL_P50_S,
        "goal_met": summary["dispatcher"]["p50_s"] < GOAL_P50_S,
        "setup_s": setup_s,
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": load, "python": platform.python_version(),
                    "platform": platform.platform()},
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "dispatch_latency.json").write_text(json.dumps(out, indent=2))
    d, r = summary["dispatcher"], summary["direct"]
    md = [
        "# Dispatch latency: retrain request published -> Ray job RUNNING",
        "",
        f"Warm local Ray cluster (2 CPUs, token auth on), {n} requests per path, interleaved; "
        f"status polled every {int(POLL_S * 1000)} ms. Load average at the end: {load[0]:.1f} on {os.cpu_count()} CPUs "
        "(the machine is shared).",
        "",
        "| path | p50 (s) | p95 (s) | max (s) | publish/submit -> submitted p50 (s) | submitted -> RUNNING p50 (s) |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| dispatcher (Kafka -> ledger -> Jobs API) | {d['p50_s']:.2f} | {d['p95_s']:.2f} | {d['max_s']:.2f} | "
        f"{d['to_submitted_p50_s']:.2f} | {d['submitted_to_running_p50_s']:.2f} |",
        f"| direct JobSubmissionClient.submit_job | {r['p50_s']:.2f} | {r['p95_s']:.2f} | {r['max_s']:.2f} | "
        f"{r['to_submitted_p50_s']:.2f} | {r['submitted_to_running_p50_s']:.2f} |",
        "",
        f"Ratio dispatcher / direct (p50): **{ratio:.2f}**. Goal p50 < {GOAL_P50_S:.0f} s: "
        f"**{'met' if out['goal_met'] else 'NOT met'}** ({d['p50_s']:.2f} s).",
        "",
        "Command: `.venv/bin/python bench/dispatch_latency.py" + (f" --requests {n}`" if n != 10 else "`"),
    ]
    (args.out_dir / "dispatch_latency.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
