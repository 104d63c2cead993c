"""Continual fine-tuning on the product's own case: domain-incremental tabular streams, peers side by side.

Data: US census (ACS PUMS) employment, Massachusetts 2015-2018 (folktables ACSEmployment), read
offline from the parquet files inside the installed nannyml wheel (nannyml is not imported).
Four periods, one per survey year, the same binary label (employed) throughout:

  * census - the years as they are.  Little drifts: nannyml's 2015 model stays near 0.83 for three
    years (here, trained on 4,000 rows, the first model stays flat near 0.80), so a retrain here is
    a false alarm, and a retrain must at least not make things worse.
  * scaled - the same rows, but period k (k = 0..3) has AGEP x 4^k and SCHL + 8k standard
    deviations (of 2015), so every later period lies far outside the first period's standardised
    range; and the label priors shift between periods (employed share 50/30/70/20 %, by
    subsampling each class).

Features: AGEP and SCHL numeric (SCHL, the schooling code, is roughly ordinal), the other 14 codes
one-hot (ModelSpec.categorical); numeric features standardised on period 1 with
``ModelSpec.with_scaling``, as the product does for its base model.  MLP 256-256-2 (the ModelSpec
default), batch 32 (+32 replayed), 20 epochs with the learner's own validation split and early
stopping, replay buffer 500 (class-balanced), per-period train/test samples from disjoint halves of
each year (seeded), the same tensors and initial weights for every method.

Methods (all through ContinualLearner):
  * defaults      - ContinualLearner(model, replay=ReplayBuffer(500)) with no other arguments
                    (whatever the defaults are in this checkout; they are recorded).
  * plain Adam    - plain fine-tuning: Adam lr 1e-3, no replay, no distillation, no logit adjustment.
  * joint         - upper bound: a fresh model trained on all periods so far after each period
                    (Adam lr 1e-3; cumulative, so it costs 1+2+3+4 periods of training).
  * candidates    - proposed defaults (optimizer, lr, distillation weight, restore_best, replay batch).

Per update the bench also trains the gate's baseline (plain Adam from the *same* parent on the same
period, with ``trainers.retrain_job.baseline_learner_kwargs`` of the method's arguments, so it keeps
the method's schedule, e.g. restore_best) for every replay method, so "never below plain fine-tuning
on the new period" is measured the way the promotion gate will measure it.

Metrics (accuracy in %, mean over seeds): R[i][j] = accuracy on period j's test set after period
i; final old = mean_j<T R[T][j]; final new = R[T][T]; new (mean) = mean_i>0 R[i][i]; forgetting =
mean_j<T (R[j][j] - R[T][j]); worst step forgetting = max over updates i of mean_j<i (R[i-1][j] -
R[i][j]); vs baseline = R[i][i] minus the same-parent baseline's accuracy on period i (min and
mean over updates); CPU s per update (process time of fit; baselines not included).

    .venv/bin/python bench/continual_tabular.py --parts census  # --quick (default): 3 seeds, 4,000 train rows/period
    .venv/bin/python bench/continual_tabular.py --parts scaled  #   (one variant per run: 4-5 min of CPU each)
    .venv/bin/python bench/continual_tabular.py --full          # 5 seeds, 15,000 train rows/period
    .venv/bin/python bench/continual_tabular.py --parts digits --recommended '{"optimizer": "adam", ...}'
                                                                # defaults and those kwargs on bench/continual_digits

Writes bench/results/continual_tabular.quick.{json,md} (--full: continual_tabular.{json,md}); a run
of some parts keeps the other parts already in the file.

Logit adjustment is ContinualLearner's own "only when an experience brings new classes" (so on
these binary streams it never acts after the first period).  The results committed with e3b8a02
were taken before ContinualLearner had that and ``optimizer=`` (the bench emulated both).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import inspect
import json
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bench.common  # noqa: E402,F401  (one thread for BLAS/OpenMP before numpy)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from trainers.training.continual import ContinualLearner, ReplayBuffer  # noqa: E402
from trainers.training.models import ModelSpec, build_model  # noqa: E402

YEARS = (2015, 2016, 2017, 2018)
NUMERIC = ["AGEP", "SCHL"]
CATEGORICAL = ["MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY", "DEAR", "DEYE", "DREM", "SEX",
               "RAC1P"]
TARGET = "employed"
EPOCHS = 20
BUFFER = 500
HIDDEN = (256, 256)
SCALED_PRIORS = (0.5, 0.3, 0.7, 0.2)  # employed share per period in the scaled variant
SCALED_SHIFT_SD = 8.0
#: AGEP x 4^k: at 10^k even joint training only reaches the majority-class rate on the last period (a
#: 1-seed exploratory run), so that period would say nothing about learning
SCALED_FACTOR = 4.0
SIG = inspect.signature(ContinualLearner)

# ----------------------------------------------------------------------------------------- data


def load_census(years=YEARS) -> tuple[pd.DataFrame, str]:
    """Rows of the given years (columns year, features, employed) and where they came from.

    Uses ``trainers.datasets.census.load_census_ma`` when it can be imported, else reads the
    three parquet files of the nannyml wheel directly, in the same row order (year, then id), so
    both give the same samples.  Raises FileNotFoundError (naming the wheel)
    when nannyml is not installed.
    """
    try:
        from trainers.datasets.census import load_census_ma  # type: ignore[import-not-found]

        return load_census_ma(years), "trainers.datasets.census.load_census_ma"
    except ImportError:
        pass
    try:
        dist = md.distribution("nannyml")
    except md.PackageNotFoundError:
        raise FileNotFoundError("the census files come from the nannyml wheel: "
                                "python3 -m uv pip install --python .venv/bin/python --no-deps nannyml") from None
    base = Path(str(dist.locate_file("nannyml/datasets/data")))
    ref = pd.read_parquet(base / "employment_MA_reference.pq")
    ana = pd.read_parquet(base / "employment_MA_analysis.pq")
    tgt = pd.read_parquet(base / "employment_MA_analysis_target.pq")
    if len(tgt) != len(ana) or tgt["id"].duplicated().any():
        raise ValueError("nannyml employment files: analysis targets do not match one to one")
    df = pd.concat([ref, ana.merge(tgt, on="id", how="left", validate="one_to_one")], ignore_index=True)
    out = pd.DataFrame({"id": df["id"].astype(np.int64), "year": df["year"].astype(int),
                        "AGEP": df["AGEP"].astype(np.float64)})
    for c in ["SCHL", *CATEGORICAL]:
        out[c] = pd.to_numeric(df[c].astype(str)).astype(np.int64)
    out[TARGET] = df[TARGET].astype(np.int64)
    # the loader's order (year, then id), so that both paths draw the same samples
    out = out.sort_values(["year", "id"], kind="mergesort")
    out = out[out["year"].isin(list(years))].reset_index(drop=True)
    return out, f"nannyml {dist.version} wheel files (read directly: trainers.datasets.census not importable)"


@dataclass
class Stream:
    """One variant: per-period encoded train/test arrays (float32 (n, d), int64 (n,)) and the spec."""

    name: str
    spec: ModelSpec
    train: list[tuple[np.ndarray, np.ndarray]]
    test: list[tuple[np.ndarray, np.ndarray]]
    info: dict


def _sample(df: pd.DataFrame, n: int, prior: float | None, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows of ``df``; with ``prior``, exactly round(n * prior) of them employed."""
    if prior is None:
        return df.iloc[rng.choice(len(df), n, replace=False)]
    pos, neg = df[df[TARGET] == 1], df[df[TARGET] == 0]
    k = int(round(n * prior))
    return pd.concat([pos.iloc[rng.choice(len(pos), k, replace=False)],
                      neg.iloc[rng.choice(len(neg), n - k, replace=False)]])


