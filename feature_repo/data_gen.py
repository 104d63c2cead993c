"""Seeded generator of the demo domain's sources (card payments).

Writes into ``<repo>/data/``:

- ``customer_stats.parquet``: one snapshot per customer per day (``customer_stats`` view);
- ``merchant_stats.parquet``: one snapshot per merchant per day (``merchant_stats`` view);
- ``transactions.parquet``: past payments (entity keys, event time, request-time
  features, ``is_fraud`` label), the entity table of training sets.

Values depend only on ``seed``; timestamps are laid out backwards from ``end``
(default: the current hour), so that the latest snapshots fall inside the views' TTL
when materialised "now".  Entity ids match ``streams.cli.sample.SampleTraffic``
(``c-<i>``, ``m-<i>``).

>>> import tempfile
>>> from datetime import datetime, timezone
>>> d = tempfile.mkdtemp()
>>> g = generate(d, seed=1, end=datetime(2025, 11, 26, tzinfo=timezone.utc), n_customers=5, n_merchants=2,
...              days=3, n_transactions=10)
>>> (g.n_customer_rows, g.n_merchant_rows, g.n_transactions)
(15, 6, 10)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

COUNTRIES = ["DE", "FR", "US", "GB", "NL", "ES", "IT", "PL"]
COUNTRY_P = [0.30, 0.15, 0.15, 0.12, 0.08, 0.08, 0.07, 0.05]
CATEGORIES = ["grocery", "travel", "electronics", "fashion", "gaming", "fuel"]
CHANNELS = ["web", "pos", "app"]

CUSTOMER_FEATURES = ["customer_avg_amount_30d", "customer_txn_count_7d", "customer_account_age_days", "customer_home_country"]
MERCHANT_FEATURES = ["merchant_category", "merchant_fraud_rate_30d", "merchant_avg_amount_30d"]
STORE_FEATURES = CUSTOMER_FEATURES + MERCHANT_FEATURES


@dataclass(frozen=True)
class GeneratedData:
    data_dir: Path
    end: datetime
    days: int
    n_customer_rows: int
    n_merchant_rows: int
    n_transactions: int


def default_end() -> datetime:
    """The current hour (UTC): the newest snapshot time when none is given."""
    now = datetime.now(timezone.utc)
    return now.replace(minute=0, second=0, microsecond=0)


def generate(
    repo_path: str | Path,
    *,
    seed: int = 7,
    end: datetime | None = None,
    days: int = 14,
    n_customers: int = 500,
    n_merchants: int = 100,
    n_transactions: int = 20_000,
) -> GeneratedData:
    """Write the Parquet sources under ``<repo_path>/data`` (payments: three, seeded; tweets: one, real) and say
    what was written."""
    if days < 1 or n_customers < 1 or n_merchants < 1 or n_transactions < 0:
        raise ValueError("days, n_customers and n_merchants must be >= 1 and n_transactions >= 0")
    end = _utc(end or default_end())
    data_dir = Path(repo_path) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    snap_times = pd.DatetimeIndex([end - timedelta(days=days - 1 - d) for d in range(days)])

    customers = customer_frame(rng, n_customers, snap_times)
    merchants = merchant_frame(rng, n_merchants, snap_times)
    txns = transaction_frame(rng, n_transactions, customers, merchants, end, days)
    customers.to_parquet(data_dir / "customer_stats.parquet", index=False)
    merchants.to_parquet(data_dir / "merchant_stats.parquet", index=False)
    txns.to_parquet(data_dir / "transactions.parquet", index=False)
    from feature_repo.tweets import write_tweet_stats

    write_tweet_stats(repo_path, snap_times[0].to_pydatetime())  # the tweets domain: real tweets, offline
    return GeneratedData(data_dir, end, days, len(customers), len(merchants), len(txns))


def customer_frame(rng: np.random.Generator, n: int, times: pd.DatetimeIndex) -> pd.DataFrame:
    days = len(times)
    base_amount = rng.lognormal(3.3, 0.6, n)
    walk = np.exp(np.cumsum(rng.normal(0.0, 0.03, (days, n)), axis=0))
    base_rate = rng.gamma(2.0, 3.0, n)
    age0 = rng.integers(30, 3000, n)
    home = rng.choice(COUNTRIES, n, p=COUNTRY_P)
    ids = np.array([f"c-{i}" for i in range(n)], dtype=object)
    frame = pd.DataFrame(
        {
            "customer_id": np.tile(ids, days),
            "event_timestamp": np.repeat(times, n),
            "customer_avg_amount_30d": np.round((base_amount * walk).ravel(), 4),
            "customer_txn_count_7d": rng.poisson(np.tile(base_rate, days)).astype("int64"),
            "customer_account_age_days": (np.tile(age0, days) + np.repeat(np.arange(days), n)).astype("int64"),
            "customer_home_country": np.tile(home, days).astype(object),
        }
    )
    frame["created"] = frame["event_timestamp"] + pd.Timedelta(minutes=5)
    return frame


def merchant_frame(rng: np.random.Generator, n: int, times: pd.DatetimeIndex) -> pd.DataFrame:
    days = len(times)
    category = rng.choice(CATEGORIES, n)
    base_fraud = rng.beta(1.0, 80.0, n)
    base_amount = rng.lognormal(3.5, 0.5, n)
    ids = np.array([f"m-{i}" for i in range(n)], dtype=object)
    frame = pd.DataFrame(
        {
            "merchant_id": np.tile(ids, days),
            "event_timestamp": np.repeat(times, n),
            "merchant_category": np.tile(category, days).astype(object),
            "merchant_fraud_rate_30d": np.round(
                np.clip(np.tile(base_fraud, days) * rng.lognormal(0.0, 0.01, days * n), 0.0, 1.0), 6
            ),
            "merchant_avg_amount_30d": np.round(np.tile(base_amount, days) * rng.lognormal(0.0, 0.005, days * n), 4),
        }
    )
    frame["created"] = frame["event_timestamp"] + pd.Timedelta(minutes=5)
    return frame


def transaction_frame(
    rng: np.random.Generator, n: int, customers: pd.DataFrame, merchants: pd.DataFrame, end: datetime, days: int
) -> pd.DataFrame:
    n_c = customers["customer_id"].nunique()
    n_m = merchants["merchant_id"].nunique()
    span = days * 86_400.0
    offsets = np.sort(rng.uniform(0.0, span, n))
    ts = pd.to_datetime(end - timedelta(days=days), utc=True) + pd.to_timedelta(offsets, unit="s")
    ts = ts.floor("ms")  # whole milliseconds: Feast's offline joins discard nanoseconds with a warning
    c = rng.integers(0, n_c, n)
    m = rng.integers(0, n_m, n)
    amount = np.round(rng.lognormal(3.0, 1.0, n), 2)
    merchant_risk = rng.beta(2, 8, n)
    distance = rng.exponential(15.0, n)
    channel = rng.choice(CHANNELS, n, p=[0.4, 0.35, 0.25])
    logit = -4.0 + 0.8 * np.log1p(amount) / 3 + 6.0 * merchant_risk + 0.02 * distance + 0.3 * (channel == "web")
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    return pd.DataFrame(
        {
            "event_id": [f"t-{i:07d}" for i in range(n)],
            "event_timestamp": ts,
            "customer_id": np.array([f"c-{i}" for i in c], dtype=object),
            "merchant_id": np.array([f"m-{i}" for i in m], dtype=object),
            "amount": amount,
            "merchant_risk": np.round(merchant_risk, 6),
            "hour": ts.hour.to_numpy().astype(float),
            "distance_km": np.round(distance, 3),
            "channel": channel.astype(object),
            "is_fraud": label,
        }
    )


# ----------------------------------------------------------------- serving-side view


def latest_values(repo_path: str | Path, as_of: datetime | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """What the online store holds after materialising up to ``as_of`` (default: everything):
    ``{"customer_id": {"c-1": {feature: value}}, "merchant_id": {...}}``, from the Parquet sources."""
    data_dir = Path(repo_path) / "data"
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, name, feats in (
        ("customer_id", "customer_stats.parquet", CUSTOMER_FEATURES),
        ("merchant_id", "merchant_stats.parquet", MERCHANT_FEATURES),
    ):
        df = pd.read_parquet(data_dir / name)
        if as_of is not None:
            df = df[df["event_timestamp"] <= pd.Timestamp(_utc(as_of))]
        df = df.sort_values(["event_timestamp", "created"]).groupby(key, sort=False).tail(1)
        out[key] = {str(k): {f: _py(v) for f, v in zip(feats, row)} for k, *row in df[[key, *feats]].itertuples(index=False)}
    return out


@dataclass(frozen=True)
class Skew:
    """A serving bug: ``feature`` multiplied by ``factor`` for a ``fraction`` of entities
    (chosen by a hash of the entity id, so the same entities are always hit)."""

    feature: str
    factor: float = 100.0
    fraction: float = 0.2

    def hits(self, entity_id: str) -> bool:
        h = int.from_bytes(_blake(entity_id.encode())[:8], "big")
        return (h % 10_000) < self.fraction * 10_000


def serving_events(
    values: dict[str, dict[str, dict[str, Any]]],
    n: int,
    *,
    seed: int = 0,
    start_ts: float,
    rate_per_s: float = 50.0,
    model: str = "fraud",
    model_version: str = "1",
    skews: Iterable[Skew] = (),
    id_prefix: str = "srv",
) -> list[dict[str, Any]]:
    """``n`` inference events (docs/design.md contract) whose store features come from ``values``
    (see :func:`latest_values`) and whose request features are random; ``skews`` corrupt
    the served copy of a feature for some entities, as a buggy model server would."""
    rng = np.random.default_rng(seed)
    customers = sorted(values["customer_id"])
    merchants = sorted(values["merchant_id"])
    skews = list(skews)
    ci = rng.integers(0, len(customers), n)
    mi = rng.integers(0, len(merchants), n)
    amount = np.round(rng.lognormal(3.0, 1.0, n), 2)
    risk = rng.beta(2, 8, n)
    hour = rng.integers(0, 24, n)
    dist = rng.exponential(15.0, n)
    channel = rng.choice(CHANNELS, n, p=[0.4, 0.35, 0.25])
    out = []
    for i in range(n):
        cid, mid = customers[ci[i]], merchants[mi[i]]
        feats: dict[str, Any] = {
            "amount": float(amount[i]),
            "merchant_risk": round(float(risk[i]), 6),
            "hour": float(hour[i]),
            "distance_km": round(float(dist[i]), 3),
            "channel": str(channel[i]),
        }
        feats.update(values["customer_id"][cid])
        feats.update(values["merchant_id"][mid])
        for s in skews:
            key = cid if s.feature in CUSTOMER_FEATURES else mid
            v = feats.get(s.feature)
            if isinstance(v, (int, float)) and s.hits(key):
                feats[s.feature] = float(v) * s.factor
        out.append(
            {
                "event_id": f"{id_prefix}-{seed}-{i:08d}",
                "model": model,
                "model_version": model_version,
                "ts": round(start_ts + i / rate_per_s, 3),
                "entity": {"customer_id": cid, "merchant_id": mid},
                "features": feats,
            }
        )
    return out


def _blake(data: bytes) -> bytes:
    import hashlib

    return hashlib.blake2b(data, digest_size=16).digest()


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
