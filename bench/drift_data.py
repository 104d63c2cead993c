"""Streams with known drift points for the drift benchmarks, and same-length no-drift controls.

Every stream is a pandas DataFrame of features (numeric columns float64, categorical columns str)
plus a reference sample drawn from the pre-drift distribution with other random draws.  Row i is
event i; bench.common.EventClock gives it an event time, so event-time windows hold a fixed number
of events.

Kinds:
- ``abrupt`` / ``gradual`` / ``incremental``: the *input* distribution changes from ``drift_start``
  (over ``width`` events for gradual/incremental).  Sources: River generators whose inputs change
  when their parameters change (RandomRBF centroid seed, RandomRBFDrift moving centroids, Agrawal
  perturbation), and covariate shifts injected into River/scikit-learn streams (mean shift, scale
  change, category frequency change).
- ``concept_only``: River ConceptDriftStream over SEA / Agrawal / Hyperplane concepts.  Only the
  label function changes; the inputs keep their distribution, so a *data*-drift detector should
  stay silent (these count as extra no-input-drift controls).
- ``none``: no drift at all (controls).

The real data sets are the ones that ship inside installed packages (no download):
River's ImageSegments (2,310 rows, 18 numeric + class) and scikit-learn's breast cancer set
(569 rows, 30 numeric + diagnosis).  River 0.23 does not ship Shuttle (it is not in
``river.datasets`` at all), so it is not used.  Real streams are bootstrap samples of the
rows: reference and stream come from the same empirical distribution unless drift is injected.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

KINDS = ("abrupt", "gradual", "incremental", "concept_only", "none")


@dataclass
class Stream:
    name: str
    scenario: str
    kind: str
    source: str
    reference: pd.DataFrame
    data: pd.DataFrame
    drift_start: int | None = None
    width: int = 0
    changed: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def n_features(self) -> int:
        return self.data.shape[1]

    @property
    def n(self) -> int:
        return len(self.data)

    @property
    def categorical(self) -> list[str]:
        return [c for c in self.data.columns if self.data[c].dtype == object]

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.data.columns if self.data[c].dtype != object]

    def tolerance_end(self, window: int) -> int | None:
        """Last event index by which a detection still counts: start + width + two windows."""
        if self.drift_start is None:
            return None
        return self.drift_start + self.width + 2 * window

    def describe(self) -> dict:
        return {
            "name": self.name, "scenario": self.scenario, "kind": self.kind, "source": self.source,
            "n": self.n, "n_reference": len(self.reference), "n_features": self.n_features,
            "n_categorical": len(self.categorical), "drift_start": self.drift_start, "width": self.width,
            "changed": self.changed, "note": self.note,
        }


# --------------------------------------------------------------------------- sources


def river_frame(dataset, n: int, categorical: tuple[str, ...] = ()) -> pd.DataFrame:
    """First ``n`` inputs of a River dataset as a DataFrame (``categorical`` columns as str)."""
    it = iter(dataset)
    parts = []
    for a in range(0, n, 50_000):  # in chunks: a million dicts at once would take gigabytes
        rows = [x for x, _ in itertools.islice(it, min(50_000, n - a))]
        df = pd.DataFrame.from_records(rows)
        df.columns = [f"x{c}" if isinstance(c, (int, np.integer)) else str(c) for c in df.columns]
        for c in df.columns:
            df[c] = df[c].astype(str) if c in categorical else df[c].astype(np.float64)
        parts.append(df)
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def river_xy(dataset, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    rows, ys = [], []
    for x, y in itertools.islice(dataset, n):
        rows.append(x)
        ys.append(y)
    df = pd.DataFrame.from_records(rows).astype(np.float64)
    df.columns = [f"x{c}" if isinstance(c, (int, np.integer)) else str(c) for c in df.columns]
    return df, np.asarray(ys)


def real_table(name: str) -> pd.DataFrame:
    """A real data set that ships with an installed package, as a DataFrame with one categorical column."""
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        b = load_breast_cancer()
        df = pd.DataFrame(b.data, columns=[c.replace(" ", "_") for c in b.feature_names]).astype(np.float64)
        df["diagnosis"] = np.where(b.target == 1, "benign", "malignant")
        return df
    if name == "segments":
        from river import datasets

        rows, ys = [], []
        for x, y in datasets.ImageSegments():
            rows.append(x)
            ys.append(y)
        df = pd.DataFrame.from_records(rows).astype(np.float64)
        df["segment"] = np.asarray(ys, dtype=object).astype(str)
        return df
    raise ValueError(f"unknown real data set {name!r}; use breast_cancer or segments")


_REAL_CACHE: dict[str, pd.DataFrame] = {}


def _real(name: str) -> pd.DataFrame:
    if name not in _REAL_CACHE:
        _REAL_CACHE[name] = real_table(name)
    return _REAL_CACHE[name]


def bootstrap(table: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    idx = rng.integers(0, len(table), size=n)
    return table.iloc[idx].reset_index(drop=True)


# --------------------------------------------------------------------------- drift injection


def drift_mask(n: int, start: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Which rows are drawn from the new distribution: all from ``start`` (abrupt) or with a
    probability that ramps linearly from 0 to 1 over ``width`` events (gradual)."""
    i = np.arange(n)
    if width <= 0:
        return i >= start
    p = np.clip((i - start) / width, 0.0, 1.0)
    return rng.random(n) < p