def make_stream(df: pd.DataFrame, variant: str, seed: int, n_train: int, n_test: int) -> Stream:
    """Split every year into disjoint seeded train/test samples, transform (scaled variant), encode."""
    rng = np.random.default_rng(10_000 + seed)
    parts = []
    for k, year in enumerate(YEARS):
        d = df[df["year"] == year]
        prior = SCALED_PRIORS[k] if variant == "scaled" else None
        idx = rng.permutation(len(d))
        half = len(d) // 2  # train and test drawn from disjoint halves
        tr = _sample(d.iloc[idx[:half]], n_train, prior, rng)
        te = _sample(d.iloc[idx[half:]], n_test, prior, rng)
        parts.append((tr.copy(), te.copy()))
    sd0 = {f: float(parts[0][0][f].std()) for f in NUMERIC}
    if variant == "scaled":
        for k, (tr, te) in enumerate(parts):
            for t in (tr, te):
                t["AGEP"] = t["AGEP"] * SCALED_FACTOR ** k
                t["SCHL"] = t["SCHL"] + SCALED_SHIFT_SD * k * sd0["SCHL"]
    elif variant != "census":
        raise ValueError(f"unknown variant {variant!r}")
    cats = {c: [str(v) for v in sorted(df[c].unique())] for c in CATEGORICAL}
    base = ModelSpec(NUMERIC + CATEGORICAL, 2, hidden=HIDDEN, categorical=cats)

    def rows(t: pd.DataFrame) -> list[dict]:
        return [{**{f: float(r[f]) for f in NUMERIC}, **{c: str(int(r[c])) for c in CATEGORICAL}}
                for r in t[NUMERIC + CATEGORICAL].to_dict("records")]

    spec = base.with_scaling(rows(parts[0][0]))  # standardised on period 1, as the product does
    train = [(spec.encode(rows(tr)), tr[TARGET].to_numpy(np.int64)) for tr, _ in parts]
    test = [(spec.encode(rows(te)), te[TARGET].to_numpy(np.int64)) for _, te in parts]
    info = {
        "employed_share_train": [round(float(y.mean()), 3) for _, y in train],
        "numeric_range_std_units": [{f: [round(float(X[:, i].min()), 1), round(float(X[:, i].max()), 1)]
                                     for i, f in enumerate(NUMERIC)} for X, _ in train],
        "majority_class_rate_test": [round(float(max(y.mean(), 1 - y.mean())), 3) for _, y in test],
        "input_dim": spec.input_dim, "scaling": spec.scaling,
    }
    return Stream(variant, spec, train, test, info)


