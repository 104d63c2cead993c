"""Continual learning on scikit-learn's bundled digits: driftloop vs Avalanche, side by side.

Scenarios (no downloads):
  * split    - Split-Digits, class-incremental: 5 tasks of 2 classes, one 10-way head.
  * permuted - Permuted-Digits: 5 tasks, each a fixed pixel permutation of all 10 classes.
Protocol: MLP 64-256-256-10, SGD lr 0.1, batch 32 (+32 replayed), 20 epochs per task,
a stratified 70/30 train/test split per seed, the same tensors and initial weights for
every method. Metrics: average accuracy over the task test sets after the last task,
backward transfer (BWT, mean of acc_final(j) - acc_after_j(j) over j < last: negative
= forgetting), training time per task (wall clock, training only) and buffer memory.

    .venv/bin/python bench/continual_digits.py            # --quick (default)
    .venv/bin/python bench/continual_digits.py --full     # 5 seeds, buffers 50/200/500, all peers

Writes bench/results/continual_digits.json and .md (--full) or continual_digits.quick.* (--quick).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
import traceback
import warnings
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from trainers.training.continual import ContinualLearner, ReplayBuffer  # noqa: E402
from trainers.training.models import ModelSpec, build_model  # noqa: E402

N_TASKS = 5
EPOCHS = 20
LR = 0.1
BATCH = 32
SPEC = ModelSpec([f"px{i}" for i in range(64)], 10, hidden=(256, 256))


@dataclass
class Scenario:
    name: str
    train: list[tuple[np.ndarray, np.ndarray]]
    test: list[tuple[np.ndarray, np.ndarray]]


def make_scenario(name: str, seed: int) -> Scenario:
    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    if name == "split":
        tr, te = [], []
        for t in range(N_TASKS):
            cls = [2 * t, 2 * t + 1]
            a, b = np.isin(ytr, cls), np.isin(yte, cls)
            tr.append((Xtr[a], ytr[a]))
            te.append((Xte[b], yte[b]))
        return Scenario(name, tr, te)
    if name == "permuted":
        rng = np.random.default_rng(1000 + seed)
        perms = [np.arange(64)] + [rng.permutation(64) for _ in range(N_TASKS - 1)]
        return Scenario(
            name,
            [(np.ascontiguousarray(Xtr[:, p]), ytr) for p in perms],
            [(np.ascontiguousarray(Xte[:, p]), yte) for p in perms],
        )
    raise ValueError(name)


def fresh_model(seed: int) -> torch.nn.Module:
    return build_model(SPEC, seed=seed)


@torch.no_grad()
def accuracy(model: torch.nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    pred = model(torch.as_tensor(X, device=dev)).argmax(1).cpu().numpy()
    model.train(was)
    return float((pred == y).mean())


def summarize(R: np.ndarray, times: list[float], buffer_bytes: int | None, cpu: list[float]) -> dict:
    T = R.shape[0]
    return {
        "avg_acc": float(R[-1].mean() * 100),
        "bwt": float(np.mean([R[-1, j] - R[j, j] for j in range(T - 1)]) * 100),
        "time_per_task_s": float(np.mean(times)),
        "cpu_per_task_s": float(np.mean(cpu)),
        "buffer_bytes": buffer_bytes,
        "acc_matrix": (R * 100).round(2).tolist(),
    }


# ----------------------------------------------------------------- driftloop
#: the protocol's optimiser (SGD, the digits-tuned distillation, no roll-back, the epochs as given): rows that
#: set ``lr`` follow it; "driftloop defaults" is the product's defaults (tuned on bench/continual_tabular.py)
PROTOCOL = {"optimizer": "sgd", "distill": 0.3, "restore_best": False, "min_steps": 0}


def run_driftloop(sc: Scenario, seed: int, buffer: int | None, **kw) -> dict:
    if "lr" in kw:
        kw = {**PROTOCOL, **kw}
    model = fresh_model(seed)
    replay = ReplayBuffer(buffer, policy=kw.pop("policy", "class_balanced"), seed=seed) if buffer else None
    learner = ContinualLearner(model, replay=replay, seed=seed, device="cpu", **kw)
    R = np.zeros((N_TASKS, N_TASKS))
    times, cpu = [], []
    for i, (X, y) in enumerate(sc.train):
        c0, t0 = time.process_time(), time.perf_counter()
        learner.fit(X, y)
        cpu.append(time.process_time() - c0)
        times.append(time.perf_counter() - t0)
        for j, (Xt, yt) in enumerate(sc.test):
            R[i, j] = accuracy(learner.model, Xt, yt)
    return summarize(R, times, replay.nbytes if replay is not None else None, cpu)


def run_joint(sc: Scenario, seed: int) -> dict:
    """Upper bound: one model trained on all tasks at once (same epochs, batch, lr)."""
    model = fresh_model(seed)
    X = np.concatenate([a for a, _ in sc.train])
    y = np.concatenate([b for _, b in sc.train])
    learner = ContinualLearner(model, replay=None, epochs=EPOCHS, lr=LR, seed=seed, device="cpu", val_fraction=0.0,
                               **PROTOCOL)
    c0, t0 = time.process_time(), time.perf_counter()
    learner.fit(X, y)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    accs = np.array([accuracy(learner.model, Xt, yt) for Xt, yt in sc.test])
    R = np.tile(accs, (N_TASKS, 1))
    out = summarize(R, [wall / N_TASKS], None, [cpu / N_TASKS])
    out["bwt"] = None
    return out


# ----------------------------------------------------------------- avalanche
def run_avalanche(sc: Scenario, seed: int, strategy: str, buffer: int | None) -> dict:
    from avalanche.benchmarks.scenarios.deprecated.generic_benchmark_creation import (
        create_generic_benchmark_from_tensor_lists,
    )
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.supervised import DER, EWC, Naive

    torch.manual_seed(seed)
    bench = create_generic_benchmark_from_tensor_lists(
        train_tensors=[[torch.as_tensor(X), torch.as_tensor(y)] for X, y in sc.train],
        test_tensors=[[torch.as_tensor(X), torch.as_tensor(y)] for X, y in sc.test],
        task_labels=[0] * N_TASKS,
    )
    model = fresh_model(seed)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    common = dict(
        model=model, optimizer=opt, train_mb_size=BATCH, train_epochs=EPOCHS, eval_mb_size=1024,
        device="cpu", evaluator=None,
    )
    ce = torch.nn.CrossEntropyLoss()
    if strategy == "Naive":
        strat = Naive(criterion=ce, **common)
    elif strategy == "Replay":
        strat = Naive(criterion=ce, plugins=[ReplayPlugin(mem_size=buffer, batch_size=BATCH, batch_size_mem=BATCH)], **common)
    elif strategy == "EWC":
        strat = EWC(criterion=ce, ewc_lambda=100.0, **common)
    elif strategy == "DER++":
        strat = DER(criterion=ce, mem_size=buffer, batch_size_mem=BATCH, alpha=0.1, beta=0.5, **common)
    else:
        raise ValueError(strategy)
    R = np.zeros((N_TASKS, N_TASKS))
    times, cpu = [], []
    for i, exp in enumerate(bench.train_stream):
        c0, t0 = time.process_time(), time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            strat.train(exp, num_workers=0)
        cpu.append(time.process_time() - c0)
        times.append(time.perf_counter() - t0)
        for j, (Xt, yt) in enumerate(sc.test):
            R[i, j] = accuracy(model, Xt, yt)
    nbytes = None
    if strategy in ("Replay", "DER++"):
        nbytes = _avalanche_buffer_bytes(strat, buffer)
    return summarize(R, times, nbytes, cpu)


def _avalanche_buffer_bytes(strat, buffer: int) -> int | None:
    """Bytes of the stored tensors: rows x (64 floats + label [+ 10 logits])."""
    try:
        pol = getattr(strat, "storage_policy", None)
        if pol is None:
            pol = next(p for p in strat.plugins if hasattr(p, "storage_policy")).storage_policy
        n = len(pol.buffer)
    except Exception:  # noqa: BLE001 - best effort figure
        n = buffer
    per_row = 64 * 4 + 8 + 8 + (10 * 4 if type(strat).__name__ == "DER" else 0)  # x, y, task label
    return int(n * per_row)


# ---------------------------------------------------------------------- main
def methods_for(args) -> list[tuple[str, int | None, callable]]:
    """(name, buffer, fn(scenario, seed) -> result)."""
    ms: list[tuple[str, int | None, callable]] = []
    ms.append(("joint", None, run_joint))
    ms.append(("driftloop naive", None, lambda sc, s: run_driftloop(sc, s, None, epochs=EPOCHS, lr=LR, val_fraction=0.0)))
    if args.avalanche:
        for name in ("Naive", "EWC"):
            if name in args.avalanche:
                ms.append((f"avalanche {name}", None, lambda sc, s, n=name: run_avalanche(sc, s, n, None)))
    for cap in args.buffers:
        ms.append((f"driftloop defaults", cap, lambda sc, s, c=cap: run_driftloop(sc, s, c)))
        ms.append(("driftloop digits-tuned (SGD 0.1, distill 0.3: the defaults before 1 Dec 2026)", cap,
                   lambda sc, s, c=cap: run_driftloop(sc, s, c, lr=0.1)))
        ms.append((
            "driftloop DER++ balanced", cap,
            lambda sc, s, c=cap: run_driftloop(sc, s, c, epochs=EPOCHS, lr=LR, batch_size=BATCH,
                                                replay_batch_size=BATCH, val_fraction=0.0),
        ))
        ms.append((
            "driftloop DER++ fast (10 ep, lr 0.2)", cap,
            lambda sc, s, c=cap: run_driftloop(sc, s, c, epochs=10, lr=0.2, val_fraction=0.0),
        ))
        if not args.quick and cap == 200:  # ablations at the middle buffer only
            ms.append((
                "driftloop ER balanced", cap,
                lambda sc, s, c=cap: run_driftloop(sc, s, c, epochs=EPOCHS, lr=LR, distill=0.0,
                                                    replay_ce=1.0, val_fraction=0.0),
            ))
            ms.append((
                "driftloop DER++ reservoir", cap,
                lambda sc, s, c=cap: run_driftloop(sc, s, c, epochs=EPOCHS, lr=LR, policy="reservoir",
                                                    val_fraction=0.0),
            ))
        for name in ("Replay", "DER++"):
            if name in args.avalanche:
                ms.append((f"avalanche {name}", cap, lambda sc, s, n=name, c=cap: run_avalanche(sc, s, n, c)))
    return ms


def aggregate(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    out: dict = {"n_ok": len(ok), "n_failed": len(runs) - len(ok)}
    if len(ok) < len(runs):
        out["errors"] = sorted({r["error"] for r in runs if "error" in r})
    for k in ("avg_acc", "bwt", "time_per_task_s", "cpu_per_task_s", "buffer_bytes"):
        vals = [r[k] for r in ok if r.get(k) is not None]
        if vals:
            out[k] = float(np.mean(vals))
            out[k + "_std"] = float(np.std(vals))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="2 seeds, buffers 50/200, Avalanche Naive/DER++ (default)")
    mode.add_argument("--full", action="store_true", help="5 seeds, buffers 50/200/500, all peers")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--buffers", type=int, nargs="*", default=None)
    p.add_argument("--scenarios", nargs="*", default=["split", "permuted"])
    p.add_argument("--avalanche", nargs="*", default=None, help="Avalanche strategies (Naive Replay EWC DER++); empty = none")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every method (default 1)")
    p.add_argument("--out", default=None, help="output path without extension (default "
                   "bench/results/continual_digits for --full, continual_digits.quick for --quick)")
    args = p.parse_args(argv)
    args.quick = not args.full
    if args.out is None:
        args.out = os.path.join(HERE, "results", "continual_digits" + ("" if args.full else ".quick"))
    if args.seeds is None:
        args.seeds = 2 if args.quick else 5
    if args.buffers is None:
        args.buffers = [50, 200] if args.quick else [50, 200, 500]
    if args.avalanche is None:
        args.avalanche = ["Naive", "DER++"] if args.quick else ["Naive", "Replay", "EWC", "DER++"]
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    results: dict = {
        "protocol": {
            "dataset": "sklearn digits (1797 8x8 images), 70/30 stratified split per seed, pixels / 16",
            "model": "MLP 64-256-256-10", "optimizer": f"SGD lr {LR}", "batch": f"{BATCH} new + {BATCH} replayed",
            "epochs_per_task": EPOCHS, "tasks": N_TASKS, "seeds": args.seeds, "buffers": args.buffers,
            "threads": args.threads, "mode": "quick" if args.quick else "full",
        },
        "environment": {
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(),
        },
        "scenarios": {},
        "complete": False,
    }
    try:
        import avalanche
        results["environment"]["avalanche"] = avalanche.__version__
    except Exception as exc:  # noqa: BLE001
        results["environment"]["avalanche"] = f"not importable: {exc}"
    t_start = time.perf_counter()
    methods = methods_for(args)
    for scen in args.scenarios:
        runs: dict[int, list[dict]] = {k: [] for k in range(len(methods))}
        # seeds outermost, methods interleaved: a load change on a shared machine hits all peers
        for seed in range(args.seeds):
            sc = make_scenario(scen, seed)
            for k, (name, cap, fn) in enumerate(methods):
                try:
                    runs[k].append(fn(sc, seed))
                except Exception as exc:  # noqa: BLE001 - record why a peer did not run
                    runs[k].append({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)})
                r = runs[k][-1]
                acc = f"{r['avg_acc']:.1f}" if "avg_acc" in r else "FAILED " + r["error"][:120]
                print(f"[{scen} seed {seed}] {name:38s} buf={str(cap):4s} acc={acc} "
                      f"cpu/task={r.get('cpu_per_task_s', float('nan')):.3f}s ({time.perf_counter() - t_start:.0f}s)",
                      flush=True)
            rows = [{"method": name, "buffer": cap, **aggregate(runs[k]), "runs": runs[k]}
                    for k, (name, cap, _) in enumerate(methods)]
            results["scenarios"][scen] = rows
            results["seeds_done"] = {**results.get("seeds_done", {}), scen: seed + 1}
            _write(args.out, results)
    results["wall_s"] = time.perf_counter() - t_start
    results["complete"] = True
    _write(args.out, results)
    print(markdown(results))
    return 0


def _write(out: str, results: dict) -> None:
    """Write JSON and Markdown (also after every row, so a long run leaves partial results)."""
    results["verdicts"] = verdicts(results)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    for ext, text in ((".json", json.dumps(results, indent=1)), (".md", markdown(results))):
        with open(out + ext + ".tmp", "w") as f:
            f.write(text)
        os.replace(out + ext + ".tmp", out + ext)


def _row(rows, method, cap):
    return next((r for r in rows if r["method"] == method and r["buffer"] == cap and "avg_acc" in r), None)


def verdicts(results: dict) -> list[dict]:
    out = []
    for scen, rows in results["scenarios"].items():
        joint = _row(rows, "joint", None)
        for cap in results["protocol"]["buffers"]:
            av = [r for r in rows if r["method"].startswith("avalanche") and r["buffer"] in (cap, None) and "avg_acc" in r]
            best_av = max(av, key=lambda r: r["avg_acc"], default=None)
            der = _row(rows, "avalanche DER++", cap)
            for mine in ("driftloop DER++ balanced", "driftloop defaults", "driftloop DER++ fast (10 ep, lr 0.2)"):
                r = _row(rows, mine, cap)
                if r is None:
                    continue
                v = {"scenario": scen, "buffer": cap, "method": mine, "avg_acc": r["avg_acc"]}
                if best_av is not None:
                    v["best_avalanche"] = best_av["method"]
                    v["best_avalanche_acc"] = best_av["avg_acc"]
                    v["acc_minus_best_avalanche"] = r["avg_acc"] - best_av["avg_acc"]
                if der is not None:
                    v["time_ratio_vs_avalanche_der"] = r["time_per_task_s"] / der["time_per_task_s"]
                    v["cpu_ratio_vs_avalanche_der"] = r["cpu_per_task_s"] / der["cpu_per_task_s"]
                if joint is not None:
                    v["acc_minus_joint"] = r["avg_acc"] - joint["avg_acc"]
                out.append(v)
    return out


def markdown(results: dict) -> str:
    pr = results["protocol"]
    lines = [
        "# Continual learning on digits: driftloop vs Avalanche",
        "",
        f"Mode {pr['mode']}: {pr['seeds']} seeds, buffers {pr['buffers']}, {pr['model']}, {pr['optimizer']}, "
        f"batch {pr['batch']}, {pr['epochs_per_task']} epochs/task, torch threads {pr['threads']}. "
        f"Mean (std) over seeds. acc = average accuracy over the 5 task test sets after the last task; "
        "BWT = backward transfer (negative = forgetting); CPU s/task = process CPU time of training "
        "per task (robust to other load on a shared machine), wall s/task = wall clock; "
        "ratios are vs Avalanche DER++ at the same buffer, measured in the same run (seeds outermost, "
        "methods interleaved).",
        "",
        f"Environment: {results['environment']}. Total wall time {results.get('wall_s', 0):.0f} s."
        + ("" if results.get("complete") else " PARTIAL: the run had not finished when this was written."),
        "",
    ]
    for scen, rows in results["scenarios"].items():
        lines += [f"## {scen}", "",
                  "| method | buffer | acc % | BWT | CPU s/task | wall s/task | buffer KiB | acc − DER++ | CPU time ÷ DER++ |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            if "avg_acc" not in r:
                lines.append(f"| {r['method']} | {r['buffer'] or '-'} | failed: {'; '.join(r.get('errors', []))[:200]} | | | | | | |")
                continue
            der = _row(rows, "avalanche DER++", r["buffer"]) if r["buffer"] else None
            dacc = f"{r['avg_acc'] - der['avg_acc']:+.1f}" if der else ""
            dt = f"{r['cpu_per_task_s'] / der['cpu_per_task_s']:.2f}" if der else ""
            bwt = f"{r['bwt']:.1f}" if r.get("bwt") is not None else "-"
            kib = f"{r['buffer_bytes'] / 1024:.0f}" if r.get("buffer_bytes") else "-"
            lines.append(
                f"| {r['method']} | {r['buffer'] or '-'} | {r['avg_acc']:.1f} ({r['avg_acc_std']:.1f}) | {bwt} | "
                f"{r['cpu_per_task_s']:.3f} | {r['time_per_task_s']:.3f} | {kib} | {dacc} | {dt} |"
            )
        lines.append("")
    lines += ["## Goals", ""]
    for v in results.get("verdicts", []):
        parts = [f"{v['scenario']} buf {v['buffer']} {v['method']}: {v['avg_acc']:.1f}"]
        if "best_avalanche_acc" in v:
            parts.append(f"best Avalanche ({v['best_avalanche']}) {v['best_avalanche_acc']:.1f} -> {v['acc_minus_best_avalanche']:+.1f}")
        if "acc_minus_joint" in v:
            parts.append(f"vs joint {v['acc_minus_joint']:+.1f}")
        if "cpu_ratio_vs_avalanche_der" in v:
            parts.append(f"CPU time/task ÷ Avalanche DER++ {v['cpu_ratio_vs_avalanche_der']:.2f} "
                         f"(wall {v['time_ratio_vs_avalanche_der']:.2f})")
        lines.append("- " + "; ".join(parts))
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
