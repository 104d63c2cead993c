"""Decision policy: Benjamini-Hochberg, evidence AND effect size, ranking, hysteresis."""

import numpy as np
import pytest

from streams.judge.policy import Component, FeatureTest, Finding, Hysteresis, Thresholds, bh_adjust, bh_cutoff, select_findings


def test_bh_cutoff_and_adjust():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    # sorted: .005 .01 .03 .04 .5 vs .01 .02 .03 .04 .05 -> four rejected, critical value 0.04
    assert bh_cutoff(p, 0.05) == pytest.approx(0.04)
    q = bh_adjust(p)
    assert q.tolist() == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    assert ((q <= 0.05) == (np.asarray(p) <= bh_cutoff(p, 0.05))).all()
    assert bh_cutoff([0.2, 0.3], 0.05) == 0.0


def _t(name, p, psi, ks=0.0):
    return FeatureTest("data_drift", name, [Component("chi2", p, {"psi": psi}), Component("ks", p, {"ks": ks})], {"psi": psi})


def test_finding_needs_significance_and_effect():
    th = Thresholds()
    tests = [
        _t("sig_no_effect", 1e-30, 0.02),  # huge window, negligible shift
        _t("effect_no_sig", 0.3, 0.5),  # tiny window, noisy PSI
        _t("both", 1e-8, 0.3),
        _t("both_warning", 1e-6, 0.12),
    ] + [_t(f"null{i}", 0.5, 0.01) for i in range(16)]
    fs = select_findings(tests, 0.05, th)
    assert [f.feature for f in fs] == ["both", "both_warning"]  # ranked by effect size
    assert fs[0].severity == "critical" and fs[0].threshold == th.psi.critical
    assert fs[1].severity == "warning" and fs[1].threshold == th.psi.warning
    assert fs[0].q_value == pytest.approx(2e-8 * 20 / 2)  # rank 2 of 20 (Bonferroni over 2 components first)


def test_bh_controls_across_features():
    # 20 features with p = 0.004 each after Bonferroni over 2 components = 0.008 -> BH rejects all at 0.05 (0.008 <= 0.05)
    fs = select_findings([_t(f"f{i}", 0.004, 0.3) for i in range(20)], 0.05, Thresholds())
    assert len(fs) == 20
    # one borderline feature among 19 nulls is no longer significant
    fs = select_findings([_t("f0", 0.004, 0.3)] + [_t(f"n{i}", 0.9, 0.3) for i in range(19)], 0.05, Thresholds())
    assert fs == []


def test_thresholds_from_mapping():
    th = Thresholds.from_mapping({"psi": {"warning": 0.2, "critical": 0.4}, "ks": [0.05, 0.1]})
    assert th.psi.warning == 0.2 and th.ks.critical == 0.1 and th.js == Thresholds().js
    with pytest.raises(ValueError, match="unknown threshold"):
        Thresholds.from_mapping({"nope": [1, 2]})


def _f(feature="x", q=1e-3, severity="warning"):
    return Finding("data_drift", feature, "psi", 0.15, 0.1, severity, q, q, 1.5)


def _ids(f, start):
    return f"{f.feature}@{start}"


def test_hysteresis_k_to_open_m_to_close_no_flapping():
    h = Hysteresis(open_after=2, close_after=2, immediate_alpha=1e-6)
    steps = [[_f()], [_f()], [_f()], [], [_f()], [], [], [_f()], [_f()]]
    opened, cleared = [], []
    for i, fs in enumerate(steps):
        for tr in h.step("m", "1", ["data_drift"], float(i), fs, _ids):
            (opened if tr.action == "open" else cleared).append((i, tr.window_start))
    # opens at the second drifting window; the isolated clean window does not close it; two clean windows do
    assert opened == [(1, 1.0), (8, 8.0)]
    assert cleared == [(6, 6.0)]


def test_hysteresis_immediate_open_on_overwhelming_evidence_and_kind_scope():
    h = Hysteresis(open_after=3, close_after=1, immediate_alpha=1e-6)
    trs = h.step("m", "1", ["data_drift"], 0.0, [_f(q=1e-9)], _ids)
    assert [t.action for t in trs] == ["open"]
    assert h.open_alerts() == {("m", "1", "data_drift", "x"): "x@0.0"}
    # a window judged for another kind does not count as clean for data_drift
    assert h.step("m", "1", ["performance"], 1.0, [], _ids) == []
    assert h.open_alerts()
    # another model's window neither
    assert h.step("other", "1", ["data_drift"], 1.0, [], _ids) == []
    assert [t.action for t in h.step("m", "1", ["data_drift"], 2.0, [], _ids)] == ["clear"]
    state = h.state_dict()
    h2 = Hysteresis(3, 1, 1e-6)
    h2.load_state_dict(state)
    assert h2.tracks == h.tracks