# -------------------------------------------------------------------------------------- learners

@dataclass(frozen=True)
class Method:
    """A named learner recipe: ``kw`` for ContinualLearner; ``replay``: use a buffer of ``BUFFER`` rows."""

    name: str
    kw: dict
    replay: bool = True
    joint: bool = False

    def make(self, spec: ModelSpec, seed: int, buffer: int = BUFFER) -> ContinualLearner:
        replay = ReplayBuffer(buffer, policy="class_balanced", seed=seed) if self.replay else None
        kw = dict(self.kw, epochs=EPOCHS) if EPOCHS != 20 else self.kw  # --smoke only
        return ContinualLearner(build_model(spec, seed=seed), replay=replay, seed=seed, device="cpu", **kw)


PLAIN = {"optimizer": "adam", "lr": 1e-3, "distill": 0.0, "logit_adjust": 0.0}
METHODS = [
    Method("defaults", {}),
    Method("plain Adam (no replay)", PLAIN, replay=False),
    Method("joint (Adam, upper bound)", PLAIN, replay=False, joint=True),
    Method("Adam 1e-3, distill 0.3", {"optimizer": "adam", "lr": 1e-3}),
    Method("Adam 1e-3, distill 0.1", {"optimizer": "adam", "lr": 1e-3, "distill": 0.1}),
    Method("Adam 1e-3, distill 1.0", {"optimizer": "adam", "lr": 1e-3, "distill": 1.0}),
    Method("AdamW 1e-3 wd 0.01, distill 0.3", {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01}),
    Method("Adam 3e-4, distill 0.3", {"optimizer": "adam", "lr": 3e-4}),
    Method("Adam 1e-3, distill 0.3, restore best", {"optimizer": "adam", "lr": 1e-3, "restore_best": True}),
    Method("Adam 3e-4, distill 0.3, restore best", {"optimizer": "adam", "lr": 3e-4, "restore_best": True}),
    Method("Adam 1e-3, distill 1.0, restore best", {"optimizer": "adam", "lr": 1e-3, "distill": 1.0,
                                                    "restore_best": True}),
    Method("Adam 1e-3, distill 2.0, restore best", {"optimizer": "adam", "lr": 1e-3, "distill": 2.0,
                                                    "restore_best": True}),
    Method("Adam 1e-3, distill 3.0, restore best", {"optimizer": "adam", "lr": 1e-3, "distill": 3.0,
                                                    "restore_best": True}),
    Method("Adam 1e-3, distill 0.3, replay batch 64", {"optimizer": "adam", "lr": 1e-3, "replay_batch_size": 64}),
    Method("Adam 1e-3, distill 1.0, restore best, replay batch 64",
           {"optimizer": "adam", "lr": 1e-3, "distill": 1.0, "restore_best": True, "replay_batch_size": 64}),
]
#: what a run without --methods trains (8 methods: about 4 min of CPU per variant at --quick); the other
#: METHODS were tried on one seed while choosing these (--methods all runs them)
GRID = ("defaults", "plain Adam (no replay)", "joint (Adam, upper bound)", "Adam 1e-3, distill 0.3",
        "Adam 1e-3, distill 0.3, restore best", "Adam 1e-3, distill 1.0, restore best",
        "Adam 1e-3, distill 2.0, restore best", "Adam 1e-3, distill 1.0, restore best, replay batch 64")