def eligible_numeric(df: pd.DataFrame, min_unique: int = 50) -> list[str]:
    return [c for c in df.columns if df[c].dtype != object and df[c].nunique() >= min_unique]


def mean_shift(df: pd.DataFrame, ref: pd.DataFrame, cols: list[str], mask: np.ndarray, k_std: float) -> pd.DataFrame:
    out = df.copy()
    for c in cols:
        out.loc[mask, c] = out.loc[mask, c] + k_std * ref[c].std()
    return out


def scale_change(df: pd.DataFrame, ref: pd.DataFrame, cols: list[str], mask: np.ndarray, factor: float) -> pd.DataFrame:
    out = df.copy()
    for c in cols:
        mu = ref[c].mean()
        out.loc[mask, c] = mu + (out.loc[mask, c] - mu) * factor
    return out


def category_frequency(df: pd.DataFrame, col: str, mask: np.ndarray, probs: dict[str, float],
                       rng: np.random.Generator) -> pd.DataFrame:
    """Redraw the category of the masked rows from ``probs`` (only that column changes)."""
    out = df.copy()
    cats = list(probs)
    p = np.asarray([probs[c] for c in cats], dtype=float)
    out.loc[mask, col] = rng.choice(np.asarray(cats, dtype=object), size=int(mask.sum()), p=p / p.sum())
    return out


def psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    """Population stability index on reference-decile bins (open tails) or on categories."""
    if ref.dtype == object or cur.dtype == object:
        cats = sorted(set(ref.tolist()) | set(cur.tolist()))
        r = np.array([np.mean(ref == c) for c in cats])
        q = np.array([np.mean(cur == c) for c in cats])
    else:
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
        r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
        q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    r = np.clip(r, 1e-4, None)
    q = np.clip(q, 1e-4, None)
    return float(np.sum((q - r) * np.log(q / r)))


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Layout:
    """Sizes of one drift stream: ``pre`` events before the drift, then ``width`` + ``post``."""

    window: int = 500
    pre_windows: float = 8.5
    post_windows: int = 4
    n_reference: int = 5000
    gradual_width: int = 1500
    incremental_width: int = 2000

    def start(self) -> int:
        return int(self.pre_windows * self.window)

    def length(self, width: int) -> int:
        n = self.start() + width + self.post_windows * self.window
        return int(math.ceil(n / self.window) * self.window)


def _width(kind: str, lay: Layout) -> int:
    return {"abrupt": 0, "gradual": lay.gradual_width, "incremental": lay.incremental_width}[kind]


# --------------------------------------------------------------------------- scenarios


def _rbf(seed_model: int, seed_sample: int, **kw):
    from river.datasets import synth

    return synth.RandomRBF(seed_model=seed_model, seed_sample=seed_sample, n_features=20, n_centroids=50, **kw)


