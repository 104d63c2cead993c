"""How often the live gate promotes a candidate in shadow that is worse than the live version, by how much it is
worse and how its errors relate to the live version's (synthetic paired traffic, pure: no broker).

The live gate (``trainers/promotion/live_gate.py``, default ``LiveGateConfig``: looks every 300 labelled pairs up to
3,000, margin 0.01, alpha 0.01 over the whole evaluation) promotes at ``max_samples`` a candidate it has not shown
worse.  Its power depends on the discordant pairs: a fine-tune and its parent err on mostly the same inputs (here 5%
of inputs discordant), two unrelated models independently (live 85% accurate: 25.5% discordant).  Also the false
rejections of an equal candidate (the gate's alpha).  ``--smoke``: 5 seeds, ``--quick`` (default): 40, ``--full``: 200.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import parse_args, write_results  # noqa: E402
from trainers.promotion.live_gate import LiveGate, LiveGateConfig  # noqa: E402

LIVE_ACC = 0.85
DISCORDANT = 0.05  # correlated errors: share of inputs on which exactly one of the two is wrong
WORSE = (0.0, 0.01, 0.02, 0.03, 0.05)
SEEDS = {"smoke": 5, "quick": 40, "full": 200}


def pairs(n: int, worse: float, correlated: bool, seed: int) -> list[dict]:
    """``n`` labelled examples served by v1 with v2's shadow prediction; v2 is ``worse`` less accurate."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        y = int(rng.integers(2))
        if correlated:
            u = rng.random()
            live_wrong, cand_wrong = (False, True) if u < (DISCORDANT + worse) / 2 else \
                (True, False) if u < DISCORDANT else (rng.random() > LIVE_ACC,) * 2
        else:
            live_wrong, cand_wrong = rng.random() > LIVE_ACC, rng.random() > LIVE_ACC - worse
        out.append({"event_id": f"e{i}", "model": "m", "model_version": "1", "ts": float(i), "label": y,
                    "prediction": 1 - y if live_wrong else y,
                    "shadow": {"model_version": "2", "prediction": 1 - y if cand_wrong else y}})
    return out


def verdict(examples: list[dict], cfg: LiveGateConfig) -> tuple[str, int]:
    gate = LiveGate(cfg)
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2"})
    for i in range(0, len(examples), 100):
        for v in gate.on_labelled(examples[i:i + 100]):
            return v.action, int(v.evidence["error_rate"]["n"])
    return "none", len(examples)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    cfg = LiveGateConfig()
    seeds = SEEDS[args.mode]
    rows = []
    for correlated in (True, False):
        for worse in WORSE:
            outcomes = [verdict(pairs(cfg.max_samples, worse, correlated, args.seed + s), cfg) for s in range(seeds)]
            promoted = sum(a == "promote" for a, _ in outcomes)
            rows.append({"errors": "correlated" if correlated else "independent", "worse_points": worse * 100,
                         "seeds": seeds, "promoted": promoted, "rejected": sum(a == "reject" for a, _ in outcomes),
                         "median_n": float(np.median([n for _, n in outcomes]))})
            print(rows[-1], flush=True)
    md = ["# live_gate_power", "",
          f"Candidates in shadow judged by the live gate with its defaults (looks every {cfg.min_samples} labelled "
          f"pairs up to {cfg.max_samples}, margin {cfg.max_error_increase}, alpha {cfg.alpha}); live version "
          f"{LIVE_ACC:.0%} accurate; {seeds} seeds each. Correlated errors: {DISCORDANT:.0%} of inputs discordant "
          "(a fine-tune and its parent); independent: two unrelated models (25.5% discordant).", "",
          "| errors | candidate worse by (points) | promoted | rejected | median labelled pairs at the verdict |",
          "| --- | --- | --- | --- | --- |"]
    md += [f"| {r['errors']} | {r['worse_points']:g} | {r['promoted']}/{r['seeds']} | {r['rejected']}/{r['seeds']} "
           f"| {r['median_n']:,.0f} |" for r in rows]
    md += ["", "An equal candidate's rejections are false verdicts (at most alpha); a worse one's promotions are "
           "misses. The gate promotes at max_samples what it has not shown worse (the watch after the promotion "
           "goes on looking): raise promotion.max_samples for more power on unrelated models."]
    write_results("live_gate_power", {"mode": args.mode, "config": vars(cfg) | {"slices": list(cfg.slices)},
                                      "rows": rows}, "\n".join(md), args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