@torch.no_grad()
def accuracy(model: torch.nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    was = model.training
    model.eval()
    pred = model(torch.as_tensor(X)).argmax(1).numpy()
    model.train(was)
    return float((pred == y).mean())


def run_method(m: Method, st: Stream, seed: int, gate_baseline: bool) -> dict:
    """Train ``m`` through the periods; R matrix, CPU per update and the same-parent baseline figures."""
    T = len(st.train)
    R = np.zeros((T, T))
    cpu, base_new, base_old = [], [None] * T, [None] * T
    if m.joint:
        for i in range(T):
            lr = m.make(st.spec, seed)
            X = np.concatenate([a for a, _ in st.train[: i + 1]])
            y = np.concatenate([b for _, b in st.train[: i + 1]])
            c0 = time.process_time()
            lr.fit(X, y)
            cpu.append(time.process_time() - c0)
            R[i] = [accuracy(lr.model, Xt, yt) for Xt, yt in st.test]
        return _summary(R, cpu, base_new, base_old)
    lr = m.make(st.spec, seed)
    for i, (X, y) in enumerate(st.train):
        if gate_baseline and i > 0 and m.replay:
            # the promotion gate's comparison: plain Adam from the same parent on the same period
            b = ContinualLearner(_copy(lr.model), replay=None, device="cpu", **_baseline_kwargs(m, seed))
            b.experiences_seen = lr.replay.n_experiences
            b.fit(X, y)
            base_new[i] = accuracy(b.model, *st.test[i])
            base_old[i] = float(np.mean([accuracy(b.model, *st.test[j]) for j in range(i)]))
        c0 = time.process_time()
        lr.fit(X, y)
        cpu.append(time.process_time() - c0)
        R[i] = [accuracy(lr.model, Xt, yt) for Xt, yt in st.test]
    return _summary(R, cpu, base_new, base_old)


def _baseline_kwargs(m: Method, seed: int) -> dict:
    """The retrain job's baseline for this method's learner arguments (trainers.retrain_job)."""
    from trainers.retrain_job import baseline_learner_kwargs

    kw = baseline_learner_kwargs(dict(m.kw, seed=seed, **({"epochs": EPOCHS} if EPOCHS != 20 else {})))
    return kw


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


def _summary(R: np.ndarray, cpu: list[float], base_new: list, base_old: list) -> dict:
    T = R.shape[0]
    step_forget = [float(np.mean(R[i - 1, :i] - R[i, :i])) for i in range(1, T)]
    out = {
        "R": (R * 100).round(2).tolist(),
        "final_old": float(R[-1, :-1].mean() * 100),
        "final_new": float(R[-1, -1] * 100),
        "new_mean": float(np.mean([R[i, i] for i in range(1, T)]) * 100),
        "forgetting": float(np.mean([R[j, j] - R[-1, j] for j in range(T - 1)]) * 100),
        "worst_step_forgetting": float(max(step_forget) * 100),
        "step_forgetting": [round(100 * v, 2) for v in step_forget],
        "cpu_per_update_s": float(np.mean(cpu[1:])) if len(cpu) > 1 else float(cpu[0]),
        "cpu_first_s": float(cpu[0]),
    }
    if any(v is not None for v in base_new):
        d_new = [(R[i, i] - base_new[i]) * 100 for i in range(1, T)]
        d_old = [(float(R[i, :i].mean()) - base_old[i]) * 100 for i in range(1, T)]
        out.update(vs_baseline_new=[round(v, 2) for v in d_new], vs_baseline_old=[round(v, 2) for v in d_old],
                   vs_baseline_new_min=float(min(d_new)), vs_baseline_new_mean=float(np.mean(d_new)),
                   baseline_new=[None if v is None else round(100 * v, 2) for v in base_new])
    return out


GATE_TOLERANCE_PTS = 0.5  # GateConfig.max_baseline_gap, in points
KEYS = ("final_old", "final_new", "new_mean", "forgetting", "worst_step_forgetting", "cpu_per_update_s",
        "vs_baseline_new_min", "vs_baseline_new_mean", "vs_naive_new_min")


def aggregate(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    out: dict = {"n_ok": len(ok), "n_failed": len(runs) - len(ok)}
    if len(ok) < len(runs):
        out["errors"] = sorted({r["error"] for r in runs if "error" in r})
    for k in KEYS:
        vals = [r[k] for r in ok if r.get(k) is not None]
        if vals:
            out[k] = float(np.mean(vals))
            out[k + "_std"] = float(np.std(vals))
            out[k + "_worst"] = float(max(vals) if "forgetting" in k or k.startswith("cpu") else min(vals))
    if ok:
        out["R"] = np.mean([r["R"] for r in ok], axis=0).round(2).tolist()
    pooled = [v for r in ok for v in r.get("vs_baseline_new", [])]
    if pooled:  # every update of every seed: the gate's comparison, pooled
        out["vs_baseline_pooled_mean"] = float(np.mean(pooled))
        out["vs_baseline_pooled_sd"] = float(np.std(pooled))
        out["vs_baseline_pooled_min"] = float(min(pooled))
        out["vs_baseline_updates_below_tolerance"] = int(sum(v < -GATE_TOLERANCE_PTS for v in pooled))
        out["vs_baseline_updates"] = len(pooled)
    pairs = [(a, b) for r in ok for a, b in zip(r.get("vs_baseline_new", []), r.get("vs_baseline_old", []))]
    if pairs:  # what the promotion gate's baseline rule (default GateConfig) would say about each update
        tol = GATE_TOLERANCE_PTS
        out["gate_baseline_refusals"] = int(sum((a < -tol and (a + b) / 2 < 0) or (a + b) / 2 < -tol
                                                for a, b in pairs))
    steps = [v for r in ok for v in r.get("step_forgetting", [])]
    if steps:
        out["step_forgetting_over_1"] = int(sum(v > 1.0 for v in steps))
        out["step_forgetting_updates"] = len(steps)
    return out


# ------------------------------------------------------------------------------------------ digits


def digits_check(seeds: int, buffers: list[int], kwargs: dict[str, dict]) -> dict:
    """bench/continual_digits.py's quick protocol (its scenarios, model, accuracy and summary), our learners."""
    import bench.continual_digits as cd

    out: dict = {}
    for scen in ("split", "permuted"):
        rows = []
        for name, kw in kwargs.items():
            for cap in buffers:
                runs = []
                for seed in range(seeds):
                    sc = cd.make_scenario(scen, seed)
                    learner = ContinualLearner(cd.fresh_model(seed), ReplayBuffer(cap, policy="class_balanced", seed=seed),
                                               seed=seed, device="cpu", **kw)
                    R = np.zeros((cd.N_TASKS, cd.N_TASKS))
                    times, cpu = [], []
                    for i, (X, y) in enumerate(sc.train):
                        c0, t0 = time.process_time(), time.perf_counter()
                        learner.fit(X, y)
                        cpu.append(time.process_time() - c0)
                        times.append(time.perf_counter() - t0)
                        R[i] = [cd.accuracy(learner.model, Xt, yt) for Xt, yt in sc.test]
                    runs.append(cd.summarize(R, times, learner.replay.nbytes, cpu))
                    print(f"[digits {scen} seed {seed}] {name:45s} buf={cap} acc={runs[-1]['avg_acc']:.1f}",
                          flush=True)
                rows.append({"method": name, "buffer": cap, "kwargs": kw, **cd.aggregate(runs), "runs": runs})
        out[scen] = rows
    return out


# -------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="3 seeds, 4,000 train / 2,000 test rows per period (default)")
    mode.add_argument("--full", action="store_true", help="5 seeds, 15,000 train / 5,000 test rows per period")
    mode.add_argument("--smoke", action="store_true", help="1 seed, 300 rows, 2 epochs (the code runs, figures mean nothing)")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--parts", nargs="*", default=["census", "scaled"], help="census scaled digits")
    p.add_argument("--methods", nargs="*", default=None,
                   help="substrings of method names to run (plus plain Adam), or 'all' (default: the GRID of 8)")
    p.add_argument("--recommended", default=None,
                   help="JSON kwargs of the recommended defaults (for the digits part and the Markdown)")
    p.add_argument("--out", default=None, help="output path without extension")
    p.add_argument("--render", action="store_true", help="rewrite the Markdown from the JSON, run nothing")
    args = p.parse_args(argv)
    size = "full" if args.full else "smoke" if args.smoke else "quick"
    n_train, n_test = {"quick": (4000, 2000), "full": (15000, 5000), "smoke": (300, 200)}[size]
    seeds = args.seeds or {"quick": 3, "full": 5, "smoke": 1}[size]
    out_path = args.out or str(HERE / "results" / ("continual_tabular" + {"full": "", "quick": ".quick",
                                                                           "smoke": ".smoke"}[size]))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    global EPOCHS
    if size == "smoke":
        EPOCHS = 2

    results: dict = {}
    if os.path.exists(out_path + ".json"):
        with open(out_path + ".json") as f:
            results = json.load(f)
    if args.render:  # aggregates recomputed from the stored runs (a change of aggregate() applies)
        for v in results.get("variants", {}).values():
            for row in v["rows"]:
                row.update(aggregate(row["runs"]))
        _write(out_path, results)
        return 0
    results.setdefault("variants", {})
    protocol = {
        "data": "US census ACS PUMS employment, Massachusetts 2015-2018 (folktables ACSEmployment; nannyml wheel)",
        "periods": list(YEARS), "train_rows_per_period": n_train, "test_rows_per_period": n_test,
        "model": f"MLP {HIDDEN}, 2 classes", "epochs": EPOCHS, "buffer": BUFFER, "seeds": seeds, "mode": size,
        "scaled_variant": f"period k: AGEP x {SCALED_FACTOR:g}^k, SCHL + {SCALED_SHIFT_SD:g}k sd; employed share {SCALED_PRIORS}",
        "threads": torch.get_num_threads(),
    }
    old = results.get("protocol", {})
    same = all(old.get(k) == protocol[k] for k in ("train_rows_per_period", "test_rows_per_period", "epochs", "seeds",
                                                   "buffer", "scaled_variant"))
    if not same:  # other sizes: what the file held is not comparable
        results["variants"] = {}
    results["protocol"] = {**old, **protocol} if same else protocol
    results.update({
        "learner_defaults": {k: (v.default if v.default is not inspect.Parameter.empty else None)
                             for k, v in SIG.parameters.items() if k not in ("model", "replay")},
        "environment": dict(bench.common.environment(), torch=torch.__version__),
    })
    t_start = time.perf_counter()
    if args.methods is None:
        methods = [m for m in METHODS if m.name in GRID]
    else:
        methods = [m for m in METHODS if "all" in args.methods or m.name == "plain Adam (no replay)"
                   or any(s in m.name for s in args.methods)]
    tab_parts = [v for v in args.parts if v in ("census", "scaled")]
    if tab_parts:
        df, source = load_census()
        results["protocol"]["source"] = source
        results["data_facts"] = {"rows_per_year": df.groupby("year").size().to_dict(),
                                 "employed_share_per_year": df.groupby("year")[TARGET].mean().round(4).to_dict()}
    for variant in tab_parts:
        runs: dict[str, list] = {m.name: [] for m in methods}
        infos = []
        for seed in range(seeds):  # seeds outermost, methods interleaved
            st = make_stream(df, variant, seed, n_train, n_test)
            infos.append(st.info)
            for m in methods:
                c0 = time.process_time()
                try:
                    r = run_method(m, st, seed, gate_baseline=True)
                except Exception as exc:  # noqa: BLE001 - record why a method did not run
                    r = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)}
                runs[m.name].append(r)
                print(f"[{variant} seed {seed}] {m.name:52s} "
                      + (f"new {r['final_new']:.1f} old {r['final_old']:.1f} fgt {r['worst_step_forgetting']:.1f} "
                         f"vsB {r.get('vs_baseline_new_min', float('nan')):+.1f}" if "error" not in r else r["error"][:100])
                      + f" cpu {time.process_time() - c0:.0f}s ({time.perf_counter() - t_start:.0f}s)", flush=True)
            # the naive chain's new-period accuracy, per seed, for the "vs plain fine-tuning" column
            naive = runs["plain Adam (no replay)"][seed]
            for m in methods:
                r = runs[m.name][seed]
                if "error" not in r and "error" not in naive:
                    r["vs_naive_new_min"] = float(min(r["R"][i][i] - naive["R"][i][i] for i in range(1, len(YEARS))))
            # rows of methods not run this time stay (same sizes and seeds: see the protocol check above)
            kept = [r for r in results["variants"].get(variant, {}).get("rows", [])
                    if r["method"] not in runs and r.get("n_ok", 0) + r.get("n_failed", 0) == seeds]
            order = {m.name: i for i, m in enumerate(METHODS)}
            rows = kept + [{"method": m.name, "kwargs": m.kw, "replay": m.replay, **aggregate(runs[m.name]),
                            "runs": runs[m.name]} for m in methods]
            results["variants"][variant] = {
                "info": infos[0], "seeds_done": seed + 1,
                "rows": sorted(rows, key=lambda r: order.get(r["method"], len(order))),
            }
            _write(out_path, results)
    if "digits" in args.parts:
        rec = json.loads(args.recommended) if args.recommended else {}
        kw = {"defaults": {}}
        if rec:
            kw["recommended " + json.dumps(rec, sort_keys=True)] = rec
        results["digits_check"] = {
            "protocol": "bench/continual_digits.py quick: 2 seeds, buffers 50/200, MLP 64-256-256-10, 20 epochs, "
                        "batch 32+32",
            "rows": digits_check(2 if size != "smoke" else 1, [50, 200] if size != "smoke" else [50], kw),
        }
        if rec:
            results["recommended"] = rec
    results["wall_s_last_run"] = time.perf_counter() - t_start
    _write(out_path, results)
    print(markdown(results))
    return 0


