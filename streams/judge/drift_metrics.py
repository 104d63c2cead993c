"""Drift metrics on binned counts (pure numpy/scipy; no I/O).

Every function takes integer count vectors of a reference and a window over the
same buckets, so that a window's state stays a mergeable vector of counts.

Approximation note: KS and Wasserstein are computed on fine-grained bins (by
default 100 reference quantile bins plus a geometric ladder of tail bins beyond
the reference range), not on raw values.  The KS statistic is then the largest
CDF gap at the bin edges, a lower bound of the raw-value statistic that is exact
when the data only take one value per bin; its p-value (asymptotic
Kolmogorov distribution with the effective size n*m/(n+m)) is therefore
conservative.  The Wasserstein distance moves mass between bin representatives
(bin midpoints; the open tail bins use their edge plus one ladder step), so it is
exact to within about half a bin width, i.e. a few hundredths of a reference
standard deviation in the body of the distribution.

>>> import numpy as np
>>> round(psi([50, 50], [50, 50]), 6)
0.0
>>> stat, p = ks_from_counts(np.array([10, 10, 10]), np.array([0, 0, 30]))
>>> round(stat, 3)
0.667
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

__all__ = [
    "psi",
    "js_distance",
    "ks_from_counts",
    "wasserstein_from_counts",
    "chi2_counts",
    "rate_change",
    "pool_small",
    "binomial_increase",
    "ece_from_bins",
    "Cusum",
    "BernoulliCusum",
    "NumericBatch",
]


def _proportions(counts: np.ndarray, smoothing: float) -> np.ndarray:
    c = np.asarray(counts, dtype=float) + smoothing
    total = c.sum()
    return c / total if total > 0 else np.full(len(c), 1.0 / max(len(c), 1))


def psi(ref_counts, win_counts, smoothing: float = 0.5) -> float:
    """Population stability index sum((w - r) * ln(w / r)) with additive smoothing of counts."""
    r = _proportions(ref_counts, smoothing)
    w = _proportions(win_counts, smoothing)
    return float(np.sum((w - r) * np.log(w / r)))


def js_distance(ref_counts, win_counts) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two count vectors (scipy)."""
    r = np.asarray(ref_counts, dtype=float)
    w = np.asarray(win_counts, dtype=float)
    if r.sum() <= 0 or w.sum() <= 0:
        return 0.0
    d = jensenshannon(r / r.sum(), w / w.sum(), base=2)
    return float(0.0 if not np.isfinite(d) else d)


def ks_from_counts(ref_counts, win_counts) -> tuple[float, float]:
    """Two-sample KS statistic on binned data and its asymptotic p-value (:func:`ks_pvalue`)."""
    r = np.asarray(ref_counts, dtype=float)
    w = np.asarray(win_counts, dtype=float)
    n, m = r.sum(), w.sum()
    if n <= 0 or m <= 0:
        return 0.0, 1.0
    d = float(np.max(np.abs(np.cumsum(r) / n - np.cumsum(w) / m)))
    return d, float(ks_pvalue(d, n * m / (n + m)))


def ks_pvalue(d, en):
    """Asymptotic two-sample KS p-value with Stephens' small-sample correction (vectorised).

    ``kstwobign.sf((sqrt(en) + 0.12 + 0.11 / sqrt(en)) * d)`` with ``en = n*m/(n+m)``; it agrees with
    ``scipy.stats.ks_2samp(method="asymp")`` to a few percent in the tails, at a fraction of the cost.
    """
    en = np.maximum(np.asarray(en, dtype=float), 1.0)
    s = np.sqrt(en)
    return np.clip(stats.kstwobign.sf((s + 0.12 + 0.11 / s) * np.asarray(d, dtype=float)), 0.0, 1.0)


def wasserstein_from_counts(reps, ref_counts, win_counts, scale: float = 1.0) -> float:
    """Earth mover's distance between binned distributions (``scipy.stats.wasserstein_distance``), divided by ``scale``."""
    r = np.asarray(ref_counts, dtype=float)
    w = np.asarray(win_counts, dtype=float)
    if r.sum() <= 0 or w.sum() <= 0:
        return 0.0
    d = stats.wasserstein_distance(reps, reps, u_weights=r, v_weights=w)
    return float(d / scale) if scale > 0 else float(d)


