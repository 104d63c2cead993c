"""Tables of training data or events, and how a column's kind is decided (pure pandas/numpy).

Namespaces.  A table built from events (:func:`events_to_frame`, JSONL in :func:`load_table`)
keeps features apart from the event's own fields: each feature ``name`` is the column
``features.<name>``, and the columns without that prefix are the event fields (``event_id``,
``model``, ``model_version``, ``ts``, ``entity``, ``prediction``, ``scores``, ``label``).
A feature may therefore be called ``score``, ``label`` or ``ts``.  A flat CSV or Parquet table
has one namespace: every column that is not an event field or the label/prediction/score
column in use is a feature (name them with ``--features`` to monitor a column called ``label``).

Kinds.  A feature's kind (``numeric`` or ``categorical``) is decided once, from the whole
reference column, by :func:`infer_kind` (or set explicitly), and then stored in the profile;
the serving path never re-decides it per micro-batch:

* booleans are numeric (0/1), missing cells (None/NaN) do not change that;
* an object column is numeric when at least :data:`NUMERIC_MIN_SHARE` of its present values are
  numbers; the others are *invalid* for that feature (counted and reported, never recast);
* text read from CSV is parsed first by :func:`coerce_text_column`: number-like text becomes
  numbers unless it looks like an identifier (a leading zero as in postcodes ``02134``), in
  which case the whole column stays text (categorical).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

#: Prefix of feature columns in a table built from events.
FEATURE_PREFIX = "features."
#: Event fields (not features) in tables built from events, and in flat tables.
EVENT_FIELDS = ("event_id", "model", "model_version", "ts", "entity")
OUTPUT_FIELDS = ("prediction", "scores", "label")
#: Backward-compatible alias: the columns of a flat table that are never features by default.
META_COLUMNS = EVENT_FIELDS + OUTPUT_FIELDS + ("score",)
#: Share of present values that must be numbers for an object column to be numeric.
NUMERIC_MIN_SHARE = 0.95
KINDS = ("numeric", "categorical")
_IDENTIFIER = re.compile(r"^\s*[+-]?0\d")
_BOOL_TEXT = {"true": True, "false": False}


class ProfileError(ValueError):
    """A reference profile (or its training table) cannot be built or read."""


def category_text(v: Any) -> str:
    """How a categorical value is compared: strings as they are, integral numbers without '.0'."""
    if isinstance(v, str):
        return v
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number, bool, np.bool_)) and not (isinstance(v, float) and math.isnan(v))


def as_float(col: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Values of a numeric feature -> (float array, NaN = missing; mask of invalid values or None).

    Numbers and booleans (0/1) are values; None/NaN are missing; anything else (text, even
    number-like text such as ``"02134"``, lists, dicts) is invalid.  The result never depends on
    the other values of the batch.  O(n); a Python loop only when the column is not already a
    numeric/bool array or a list of plain numbers.
    """
    if isinstance(col, np.ndarray) and col.dtype.kind in "fiub":
        return col.astype(float, copy=False), None
    arr = np.asarray(col, dtype=object) if not isinstance(col, np.ndarray) else col
    if arr.dtype.kind in "fiub":
        return arr.astype(float), None
    if arr.dtype == object and arr.size and not any(isinstance(v, str) for v in arr):
        try:
            return arr.astype(float), None  # numbers, bools and None (-> NaN)
        except (TypeError, ValueError):
            pass
    vals = arr.ravel().tolist()
    x = np.full(len(vals), np.nan)
    invalid = np.zeros(len(vals), dtype=bool)
    for i, v in enumerate(vals):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if _is_number(v):
            x[i] = float(v)
        else:
            invalid[i] = True
    return x, (invalid if invalid.any() else None)


