"""Training tables from the offline store, point-in-time correct.

:func:`historical_table` joins the model's past requests (the ``entity_table`` of its
feature service: entity keys, event time, request-time features, label) with the
store's feature values as they were at each request's event time
(``FeatureStore.get_historical_features``: no value from the future, none older than
the view's TTL).  The drift engine's ``driftloop reference build --start/--end``
turns the result into a reference profile.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

TIMESTAMP = "event_timestamp"


def historical_table(
    model: str,
    version: str | int,
    start: Any,
    end: Any,
    repo_path: str | Path | None = None,
    *,
    entity_df: pd.DataFrame | None = None,
    keep_keys: bool = False,
) -> pd.DataFrame:
    """The training window ``[start, end)`` of ``model``/``version`` as a DataFrame.

    Columns: the request-time features, the store features of the model's service and the
    label (if the entity table has one); with ``keep_keys`` also the join keys and
    ``event_timestamp``.  ``df.attrs`` names them: ``feature_columns``, ``label_column``,
    ``entity_columns``, ``timestamp_column``, ``feature_service``, ``source``.

    ``start``/``end``: datetimes, ISO 8601 text or epoch seconds (UTC).  ``entity_df``
    replaces the service's entity table (it needs the join keys and ``event_timestamp``).
    """
    from feature_repo import REPO_PATH
    from feature_repo.store import feature_service_for, open_store, request_features

    repo = Path(repo_path).resolve() if repo_path else REPO_PATH
    t0, t1 = to_utc(start), to_utc(end)
    if not t0 < t1:
        raise ValueError(f"training window is empty: start {t0.isoformat()} is not before end {t1.isoformat()}")
    store = open_store(repo)
    service = feature_service_for(store, model, str(version))
    tags = service.tags or {}
    label = tags.get("label") or None
    if entity_df is None:
        table = tags.get("entity_table")
        if not table:
            raise ValueError(f"feature service {service.name!r} has no 'entity_table' tag; pass entity_df explicitly")
        path = Path(table) if Path(table).is_absolute() else repo / table
        if not path.is_file():
            raise FileNotFoundError(f"entity table {path} is missing; run `driftloop features generate` first")
        entity_df = pd.read_parquet(path)
    if TIMESTAMP not in entity_df.columns:
        raise ValueError(f"entity_df needs an {TIMESTAMP!r} column (UTC event times)")
    ts = pd.to_datetime(entity_df[TIMESTAMP], utc=True)
    window = entity_df.loc[(ts >= pd.Timestamp(t0)) & (ts < pd.Timestamp(t1))].copy()
    window[TIMESTAMP] = pd.to_datetime(window[TIMESTAMP], utc=True)
    if window.empty:
        raise ValueError(f"no requests of {model!r} between {t0.isoformat()} and {t1.isoformat()} in the entity table")

    join_keys: list[str] = []
    store_features: list[str] = []
    for proj in service.feature_view_projections:
        fv = store.get_feature_view(proj.name)
        for col in fv.entity_columns:
            k = proj.join_key_map.get(col.name, col.name)
            if k not in join_keys:
                join_keys.append(k)
        store_features += [f.name for f in proj.features]
    missing = [k for k in join_keys if k not in window.columns]
    if missing:
        raise ValueError(f"entity table lacks join key(s) {missing} of service {service.name!r}")
    req = [f for f in request_features(service) if f in window.columns]
    keep = [*join_keys, TIMESTAMP, *req] + ([label] if label and label in window.columns else [])
    result = store.get_historical_features(entity_df=window[keep], features=service).to_df()
    result = result.sort_values([TIMESTAMP, *join_keys], kind="stable").reset_index(drop=True)

    features = [*req, *store_features]
    label_col = label if label and label in result.columns else None
    cols = ([*join_keys, TIMESTAMP] if keep_keys else []) + features + ([label_col] if label_col else [])
    out = result[cols].copy()
    out.attrs.update(
        feature_columns=features,
        label_column=label_col,
        entity_columns=join_keys,
        timestamp_column=TIMESTAMP,
        feature_service=service.name,
        source=f"feast:{store.project}/{service.name}@{t0.isoformat()}..{t1.isoformat()}",
    )
    return out


def to_utc(value: Any) -> datetime:
    """Datetime, ISO 8601 text or epoch seconds -> aware UTC datetime.

    >>> to_utc("2025-11-26T00:00:00Z").isoformat(), to_utc(0).isoformat()
    ('2025-11-26T00:00:00+00:00', '1970-01-01T00:00:00+00:00')
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        dt = datetime.fromtimestamp(float(value), tz=timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromtimestamp(float(text), tz=timezone.utc)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"{value!r} is neither ISO 8601 (2025-11-26T08:00:00Z) nor epoch seconds") from None
    else:
        raise TypeError(f"expected a datetime, ISO 8601 text or epoch seconds, got {type(value).__name__}")
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
