"""The reference profile of a retrained candidate: its own predictions on the window it was trained from.

A version the worker has no reference for bootstraps one from its first served window
(:mod:`streams.judge.bootstrap`), and those windows go unjudged.  The retrain job instead builds the
candidate's profile itself (:func:`build_candidate_reference`): the request window's
examples with the *candidate's* predictions and scores, as a server would publish them (class names from
the parent's ``classes``, else class indices), and the labels only of the rows it did not train on (the
profile's error rate, calibration and score-bin outcomes for the label-free estimates are out of sample).
It is saved where the worker reads references (:func:`save_candidate_reference`,
:class:`streams.adapters.reference_store.ReferenceStore`, keyed by (model, version)) before the version
can be promoted, so the worker judges the new version's traffic against its own reference from its
first event, and a rollback to the parent finds the parent's reference again under the parent's key.

Only a candidate that passed the gate gets one (a rejected candidate is never served), and only from
examples with feature values (pre-encoded npz data has none: the worker then bootstraps as before).

The profile is built before the registry numbers the version (the version's provenance names the
profile's id), so its content id is computed with an empty ``model_version``; the version is filled in
just before it is saved.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

log = logging.getLogger("driftloop.retrain_job")


@dataclass
class CandidateReference:
    """The candidate's reference profile, or why it has none (``profile`` None, ``why`` says it)."""

    profile: Any = None  # streams.judge.profile.ReferenceProfile
    why: str = ""

    @property
    def id(self) -> str | None:
        return None if self.profile is None else self.profile.id

    def line(self) -> str:
        """The job text's line: ``reference profile <id>: <source>`` or ``reference profile: none (<why>)``."""
        if self.profile is None:
            return f"reference profile: none ({self.why})"
        return f"reference profile {self.profile.id}: {self.profile.source}"

    def to_dict(self) -> dict[str, Any]:
        if self.profile is None:
            return {"id": None, "why": self.why}
        return {"id": self.profile.id, "source": self.profile.source, "n": int(self.profile.n)}


def reference_settings(raw: Mapping[str, Any]) -> tuple[Path, dict[str, int]]:
    """Where the worker of config ``raw`` reads reference profiles (``worker.reference_dir``, else
    ``$DRIFTLOOP_HOME/references``: the worker's own rule, :func:`streams.adapters.faust_app.load_settings`), and
    the binning of the profiles it builds itself (``drift.n_bins``, ``fine_bins``, ``top_k``)."""
    from streams.adapters.faust_app import load_settings

    ws = load_settings(raw)
    return ws.reference_dir, {"n_bins": ws.drift.n_bins, "fine_bins": ws.drift.fine_bins, "top_k": ws.drift.top_k}


def candidate_scores(spec: Any, state_dict: Mapping[str, Any], X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities (n, n_classes) of the network ``spec`` with weights ``state_dict`` on encoded rows ``X``,
    as the server computes them (softmax of the logits, on the CPU)."""
    import torch

    from trainers.training.models import build_model

    net = build_model(spec)
    net.load_state_dict(dict(state_dict))
    net.eval()
    X = np.asarray(X, np.float32)
    with torch.no_grad():
        parts = [torch.softmax(net(torch.as_tensor(X[i: i + batch_size])), dim=1).numpy()
                 for i in range(0, X.shape[0], batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, spec.n_classes), np.float32)


def candidate_rows(examples: Sequence[Any], y: np.ndarray, proba: np.ndarray,
                   classes: Sequence[Any] | None, labelled: np.ndarray | None = None) -> list[Any]:
    """``LabelledExample``s of ``examples`` with the candidate's prediction (class name, or index without
    ``classes``), scores and label (class ``y`` by the same naming); their ``model_version`` is left empty.
    ``labelled``: the row indices that keep their label (the others get None); None: all."""
    def name(i: int) -> Any:
        return classes[int(i)] if classes is not None else int(i)

    keep = np.ones(len(examples), bool) if labelled is None else np.isin(np.arange(len(examples)), labelled)
    return [dataclasses.replace(ex, model_version="", label=name(yi) if k else None, prediction=name(int(p.argmax())),
                                scores=tuple(float(v) for v in p))
            for ex, yi, p, k in zip(examples, y, proba, keep)]


def build_candidate_reference(req: Any, data: Any, known: np.ndarray, X: np.ndarray, y: np.ndarray, *, spec: Any,
                              classes: Sequence[Any] | None, state_dict: Mapping[str, Any], gate_passed: bool,
                              folder: str | os.PathLike | None, options: Mapping[str, int] | None = None,
                              held_out: np.ndarray | None = None) -> CandidateReference:
    """The reference profile of the candidate trained for request ``req``, or why there is none.

    ``data``: the job's ``WindowData``; ``known``: its rows whose label is one of the model's classes, encoded as
    ``X`` with class indices ``y`` (the job's rows: all of the window's, training and held-out).  ``state_dict``:
    the candidate's weights.  None (with the reason) when ``folder`` is None (the job saves no references), when
    the candidate did not pass the gate (it is never served), when the data is pre-encoded (npz: no feature
    values), or when no profile can be built from the rows.  ``options``: ``n_bins``/``fine_bins``/``top_k``.
    ``held_out``: the rows the candidate did not train on; only they keep their labels, so the profile's error rate
    and score calibration are out of sample (on its training rows a candidate looks better than it will serve, and
    the worker would then see a performance drop on its first window); the features and predictions are all rows'.
    """
    from streams.judge.profile_build import build_profile
    from streams.judge.tables import ProfileError

    if folder is None:
        return CandidateReference(why="this job saves no reference profiles")
    if not gate_passed:
        return CandidateReference(why="the candidate did not pass the gate; a rejected candidate is never served")
    if getattr(data, "X", None) is not None:
        return CandidateReference(why="the training data is pre-encoded (npz) and has no feature values; the worker "
                                      "bootstraps this version's reference from its first served window")
    examples = [e for e, k in zip(data.examples, known) if k]
    if not examples:
        return CandidateReference(why="no labelled example of a known class in the window")
    proba = candidate_scores(spec, state_dict, X)
    rows = candidate_rows(examples, y, proba, classes, held_out)
    labels = f", labels of the {len(held_out)} held out" if held_out is not None else ""
    source = (f"retrain job {req.request_id}: the candidate's predictions on the {len(rows)} labelled examples of "
              f"window [{req.window_start}, {req.window_end}]{labels} (parent v{req.model_version})")
    try:
        prof = build_profile(rows, req.model, "", source=source, **dict(options or {}))
    except ProfileError as exc:
        return CandidateReference(why=f"no profile could be built from the window's examples: {exc}")
    return CandidateReference(prof)


def save_candidate_reference(ref: CandidateReference, version: str, folder: str | os.PathLike | None) -> Path | None:
    """Name ``version`` in the profile of ``ref`` (when it has one) and save it by (model, version) in ``folder``
    with :meth:`streams.adapters.reference_store.ReferenceStore.save`; returns the path (None: nothing saved)."""
    if ref.profile is None or folder is None:
        log.info("%s", ref.line())
        return None
    from streams.adapters.reference_store import ReferenceStore

    ref.profile.model_version = str(version)
    path = ReferenceStore(folder).save(ref.profile)
    log.info("reference profile %s of %s v%s saved: %s", ref.profile.id, ref.profile.model, version, path)
    return path
