"""Event files as the commands read them: JSON lines, or CSV/Parquet tables mapped to the input-event schema.

Shared by ``backtest`` and ``produce``, so that a table means the same events to both.  A table
row becomes an inference input: the features are every column but the event fields and outputs
(:mod:`streams.judge.tables`), ``ts`` is epoch seconds or ISO 8601, ``event_id`` defaults to
``row-<i>``, ``model``/``model_version`` come from their columns or from the caller, and a
``label`` column travels beside the event.  Row numbers count like a spreadsheet's (the header
is row 1), so the first data row is row 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def is_table(path: Path) -> bool:
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in TABLE_SUFFIXES)


def lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, raw line) of a file."""
    with Path(path).open("rb") as fh:
        offset = 0
        for lineno, raw in enumerate(fh, 1):
            yield lineno, offset, raw
            offset += len(raw)


@dataclass(frozen=True)
class TableRow:
    """One table row as an inference-input object (not validated yet) and its label (None: no label)."""

    number: int
    event: dict[str, Any]
    label: Any = None


def table_rows(path: Path, model: str | None = None, version: str | None = None,
               kinds: dict | None = None, *, need_version: bool = True) -> Iterator[TableRow]:
    """The rows of a CSV/Parquet table as input-event objects, in file order.  ``need_version=False``: a table of
    labels (``event_id, ts, label``, no features, no model version) is read too.

    Raises :class:`streams.judge.profile.ProfileError` when the table cannot be read or lacks
    ``ts`` or a model (the message names the column and the option that supplies it).
    """
    import numpy as np
    import pandas as pd

    from streams.judge.profile import ProfileError
    from streams.judge.tables import EVENT_FIELDS, load_table

    df = load_table(path, kinds)
    if "ts" not in df.columns:
        raise ProfileError(f"{path}: a table of inputs needs a 'ts' column (event time, epoch seconds or ISO 8601)")
    for col, given in (("model", model), ("model_version", version)):
        if col not in df.columns and given is None and (need_version or col == "model"):
            raise ProfileError(f"{path}: no '{col}' column; pass --{'model' if col == 'model' else 'version'}")
    ts = pd.to_numeric(df["ts"], errors="coerce")
    if ts.isna().any():
        iso = pd.to_datetime(df["ts"], errors="coerce", utc=True)
        ts = ts.fillna(iso.map(lambda t: t.timestamp() if not pd.isna(t) else float("nan")))
    skip = set(EVENT_FIELDS) | {"prediction", "scores", "score", "label"}
    feats = [c for c in df.columns if c not in skip]
    records = df[feats].to_dict("records") if feats else [{} for _ in range(len(df))]
    for i, rec in enumerate(records):
        row = df.iloc[i]
        eid = str(row["event_id"]) if "event_id" in df.columns and not pd.isna(row["event_id"]) else f"row-{i}"
        obj = {"event_id": eid, "model": str(row["model"]) if "model" in df.columns else model,
               "model_version": str(row["model_version"]) if "model_version" in df.columns else version,
               "ts": None if pd.isna(ts.iloc[i]) else float(ts.iloc[i]),
               "features": {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}}
        for k in ("prediction", "scores"):
            if k in df.columns and not (np.isscalar(row[k]) and pd.isna(row[k])):
                obj[k] = row[k].item() if hasattr(row[k], "item") else row[k]
        label = None
        if "label" in df.columns and not pd.isna(row["label"]):
            label = row["label"].item() if hasattr(row["label"], "item") else row["label"]
        yield TableRow(i + 2, obj, label)
