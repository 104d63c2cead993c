"""Explained drift: a data-drift alert on a feature with an open parity alert is a pipeline bug.

Such an alert carries ``explained_by`` (the parity alert's id) and ``details.retrain = False``, so
the retrain policy skips it: a pipeline bug is fixed by a person, not by training on broken
features.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from streams.alerts.parity_values import METRIC_MISMATCH
from streams.contracts.events import Alert


def explain(alerts: Iterable[Alert],
            open_features_by_model_version: Mapping[tuple[str, str], Mapping[str, str] | Iterable[str]],
            since: Mapping[tuple[str, str], Mapping[str, float]] | None = None) -> list[Alert]:
    """Mark data-drift alerts on features with an open parity alert as explained by it.

    ``since`` maps ``(model, version)`` to ``{feature: event-time start of the parity alert's first window}``:
    a drift window that ended at or before it is not explained (it was judged late, but the pipeline was
    fine then).  Parity alerts in ``alerts`` start at their own window's start.

    ``open_features_by_model_version`` maps ``(model, version)`` to ``{feature: parity alert id}``
    (or just a set of features; the id is then ``parity-open:<feature>``).  Parity alerts
    (metric ``mismatch_rate``) in ``alerts`` itself count as open too.  Other alerts pass
    unchanged; the order is kept.

    >>> w, r = AlertWindow(0.0, 60.0, 100), AlertReference("ref-1", 1000)
    >>> drift = Alert("m", "1", "data_drift", "avg", "psi", 0.9, 0.25, 1e-9, "critical", w, r)
    >>> out = explain([drift], {("m", "1"): {"avg": "p-1"}})
    >>> out[0].explained_by, out[0].details["retrain"]
    ('p-1', False)
    """
    alerts = list(alerts)
    opens: dict[tuple[str, str], dict[str, str]] = {}
    for mv, feats in open_features_by_model_version.items():
        key = (str(mv[0]), str(mv[1]))
        if isinstance(feats, Mapping):
            opens[key] = {str(f): str(a) for f, a in feats.items()}
        else:
            opens[key] = {str(f): f"parity-open:{f}" for f in feats}
    starts: dict[tuple[str, str], dict[str, float]] = {(str(k[0]), str(k[1])): dict(v) for k, v in (since or {}).items()}
    for a in alerts:
        if a.kind == "parity" and a.metric == METRIC_MISMATCH and a.feature:
            opens.setdefault((a.model, a.model_version), {}).setdefault(a.feature, a.alert_id)
            starts.setdefault((a.model, a.model_version), {}).setdefault(a.feature, a.window.start)
    out = []
    for a in alerts:
        pid = opens.get((a.model, a.model_version), {}).get(a.feature or "")
        began = starts.get((a.model, a.model_version), {}).get(a.feature or "")
        if began is not None and a.window.end <= began:
            pid = None  # the drift window ended before the pipeline broke
        if a.kind == "data_drift" and a.feature and pid and not a.explained_by:
            details = dict(a.details)
            details["explanation"] = (
                f"explained by training/serving parity alert {pid}: the served '{a.feature}' differs from the "
                f"feature store, so this drift is a pipeline problem, not a change in the world; no retraining"
            )
            details["retrain"] = False
            a = dataclasses.replace(a, explained_by=pid, details=details)
        out.append(a)
    return out