def chi2_counts(ref_counts, win_counts) -> tuple[float, float]:
    """Chi-square test of homogeneity of a 2 x B table (``scipy.stats.chi2_contingency``), empty columns dropped."""
    table = np.vstack([np.asarray(ref_counts, dtype=float), np.asarray(win_counts, dtype=float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return 0.0, 1.0
    res = stats.chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue)


def pool_small(ref_counts, win_counts, min_share: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Pool the cells with less than ``min_share`` of the reference into one cell (for chi-square tails)."""
    r = np.asarray(ref_counts, dtype=float)
    w = np.asarray(win_counts, dtype=float)
    total = r.sum()
    if total <= 0:
        return r, w
    small = r / total < min_share
    if small.sum() <= 1:
        return r, w
    return np.append(r[~small], r[small].sum()), np.append(w[~small], w[small].sum())


def rate_change(ref_k: int, ref_n: int, win_k: int, win_n: int) -> tuple[float, float]:
    """Change of a rate (e.g. missing rate) window minus reference, and a two-sided pooled z-test p-value."""
    if ref_n <= 0 or win_n <= 0:
        return 0.0, 1.0
    p_ref, p_win = ref_k / ref_n, win_k / win_n
    pooled = (ref_k + win_k) / (ref_n + win_n)
    delta = p_win - p_ref
    var = pooled * (1.0 - pooled) * (1.0 / ref_n + 1.0 / win_n)
    if var <= 0:
        return delta, 1.0
    z = abs(delta) / math.sqrt(var)
    return delta, float(2.0 * stats.norm.sf(z))


def binomial_increase(p0: float, errors: int, n: int) -> float:
    """One-sided exact binomial p-value that the error rate of ``errors``/``n`` exceeds ``p0``."""
    if n <= 0:
        return 1.0
    p0 = min(max(p0, 1e-9), 1 - 1e-9)
    return float(stats.binom.sf(errors - 1, n, p0))


def ece_from_bins(count, correct, conf_sum) -> float:
    """Expected calibration error from per-confidence-bin counts, correct counts and confidence sums."""
    count = np.asarray(count, dtype=float)
    total = count.sum()
    if total <= 0:
        return 0.0
    nz = count > 0
    acc = np.asarray(correct, dtype=float)[nz] / count[nz]
    conf = np.asarray(conf_sum, dtype=float)[nz] / count[nz]
    return float(np.sum(count[nz] / total * np.abs(acc - conf)))


class Cusum:
    """One-sided CUSUM of per-event log-likelihood ratios: ``S_t = max(0, S_{t-1} + llr_t)``, an alarm
    when ``S`` reaches ``h`` (then it restarts from 0).  Subclasses map their observations to ``llr``
    (:class:`BernoulliCusum`: 0/1 errors; :class:`streams.judge.loss.LossCusum`: regression losses).
    By Wald's inequality the average run length under the reference is at least ``exp(h)`` when ``llr``
    is a true log-likelihood ratio.  ``_run`` is vectorised: ``S`` follows from a cumulative sum and a
    running minimum.
    """

    def __init__(self, h: float, s: float = 0.0, n: int = 0, run: int = 0) -> None:
        self.h = h
        self.s = float(s)
        self.n = int(n)  # events since the last alarm (or start)
        self.run = int(run)  # events since the statistic last sat at 0 (the change-point estimate)
        self.alarm_runs: list[int] = []  # run length of each alarm of the last update

    def _run(self, x: np.ndarray) -> list[int]:
        """Feed log-likelihood ratios in event order; return the positions (indices into ``x``) of alarms.

        ``alarm_runs`` then holds, per alarm, the number of events since the statistic last sat
        at 0 (the evidence run: the events from the estimated change point to the alarm).
        """
        alarms: list[int] = []
        self.alarm_runs = []
        start = 0
        while start < len(x):
            seg = x[start:]
            c = self.s + np.cumsum(seg)
            # S_t = C_t - min(0, min_{s<=t} C_s) with C the walk started at S_0
            s = c - np.minimum(np.minimum.accumulate(c), 0.0)
            hit = np.flatnonzero(s >= self.h)
            end = len(seg) if hit.size == 0 else int(hit[0]) + 1
            zeros = np.flatnonzero(s[:end] <= 0.0)
            run = end - 1 - int(zeros[-1]) if zeros.size else self.run + end
            if hit.size == 0:
                self.s = float(s[-1])
                self.n += len(seg)
                self.run = run
                break
            i = int(hit[0])
            alarms.append(start + i)
            self.alarm_runs.append(run)
            self.n = 0
            self.s = 0.0
            self.run = 0
            start += i + 1
        return alarms


class BernoulliCusum(Cusum):
    """One-sided CUSUM of a 0/1 error stream against a reference error rate.

    Each event adds the log-likelihood ratio of "error rate ``p1``" over "error rate ``p0``";
    the statistic is ``S_t = max(0, S_{t-1} + llr_t)`` and an alarm is raised when it reaches
    ``h`` (then it restarts from 0).  Average run length under no change grows about as
    ``exp(h)``; the delay after a change to rate ``p`` is about ``h / E_p[llr]``.
    ``update`` is vectorised: ``S`` follows from a cumulative sum and a running minimum.

    >>> c = BernoulliCusum(p0=0.1, p1=0.2, h=5.0)
    >>> c.update(np.zeros(1000, dtype=np.int8))
    []
    >>> c.update(np.ones(20, dtype=np.int8))[0]
    7
    """

    def __init__(self, p0: float, p1: float, h: float, s: float = 0.0, n: int = 0, run: int = 0) -> None:
        super().__init__(h, s, n, run)
        p0 = min(max(p0, 1e-6), 1 - 1e-6)
        p1 = min(max(p1, p0 + 1e-6), 1 - 1e-6)
        self.p0, self.p1 = p0, p1
        self._up = math.log(p1 / p0)
        self._down = math.log((1 - p1) / (1 - p0))

    def update(self, errors: np.ndarray) -> list[int]:
        """Feed errors in event order; return the positions (indices into ``errors``) of alarms
        (``alarm_runs``: see :meth:`Cusum._run`)."""
        return self._run(np.where(np.asarray(errors) > 0, self._up, self._down))

    def update_counts(self, errors: int, n: int) -> bool:
        """One step with a whole window's counts (sum of its events' llr); True (and restart) on alarm."""
        self.s = max(0.0, self.s + errors * self._up + (n - errors) * self._down)
        self.n += int(n)
        self.run = self.run + int(n) if self.s > 0 else 0
        if self.s >= self.h:
            self.alarm_runs = [self.run]
            self.s, self.n, self.run = 0.0, 0, 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"p0": self.p0, "p1": self.p1, "h": self.h, "s": self.s, "n": self.n, "run": self.run}

    @classmethod
    def from_state(cls, d: dict) -> "BernoulliCusum":
        return cls(d["p0"], d["p1"], d["h"], d.get("s", 0.0), d.get("n", 0), d.get("run", 0))


# --------------------------------------------------------------------------- batched numeric metrics


class NumericBatch:
    """Reference side of the numeric features of one profile, padded to one matrix for batched metrics.

    :meth:`compute` gives, for every numeric feature at once, the same numbers as
    :func:`psi`, :func:`js_distance` (PSI bins), :func:`ks_from_counts`,
    :func:`wasserstein_from_counts` (fine bins) and :func:`chi2_counts` (PSI bins).
    """

    def __init__(self, fine_counts: list, coarse_starts: list, reps: list, scales: list, smoothing: float = 0.5) -> None:
        f = len(fine_counts)
        self.f = f
        self.bmax = max((len(c) for c in fine_counts), default=1)
        self.cmax = max((len(c) for c in coarse_starts), default=1)
        self.smoothing = smoothing
        self.ref = np.zeros((f, self.bmax))
        self.dreps = np.zeros((f, self.bmax))  # reps[i+1] - reps[i]; 0 past the end
        gid = np.zeros((f, self.bmax), dtype=np.int64)
        self.cvalid = np.zeros((f, self.cmax), dtype=bool)
        for i, (c, cs, r) in enumerate(zip(fine_counts, coarse_starts, reps)):
            b = len(c)
            self.ref[i, :b] = c
            r = np.asarray(r, dtype=float)
            if b > 1:
                self.dreps[i, : b - 1] = np.diff(r)
            g = np.zeros(self.bmax, dtype=np.int64)
            g[np.asarray(cs[1:], dtype=np.int64)] = 1
            g = np.cumsum(g)
            g[b:] = g[b - 1]  # padding bins hold zero counts
            gid[i] = g + i * self.cmax
            self.cvalid[i, : len(cs)] = True
        self.gid = gid.ravel()
        self.scales = np.asarray(scales, dtype=float)
        self.ref_coarse = self.coarse(self.ref)

    def coarse(self, fine: np.ndarray) -> np.ndarray:
        return np.bincount(self.gid, weights=fine.ravel(), minlength=self.f * self.cmax).reshape(self.f, self.cmax)

    def compute(self, win: np.ndarray) -> dict[str, np.ndarray]:
        """``win``: (F, Bmax) window fine-bin counts (zero padded).  Returns metric arrays of length F."""
        ref = self.ref
        n = ref.sum(axis=1)
        m = win.sum(axis=1)
        ok = (n > 0) & (m > 0)
        safe_n, safe_m = np.where(n > 0, n, 1.0), np.where(m > 0, m, 1.0)
        cdf_r = np.cumsum(ref, axis=1) / safe_n[:, None]
        cdf_w = np.cumsum(win, axis=1) / safe_m[:, None]
        gap = np.abs(cdf_r - cdf_w)
        ks = np.where(ok, gap.max(axis=1), 0.0)
        ks_p = np.where(ok, ks_pvalue(ks, n * m / np.where(n + m > 0, n + m, 1.0)), 1.0)
        wass = np.where(ok, (gap * self.dreps).sum(axis=1), 0.0) / np.where(self.scales > 0, self.scales, 1.0)
        # PSI bins
        rc, wc, valid = self.ref_coarse, self.coarse(win), self.cvalid
        s = self.smoothing
        ncols = valid.sum(axis=1)
        rp = (rc + s * valid) / (n + s * ncols)[:, None]
        wp = (wc + s * valid) / (m + s * ncols)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(valid, (wp - rp) * np.log(np.where(valid, wp / rp, 1.0)), 0.0)
            psi_v = np.where(ok, term.sum(axis=1), 0.0)
            pr = rc / safe_n[:, None]
            pw = wc / safe_m[:, None]
            mid = (pr + pw) / 2.0
            kl = lambda a: np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(mid > 0, mid, 1.0)), 0.0)
            js = np.where(ok, np.sqrt(np.clip(0.5 * kl(pr).sum(axis=1) + 0.5 * kl(pw).sum(axis=1), 0.0, None)), 0.0)
            # chi-square homogeneity on the 2 x C table, empty columns dropped
            col = rc + wc
            tot = n + m
            nonempty = col > 0
            er = n[:, None] * col / np.where(tot > 0, tot, 1.0)[:, None]
            ew = m[:, None] * col / np.where(tot > 0, tot, 1.0)[:, None]
            chi = np.where(nonempty, (rc - er) ** 2 / np.where(er > 0, er, 1.0) + (wc - ew) ** 2 / np.where(ew > 0, ew, 1.0), 0.0)
            chi_stat = chi.sum(axis=1)
        df = nonempty.sum(axis=1) - 1
        chi_p = np.where(ok & (df > 0), stats.chi2.sf(chi_stat, np.maximum(df, 1)), 1.0)
        return {"psi": psi_v, "js": js, "ks": ks, "ks_p": ks_p, "wasserstein": wass, "chi2": chi_stat, "chi2_p": chi_p}
