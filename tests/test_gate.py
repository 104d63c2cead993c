"""Promotion gate and evaluation metrics (numpy callables plus one real torch pair)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainers.training.evaluation import (
    accuracy,
    classification_report,
    expected_calibration_error,
    per_class_recall,
    slice_accuracy,
    slices_by_value,
)
from trainers.training.gate import GateConfig, GateReport, PromotionGate

N = 200
rng = np.random.default_rng(0)
NEW_X = rng.normal(size=(N, 3)).astype(np.float32)
NEW_Y = rng.integers(0, 3, size=N)
OLD_X = rng.normal(size=(N, 3)).astype(np.float32)
OLD_Y = rng.integers(0, 3, size=N)
COUNTRY = np.array(["DE"] * 100 + ["FR"] * 60 + ["LU"] * 40)
SLICES = slices_by_value(COUNTRY)


def scorer(acc_new: float, acc_old: float, conf: float = 0.9, wrong_rows=None):
    """A callable model: right on a chosen fraction of each set, with top-1 confidence ``conf``
    (so calibrated when conf == accuracy). ``wrong_rows``: rows of new data it gets wrong."""
    def lookup(X):
        is_new = X is NEW_X
        y = NEW_Y if is_new else OLD_Y
        right = np.zeros(len(y), bool)
        if is_new and wrong_rows is not None:
            right[:] = True
            right[wrong_rows] = False
        else:
            right[: int(round((acc_new if is_new else acc_old) * len(y)))] = True
        pred = np.where(right, y, (y + 1) % 3)
        p = np.full((len(y), 3), (1 - conf) / 2)
        p[np.arange(len(y)), pred] = conf
        return p
    return lookup


def test_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    assert accuracy(y, pred) == pytest.approx(0.6)
    assert per_class_recall(y, pred) == {0: 0.5, 1: 1.0, 2: 0.0}
    assert slice_accuracy(y, pred, {"a": np.array([1, 1, 0, 0, 0], bool), "b": np.array([2, 3])}) == {
        "a": {"accuracy": 0.5, "n": 2}, "b": {"accuracy": 1.0, "n": 2}}
    # perfectly calibrated: 80% confidence, 80% right
    p = np.full((10, 2), 0.2)
    yy = np.zeros(10, int)
    p[:, 0] = 0.8
    yy[:2] = 1
    assert expected_calibration_error(yy, p) == pytest.approx(0.0)
    # over-confident: 100% confident, 50% right
    assert expected_calibration_error(np.array([0, 1]), np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(0.5)
    rep = classification_report(yy, p, slices={"all": np.ones(10, bool)})
    assert rep["accuracy"] == pytest.approx(0.8) and rep["slices"]["all"]["n"] == 10


def test_accepts_a_good_candidate():
    cur = scorer(0.70, 0.90, conf=0.8)
    cand = scorer(0.90, 0.90, conf=0.9)
    rep = PromotionGate().evaluate(cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y, slices_new=SLICES)
    assert rep.promoted, rep.reasons
    assert rep.reasons == []
    assert rep.accuracy_new_before == pytest.approx(0.70) and rep.accuracy_new_after == pytest.approx(0.90)
    assert rep.forgetting == pytest.approx(0.0)
    assert set(rep.slices_after) == {"DE", "FR", "LU"}
    assert set(rep.per_class_recall_after) == {0, 1, 2}


def test_rejects_a_candidate_that_forgets():
    cur = scorer(0.70, 0.90)
    cand = scorer(0.95, 0.60)  # much better on new data, but forgets the old
    rep = PromotionGate().evaluate(cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y)
    assert not rep.promoted
    assert rep.forgetting == pytest.approx(0.30)
    assert len(rep.reasons) == 1 and "forgets old data" in rep.reasons[0] and "90.0% -> 60.0%" in rep.reasons[0]


def test_rejects_no_improvement():
    rep = PromotionGate(GateConfig(min_improvement_new=0.05)).evaluate(
        scorer(0.80, 0.9), scorer(0.82, 0.9), NEW_X, NEW_Y, OLD_X, OLD_Y)
    assert not rep.promoted and "not enough gain on new data" in rep.reasons[0]


def test_rejects_a_miscalibrated_candidate():
    cur = scorer(0.70, 0.70, conf=0.7)
    cand = scorer(0.75, 0.70, conf=0.999)  # right 72% of the time, claims 99.9%
    rep = PromotionGate().evaluate(cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y)
    assert not rep.promoted
    assert rep.ece_after > 0.15 > rep.ece_before
    assert any("miscalibrated" in r for r in rep.reasons)
    # the relative bound catches a smaller drift in calibration too
    rep2 = PromotionGate(GateConfig(max_ece=None, max_ece_increase=0.05)).evaluate(
        cur, scorer(0.75, 0.70, conf=0.85), NEW_X, NEW_Y, OLD_X, OLD_Y)
    assert not rep2.promoted and "calibration got worse" in rep2.reasons[0]


def test_rejects_a_slice_regression_and_ignores_small_slices():
    fr = np.flatnonzero(COUNTRY == "FR")
    lu = np.flatnonzero(COUNTRY == "LU")
    cur = scorer(0, 0.9, wrong_rows=np.arange(0, 60))  # wrong on 60 DE rows
    # fixes DE entirely but breaks 10 FR rows (60 rows -> -16.7 pts) and 20 LU rows
    cand = scorer(0, 0.9, wrong_rows=np.concatenate([fr[:10], lu[:20]]))
    cfg = GateConfig(min_slice_samples=50, max_ece=None)
    rep = PromotionGate(cfg).evaluate(cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y, slices_new=SLICES)
    assert rep.accuracy_new_after > rep.accuracy_new_before  # better overall...
    assert not rep.promoted  # ...but not for France
    assert len(rep.reasons) == 1 and "slice 'FR' regresses" in rep.reasons[0]
    assert rep.slices_not_judged == ["LU"]  # 40 rows < 50: reported, not judged
    assert rep.slices_after["LU"]["accuracy"] == pytest.approx(0.5)


def test_report_serialises_and_reads_well():
    cur = scorer(0.70, 0.90)
    cand = scorer(0.95, 0.60)
    rep = PromotionGate().evaluate(cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y, slices_new=SLICES,
                                   training={"strategy": "full", "device": "cpu", "time_s": 1.5},
                                   model="fraud", candidate_version="4")
    d = json.loads(rep.to_json())
    assert d["promoted"] is False and d["training"]["device"] == "cpu" and d["extra"]["model"] == "fraud"
    assert d["per_class_recall_after"].keys() == {"0", "1", "2"}
    text = rep.to_text()
    assert "KEEP current version" in text and "forgets old data" in text and "slice FR" in text
    assert "device=cpu" in text


def test_first_version_has_no_baseline():
    rep = PromotionGate().evaluate(None, scorer(0.9, 0.9), NEW_X, NEW_Y, OLD_X, OLD_Y)
    assert rep.promoted and rep.accuracy_new_before is None and rep.forgetting is None


def test_torch_modules_are_scored_directly():
    torch = pytest.importorskip("torch")
    from trainers.training.continual import ContinualLearner, ReplayBuffer
    from trainers.training.models import ModelSpec, build_model

    g = np.random.default_rng(1)
    centers = g.normal(scale=4, size=(4, 3)).astype(np.float32)

    def data(classes, n):
        y = np.repeat(classes, n)
        return centers[y] + g.normal(size=(len(y), 3)).astype(np.float32), y

    (XA, yA), (XA_te, yA_te) = data([0, 1], 80), data([0, 1], 40)
    (XB, yB), (XB_te, yB_te) = data([2, 3], 80), data([2, 3], 40)
    spec = ModelSpec(["a", "b", "c"], 4, hidden=(32,))
    parent = ContinualLearner(build_model(spec, seed=0), replay=ReplayBuffer(40), epochs=10, device="cpu")
    parent.fit(XA, yA)

    import copy
    gate = PromotionGate(GateConfig(max_ece=0.25, max_forgetting_old=0.05))
    naive = ContinualLearner(copy.deepcopy(parent.model), replay=None, epochs=10, device="cpu")
    naive.fit(XB, yB)
    bad = gate.evaluate(parent.model, naive.model, XB_te, yB_te, XA_te, yA_te)
    assert not bad.promoted and bad.forgetting > 0.5

    good = copy.deepcopy(parent)  # same learner, its own copy of the model and buffer
    good.fit(XB, yB)
    ok = gate.evaluate(parent.model, good.model, XB_te, yB_te, XA_te, yA_te)
    assert ok.promoted, ok.to_text()
    assert isinstance(ok, GateReport)


# --------------------------------------------------------------------------- the plain fine-tuned baseline


def test_no_baseline_keeps_the_gate_as_it_was():
    rep = PromotionGate().evaluate(scorer(0.70, 0.90), scorer(0.90, 0.90), NEW_X, NEW_Y, OLD_X, OLD_Y)
    assert rep.promoted and rep.reasons == [] and rep.baseline is None
    assert "baseline" not in rep.to_text()


def test_refuses_a_candidate_that_loses_to_the_baseline_and_names_both_figures():
    cur, cand, base = scorer(0.60, 0.90), scorer(0.80, 0.90), scorer(0.90, 0.90)
    rep = PromotionGate().evaluate(cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y, baseline=base,
                                   baseline_training={"optimizer": "adam", "lr": 0.001, "time_s": 0.5})
    assert not rep.promoted  # +20 pts over the current version, yet 10 pts below plain fine-tuning
    assert len(rep.reasons) == 1
    r = rep.reasons[0]
    assert "loses to the plain fine-tuned baseline" in r and "80.0% vs baseline 90.0% (-10.0 pts)" in r
    assert "old data 90.0% vs 90.0% (+0.0 pts)" in r and "combined margin -5.0 pts" in r
    b = rep.baseline
    assert b["below"] is True and b["accuracy_new"] == pytest.approx(0.90) and b["accuracy_old"] == pytest.approx(0.90)
    assert b["margin_new"] == pytest.approx(-0.10) and b["margin_old"] == pytest.approx(0.0)
    assert b["margin_combined"] == pytest.approx(-0.05)
    # 20 of 200 rows differ, all in the baseline's favour: se = sqrt(0.1 - 0.01) / sqrt(200)
    assert b["disagree_new"] == pytest.approx(0.10) and b["margin_new_se"] == pytest.approx(np.sqrt(0.09 / 200))
    assert b["forgetting"] == pytest.approx(0.0)
    text = rep.to_text()
    assert "KEEP current version" in text
    assert "plain fine-tuned baseline: new data 90.0% (candidate -10.0 pts" in text and "LOSES" in text
    assert "baseline training: optimizer=adam, lr=0.001, time_s=0.5" in text
    d = json.loads(rep.to_json())
    assert d["baseline"]["below"] is True and d["baseline"]["training"]["optimizer"] == "adam"


def test_allow_below_baseline_promotes_but_says_so():
    cur, cand, base = scorer(0.60, 0.90), scorer(0.80, 0.90), scorer(0.90, 0.90)
    rep = PromotionGate(GateConfig(allow_below_baseline=True)).evaluate(
        cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y, baseline=base)
    assert rep.promoted
    assert len(rep.reasons) == 1 and "allowed because allow_below_baseline is set" in rep.reasons[0]
    assert "80.0% vs baseline 90.0%" in rep.reasons[0]
    assert "PROMOTE" in rep.to_text() and "allow_below_baseline" in rep.to_text()


def test_trailing_on_new_data_while_keeping_much_more_old_data_is_not_refused_but_said():
    # class-incremental shape: plain fine-tuning learns the new data a little better by forgetting the old
    cur, cand, base = scorer(0.10, 0.90), scorer(0.87, 0.89), scorer(0.90, 0.30)
    rep = PromotionGate().evaluate(cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y, baseline=base)
    assert rep.promoted and rep.baseline["below"] is False
    assert rep.baseline["forgetting"] == pytest.approx(0.60)  # the baseline itself would fail the forgetting guard
    assert len(rep.reasons) == 1 and "trails the plain fine-tuned baseline on new data" in rep.reasons[0]
    assert "87.0% vs baseline 90.0% (-3.0 pts)" in rep.reasons[0]
    # with the old data given no weight, the same candidate loses
    rep0 = PromotionGate(GateConfig(baseline_old_weight=0.0)).evaluate(
        cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y, baseline=base)
    assert not rep0.promoted and "loses to the plain fine-tuned baseline" in rep0.reasons[0]


def test_refuses_a_candidate_that_forgets_more_than_plain_fine_tuning():
    # better on the new data by a point, but 10 points worse on the old than the baseline, whose fine-tuning
    # improved the old data too (within the forgetting guard against the current version: 0 pts lost)
    cur, cand, base = scorer(0.60, 0.80), scorer(0.91, 0.80), scorer(0.90, 0.90)
    rep = PromotionGate().evaluate(cur, cand, NEW_X, NEW_Y, OLD_X, OLD_Y, baseline=base)
    assert not rep.promoted
    assert rep.baseline["margin_combined"] == pytest.approx(-0.045)
    assert len(rep.reasons) == 1 and "old data 80.0% vs 90.0% (-10.0 pts)" in rep.reasons[0]


def test_baseline_tolerance_is_half_a_point_by_default():
    cur = scorer(0.60, 0.90)
    one_row = scorer(0.90 - 1 / N, 0.90)  # 1 row of 200 = 0.5 pts below the baseline
    rep = PromotionGate().evaluate(cur, one_row, NEW_X, NEW_Y, OLD_X, OLD_Y, baseline=scorer(0.90, 0.90))
    assert rep.promoted and rep.reasons == [] and rep.baseline["margin_new"] == pytest.approx(-0.005)
    two_rows = scorer(0.90 - 2 / N, 0.90)
    rep2 = PromotionGate().evaluate(cur, two_rows, NEW_X, NEW_Y, OLD_X, OLD_Y, baseline=scorer(0.90, 0.90))
    assert not rep2.promoted
    strict = PromotionGate(GateConfig(max_baseline_gap=0.0)).evaluate(
        cur, one_row, NEW_X, NEW_Y, OLD_X, OLD_Y, baseline=scorer(0.90, 0.90))
    assert not strict.promoted


def test_baseline_without_old_data_judges_the_new_data_only():
    empty_X, empty_y = np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
    rep = PromotionGate().evaluate(None, scorer(0.80, 0.0), NEW_X, NEW_Y, empty_X, empty_y, baseline=scorer(0.85, 0.0))
    assert not rep.promoted and "no old data" in rep.reasons[0]
    assert rep.baseline["old_weight"] == 0.0 and rep.baseline["margin_combined"] == pytest.approx(-0.05)
    assert rep.baseline["forgetting"] is None
    assert json.loads(rep.to_json())["baseline"]["accuracy_old"] is None  # NaN -> null
    assert "old data n/a" in rep.to_text()


@pytest.mark.parametrize("kw", [{"max_baseline_gap": -0.01}, {"baseline_old_weight": 1.5},
                                {"baseline_old_weight": float("nan")}])
def test_gate_config_refuses_bad_baseline_settings(kw):
    with pytest.raises(ValueError):
        GateConfig(**kw)
