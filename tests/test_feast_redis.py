"""The same repository with the Redis online store, against a real redis-server started by the
``redis_server`` fixture; built with the ``driftloop features`` command."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.feast


def test_cli_builds_the_repo_on_redis_and_lookups_return_materialised_values(redis_server, tmp_path, capsys):
    from feature_repo import store as st
    from feature_repo.data_gen import STORE_FEATURES, Skew, latest_values
    from streams.cli.main import main
    from tests.fixtures_feast import copy_repo
    from tests.test_feast_parity import drive, make_step, stream

    repo = copy_repo(tmp_path / "repo")
    assert main(["features", "all", "--repo", str(repo), "--online", "redis", "--redis", redis_server]) == 0
    out = capsys.readouterr().out
    assert "applied" in out and "materialised into the redis online store" in out

    fs = st.open_store(repo, "redis", redis_server)
    values = latest_values(repo)
    refs = st.service_refs(st.feature_service_for(fs, "fraud"))
    rows = [{"customer_id": f"c-{i}", "merchant_id": f"m-{i % 100}"} for i in range(0, 500, 7)]
    got = fs.get_online_features(features=refs, entity_rows=rows).to_dict()
    for i, row in enumerate(rows):
        expected = {**values["customer_id"][row["customer_id"]], **values["merchant_id"][row["merchant_id"]]}
        assert {f: got[f][i] for f in STORE_FEATURES} == pytest.approx(expected), row

    # parity over Redis: a consistent stream is clean, a skewed one is caught
    for skews, expected_features in (((), []), ((Skew("merchant_avg_amount_30d", 100.0, 0.3),), ["merchant_avg_amount_30d"])):
        step = make_step(repo, "redis", redis_server)
        try:
            alerts = asyncio.run(drive(step, stream(values, skews=skews)))
        finally:
            step.close()
        assert [a.feature for a in alerts] == expected_features
        assert step.client.stats.store_calls > 0 and step.client.stats.failures == 0
