"""Which retrain requests the dispatcher refuses before submitting anything (pure).

:func:`check_request` returns ``None`` for a request the dispatcher may submit, else a
:class:`Refusal`: a reason code (the dead letter's ``reason`` and the label of
``driftloop_retrain_requests_refused_total``) and a message that says what is wrong and what
to do.  The registry is asked through ``versions_of(model)`` (the versions it holds, or
``None`` when it does not know the model), so this module reads no file.

>>> from trainers.records import RetrainRequest
>>> known = {"fraud": {"1", "2"}}.get
>>> check_request(RetrainRequest("fraud", "2", ["a1"], ["performance"], 0.0, 60.0), known) is None
True
>>> check_request(RetrainRequest("fraud", "9", ["a1"], ["performance"], 0.0, 60.0), known).reason
'unknown_version'
>>> check_request(RetrainRequest("fraud", "2", ["a1"], ["performance"], 60.0, 0.0), known).reason
'bad_window'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Collection

from streams.contracts.events import ALERT_KINDS, MAX_NAME_LEN
from trainers.records import RetrainRequest

#: A request id: 1-128 of ``[A-Za-z0-9._:-]``, starting with a letter or digit (the retrain policy's ids are
#: ``rr-<20 hex>``).  It names Ray jobs, ledger entries and the registry's provenance, so nothing else is let in.
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: An alert id: the same alphabet (the worker's ids are 24 hex characters).
ALERT_ID = REQUEST_ID
MAX_ALERT_IDS = 10_000

#: Reason codes of refused requests (dead letters' ``reason``, the metric's ``reason`` label).
REFUSALS = ("bad_request_id", "bad_alert_id", "bad_name", "non_finite", "bad_window", "bad_value", "unknown_kind",
            "unknown_model", "unknown_version")


@dataclass(frozen=True)
class Refusal:
    """Why a retrain request is not submitted: ``reason`` (one of :data:`REFUSALS`) and ``error`` (what to do)."""

    reason: str
    error: str

    def __str__(self) -> str:
        return self.error


def name_ok(text: str) -> bool:
    """A model or version name per the contract (docs/design.md, "Names"): 1..128 printable characters,
    no leading or trailing space."""
    return 0 < len(text) <= MAX_NAME_LEN and text.isprintable() and text[0] != " " and text[-1] != " "


def check_request(req: RetrainRequest, versions_of: Callable[[str], Collection[str] | None],
                  kinds: Collection[str] = ALERT_KINDS) -> Refusal | None:
    """``None`` when ``req`` may be submitted, else the first :class:`Refusal` (ids, names, window, kinds,
    then the registry: the model and its version must be registered)."""
    if not REQUEST_ID.fullmatch(req.request_id):
        return Refusal("bad_request_id", f"request_id {_show(req.request_id)} is not well-formed: use 1-128 letters, "
                                         "digits, '.', '_', ':' or '-', starting with a letter or digit (or leave it "
                                         "out: the id is then derived from model, version and alert ids)")
    if len(req.alert_ids) > MAX_ALERT_IDS:
        return Refusal("bad_alert_id", f"{len(req.alert_ids)} alert ids; at most {MAX_ALERT_IDS} per request")
    for alert_id in req.alert_ids:
        if not ALERT_ID.fullmatch(alert_id):
            return Refusal("bad_alert_id", f"alert id {_show(alert_id)} is not well-formed: use 1-128 letters, digits, "
                                           "'.', '_', ':' or '-' (the alerts' own alert_id)")
    for what, name in (("model", req.model), ("model_version", req.model_version)):
        if not name_ok(name):
            return Refusal("bad_name", f"{what} {_show(name)} is not a valid name: 1..{MAX_NAME_LEN} printable "
                                       "characters, no leading or trailing space (docs/design.md, Names)")
    for what, value in (("window_start", req.window_start), ("window_end", req.window_end)):
        if not math.isfinite(value):
            return Refusal("non_finite", f"{what} is {value}; give the window's bounds as finite epoch seconds")
    if req.window_start > req.window_end:
        return Refusal("bad_window", f"window_start {req.window_start} is after window_end {req.window_end}; "
                                     "the window must satisfy start <= end")
    if req.n_labelled < 0:
        return Refusal("bad_value", f"n_labelled is {req.n_labelled}; it counts examples, so it must be >= 0")
    if not req.kinds:
        return Refusal("unknown_kind", f"no kinds; name the alert kinds behind the request (one of {sorted(kinds)})")
    unknown = sorted({k for k in req.kinds if k not in kinds})
    if unknown:
        return Refusal("unknown_kind", f"unknown kind(s) {unknown}; known alert kinds: {sorted(kinds)}")
    versions = versions_of(req.model)
    if versions is None:
        return Refusal("unknown_model", f"model {_show(req.model)} is not in the model registry; register a base "
                                        "version with `driftloop models register-base`, or check the model name")
    if req.model_version not in versions:
        return Refusal("unknown_version", f"model {_show(req.model)} has no version {_show(req.model_version)} in the "
                                          f"registry; see `driftloop models list {req.model}`")
    return None


def _show(text: str, limit: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit] + "...'"
