"""The demo Feast repository, for real: apply, materialise, online lookups, push, and
point-in-time training tables (SQLite online store, file offline store)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

pytestmark = pytest.mark.feast


def test_apply_and_materialise_from_scratch(feast_repo):
    from feature_repo import store as st

    fs = feast_repo.store
    assert {e.name for e in fs.list_entities()} >= {"customer", "merchant", "tweet"}
    assert {v.name for v in fs.list_feature_views()} == {"customer_stats", "merchant_stats", "tweet_stats"}
    assert sorted(s.name for s in fs.list_feature_services()) == ["fraud", "tweets"]
    # applying again changes nothing and deletes nothing
    assert st.apply(fs).deleted == []


def test_tweet_stats_online_equal_the_serving_computation(feast_repo):
    """The tweets domain: the store holds text_stats of the real tweets, the same function serving calls."""
    from feature_repo import store as st
    from feature_repo.tweets import FEATURES, text_stats, tweet_key
    from trainers.datasets.healthtweets import load_healthtweets

    df = load_healthtweets(with_ids=True).iloc[[0, 5000, 40000]]
    refs = st.service_refs(st.feature_service_for(feast_repo.store, "tweets", "1"))
    got = feast_repo.store.get_online_features(
        features=refs, entity_rows=[{"tweet_id": tweet_key(i)} for i in df["tweet_id"]]).to_dict()
    for k, text in enumerate(df["text"]):
        assert {f: got[f][k] for f in FEATURES} == text_stats(text)
    assert any(got["n_links"]) and all(n > 0 for n in got["n_words"])


def test_online_lookups_return_the_materialised_values(feast_repo):
    from feature_repo import store as st
    from feature_repo.data_gen import STORE_FEATURES

    fs = feast_repo.store
    values = feast_repo.values()
    customers = sorted(values["customer_id"])
    merchants = sorted(values["merchant_id"])
    rows = [{"customer_id": c, "merchant_id": merchants[i % len(merchants)]} for i, c in enumerate(customers)]
    rows.append({"customer_id": "c-unknown", "merchant_id": "m-unknown"})
    refs = st.service_refs(st.feature_service_for(fs, "fraud", "1"))
    got = fs.get_online_features(features=refs, entity_rows=rows).to_dict()
    for i, row in enumerate(rows[:-1]):
        expected = {**values["customer_id"][row["customer_id"]], **values["merchant_id"][row["merchant_id"]]}
        assert {f: got[f][i] for f in STORE_FEATURES} == pytest.approx(expected), row
    assert all(got[f][-1] is None for f in STORE_FEATURES)


def test_push_source_updates_the_online_store(tmp_path):
    from datetime import datetime, timezone

    from tests.fixtures_feast import build_repo, copy_repo

    repo = build_repo(copy_repo(tmp_path / "repo"))
    before = repo.values()["customer_id"]["c-3"]
    df = pd.DataFrame({
        "customer_id": ["c-3"], "event_timestamp": [datetime.now(timezone.utc)],
        "customer_avg_amount_30d": [before["customer_avg_amount_30d"] * 2], "customer_txn_count_7d": [99],
        "customer_account_age_days": [before["customer_account_age_days"]], "customer_home_country": ["XX"],
        "created": [datetime.now(timezone.utc)],
    })
    repo.store.push("customer_stats_push", df)
    got = repo.store.get_online_features(
        features=["customer_stats:customer_txn_count_7d", "customer_stats:customer_home_country"],
        entity_rows=[{"customer_id": "c-3"}]).to_dict()
    assert got["customer_txn_count_7d"] == [99] and got["customer_home_country"] == ["XX"]


def test_historical_table_is_point_in_time_correct(feast_repo):
    from feature_repo.offline import historical_table

    start = feast_repo.end - timedelta(days=5)
    end = feast_repo.end - timedelta(days=1)
    table = historical_table("fraud", "1", start.isoformat(), end, feast_repo.path, keep_keys=True)
    assert table.attrs["label_column"] == "is_fraud"
    assert set(table.attrs["feature_columns"]) >= {"amount", "customer_avg_amount_30d", "merchant_category"}
    tx = pd.read_parquet(feast_repo.path / "data" / "transactions.parquet")
    in_window = tx[(tx.event_timestamp >= pd.Timestamp(start)) & (tx.event_timestamp < pd.Timestamp(end))]
    assert len(table) == len(in_window) > 0
    assert table["event_timestamp"].between(pd.Timestamp(start), pd.Timestamp(end)).all()

    # expected: the newest snapshot at or before each request (no leakage from the future)
    snaps = pd.read_parquet(feast_repo.path / "data" / "customer_stats.parquet").sort_values("event_timestamp")
    req = table[["customer_id", "event_timestamp", "customer_avg_amount_30d"]].sort_values("event_timestamp")
    want = pd.merge_asof(req, snaps[["customer_id", "event_timestamp", "customer_avg_amount_30d"]],
                         on="event_timestamp", by="customer_id", direction="backward", suffixes=("", "_want"),
                         tolerance=pd.Timedelta(days=7))
    assert want["customer_avg_amount_30d_want"].notna().all()
    assert want["customer_avg_amount_30d"].to_numpy() == pytest.approx(want["customer_avg_amount_30d_want"].to_numpy())
    # and not simply the latest value: some requests see an older snapshot than the newest one
    latest = snaps.groupby("customer_id")["customer_avg_amount_30d"].last()
    assert (want["customer_avg_amount_30d"].to_numpy() != want["customer_id"].map(latest).to_numpy()).any()

    plain = historical_table("fraud", "1", start, end, feast_repo.path)
    assert "customer_id" not in plain.columns and "event_timestamp" not in plain.columns
    assert list(plain.columns) == [*plain.attrs["feature_columns"], "is_fraud"]


def test_historical_table_errors_say_what_to_do(feast_repo):
    from feature_repo.offline import historical_table

    with pytest.raises(LookupError, match="no feature service for model 'nope'"):
        historical_table("nope", "1", feast_repo.end - timedelta(days=2), feast_repo.end, feast_repo.path)
    with pytest.raises(ValueError, match="no requests"):
        historical_table("fraud", "1", "2001-01-01T00:00:00Z", "2001-01-02T00:00:00Z", feast_repo.path)
