"""Building reference profiles from training data or events (the statistics the engine judges against).

Numeric features: quantile bins whose edges sit midway between distinct reference values (ties
and float32 round trips never cross an edge), open tails and a missing bucket, plus fine bins for
KS and Wasserstein; categorical features: the top-k categories, other and missing; the model's
predictions, scores, error rate (with the error definition: mismatch, or absolute/relative error
for regression) and calibration.  A feature's kind is decided once, from the whole column.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from streams.contracts.events import InferenceEvent, LabelledExample
from streams.judge.profile import (
    ECE_BINS,
    MIN_BIN_SHARE,
    TAIL_LADDER,
    CategoricalProfile,
    FeatureProfile,
    LabelProfile,
    NumericProfile,
    ReferenceProfile,
    content_id,
    error_array,
    error_definition,
    loss_array,
    loss_quantiles,
)
from streams.judge.tables import (
    EVENT_FIELDS,
    FEATURE_PREFIX,
    KINDS,
    ProfileError,
    as_float,
    category_text,
    events_to_frame,
    feature_frame,
    infer_kind,
)


def between_distinct(candidates: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """Move each candidate edge to the midpoint between the distinct reference values around it.

    ``distinct``: sorted unique reference values (D,); ``candidates``: edges (E,) inside
    ``[distinct[0], distinct[-1]]``.  A candidate ``q`` with ``u[j] <= q < u[j+1]`` becomes
    ``(u[j] + u[j+1]) / 2``; candidates at or above the maximum are dropped.  Every reference
    value then lies at least half a gap between distinct values away from every edge, so a
    difference far below the data's precision (a float32 or float16 round trip of an atom)
    never moves a value across an edge.  O(E log D).
    """
    u = np.asarray(distinct, dtype=float)
    q = np.asarray(candidates, dtype=float)
    j = np.searchsorted(u, q, side="right") - 1
    keep = (j >= 0) & (j < len(u) - 1)
    j = j[keep]
    return np.unique((u[j] + u[j + 1]) / 2.0)


def numeric_profile(values: Any, n_bins: int = 10, fine_bins: int = 100) -> NumericProfile:
    """Profile of one numeric column: numbers and booleans are values, None/NaN missing,
    anything else (text) invalid (see :func:`streams.judge.tables.as_float`).

    Fine-bin edges are the reference quantiles moved between distinct reference values
    (:func:`between_distinct`), so ties and atoms are never split by an edge; beyond the
    minimum and maximum, a ladder of tail edges.  ``means`` holds the reference mean of each
    fine bin (the representative value of binned Wasserstein).
    """
    x, bad = as_float(values)
    invalid = int(bad.sum()) if bad is not None else 0
    nan = np.isnan(x)
    missing = int(nan.sum()) - invalid
    v = x[~nan]
    n = int(len(x))
    if v.size == 0:
        return NumericProfile([], [0], [0], missing, n, 1.0, 0.0, invalid=invalid)
    q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    spread = float((q75 - q25) / 1.349)
    if not spread > 0:
        spread = float(np.std(v))
    if not spread > 0:
        spread = max(abs(float(med)) * 0.1, 1.0)
    u = np.unique(v)
    qs = np.quantile(v, np.arange(1, fine_bins) / fine_bins)
    step = max(fine_bins // n_bins, 1)
    coarse_vals = between_distinct(qs[step - 1 :: step][: n_bins - 1], u)
    lo, hi = float(u[0]), float(u[-1])
    ladder = np.asarray(TAIL_LADDER) * spread
    inner = between_distinct(np.concatenate([[lo], qs]), u)
    edges = np.unique(np.concatenate([lo - ladder[::-1], inner, hi + ladder]))
    edges = edges[np.isfinite(edges)]
    bins = np.searchsorted(edges, v, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    sums = np.bincount(bins, weights=v, minlength=len(edges) + 1)
    means = [float(s / c) if c else None for s, c in zip(sums, counts)]
    # PSI bins: (-inf, first decile], ..., (last decile, +inf); fine bins are nested inside.
    coarse_starts = [0] + [int(i) + 1 for i in np.searchsorted(edges, coarse_vals)]
    coarse_starts = sorted(set(s for s in coarse_starts if s < len(edges) + 1))
    coarse_starts = _merge_small_groups(counts, coarse_starts, MIN_BIN_SHARE / n_bins * v.size)
    return NumericProfile(
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        coarse_starts=coarse_starts,
        missing=missing,
        n=n,
        spread=spread,
        median=float(med),
        invalid=invalid,
        means=means,
    )


def _merge_small_groups(counts: np.ndarray, starts: list[int], min_count: float) -> list[int]:
    """Merge PSI bins holding less than ``min_count`` reference values into their right (last: left) neighbour.

    Ties (e.g. a feature that is 0 most of the time) collapse quantile edges and can leave a bin with a
    fraction of a percent of the mass; chi-square tails are unreliable on such cells.
    """
    group = np.add.reduceat(counts, starts)
    out: list[int] = []
    pending, start = 0, None
    for s0, c in zip(starts, group):
        if start is None:
            start = s0
        pending += int(c)
        if pending >= min_count:
            out.append(start)
            start, pending = None, 0
    if not out:
        out.append(0)
    return out


def categorical_profile(values: Sequence[Any], top_k: int = 20) -> CategoricalProfile:
    """Profile of one categorical column (None/NaN = missing); values compare as text (:func:`category_text`)."""
    s = pd.Series(values, dtype=object)
    miss = s.isna()
    present = s[~miss].map(category_text)
    vc = present.value_counts()
    # most frequent first, ties by name, so the profile is deterministic
    items = sorted(vc.items(), key=lambda kv: (-kv[1], kv[0]))
    cats = [str(k) for k, _ in items[:top_k]]
    other = int(sum(c for _, c in items[top_k:]))
    return CategoricalProfile(cats, [int(c) for _, c in items[:top_k]] + [other], int(miss.sum()), int(len(s)))


def _score_value(scores: Any) -> float:
    """One number per score vector: the positive-class score when binary, else the top score."""
    if scores is None or (isinstance(scores, float) and np.isnan(scores)):
        return float("nan")
    if isinstance(scores, (int, float, np.number)):
        return float(scores)
    s = list(scores)
    if not s:
        return float("nan")
    return float(s[-1]) if len(s) == 2 else float(max(s))


def _confidence(scores: Any) -> float:
    if scores is None or isinstance(scores, (int, float, np.number)):
        return float("nan") if scores is None else float(scores)
    s = list(scores)
    return float(max(s)) if s else float("nan")


def build_profile(
    table: pd.DataFrame | Sequence[InferenceEvent] | Sequence[LabelledExample] | Sequence[Mapping[str, Any]],
    model: str,
    model_version: str,
    *,
    label_column: str | None = None,
    prediction_column: str | None = None,
    score_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    error: tuple[str, float] | None = None,
    n_bins: int = 10,
    fine_bins: int = 100,
    top_k: int = 20,
    profile_id: str | None = None,
    source: str = "",
) -> ReferenceProfile:
    """Build a reference profile from training data.

    ``table``: a flat DataFrame (CSV/Parquet: one column per feature, plus optional
    ``prediction``, ``scores``/``score`` and ``label`` columns), a namespaced DataFrame from
    :func:`streams.judge.tables.events_to_frame`, or a list of events / event dicts (features in their
    own namespace: a feature may be called ``score`` or ``label``).  Output columns default to
    ``label``, ``prediction`` and ``scores`` (or ``score``) when present; naming one that is not
    in the table raises :class:`ProfileError`.  ``kinds``: {feature: "numeric"|"categorical"}
    overrides :func:`streams.judge.tables.infer_kind`.  ``error``: (``absolute``|``relative``|``mismatch``,
    tolerance) declares what a labelled error is (default: see :func:`error_definition`).
    """
    if n_bins < 2 or fine_bins < n_bins:
        raise ProfileError(f"need 2 <= n_bins <= fine_bins, got n_bins={n_bins}, fine_bins={fine_bins}")
    df = table if isinstance(table, pd.DataFrame) else events_to_frame(table)
    if df.empty:
        raise ProfileError("the reference table is empty; give it at least a few hundred rows of training data")
    kinds = dict(kinds or {})
    bad = {k: v for k, v in kinds.items() if v not in KINDS}
    if bad:
        raise ProfileError(f"unknown kind(s) {bad}; expected 'numeric' or 'categorical'")
    for name, col in (("label", label_column), ("prediction", prediction_column), ("score", score_column)):
        if col is not None and col not in df.columns:
            raise ProfileError(f"{name} column {col!r} is not in the table; columns are {list(df.columns)[:20]}")
    label_column = label_column or ("label" if "label" in df.columns else None)
    prediction_column = prediction_column or ("prediction" if "prediction" in df.columns else None)
    if score_column is None:
        score_column = "scores" if "scores" in df.columns else ("score" if "score" in df.columns else None)
    if feature_frame(df):  # namespaced: features are the features.* columns, whatever their names
        colmap = {str(c)[len(FEATURE_PREFIX):]: c for c in df.columns if str(c).startswith(FEATURE_PREFIX)}
    else:
        skip = set(EVENT_FIELDS) | {"prediction", "scores", "score", "label"} | {c for c in (label_column, prediction_column, score_column) if c}
        colmap = {str(c): c for c in df.columns if c not in skip}
    if feature_columns is not None:
        missing = [c for c in feature_columns if c not in colmap and c not in df.columns]
        if missing:
            raise ProfileError(f"feature column(s) {missing} not in the table")
        colmap = {str(c): colmap.get(c, c) for c in feature_columns}
    if not colmap:
        raise ProfileError("the reference table has no feature columns")
    unknown = [k for k in kinds if k not in colmap]
    if unknown:
        raise ProfileError(f"--kind names feature(s) {unknown} that are not in the table")
    features: dict[str, FeatureProfile] = {}
    for name, c in colmap.items():
        col = df[c]
        kind = kinds.get(name) or infer_kind(col)
        if kind == "numeric":
            vals = col.to_numpy() if col.dtype.kind in "fiub" else col.tolist()
            features[name] = numeric_profile(vals, n_bins, fine_bins)
        else:
            features[name] = categorical_profile(col.tolist(), top_k)
    pred_prof: FeatureProfile | None = None
    if prediction_column:
        pcol = df[prediction_column]
        if infer_kind(pcol) == "numeric" and pcol.dropna().nunique() > top_k:
            pred_prof = numeric_profile(pcol.tolist() if pcol.dtype == object else pcol.to_numpy(), n_bins, fine_bins)
        elif pcol.notna().any():
            pred_prof = categorical_profile(pcol.tolist(), top_k)
    score_prof = None
    conf = None
    if score_column:
        sv = np.array([_score_value(s) for s in df[score_column].tolist()], dtype=float)
        if (~np.isnan(sv)).any():
            score_prof = numeric_profile(sv, n_bins, fine_bins)
        conf = np.array([_confidence(s) for s in df[score_column].tolist()], dtype=float)
    label_prof = None
    if label_column and prediction_column:
        both = df[label_column].notna() & df[prediction_column].notna()
        if both.any():
            kind, tol, qs = error_definition(df.loc[both, prediction_column], df.loc[both, label_column], pred_prof, error)
            label_prof = LabelProfile(n=int(both.sum()), errors=0, error=kind, tolerance=tol, abs_error_quantiles=qs)
            preds, labs = df.loc[both, prediction_column].tolist(), df.loc[both, label_column].tolist()
            err = error_array(preds, labs, label_prof).astype(bool)
            label_prof.errors = int(err.sum())
            if kind != "mismatch":  # regression: the reference loss distribution (the loss CUSUM's reference)
                label_prof.loss_quantiles = loss_quantiles(loss_array(preds, labs, kind))
            if conf is not None:
                c = conf[both.to_numpy()]
                ok = ~np.isnan(c)
                if ok.any():
                    b = np.clip((c[ok] * ECE_BINS).astype(int), 0, ECE_BINS - 1)
                    cnt = np.bincount(b, minlength=ECE_BINS)
                    cor = np.bincount(b, weights=(~err[ok]).astype(float), minlength=ECE_BINS)
                    csum = np.bincount(b, weights=c[ok], minlength=ECE_BINS)
                    from streams.judge.drift_metrics import ece_from_bins

                    label_prof.ece = ece_from_bins(cnt, cor, csum)
                    label_prof.ece_count = [int(x) for x in cnt]
                    label_prof.ece_correct = [int(x) for x in cor]
            if score_prof is not None and kind == "mismatch":
                from streams.judge.estimate import score_calibration

                label_prof.calibration = score_calibration(score_prof.edges, sv[both.to_numpy()], conf[both.to_numpy()],
                                                           ~err)
    elif error is not None:
        raise ProfileError("an error definition needs labelled rows: give --label-column and --prediction-column")
    prof = ReferenceProfile(
        id="",
        model=str(model),
        model_version=str(model_version),
        n=int(len(df)),
        features=features,
        prediction=pred_prof,
        score=score_prof,
        labels=label_prof,
        n_bins=n_bins,
        fine_bins=fine_bins,
        top_k=top_k,
        source=source,
    )
    prof.id = profile_id or content_id(prof)
    return prof
