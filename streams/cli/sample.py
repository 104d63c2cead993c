"""Sample traffic for the demo domain (card payments, model ``fraud``), seeded and reproducible.

Used by the demo, the tests and the benchmarks.  ``drift`` shifts a feature from an
event time on; ``malformed`` makes bad records covering every validation reason.

>>> s = SampleTraffic(seed=1)
>>> evs = s.events(3)
>>> sorted(evs[0]["features"])[:3]
['amount', 'channel', 'country']
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

COUNTRIES = ["DE", "FR", "US", "GB", "NL", "ES", "IT", "PL"]
COUNTRY_P = [0.30, 0.15, 0.15, 0.12, 0.08, 0.08, 0.07, 0.05]
CHANNELS = ["web", "pos", "app"]
CHANNEL_P = [0.4, 0.35, 0.25]
NUMERIC = ["amount", "merchant_risk", "hour", "distance_km", "txn_count_24h", "customer_age"]
CATEGORICAL = ["country", "channel"]


@dataclass
class Drift:
    """From event time ``at`` on, ``feature`` is shifted: numeric by ``scale``/``shift``,
    categorical by sending ``category`` with probability ``p``."""

    feature: str
    at: float
    scale: float = 1.0
    shift: float = 0.0
    category: str | None = None
    p: float = 0.0


@dataclass
class SampleTraffic:
    seed: int = 0
    model: str = "fraud"
    model_version: str = "1"
    start_ts: float = 1_764_115_200.0  # 2025-11-26T00:00:00Z
    rate_per_s: float = 50.0
    n_customers: int = 500
    n_merchants: int = 100
    drifts: list[Drift] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._i = 0

    def events(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` inference events as JSON-ready dicts (docs/design.md contract)."""
        rng = self._rng
        idx = np.arange(self._i, self._i + n)
        self._i += n
        ts = self.start_ts + idx / self.rate_per_s
        cols: dict[str, np.ndarray] = {
            "amount": np.round(rng.lognormal(3.0, 1.0, n), 2),
            "merchant_risk": rng.beta(2, 8, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "distance_km": rng.exponential(15.0, n),
            "txn_count_24h": rng.poisson(3, n).astype(float),
            "customer_age": rng.normal(42, 12, n).clip(18, 95).round(),
        }
        country = rng.choice(COUNTRIES, n, p=COUNTRY_P).astype(object)
        channel = rng.choice(CHANNELS, n, p=CHANNEL_P).astype(object)
        age_missing = rng.random(n) < 0.05
        for d in self.drifts:
            hit = ts >= d.at
            if d.feature in cols:
                cols[d.feature] = np.where(hit, cols[d.feature] * d.scale + d.shift, cols[d.feature])
            elif d.feature in ("country", "channel") and d.category is not None:
                target = country if d.feature == "country" else channel
                flip = hit & (rng.random(n) < d.p)
                target[flip] = d.category
        logit = (
            -4.0 + 0.8 * np.log1p(cols["amount"]) / 3 + 6.0 * cols["merchant_risk"] + 0.02 * cols["distance_km"]
            + 0.3 * (channel == "web")
        )
        p = 1.0 / (1.0 + np.exp(-logit))
        customers = rng.integers(0, self.n_customers, n)
        merchants = rng.integers(0, self.n_merchants, n)
        out = []
        for i in range(n):
            feats: dict[str, Any] = {k: float(v[i]) for k, v in cols.items()}
            if age_missing[i]:
                feats["customer_age"] = None
            feats["country"] = str(country[i])
            feats["channel"] = str(channel[i])
            out.append(
                {
                    "event_id": f"{self.model}-{self.seed}-{int(idx[i]):09d}",
                    "model": self.model,
                    "model_version": self.model_version,
                    "ts": round(float(ts[i]), 3),
                    "entity": {"customer_id": f"c-{int(customers[i])}", "merchant_id": f"m-{int(merchants[i])}"},
                    "features": feats,
                    "prediction": int(p[i] >= 0.5),
                    "scores": [round(1 - float(p[i]), 6), round(float(p[i]), 6)],
                }
            )
        return out

    def labels(
        self,
        events: list[dict[str, Any]],
        delay_s: float = 30.0,
        flip: float = 0.0,
        rule: Callable[[dict[str, Any]], int | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Ground truth for ``events``, arriving ``delay_s`` later.

        ``flip``: share of labels that contradict the model's score (noise: nothing to learn);
        ``rule``: a new concept, a function of the event that returns the label where it applies
        (else None), e.g. a fraud ring on large amounts: learnable by retraining."""
        rng = np.random.default_rng(self.seed + 1)
        out = []
        for ev in events:
            p1 = ev["scores"][1]
            label = int(rng.random() < p1)
            if flip and rng.random() < flip:
                label = 1 - label
            if rule is not None:
                forced = rule(ev)
                if forced is not None:
                    label = int(forced)
            out.append({"event_id": ev["event_id"], "model": ev["model"], "ts": ev["ts"] + delay_s, "label": label})
        return out


def fraud_ring(min_amount: float = 150.0) -> Callable[[dict[str, Any]], int | None]:
    """A new concept for the demo: every payment above ``min_amount`` made on the web is fraud."""

    def rule(ev: dict[str, Any]) -> int | None:
        f = ev["features"]
        return 1 if (f.get("amount") or 0.0) > min_amount and f.get("channel") == "web" else None

    return rule


def malformed(n: int, seed: int = 0) -> list[bytes]:
    """``n`` bad records, cycling through every kind of validation failure."""
    rng = np.random.default_rng(seed)
    good = SampleTraffic(seed=seed + 99).events(1)[0]
    makers = [
        lambda i: b"\xff\xfe\x00" + bytes(rng.integers(0, 256, 8, dtype=np.uint8)),  # not UTF-8
        lambda i: b'{"event_id": "x", ' + str(i).encode(),  # truncated JSON
        lambda i: b"[1, 2, 3]",  # not an object
        lambda i: json.dumps({k: v for k, v in good.items() if k != "ts"}).encode(),  # missing field
        lambda i: json.dumps({**good, "features": {"amount": [i]}}).encode(),  # wrong type
        lambda i: json.dumps({**good, "features": {"amount": math.inf}}).encode(),  # non-finite (Infinity)
        lambda i: json.dumps({**good, "ts": "not a time"}).encode(),  # bad timestamp
        lambda i: json.dumps({**good, "ts": 1.7e12}).encode(),  # milliseconds
        lambda i: b"",  # empty
    ]
    return [makers[i % len(makers)](i) for i in range(n)]


# ------------------------------------------------------------------------------- command


NEEDS_KAFKA = True  # streams/cli/main.py checks the broker answers before run()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=5000, help="good events to publish (default 5000)")
    p.add_argument("--bad", type=int, default=50, help="malformed records mixed in (default 50)")
    p.add_argument("--labels", action="store_true", help="also publish labels to the labels topic")
    p.add_argument("--drift-feature", default=None, help="feature to shift halfway through (e.g. amount)")
    p.add_argument("--drift-scale", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--topic", default=None, help="inputs topic (default from config)")


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from streams import config as cfg

    raw = cfg.load_file(args.config)
    kafka = cfg.kafka_settings(raw)
    topics = cfg.topics(raw)
    traffic = SampleTraffic(seed=args.seed)
    if args.drift_feature:
        traffic.drifts.append(Drift(args.drift_feature, traffic.start_ts + args.n / traffic.rate_per_s / 2, scale=args.drift_scale))
    events = traffic.events(args.n)
    from streams.adapters.kafka_clients import from_settings

    producer = KafkaProducer(**from_settings(kafka).kafka_python(), acks="all", enable_idempotence=True, linger_ms=20)
    topic = args.topic or topics.inputs
    bad = malformed(args.bad, seed=args.seed)
    stride = max(1, len(events) // max(1, len(bad)))
    bi = 0
    for i, ev in enumerate(events):
        producer.send(topic, json.dumps(ev).encode(), key=ev["event_id"].encode())
        if bi < len(bad) and i % stride == 0:
            producer.send(topic, bad[bi])
            bi += 1
    for b in bad[bi:]:
        producer.send(topic, b)
    if args.labels:
        for lab in traffic.labels(events):
            producer.send(topics.labels, json.dumps(lab).encode(), key=lab["event_id"].encode())
    producer.flush()
    producer.close()
    print(f"published {len(events)} events and {len(bad)} malformed records to {topic}")
    return 0
