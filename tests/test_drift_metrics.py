"""Metric correctness against scipy on small cases, and the batched path against the scalar one."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from streams.judge.drift_metrics import (
    BernoulliCusum,
    NumericBatch,
    binomial_increase,
    chi2_counts,
    ece_from_bins,
    js_distance,
    ks_from_counts,
    psi,
    rate_change,
    wasserstein_from_counts,
)
from streams.judge.profile_build import numeric_profile


def test_psi_matches_formula_and_is_zero_on_identical():
    r, w = np.array([30, 50, 20]), np.array([10, 40, 50])
    rp, wp = (r + 0.5) / (r.sum() + 1.5), (w + 0.5) / (w.sum() + 1.5)
    assert psi(r, w) == pytest.approx(float(np.sum((wp - rp) * np.log(wp / rp))))
    assert psi(r, r) == pytest.approx(0.0, abs=1e-12)
    assert psi(r, w, smoothing=0.0) == pytest.approx(float(np.sum((w / 100 - r / 100) * np.log(w / r))))


def test_js_distance_matches_scipy():
    r, w = np.array([5, 0, 10, 3]), np.array([1, 4, 4, 9])
    assert js_distance(r, w) == pytest.approx(jensenshannon(r / r.sum(), w / w.sum(), base=2))
    assert js_distance(r, r) == pytest.approx(0.0, abs=1e-7)


def _discrete_counts(a, b, values):
    ra = np.array([np.sum(a == v) for v in values])
    rb = np.array([np.sum(b == v) for v in values])
    return ra, rb


def test_ks_on_binned_discrete_data_equals_scipy():
    rng = np.random.default_rng(0)
    values = np.arange(8)
    a = rng.integers(0, 8, 400)
    b = np.minimum(rng.integers(0, 8, 300) + rng.integers(0, 2, 300), 7)
    ra, rb = _discrete_counts(a, b, values)
    d, p = ks_from_counts(ra, rb)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic)
    assert abs(math.log10(p) - math.log10(ref.pvalue)) < 0.15


def test_ks_pvalue_close_to_scipy_on_continuous_data():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=2000), rng.normal(0.2, 1, size=500)
    edges = np.unique(np.concatenate([a, b]))  # one value per bin: binning loses nothing
    ra = np.bincount(np.searchsorted(edges, a), minlength=len(edges) + 1)
    rb = np.bincount(np.searchsorted(edges, b), minlength=len(edges) + 1)
    d, p = ks_from_counts(ra, rb)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic)
    assert abs(math.log10(p) - math.log10(ref.pvalue)) < 0.15


def test_wasserstein_on_binned_discrete_data_equals_scipy():
    rng = np.random.default_rng(2)
    values = np.array([0.0, 1.0, 2.5, 4.0])
    a, b = rng.choice(values, 500), rng.choice(values, 200, p=[0.1, 0.2, 0.3, 0.4])
    ra, rb = _discrete_counts(a, b, values)
    assert wasserstein_from_counts(values, ra, rb) == pytest.approx(stats.wasserstein_distance(a, b))
    assert wasserstein_from_counts(values, ra, rb, scale=2.0) == pytest.approx(stats.wasserstein_distance(a, b) / 2)


def test_chi2_matches_scipy_and_drops_empty_columns():
    r, w = np.array([30, 0, 50, 20]), np.array([10, 0, 40, 50])
    stat, p = chi2_counts(r, w)
    ref = stats.chi2_contingency(np.array([[30, 50, 20], [10, 40, 50]]), correction=False)
    assert stat == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue)
    assert chi2_counts([5, 0], [3, 0]) == (0.0, 1.0)


def test_rate_change_and_binomial():
    delta, p = rate_change(10, 1000, 30, 500)
    assert delta == pytest.approx(0.05)
    pooled = 40 / 1500
    z = 0.05 / math.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 500))
    assert p == pytest.approx(2 * stats.norm.sf(z))
    assert binomial_increase(0.1, 70, 500) == pytest.approx(stats.binomtest(70, 500, 0.1, alternative="greater").pvalue)


def test_ece_from_bins():
    # two bins: confidence 0.65 with accuracy 0.5, confidence 0.95 with accuracy 1.0
    assert ece_from_bins([2, 2], [1, 2], [1.3, 1.9]) == pytest.approx(0.5 * 0.15 + 0.5 * 0.05)


def test_numeric_batch_equals_scalar_functions():
    rng = np.random.default_rng(3)
    profs = [numeric_profile(rng.normal(size=3000)), numeric_profile(np.round(rng.exponential(size=2000) * 2)),
             numeric_profile(rng.uniform(size=500), n_bins=5, fine_bins=50)]
    batch = NumericBatch([p.counts for p in profs], [p.coarse_starts for p in profs], [p.reps() for p in profs],
                         [p.spread for p in profs], 0.5)
    win = np.zeros((3, batch.bmax))
    wins = []
    for i, p in enumerate(profs):
        w = rng.multinomial(400, (np.asarray(p.counts) + 1) / (np.sum(p.counts) + len(p.counts)))
        win[i, : len(w)] = w
        wins.append(w)
    res = batch.compute(win)
    for i, (p, w) in enumerate(zip(profs, wins)):
        ref = np.asarray(p.counts)
        rc, wc = p.coarse(ref), p.coarse(w)
        assert res["psi"][i] == pytest.approx(psi(rc, wc))
        assert res["js"][i] == pytest.approx(js_distance(rc, wc), abs=1e-9)
        d, pv = ks_from_counts(ref, w)
        assert res["ks"][i] == pytest.approx(d)
        assert res["ks_p"][i] == pytest.approx(pv)
        assert res["wasserstein"][i] == pytest.approx(wasserstein_from_counts(p.reps(), ref, w, p.spread))
        stat, cp = chi2_counts(rc, wc)
        assert res["chi2"][i] == pytest.approx(stat)
        assert res["chi2_p"][i] == pytest.approx(cp)


def _naive_cusum(x, up, down, h, s=0.0):
    alarms = []
    for i, e in enumerate(x):
        s = max(0.0, s + (up if e else down))
        if s >= h:
            alarms.append(i)
            s = 0.0
    return alarms, s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cusum_vectorised_equals_loop_and_is_chunking_invariant(seed):
    rng = np.random.default_rng(seed)
    x = (rng.random(5000) < np.where(np.arange(5000) > 2500, 0.4, 0.1)).astype(np.int8)
    c = BernoulliCusum(0.1, 0.2, 10.0)
    expected, s_end = _naive_cusum(x, c._up, c._down, 10.0)
    assert c.update(x) == expected
    assert c.s == pytest.approx(s_end)
    c2 = BernoulliCusum(0.1, 0.2, 10.0)
    got = []
    for a in range(0, 5000, 333):
        got += [a + i for i in c2.update(x[a : a + 333])]
    assert got == expected
    assert len(expected) > 3  # the drift half alarms repeatedly, the first half does not
    assert expected[0] > 2500


def test_cusum_window_counts_step():
    c = BernoulliCusum(0.1, 0.2, 5.0)
    assert not c.update_counts(50, 500)
    assert c.s == 0.0
    assert c.update_counts(200, 500)
    assert c.s == 0.0


def test_pool_small_keeps_big_cells_and_pools_rare_ones():
    from streams.judge.drift_metrics import pool_small

    r, w = pool_small([500, 400, 5, 3, 0], [40, 50, 2, 0, 7])
    assert r.tolist() == [500, 400, 8] and w.tolist() == [40, 50, 9]
    r, w = pool_small([500, 400, 5], [1, 2, 3])  # a single rare cell stays as it is
    assert r.tolist() == [500, 400, 5]