def infer_kind(col: pd.Series) -> str:
    """``numeric`` or ``categorical`` for a whole reference column (see the module docstring)."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return "numeric"
    nonnull = [v for v in col.tolist() if not (v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA)]
    if not nonnull:
        return "numeric"
    nums = sum(1 for v in nonnull if _is_number(v))
    return "numeric" if nums >= NUMERIC_MIN_SHARE * len(nonnull) else "categorical"


def coerce_text_column(col: pd.Series, kind: str | None = None) -> pd.Series:
    """A column read as text (CSV) -> numbers, booleans or text, decided on the whole column.

    ``kind="categorical"`` keeps text; ``kind="numeric"`` parses every number (the rest stays
    text and will be counted invalid); ``None`` decides: all ``true``/``false`` -> booleans;
    at least :data:`NUMERIC_MIN_SHARE` number-like and none identifier-like -> numbers; else text.
    """
    if kind == "categorical" or col.dtype != object:
        return col
    present = col.dropna()
    if present.empty:
        return col
    text = present.astype(str)
    low = text.str.strip().str.lower()
    if kind is None and low.isin(list(_BOOL_TEXT)).all():
        return col.map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else _BOOL_TEXT[str(v).strip().lower()])
    parsed = pd.to_numeric(text, errors="coerce")
    ok = parsed.notna()
    if kind is None:
        if ok.sum() < NUMERIC_MIN_SHARE * len(text) or text[ok].str.match(_IDENTIFIER).any():
            return col
    if ok.all():
        out = pd.Series(np.nan, index=col.index, dtype=float)
        out[parsed.index] = parsed.astype(float)
        return out
    out = col.astype(object).copy()
    out[parsed.index[ok.to_numpy()]] = parsed[ok].astype(float).tolist()
    return out


# --------------------------------------------------------------------------- tables


def events_to_frame(rows: Iterable[Any]) -> pd.DataFrame:
    """Events (typed or dicts in the inference-input contract) -> one row each.

    Feature ``name`` becomes column ``features.<name>``; event fields keep their names
    (``event_id``, ``model``, ``model_version``, ``ts``, ``entity``, ``prediction``, ``scores``,
    ``label``).  A dict without a ``features`` mapping is a flat row: its non-field keys are features.
    """
    records = []
    for r in rows:
        if hasattr(r, "features") and hasattr(r, "event_id"):
            rec = {"event_id": r.event_id, "model": r.model, "model_version": r.model_version, "ts": r.ts}
            rec.update({FEATURE_PREFIX + str(k): v for k, v in r.features.items()})
            if r.prediction is not None:
                rec["prediction"] = r.prediction
            if r.scores is not None:
                rec["scores"] = list(r.scores) if not isinstance(r.scores, (int, float)) else r.scores
            if getattr(r, "label", None) is not None:
                rec["label"] = r.label
            records.append(rec)
            continue
        d = dict(r)
        rec = {k: d.get(k) for k in EVENT_FIELDS if k in d}
        feats = d.get("features")
        if isinstance(feats, Mapping):
            rec.update({FEATURE_PREFIX + str(k): v for k, v in feats.items()})
        else:
            rec.update({FEATURE_PREFIX + str(k): v for k, v in d.items() if k not in META_COLUMNS})
        for k in OUTPUT_FIELDS:
            if d.get(k) is not None:
                rec[k] = d[k]
        records.append(rec)
    return pd.DataFrame.from_records(records)


def feature_frame(df: pd.DataFrame) -> bool:
    """True when ``df`` is a table built from events (features under ``features.``)."""
    return any(isinstance(c, str) and c.startswith(FEATURE_PREFIX) for c in df.columns)


def load_table(path: str | Path, kinds: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read training data or events: CSV, Parquet, or JSONL (of inference inputs or flat objects).

    CSV is read as text and each column is parsed on the whole column by
    :func:`coerce_text_column` (``kinds`` forces a feature's kind; postcodes keep their zeros).
    JSONL gives a namespaced table (:func:`events_to_frame`).  Bad JSONL lines are refused with
    their line number: a reference must be clean.  Raises :class:`ProfileError`.
    """
    from streams.contracts.events import InvalidRecord
    from streams.contracts.validate import parse_input

    kinds = dict(kinds or {})
    p = Path(path)
    if not p.is_file():
        raise ProfileError(f"table {p} does not exist")
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix == ".gz" else p.suffix.lower()
    if suffix in (".csv", ".csv.gz"):
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=True)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise ProfileError(f"{p}: not a readable CSV table ({exc})") from None
        for c in df.columns:
            df[c] = coerce_text_column(df[c], kinds.get(c))
        return df
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises many types
            raise ProfileError(f"{p}: not a readable Parquet table ({exc})") from None
    if suffix in (".jsonl", ".ndjson", ".json", ".jsonl.gz"):
        import gzip

        opener = gzip.open if suffix.endswith(".gz") else open
        rows = []
        with opener(p, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ProfileError(f"{p}:{lineno}: not JSON ({exc})") from None
                if isinstance(obj, dict) and "features" in obj:
                    try:
                        ev = parse_input(obj)
                    except InvalidRecord as exc:
                        raise ProfileError(f"{p}:{lineno}: {exc}") from None
                    d = ev.to_dict()
                    if obj.get("label") is not None:
                        d["label"] = obj["label"]
                    rows.append(d)
                elif isinstance(obj, dict):
                    rows.append(obj)
                else:
                    raise ProfileError(f"{p}:{lineno}: expected a JSON object")
        return events_to_frame(rows)
    raise ProfileError(f"unknown table format {p.suffix!r}; use .csv, .parquet or .jsonl")


def parse_kinds(items: Iterable[str] | None) -> dict[str, str]:
    """``["zip=categorical", "age=numeric"]`` -> dict; raises :class:`ProfileError` on a bad item."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, kind = str(item).rpartition("=")
        if not sep or not name or kind not in KINDS:
            raise ProfileError(f"--kind {item!r}: expected FEATURE=numeric or FEATURE=categorical")
        out[name] = kind
    return out