def _write(out: str, results: dict) -> None:
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    for ext, text in ((".json", json.dumps(results, indent=1, default=str)), (".md", markdown(results))):
        with open(out + ext + ".tmp", "w") as f:
            f.write(text)
        os.replace(out + ext + ".tmp", out + ext)


def _row_new(v: dict, method: str) -> str:
    r = next((r for r in v["rows"] if r["method"] == method and r.get("n_ok")), None)
    return "-" if r is None else f"{r['new_mean']:.1f}"


def _f(v, fmt="{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(results: dict) -> str:
    pr = results["protocol"]
    lines = [
        "# Continual fine-tuning on tabular streams (census MA 2015-2018)",
        "",
        f"Mode {pr['mode']}: {pr['seeds']} seeds, {pr['train_rows_per_period']} train / "
        f"{pr['test_rows_per_period']} test rows per period, {pr['model']}, {pr['epochs']} epochs, buffer "
        f"{pr['buffer']} (class-balanced), torch threads {pr['threads']}. Data: {pr.get('source', '-')}. "
        f"Scaled variant: {pr['scaled_variant']}.",
        "",
        f"ContinualLearner defaults in this checkout: {results['learner_defaults']} (lr None = 0.1 for sgd, "
        "1e-3 for adam/adamw; logit adjustment only for an experience that brings new classes).",
        "",
        "Accuracy in %, mean over seeds. new = accuracy on the period just learned; old = mean accuracy on "
        "the earlier periods after the last one; worst step fgt = largest loss on the earlier periods in one "
        "update (mean over seeds of each seed's worst update, worst seed in brackets; the goal is <= 1); "
        "steps > 1 pt fgt = updates (of all seeds) that lost more than 1 point on the earlier periods; "
        "vs B = new-period accuracy minus the gate's baseline (the retrain job's plain Adam fine-tuning from the "
        "same parent on the same period): mean (sd) over every update of every seed, and the worst update "
        "(mean over seeds of each seed's worst, worst seed in brackets); updates < -0.5 vs B = how many updates "
        "trail it by more than the gate's default tolerance on the new data alone; gate refusals = updates the "
        "gate's baseline rule (default GateConfig: new and old data weighed 1:1) would refuse; vs naive = minus the "
        "plain-Adam chain's new-period accuracy, worst update; CPU s = process CPU seconds per update "
        "(baselines excluded). With 2,000 test rows, one accuracy has a standard error of about 0.9 pts.",
        "",
    ]
    if "data_facts" in results:
        lines += [f"Data: {results['data_facts']}", ""]
    for variant, v in results.get("variants", {}).items():
        lines += [f"## {variant} ({v['seeds_done']} seeds)", "",
                  f"Period facts (seed 0): employed share {v['info']['employed_share_train']}, "
                  f"input width {v['info']['input_dim']}.", "",
                  "| method | new (mean) | final new | final old | forgetting | worst step fgt | steps > 1 pt fgt | "
                  "vs B: mean (sd) | vs B worst | updates < -0.5 vs B | gate refusals | vs naive worst | CPU s/update | "
                  "R after last period |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in v["rows"]:
            if not r.get("n_ok"):
                lines.append(f"| {r['method']} | failed: {'; '.join(r.get('errors', []))[:160]} |||||||||")
                continue
            vb = (f"{r['vs_baseline_new_min']:+.1f} ({r['vs_baseline_new_min_worst']:+.1f})"
                  if "vs_baseline_new_min" in r else "-")
            vn = f"{r['vs_naive_new_min']:+.1f}" if "vs_naive_new_min" in r else "-"
            vp = (f"{r['vs_baseline_pooled_mean']:+.1f} ({r['vs_baseline_pooled_sd']:.1f})"
                  if "vs_baseline_pooled_mean" in r else "-")
            nb = (f"{r['vs_baseline_updates_below_tolerance']}/{r['vs_baseline_updates']}"
                  if "vs_baseline_updates" in r else "-")
            sf = f"{r['step_forgetting_over_1']}/{r['step_forgetting_updates']}" if "step_forgetting_updates" in r else "-"
            lines.append(
                f"| {r['method']} | {r['new_mean']:.1f} | {r['final_new']:.1f} | {r['final_old']:.1f} | "
                f"{r['forgetting']:.1f} | {r['worst_step_forgetting']:.1f} ({r['worst_step_forgetting_worst']:.1f}) | "
                f"{sf} | {vp} | {vb} | {nb} | {r.get('gate_baseline_refusals', '-')} | {vn} | {r['cpu_per_update_s']:.2f} | "
                f"{' / '.join(f'{x:.1f}' for x in r['R'][-1])} |")
        lines += ["", "Goals (issue: with defaults, never below plain fine-tuning on the new period, never more than "
                  "1 point of forgetting on the old one), per replay method over every update of every seed:", ""]
        for r in v["rows"]:
            if not r.get("n_ok") or "vs_baseline_updates" not in r:
                continue
            new_ok = r["vs_baseline_updates_below_tolerance"] == 0
            fgt_ok = r["step_forgetting_over_1"] == 0
            lines.append(
                f"- {r['method']}: new period vs the gate's baseline {r['vs_baseline_pooled_mean']:+.1f} pts on average, "
                f"{r['vs_baseline_updates_below_tolerance']}/{r['vs_baseline_updates']} updates more than 0.5 below "
                f"(worst {r['vs_baseline_pooled_min']:+.1f}) -> {'MET' if new_ok else 'not met'}; "
                f"{r['step_forgetting_over_1']}/{r['step_forgetting_updates']} updates forget more than 1 pt "
                f"(worst {r['worst_step_forgetting_worst']:.1f}) -> {'MET' if fgt_ok else 'not met'}; "
                f"the gate would refuse {r.get('gate_baseline_refusals', 0)} of them for losing to the baseline")
        joint = next((r for r in v["rows"] if r["method"].startswith("joint") and r.get("n_ok")), None)
        if joint:
            lines += ["", "Accuracy matrix of the first model (row 0: after 2015, on 2015..2018), joint: "
                      + " / ".join(f"{x:.1f}" for x in joint["R"][0])]
        lines.append("")
    dc = results.get("digits_check")
    if dc:
        lines += ["## digits check (bench/continual_digits.py quick protocol)", "", dc["protocol"], "",
                  "| scenario | method | buffer | avg acc | BWT | CPU s/task |", "| --- | --- | --- | --- | --- | --- |"]
        for scen, rows in dc["rows"].items():
            for r in rows:
                lines.append(f"| {scen} | {r['method']} | {r['buffer']} | {r['avg_acc']:.1f} ({r['avg_acc_std']:.1f}) "
                             f"| {r['bwt']:.1f} | {r['cpu_per_task_s']:.2f} |")
        lines.append("")
    if results.get("recommended"):
        rec = results["recommended"]
        lines += ["## Recommended ContinualLearner defaults", "", f"`{rec}` (the other arguments keep their defaults)", ""]
        for variant, v in results.get("variants", {}).items():
            r = next((r for r in v["rows"] if r.get("kwargs") == rec and r.get("n_ok")), None)
            if r is not None:
                lines.append(f"- {variant}: {r['method']}: new {r['new_mean']:.1f} (plain Adam chain "
                             f"{_row_new(v, 'plain Adam (no replay)')}, defaults {_row_new(v, 'defaults')}, joint "
                             f"{_row_new(v, 'joint (Adam, upper bound)')}), final old {r['final_old']:.1f}, "
                             f"vs the gate's baseline {r['vs_baseline_pooled_mean']:+.1f} pts on average, worst step "
                             f"forgetting {r['worst_step_forgetting']:.1f} (worst seed {r['worst_step_forgetting_worst']:.1f})")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
