"""Replay buffers: policies, determinism, class balance, merge, save/load (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from trainers.training.replay import ReplayBuffer, fair_shares


def experience(classes, n_per_class, d=4, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(classes), n_per_class)
    X = rng.normal(size=(len(y), d)).astype(np.float32) + offset
    return X, y


def test_fair_shares_water_filling():
    assert fair_shares(np.array([10, 10]), 6).tolist() == [3, 3]
    assert fair_shares(np.array([1, 10, 10]), 9).tolist() == [1, 4, 4]
    assert fair_shares(np.array([2, 3]), 100).tolist() == [2, 3]
    assert fair_shares(np.array([10, 10, 10]), 7).sum() == 7


def test_class_balanced_keeps_every_class_a_fair_share():
    buf = ReplayBuffer(30, policy="class_balanced", seed=0)
    for t in range(5):
        X, y = experience([2 * t, 2 * t + 1], 40, seed=t)
        buf.add(X, y)
        assert len(buf) == min(30, 80 * (t + 1))
    counts = buf.class_counts()
    assert sorted(counts) == list(range(10))
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sorted(buf.experience_counts()) == [0, 1, 2, 3, 4]


def test_class_balanced_is_balanced_per_experience_first():
    buf = ReplayBuffer(40, seed=0)
    buf.add(*experience([0], 200, seed=1))  # one big single-class experience
    buf.add(*experience([1, 2, 3, 4], 50, seed=2))  # four classes in one experience
    assert buf.experience_counts() == {0: 20, 1: 20}
    assert buf.class_counts() == {0: 20, 1: 5, 2: 5, 3: 5, 4: 5}


def test_imbalanced_classes_give_unused_quota_to_others():
    buf = ReplayBuffer(20, seed=0)
    X0, y0 = experience([0], 3, seed=0)
    X1, y1 = experience([1], 100, seed=1)
    buf.add(np.concatenate([X0, X1]), np.concatenate([y0, y1]))
    assert buf.class_counts() == {0: 3, 1: 17}


def test_reservoir_is_a_uniform_sample_of_the_stream():
    n, cap = 2000, 200
    X = np.arange(n, dtype=np.float32)[:, None]
    y = np.zeros(n, dtype=np.int64)
    means = []
    for seed in range(20):
        buf = ReplayBuffer(cap, policy="reservoir", seed=seed)
        for chunk in np.array_split(np.arange(n), 7):  # several add() calls
            buf.add(X[chunk], y[chunk])
        assert len(buf) == cap and buf.n_seen == n
        assert len(np.unique(buf.X[:, 0])) == cap  # no duplicates
        means.append(buf.X[:, 0].mean())
    # a uniform sample of 0..1999 has mean 999.5 (std of the mean over 20 runs ~ 9)
    assert abs(np.mean(means) - 999.5) < 60
    # early and late items both survive (not just the first or last chunk)
    assert (buf.X[:, 0] < 500).any() and (buf.X[:, 0] > 1500).any()


@pytest.mark.parametrize("policy", ["class_balanced", "reservoir"])
def test_same_seed_same_buffer_different_seed_different_buffer(policy):
    def fill(seed):
        buf = ReplayBuffer(25, policy=policy, seed=seed)
        for t in range(3):
            buf.add(*experience([t, t + 3], 30, seed=t))
        return buf

    a, b, c = fill(0), fill(0), fill(1)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.sample(10)[0], b.sample(10)[0])
    assert not np.array_equal(a.X, c.X)


def test_logits_are_stored_with_their_rows_and_sampled_together():
    buf = ReplayBuffer(10, seed=0)
    X, y = experience([0, 1], 20)
    logits = np.stack([X[:, 0] * 10, -X[:, 0]], axis=1)
    buf.add(X, y, logits=logits)
    Xs, ys, Ls = buf.sample(5)
    assert Xs.shape == (5, 4) and ys.shape == (5,) and Ls.shape == (5, 2)
    np.testing.assert_allclose(Ls[:, 0], Xs[:, 0] * 10)
    # rows added without logits get NaN targets, never someone else's logits
    buf.add(*experience([2], 20, seed=3))
    X_all, y_all, L_all = buf.arrays()
    assert np.isnan(L_all[y_all == 2]).all()
    assert not np.isnan(L_all[y_all < 2]).any()


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    buf = ReplayBuffer(8)
    buf.add(torch.randn(20, 3), torch.randint(0, 2, (20,)), logits=torch.randn(20, 2))
    assert len(buf) == 8 and buf.X.dtype == np.float32 and buf.y.dtype == np.int64


def test_sample_from_empty_buffer_says_what_to_do():
    with pytest.raises(ValueError, match="add"):
        ReplayBuffer(5).sample(3)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="policy"):
        ReplayBuffer(5, policy="fifo")
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0)
    buf = ReplayBuffer(5)
    buf.add(*experience([0], 3))
    with pytest.raises(ValueError, match="columns"):
        buf.add(np.zeros((2, 7), np.float32), np.zeros(2, np.int64))


def test_nbytes_counts_the_stored_arrays():
    buf = ReplayBuffer(50)
    buf.add(*experience([0, 1], 100, d=16), logits=np.zeros((200, 2), np.float32))
    assert buf.nbytes == 50 * (16 * 4 + 8 + 8 + 2 * 4)


@pytest.mark.parametrize("policy", ["class_balanced", "reservoir"])
def test_merge_is_fair_deterministic_and_leaves_inputs_alone(policy):
    a = ReplayBuffer(20, policy=policy, seed=0)
    a.add(*experience([0, 1], 30, seed=1), experience=0)
    b = ReplayBuffer(20, policy=policy, seed=5)
    b.add(*experience([2, 3], 30, seed=2, offset=100.0), experience=1)
    ya, yb = a.y.copy(), b.y.copy()
    m1, m2 = a.merge(b), a.merge(b)
    assert len(m1) == 20 and m1.capacity == 20 and m1.policy == policy
    np.testing.assert_array_equal(m1.X, m2.X)
    np.testing.assert_array_equal(a.y, ya)
    np.testing.assert_array_equal(b.y, yb)
    assert m1.n_seen == a.n_seen + b.n_seen
    counts = m1.class_counts()
    assert set(counts) == {0, 1, 2, 3}
    if policy == "class_balanced":
        assert counts == {0: 5, 1: 5, 2: 5, 3: 5}


def test_merge_of_small_buffers_keeps_everything():
    a = ReplayBuffer(100)
    a.add(*experience([0], 10))
    b = ReplayBuffer(100)
    b.add(*experience([1], 10, seed=1), logits=np.ones((10, 2), np.float32))
    m = a.merge(b)
    assert len(m) == 20 and m.class_counts() == {0: 10, 1: 10}
    assert np.isnan(m.logits[m.y == 0]).all() and (m.logits[m.y == 1] == 1).all()


@pytest.mark.parametrize("policy", ["class_balanced", "reservoir"])
def test_save_load_round_trip_with_model_version(tmp_path, policy):
    buf = ReplayBuffer(30, policy=policy, seed=3)
    X, y = experience([0, 1, 2], 20)
    buf.add(X, y, logits=np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32))
    buf.model_version = "7"
    path = buf.save(tmp_path / "replay.npz")
    loaded = ReplayBuffer.load(path)
    assert loaded.model_version == "7"
    assert (loaded.capacity, loaded.policy, loaded.seed, loaded.n_seen) == (30, policy, 3, 60)
    np.testing.assert_array_equal(loaded.X, buf.X)
    np.testing.assert_array_equal(loaded.y, buf.y)
    np.testing.assert_array_equal(loaded.logits, buf.logits)
    assert loaded.nbytes == buf.nbytes
    # the random state travels too: both continue identically
    more = experience([3], 40, seed=9)
    buf.add(*more)
    loaded.add(*more)
    np.testing.assert_array_equal(loaded.X, buf.X)


def test_save_load_empty_buffer(tmp_path):
    buf = ReplayBuffer(5)
    loaded = ReplayBuffer.load(buf.save(tmp_path / "empty"))
    assert len(loaded) == 0 and loaded.model_version is None


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.frombuffer(b"{}", np.uint8), y=np.zeros(1, np.int64),
             X=np.array([{"payload": "os.system"}], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        ReplayBuffer.load(path)


def test_load_refuses_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, y=np.zeros(3))
    with pytest.raises(ValueError, match="metadata"):
        ReplayBuffer.load(path)
