"""A pipeline bug vs. a change in the world, end to end in one process: real Feast repo, reference
profile from the offline store (point in time), the real drift engine, the parity step and the
retrain policy.  (The same chain on Kafka runs in the worker's tests.)"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from streams.contracts.validate import parse_input

pytestmark = pytest.mark.feast

FEATURE = "customer_avg_amount_30d"
START = 1_764_115_200.0


def reference(repo):
    from feature_repo.offline import historical_table
    from streams.judge.profile_build import build_profile

    table = historical_table("fraud", "1", repo.end - timedelta(days=5), repo.end, repo.path)
    return build_profile(table, "fraud", "1", label_column=table.attrs["label_column"],
                         feature_columns=table.attrs["feature_columns"], source=table.attrs["source"])


def run_pipeline(repo, values, skews=()):
    """Micro-batches through parity + drift + explain + retrain policy, as the worker chains them."""
    from feature_repo.data_gen import serving_events
    from streams.judge.drift_config import DriftConfig
    from streams.judge.engine import DriftEngine
    from streams.adapters.feast_online import FeastOnlineClient, LookupConfig
    from streams.alerts.parity import ParityConfig
    from streams.adapters.parity_step import ParityStep
    from streams.alerts.retrain_policy import RetrainPolicyConfig, RetrainState, decide

    profile = reference(repo)
    engine = DriftEngine(DriftConfig(), {("fraud", "1"): profile})
    step = ParityStep(FeastOnlineClient.from_repo(repo.path, config=LookupConfig(timeout_s=5.0)),
                      ParityConfig(window_seconds=60, allowed_lateness_s=5))
    policy = RetrainPolicyConfig(kinds=("performance", "concept_drift", "data_drift"), min_labelled=0, cooldown_s=0)  # data drift retrains here
    events = [parse_input(e) for e in serving_events(values, 9000, seed=3, start_ts=START, skews=skews)]
    parity, drift, decisions = [], [], []

    async def main():
        await step.start([("fraud", "1")])
        for i in range(0, len(events), 500):
            batch = events[i:i + 500]
            parity.extend(await step.check(batch))
            judged = step.explain(engine.ingest(batch))
            if judged:
                drift.extend(judged)
                decisions.append(decide(policy, RetrainState(), judged, 1000, step.open_parity_features("fraud", "1")))
        parity.extend(step.flush())

    try:
        asyncio.run(main())
    finally:
        step.close()
    return profile, parity, drift, decisions


def test_pipeline_bug_gives_parity_alert_explained_drift_and_no_retrain(feast_repo):
    from feature_repo.data_gen import Skew

    profile, parity, drift, decisions = run_pipeline(feast_repo, feast_repo.values(), [Skew(FEATURE, 100.0, 0.2)])
    assert profile.source.startswith("feast:driftloop_demo/fraud@")
    assert [(a.kind, a.feature) for a in parity] == [("parity", FEATURE)]
    on_feature = [a for a in drift if a.kind == "data_drift" and a.feature == FEATURE]
    assert on_feature, "the scaled feature should drift against the offline reference"
    assert all(a.explained_by == parity[0].alert_id for a in on_feature)
    assert all(a.explained_by for a in drift if a.kind == "data_drift")
    assert decisions and all(d.request is None and d.reason == "explained_by_parity" for d in decisions)


def test_same_shift_in_store_and_stream_gives_drift_and_a_retrain_request(tmp_path):
    from feature_repo.data_gen import Skew
    from tests.fixtures_feast import build_repo, copy_repo

    repo = build_repo(copy_repo(tmp_path / "repo"))
    values = repo.values()
    skew = Skew(FEATURE, 100.0, 0.2)
    now = datetime.now(timezone.utc)
    moved = {c: dict(v) for c, v in values["customer_id"].items()}
    rows = []
    for cid, v in moved.items():
        if skew.hits(cid):
            v[FEATURE] *= 100.0
            rows.append({"customer_id": cid, "event_timestamp": now, "created": now, **v})
    repo.store.push("customer_stats_push", pd.DataFrame(rows))  # the world changed: the store knows

    _, parity, drift, decisions = run_pipeline(repo, {"customer_id": moved, "merchant_id": values["merchant_id"]})
    assert parity == []
    on_feature = [a for a in drift if a.kind == "data_drift" and a.feature == FEATURE]
    assert on_feature and all(a.explained_by is None for a in on_feature)
    requested = [d for d in decisions if d.request is not None]
    assert requested and requested[0].reason == "requested"
    assert any(aid in requested[0].request.alert_ids for aid in (a.alert_id for a in on_feature))