def _concept_drift(stream, drift_stream, start: int, width: int, seed: int):
    from river.datasets import synth

    # ConceptDriftStream counts samples from 1; its sigmoid is centred on `position`.  With width=1
    # its math.exp overflows far from the drift point (River 0.23), so abrupt switches are chained.
    if width <= 0:
        return _Switch(stream, drift_stream, start)
    return synth.ConceptDriftStream(stream, drift_stream, position=start + width // 2 + 1, width=width, seed=seed)


class _Switch:
    """The first ``start`` samples of ``stream``, then ``drift_stream`` (an abrupt switch)."""

    def __init__(self, stream, drift_stream, start: int) -> None:
        self.stream, self.drift_stream, self.start = stream, drift_stream, start

    def __iter__(self):
        return itertools.chain(itertools.islice(iter(self.stream), self.start), iter(self.drift_stream))


def rbf_switch(kind: str, seed: int, lay: Layout) -> Stream:
    """RandomRBF whose centroids are replaced (another model seed): the input mixture changes."""
    w = _width(kind, lay)
    m = 100 + seed
    ref = river_frame(_rbf(m, 10_000 + seed), lay.n_reference)
    gen = _concept_drift(_rbf(m, seed), _rbf(m + 5000, seed + 1), lay.start(), w, seed)
    data = river_frame(gen, lay.length(w))
    return Stream(f"rbf_switch/{kind}/s{seed}", "rbf_switch", kind, "river:RandomRBF(20 features) centroid seed switch",
                  ref, data, lay.start(), w, list(data.columns), "new centroids")


def rbf_incremental(seed: int, lay: Layout, change_speed: float = 5e-4) -> Stream:
    """RandomRBF whose centroids start moving (RandomRBFDrift, same initial centroids) at the drift point."""
    from river.datasets import synth

    w = lay.incremental_width
    m = 200 + seed
    ref = river_frame(_rbf(m, 10_000 + seed), lay.n_reference)
    moving = synth.RandomRBFDrift(seed_model=m, seed_sample=seed + 1, n_features=20, n_centroids=50,
                                  change_speed=change_speed, n_drift_centroids=50)
    gen = _concept_drift(_rbf(m, seed), moving, lay.start(), 0, seed)
    data = river_frame(gen, lay.length(w))
    return Stream(f"rbf_moving/incremental/s{seed}", "rbf_moving", "incremental",
                  f"river:RandomRBFDrift(20 features, change_speed={change_speed})", ref, data, lay.start(), w,
                  list(data.columns), "centroids move from the drift point on; tolerance width = incremental_width")


AGRAWAL_CATEGORICAL = ("elevel", "car", "zipcode")


def _agrawal(seed: int, function: int = 0, perturbation: float = 0.0):
    from river.datasets import synth

    return synth.Agrawal(classification_function=function, seed=seed, perturbation=perturbation)


def agrawal_perturbation(kind: str, seed: int, lay: Layout, perturbation: float = 0.2) -> Stream:
    """Agrawal whose numeric inputs become noisy (perturbation 0 -> p): a covariate change by generator parameter."""
    w = _width(kind, lay)
    ref = river_frame(_agrawal(10_000 + seed), lay.n_reference, AGRAWAL_CATEGORICAL)
    gen = _concept_drift(_agrawal(seed), _agrawal(seed + 1, perturbation=perturbation), lay.start(), w, seed)
    data = river_frame(gen, lay.length(w), AGRAWAL_CATEGORICAL)
    return Stream(f"agrawal_perturbation/{kind}/s{seed}", "agrawal_perturbation", kind,
                  f"river:Agrawal perturbation 0 -> {perturbation}", ref, data, lay.start(), w,
                  ["hvalue"], "perturbation noise; only hvalue moves much (salary/commission/loan PSI < 0.02)")


def agrawal_category(kind: str, seed: int, lay: Layout) -> Stream:
    """Agrawal with the frequency of education levels changed (uniform -> skewed)."""
    w = _width(kind, lay)
    rng = np.random.default_rng(seed + 31)
    ref = river_frame(_agrawal(10_000 + seed), lay.n_reference, AGRAWAL_CATEGORICAL)
    data = river_frame(_agrawal(seed), lay.length(w), AGRAWAL_CATEGORICAL)
    mask = drift_mask(len(data), lay.start(), w, rng)
    probs = {"0": 0.35, "1": 0.25, "2": 0.15, "3": 0.15, "4": 0.10}
    data = category_frequency(data, "elevel", mask, probs, rng)
    return Stream(f"agrawal_category/{kind}/s{seed}", "agrawal_category", kind, "river:Agrawal + elevel frequency change",
                  ref, data, lay.start(), w, ["elevel"], "elevel uniform -> 35/25/15/15/10 %")


def _hyperplane(seed: int, n_features: int = 20):
    from river.datasets import synth

    return synth.Hyperplane(seed=seed, n_features=n_features)


def hyperplane_shift(transform: str, kind: str, seed: int, lay: Layout) -> Stream:
    """Hyperplane (20 uniform features) with a mean shift (+0.3 sd) or scale change (x1.5) on 3 features."""
    w = _width(kind, lay)
    rng = np.random.default_rng(seed + 41)
    ref = river_frame(_hyperplane(10_000 + seed), lay.n_reference)
    data = river_frame(_hyperplane(seed), lay.length(w))
    cols = sorted(rng.choice(list(data.columns), size=3, replace=False).tolist())
    mask = drift_mask(len(data), lay.start(), w, rng)
    if transform == "mean_shift":
        data, note = mean_shift(data, ref, cols, mask, 0.3), "+0.3 reference sd on 3 of 20 features"
    elif transform == "small_shift":
        data, note = mean_shift(data, ref, cols, mask, 0.2), "+0.2 reference sd on 3 of 20 features (PSI < 0.1)"
    else:
        data, note = scale_change(data, ref, cols, mask, 1.5), "spread x1.5 on 3 of 20 features"
    return Stream(f"hyperplane_{transform}/{kind}/s{seed}", f"hyperplane_{transform}", kind,
                  f"river:Hyperplane(20 features) + injected {transform}", ref, data, lay.start(), w, cols, note)


REAL_CATEGORY_SHIFT = {
    "breast_cancer": ("diagnosis", {"benign": 0.40, "malignant": 0.60}),
    "segments": ("segment", None),  # filled in from the data: one class 35 %, the rest share 65 %
}


def real_shift(table: str, transform: str, kind: str, seed: int, lay: Layout) -> Stream:
    """A bundled real data set (bootstrap rows) with an injected covariate shift."""
    w = _width(kind, lay)
    rng = np.random.default_rng([seed, zlib.crc32(f"{table}:{transform}".encode())])
    base = _real(table)
    ref = bootstrap(base, lay.n_reference, rng)
    data = bootstrap(base, lay.length(w), rng)
    mask = drift_mask(len(data), lay.start(), w, rng)
    if transform == "mean_shift":
        cols = sorted(rng.choice(eligible_numeric(base), size=3, replace=False).tolist())
        data, note = mean_shift(data, ref, cols, mask, 0.5), "+0.5 reference sd on 3 numeric features"
    elif transform == "small_shift":
        cols = sorted(rng.choice(eligible_numeric(base), size=3, replace=False).tolist())
        data, note = mean_shift(data, ref, cols, mask, 0.25), "+0.25 reference sd on 3 numeric features"
    elif transform == "scale":
        cols = sorted(rng.choice(eligible_numeric(base), size=3, replace=False).tolist())
        data, note = scale_change(data, ref, cols, mask, 1.5), "spread x1.5 around the mean on 3 numeric features"
    elif transform == "category":
        col, probs = REAL_CATEGORY_SHIFT[table]
        if probs is None:
            cats = sorted(base[col].unique())
            hot = cats[seed % len(cats)]
            probs = {c: (0.35 if c == hot else 0.65 / (len(cats) - 1)) for c in cats}
        cols = [col]
        data = category_frequency(data, col, mask, probs, rng)
        note = "category frequencies " + ", ".join(f"{k} {v:.0%}" for k, v in probs.items())
    else:
        raise ValueError(transform)
    return Stream(f"{table}_{transform}/{kind}/s{seed}", f"{table}_{transform}", kind,
                  f"real:{table} (bootstrap) + injected {transform}", ref, data, lay.start(), w, cols, note)


def concept_only(family: str, seed: int, lay: Layout) -> Stream:
    """River ConceptDriftStream where only the label function changes (inputs keep their distribution)."""
    from river.datasets import synth

    n = lay.length(0)
    if family == "sea":
        ref = river_frame(synth.SEA(variant=0, seed=10_000 + seed), lay.n_reference)
        gen = _concept_drift(synth.SEA(variant=0, seed=seed), synth.SEA(variant=2, seed=seed + 1), lay.start(), 0, seed)
        data, cat = river_frame(gen, n), ()
    elif family == "agrawal":
        ref = river_frame(_agrawal(10_000 + seed), lay.n_reference, AGRAWAL_CATEGORICAL)
        gen = _concept_drift(_agrawal(seed, 0), _agrawal(seed + 1, 2), lay.start(), 0, seed)
        data = river_frame(gen, n, AGRAWAL_CATEGORICAL)
    elif family == "hyperplane":
        ref = river_frame(_hyperplane(10_000 + seed), lay.n_reference)
        gen = _concept_drift(_hyperplane(seed), _hyperplane(seed + 5000), lay.start(), 0, seed)
        data = river_frame(gen, n)
    else:
        raise ValueError(family)
    return Stream(f"concept_{family}/concept_only/s{seed}", f"concept_{family}", "concept_only",
                  f"river:ConceptDriftStream over {family}", ref, data, lay.start(), 0, [],
                  "label function changes; inputs do not (no data drift to find)")


def control(family: str, seed: int, n: int, n_reference: int = 5000) -> Stream:
    """No drift: reference and stream from the same distribution, other random draws."""
    if family == "rbf20":
        m = 300 + seed
        ref, data = river_frame(_rbf(m, 10_000 + seed), n_reference), river_frame(_rbf(m, seed), n)
        src = "river:RandomRBF(20 features)"
    elif family == "hyperplane20":
        ref, data = river_frame(_hyperplane(10_000 + seed), n_reference), river_frame(_hyperplane(seed), n)
        src = "river:Hyperplane(20 features)"
    elif family == "agrawal":
        ref = river_frame(_agrawal(10_000 + seed), n_reference, AGRAWAL_CATEGORICAL)
        data = river_frame(_agrawal(seed), n, AGRAWAL_CATEGORICAL)
        src = "river:Agrawal(9 features)"
    elif family in ("breast_cancer", "segments"):
        rng = np.random.default_rng(seed + 97)
        base = _real(family)
        ref, data = bootstrap(base, n_reference, rng), bootstrap(base, n, rng)
        src = f"real:{family} (bootstrap)"
    elif family in ("ties", "ties_float32", "ties_float16"):
        rng = np.random.default_rng([seed, 1313])
        ref, data = ties_table(n_reference, rng), ties_table(n, rng)
        if family != "ties":
            data = round_trip(data, np.float32 if family == "ties_float32" else np.float16)
        src = "synthetic ties, postcodes" + ("" if family == "ties" else f" + {family[5:]} round trip of the stream")
    else:
        raise ValueError(f"unknown control family {family!r}")
    return Stream(f"control_{family}/none/s{seed}", f"control_{family}", "none", src, ref, data)


CONTROL_FAMILIES = ("rbf20", "hyperplane20", "breast_cancer", "segments", "agrawal", "ties", "ties_float32", "ties_float16")


# --------------------------------------------------------------------------- messy real-shaped data (issue 12)

ZIPS = ("02134", "02139", "10001", "60601", "94105", "00501", "30301", "73301")


def ties_table(n: int, rng: np.random.Generator, shift: np.ndarray | None = None) -> pd.DataFrame:
    """Discrete-valued and heavily tied features plus number-like text (postcodes).

    ``density`` k/7, ``ratio`` k/9, ``level`` one of five atoms (float64 values that a float32
    round trip moves), ``count`` Poisson(3) integers, ``zero_heavy`` 0 four times in five,
    ``zip`` postcodes as text (leading zeros).  ``shift`` (n,) bool: rows where ``count`` is
    Poisson(4.5) and ``density`` skews up (a real change).
    """
    d = {
        "density": rng.integers(0, 7, n) / 7.0,
        "ratio": rng.integers(0, 30, n) / 9.0,
        "level": rng.choice([0.1, 0.2, 0.3, 1 / 3, 0.7], n),
        "count": rng.poisson(3.0, n).astype(float),
        "zero_heavy": np.where(rng.random(n) < 0.8, 0.0, np.round(rng.exponential(5.0, n), 2)),
        "zip": rng.choice(ZIPS, n, p=[0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.1, 0.05]).astype(object),
    }
    if shift is not None and shift.any():
        k = int(shift.sum())
        d["count"][shift] = rng.poisson(4.5, k)
        d["density"][shift] = np.minimum(rng.integers(0, 7, k) + rng.integers(0, 2, k), 6) / 7.0
    return pd.DataFrame(d)


def round_trip(df: pd.DataFrame, dtype) -> pd.DataFrame:
    """The numeric columns through a float32/float16 store and back (text untouched)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype != object:
            out[c] = out[c].to_numpy().astype(dtype).astype(float)
    return out


def ties_shift(kind: str, seed: int, lay: Layout) -> Stream:
    """Tied/integer features: ``count`` mean 3 -> 4.5 and ``density`` skewed up, after a float32 round trip."""
    w = _width(kind, lay)
    rng = np.random.default_rng([seed, 1212])
    ref = ties_table(lay.n_reference, rng)
    n = lay.length(w)
    mask = drift_mask(n, lay.start(), w, rng)
    data = round_trip(ties_table(n, rng, mask), np.float32)
    return Stream(f"ties_shift/{kind}/s{seed}", "ties_shift", kind, "synthetic ties + float32 serving", ref, data,
                  lay.start(), w, ["count", "density"], "count Poisson(3) -> Poisson(4.5), density skewed up")


def drift_scenarios() -> list[tuple[str, Callable[[int, Layout], Stream]]]:
    """Every drifting scenario as (name, build(seed, layout))."""
    out: list[tuple[str, Callable[[int, Layout], Stream]]] = []
    for kind in ("abrupt", "gradual"):
        out.append((f"rbf_switch/{kind}", lambda s, l, k=kind: rbf_switch(k, s, l)))
    out.append(("rbf_moving/incremental", lambda s, l: rbf_incremental(s, l)))
    out.append(("ties_shift/abrupt", lambda s, l: ties_shift("abrupt", s, l)))
    for kind in ("abrupt", "gradual"):
        out.append((f"agrawal_perturbation/{kind}", lambda s, l, k=kind: agrawal_perturbation(k, s, l)))
    out.append(("agrawal_category/abrupt", lambda s, l: agrawal_category("abrupt", s, l)))
    for tr, kinds in (("mean_shift", ("abrupt", "gradual")), ("small_shift", ("abrupt", "gradual")), ("scale", ("abrupt",))):
        for kind in kinds:
            out.append((f"hyperplane_{tr}/{kind}", lambda s, l, t=tr, k=kind: hyperplane_shift(t, k, s, l)))
    for table in ("breast_cancer", "segments"):
        small = (("small_shift", ("abrupt",)),) if table == "breast_cancer" else ()
        for tr, kinds in (("mean_shift", ("abrupt", "gradual")),) + small + (("scale", ("abrupt",)), ("category", ("abrupt", "gradual"))):
            for kind in kinds:
                out.append((f"{table}_{tr}/{kind}", lambda s, l, t=table, r=tr, k=kind: real_shift(t, r, k, s, l)))
    return out


def concept_only_scenarios() -> list[tuple[str, Callable[[int, Layout], Stream]]]:
    return [(f"concept_{f}", lambda s, l, f=f: concept_only(f, s, l)) for f in ("sea", "agrawal", "hyperplane")]


def magnitude(stream: Stream, n: int = 20_000) -> dict[str, float]:
    """PSI between the reference and the fully drifted part of the stream, for each changed feature."""
    if stream.drift_start is None or not stream.changed:
        return {}
    post = stream.data.iloc[stream.drift_start + stream.width:]
    out = {}
    for c in stream.changed:
        out[c] = round(psi(stream.reference[c].to_numpy(), post[c].to_numpy()[:n]), 3)
    return out
