"""Retrain policy (streams/alerts/retrain_policy.py): pure decisions on judged alerts."""

from __future__ import annotations

import dataclasses

from streams.contracts.events import Alert, AlertReference, AlertWindow
from streams.alerts.retrain_policy import RetrainPolicyConfig, RetrainState, decide

CFG = RetrainPolicyConfig(min_labelled=100, cooldown_s=600.0)


def alert(kind="performance", feature=None, start=0.0, severity="critical", **kw):
    return Alert("fraud", "3", kind, feature, "error_rate" if feature is None else "psi", 0.3, 0.1, 1e-6, severity,
                 AlertWindow(start, start + 60.0, 1000), AlertReference("ref", 5000), **kw)


def test_requests_a_retrain_with_a_deterministic_id():
    a = decide(CFG, RetrainState(), [alert()], n_labelled=500)
    b = decide(CFG, RetrainState(), [alert()], n_labelled=500)
    assert a.reason == "requested" and a.request is not None
    assert a.request.request_id == b.request.request_id
    assert a.request.alert_ids == [alert().alert_id] and a.request.n_labelled == 500


def test_cooldown_is_per_model_in_event_time():
    first = decide(CFG, RetrainState(), [alert(start=0.0)], 500)
    soon = decide(CFG, first.state, [alert(start=300.0)], 500)
    later = decide(CFG, first.state, [alert(start=700.0)], 500)
    assert soon.reason == "cooldown" and soon.request is None
    assert later.reason == "requested"
    other = dataclasses.replace(alert(start=300.0), model="churn", alert_id="")
    assert decide(CFG, first.state, [other], 500).reason == "requested"


def test_too_few_labelled_examples_means_no_request():
    assert decide(CFG, RetrainState(), [alert()], n_labelled=99).reason == "too_few_labels"


def test_default_kinds_covariate_drift_alone_only_warns():
    # docs/design.md: covariate drift -> "retrain when labels confirm, else warn"
    assert RetrainPolicyConfig().kinds == ("performance", "concept_drift")
    for kind in ("data_drift", "prediction_drift"):
        assert decide(CFG, RetrainState(), [alert(kind, "amount")], 500).reason == "no_alerts"
    d = decide(CFG, RetrainState(), [alert("data_drift", "amount"), alert("concept_drift", None)], 500)
    assert d.reason == "requested" and d.request.kinds == ["concept_drift"]


def test_no_retrain_of_any_kind_while_parity_is_open_unless_configured():
    perf = alert("performance", None)
    assert decide(CFG, RetrainState(), [perf], 500, open_parity_features={"n_words"}).reason == "parity_open"
    assert decide(CFG, RetrainState(), [perf, alert("parity", "n_words")], 500).reason == "parity_open"
    assert decide(CFG, RetrainState(), [perf], 500).reason == "requested"  # parity closed: retraining resumes
    let_through = dataclasses.replace(CFG, hold_while_parity_open=False)
    assert decide(let_through, RetrainState(), [perf], 500, open_parity_features={"n_words"}).reason == "requested"


def test_drift_explained_by_parity_never_retrains():
    # with input-side drift opted in as a retrain trigger, a drift explained by parity still never retrains
    CFG = dataclasses.replace(globals()["CFG"], kinds=("performance", "concept_drift", "data_drift"))
    drift = alert("data_drift", "amount")
    explained = dataclasses.replace(drift, explained_by="parity-1")
    assert decide(CFG, RetrainState(), [explained], 500).reason == "explained_by_parity"
    assert decide(CFG, RetrainState(), [drift], 500, open_parity_features={"amount"}).reason == "explained_by_parity"
    parity = alert("parity", "amount")
    assert decide(CFG, RetrainState(), [drift, parity], 500).reason == "explained_by_parity"
    # a real performance drop next to an explained drift still retrains, on the unexplained alert only
    d = decide(CFG, RetrainState(), [explained, alert()], 500)
    assert d.reason == "requested" and d.request.kinds == ["performance"]


def test_kinds_and_severity_filters():
    cfg = RetrainPolicyConfig(kinds=("performance",), min_severity="critical", min_labelled=0)
    assert decide(cfg, RetrainState(), [alert("data_drift", "amount")], 0).reason == "no_alerts"
    assert decide(cfg, RetrainState(), [alert(severity="warning")], 0).reason == "no_alerts"
    assert decide(dataclasses.replace(cfg, enabled=False), RetrainState(), [alert()], 0).reason == "disabled"


def test_state_round_trips():
    d = decide(CFG, RetrainState(), [alert()], 500)
    assert RetrainState.from_dict(d.state.to_dict()) == d.state
