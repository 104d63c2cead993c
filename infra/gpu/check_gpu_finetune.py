"""GPU check: one fine-tuning job through driftloop's own dispatcher -> Ray Jobs API path.

Run with ``bash infra/gpu/check_gpu_finetune.sh [--rows N --dim D ...]`` (it makes Ray
importable first).  Steps: write a synthetic, pre-encoded data set (``--rows`` x ``--dim``,
``--classes`` classes, a new concept on part of the input space) and register a base MLP
with a replay buffer in a scratch registry; start a local Ray cluster (token auth on; Ray
detects the GPUs itself); hand one RetrainRequest to :class:`trainers.cli.dispatcher.Dispatcher`,
which submits ``python -m trainers.retrain_job`` as a Ray job; the job asks for a GPU in
its training task only when ``ray.cluster_resources()`` has one.  Prints and writes (to
``$OUT/gpu_finetune.json`` when ``OUT`` is set, else ``--out``) the device used
(``torch.cuda.get_device_name``), the GPUs Ray saw, and the timings.  Runs on CPU when
there is no GPU.  Exit code 0 when the job succeeded (whatever the gate decided).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synthetic(rows: int, dim: int, classes: int, seed: int, shift: float):
    """Gaussian class clusters; ``shift`` moves the clusters (drift) for the new data."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(size=(classes, dim)).astype(np.float32) * 1.5
    y = rng.integers(0, classes, rows)
    X = centers[y] + rng.normal(size=(rows, dim)).astype(np.float32)
    X[:, : dim // 4] += shift
    return X.astype(np.float32), y.astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000, help="new labelled rows in the drift window")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--hidden", default="1024,1024")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--base-rows", type=int, default=20_000, help="rows the base model is trained on (old concept)")
    p.add_argument("--timeout", type=float, default=480.0, help="give up on the job after this many seconds")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default: $OUT/gpu_finetune.json or stdout only)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()

    import numpy as np
    import torch

    from trainers.records import RetrainRequest
    from trainers.training.continual import ContinualLearner
    from trainers.cli.dispatcher import Dispatcher, JobsAdapter
    from trainers.training.models import ModelSpec, build_model
    from trainers.dispatch.ray_cluster import job_client, start_local_cluster
    from trainers.registry import ModelRegistry, Provenance
    from trainers.training.replay import ReplayBuffer

    work = Path(tempfile.mkdtemp(prefix="dl-gpu-check-"))
    info: dict = {"torch": torch.__version__, "cuda_available_driver_side": torch.cuda.is_available(),
                  "driver_side_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                  "rows": args.rows, "dim": args.dim, "classes": args.classes, "hidden": args.hidden,
                  "epochs": args.epochs, "batch_size": args.batch_size}
    print(json.dumps(info), flush=True)

    # base model on the old concept, with its replay buffer
    spec = ModelSpec([f"f{i}" for i in range(args.dim)], args.classes,
                     hidden=tuple(int(h) for h in args.hidden.split(",")))
    Xb, yb = synthetic(args.base_rows, args.dim, args.classes, seed=0, shift=0.0)
    t = time.perf_counter()
    base = ContinualLearner(build_model(spec, seed=0), replay=ReplayBuffer(2000, seed=0), epochs=1,
                            batch_size=args.batch_size, replay_batch_size=args.batch_size)
    base.fit(Xb, yb)
    info["base_train_s"] = time.perf_counter() - t
    reg = ModelRegistry(work / "registry")
    v = reg.register("gpucheck", spec, base.model.to("cpu").state_dict(), replay=base.replay,
                     provenance=Provenance(base_model={"source": "synthetic (infra/gpu/check_gpu_finetune.py)",
                                                       "licence": "Apache-2.0"}))
    reg.promote("gpucheck", v.version)

    # the drift window's labelled data, pre-encoded
    now = time.time()
    X, y = synthetic(args.rows, args.dim, args.classes, seed=1, shift=1.5)
    data = work / "window.npz"
    np.savez(data, X=X, y=y, ts=np.full(len(y), now - 60.0))

    t = time.perf_counter()
    cluster = start_local_cluster(work / "ray", object_store_mb=max(200, min(4000, X.nbytes * 3 // 2**20)),
                                  timeout_s=240)
    info["ray_start_s"] = time.perf_counter() - t
    try:
        client = job_client(cluster.dashboard_url)
        settings = {"trainers": {"min_examples": 100, "holdout_fraction": 0.1,
                                 "learner": {"epochs": args.epochs, "batch_size": args.batch_size,
                                             "replay_batch_size": args.batch_size, "optimizer": "sgd", "lr": 0.05},
                                 "gate": {"min_improvement_new": 0.0, "max_forgetting_old": 0.05}}}
        jobs = JobsAdapter(client, settings=settings, registry=str(work / "registry"), python=sys.executable,
                           labelled_file=str(data), publish="none")
        results = []
        dispatcher = Dispatcher.open(work / "ledger.json", jobs, results.append, max_attempts=1)
        req = RetrainRequest("gpucheck", v.version, ["gpu-check"], ["data_drift"], now - 3600, now + 60,
                             n_labelled=args.rows, reason="GPU check")
        t_req = time.time()
        dispatcher.handle(req)
        sid = dispatcher.ledger.entries[req.request_id].submission_id
        t_running = None
        deadline = time.monotonic() + args.timeout
        while dispatcher.ledger.in_flight() and time.monotonic() < deadline:
            dispatcher.poll()
            entry = dispatcher.ledger.entries[req.request_id]
            if t_running is None and entry.job_status in ("RUNNING", "SUCCEEDED", "FAILED"):
                t_running = time.time()
            time.sleep(0.1)
        entry = dispatcher.ledger.entries[req.request_id]
        job = client.get_job_info(sid)
        logs = client.get_job_logs(sid)
        result = entry.result or {}
        training = ((result.get("report") or {}).get("training") or {})
        version = result.get("new_version")
        full = reg.load("gpucheck", version).provenance.training if version else {}
        info.update({
            "job_submission_id": sid,
            "job_status": str(getattr(job.status, "value", job.status)),
            "job_metadata": job.metadata,
            "request_to_running_s": None if t_running is None else t_running - t_req,
            "job_wall_s": None if not (job.end_time and job.start_time) else (job.end_time - job.start_time) / 1000,
            "ray_cluster_resources": full.get("cluster_resources"),
            "ray_gpus": (full.get("cluster_resources") or {}).get("GPU", 0.0),
            "device": training.get("device") or full.get("device"),
            "device_name": training.get("device_name") or full.get("device_name"),
            "fit_time_s": full.get("time_s"),
            "train_task_wall_s": full.get("wall_time_s"),
            "steps": full.get("steps"),
            "n_train": full.get("n_train"),
            "gate_promoted": result.get("promoted"),
            "gate": {k: (result.get("report") or {}).get("gate", {}).get(k) for k in
                     ("accuracy_new_before", "accuracy_new_after", "accuracy_old_before", "accuracy_old_after")},
            "results_published": [r.status for r in results],
            "total_s": time.perf_counter() - t_start,
        })
        if entry.state != "succeeded":
            info["job_log_tail"] = logs[-4000:]
    finally:
        cluster.stop()
    text = json.dumps(info, indent=2, default=str)
    print(text)
    out = args.out or (Path(os.environ["OUT"]) / "gpu_finetune.json" if os.environ.get("OUT") else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0 if info.get("job_status") == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
