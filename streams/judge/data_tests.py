"""Data-drift tests of one window against its reference profile (part of the drift engine).

:class:`DataTestsMixin` is part of :class:`streams.judge.engine.DriftEngine` (split out to keep the
engine module readable); it uses the engine's ``config``.

Tests per window: numeric features: KS (fine bins; effects KS statistic and Wasserstein in
reference standard deviations), chi-square on the PSI bins (effects PSI and Jensen-Shannon
distance), and a two-proportion test of the missing/invalid rate (effect: its absolute change);
categorical features: chi-square (PSI, JS) and the missing rate; prediction and score: the same,
as kind ``prediction_drift``.  A feature's components are Bonferroni-combined, then
Benjamini-Hochberg runs across the features of the window (one family per kind).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from streams.judge.drift_metrics import (
    chi2_counts,
    js_distance,
    ks_from_counts,
    pool_small,
    psi,
    rate_change,
    wasserstein_from_counts,
)
from streams.judge.policy import Component, FeatureTest
from streams.judge.profile import CategoricalProfile, NumericProfile
from streams.judge.windows import WindowAccumulator


class DataTestsMixin:
    """Per-window tests of the input features and of the model's outputs (kinds data_drift, prediction_drift)."""

    def _data_tests(self, ms, acc: WindowAccumulator) -> dict[str, list[FeatureTest]]:
        tests: list[FeatureTest] = []
        enc = ms.encoder
        if enc.numeric:
            counts = np.append(acc.counts, 0)
            win = counts[ms.gather].astype(float)
            res = ms.batch.compute(win)
            winv = counts[ms.miss_idx + 1].astype(float)
            wmiss = counts[ms.miss_idx].astype(float) + winv
            mdelta, mp = _rate_change_vec(ms.ref_missing, ms.ref_n, wmiss, np.full(len(wmiss), float(acc.n)))
            for i, seg in enumerate(enc.numeric):
                metrics = {k: float(v[i]) for k, v in res.items()}
                metrics.update(missing_rate=float(wmiss[i] / acc.n), missing_delta=float(mdelta[i]),
                               invalid=int(winv[i]), invalid_rate=float(winv[i] / acc.n))
                comps = []
                if win[i].sum() > 0:
                    comps.append(Component("ks", metrics["ks_p"], {"ks": metrics["ks"], "wasserstein": metrics["wasserstein"]}))
                    comps.append(Component("chi2", metrics["chi2_p"], {"psi": metrics["psi"], "js": metrics["js"]}))
                comps.append(Component("missing", float(mp[i]), {"missing_rate": abs(float(mdelta[i]))}))
                tests.append(FeatureTest("data_drift", seg.name, comps, metrics))
        for seg in enc.segments:
            if seg.kind == "categorical":
                tests.append(self._categorical_test("data_drift", seg.name, ms.profile.features[seg.name], acc, seg))
        out = {"data_drift": tests}
        pred_tests = []
        prof = ms.profile
        if enc.pred_segment is not None:
            vals, miss, inv = acc.segment(enc.pred_segment)
            if vals.sum() > 0:
                if prof.prediction.kind == "numeric":
                    pred_tests.append(self._numeric_test("prediction_drift", "prediction", prof.prediction, acc, enc.pred_segment))
                else:
                    pred_tests.append(self._categorical_test("prediction_drift", "prediction", prof.prediction, acc, enc.pred_segment))
        if enc.score_segment is not None:
            vals, miss, inv = acc.segment(enc.score_segment)
            if vals.sum() > 0:
                pred_tests.append(self._numeric_test("prediction_drift", "score", prof.score, acc, enc.score_segment))
        if pred_tests:
            out["prediction_drift"] = pred_tests
        return out

    def _numeric_test(self, kind: str, name: str, fp: NumericProfile, acc: WindowAccumulator, seg) -> FeatureTest:
        """Scalar version of the batched numeric test (prediction and score segments)."""
        vals, miss, inv = acc.segment(seg)
        ref = np.asarray(fp.counts)
        ks, ks_p = ks_from_counts(ref, vals)
        wass = wasserstein_from_counts(fp.reps(), ref, vals, fp.spread)
        rc, wc = fp.coarse(ref), fp.coarse(vals)
        chi, chi_p = chi2_counts(rc, wc)
        metrics = {
            "psi": psi(rc, wc, self.config.psi_smoothing), "js": js_distance(rc, wc), "ks": ks, "ks_p": ks_p,
            "wasserstein": wass, "chi2": chi, "chi2_p": chi_p,
        }
        present = int(vals.sum())
        delta, mp = rate_change(fp.missing + fp.invalid, fp.n, miss + inv, present + miss + inv)
        metrics.update(missing_rate=(miss + inv) / max(present + miss + inv, 1), missing_delta=delta,
                       invalid=int(inv), invalid_rate=inv / max(present + miss + inv, 1))
        comps = [
            Component("ks", ks_p, {"ks": ks, "wasserstein": wass}),
            Component("chi2", chi_p, {"psi": metrics["psi"], "js": metrics["js"]}),
            Component("missing", mp, {"missing_rate": abs(delta)}),
        ]
        return FeatureTest(kind, name, comps, metrics)

    def _categorical_test(self, kind: str, name: str, fp: CategoricalProfile, acc: WindowAccumulator, seg) -> FeatureTest:
        vals, miss, inv = acc.segment(seg)
        ref = np.asarray(fp.counts)
        chi, chi_p = chi2_counts(*pool_small(ref, vals))  # rare categories pooled: reliable chi-square tails
        metrics = {"psi": psi(ref, vals, self.config.psi_smoothing), "js": js_distance(ref, vals), "chi2": chi, "chi2_p": chi_p}
        total = int(vals.sum()) + miss + inv
        delta, mp = rate_change(fp.missing, fp.n, miss + inv, total)
        metrics.update(missing_rate=(miss + inv) / max(total, 1), missing_delta=delta, invalid=int(inv), unseen_or_other=float(vals[-1]) / max(vals.sum(), 1))
        comps = []
        if vals.sum() > 0:
            comps.append(Component("chi2", chi_p, {"psi": metrics["psi"], "js": metrics["js"]}))
        comps.append(Component("missing", mp, {"missing_rate": abs(delta)}))
        return FeatureTest(kind, name, comps, metrics)

    # ------------------------------------------------------------------ introspection and state


def _rate_change_vec(ref_k, ref_n, win_k, win_n) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`streams.judge.drift_metrics.rate_change`."""
    ref_n = np.where(ref_n > 0, ref_n, 1.0)
    win_n = np.where(win_n > 0, win_n, 1.0)
    delta = win_k / win_n - ref_k / ref_n
    pooled = (ref_k + win_k) / (ref_n + win_n)
    var = pooled * (1 - pooled) * (1 / ref_n + 1 / win_n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, np.abs(delta) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    p = np.where(var > 0, 2.0 * stats.norm.sf(z), 1.0)
    return delta, p
