"""ContinualLearner on tiny synthetic data (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainers.training.continual import ContinualLearner, FitReport, ReplayBuffer, layers_of  # noqa: E402
from trainers.training.models import ModelSpec, build_model  # noqa: E402

D = 8
CENTERS = np.random.default_rng(42).normal(scale=3.0, size=(4, D)).astype(np.float32)


def blobs(classes, n_per_class=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(classes, dtype=np.int64), n_per_class)
    X = CENTERS[y] + rng.normal(scale=0.7, size=(len(y), D)).astype(np.float32)
    return X, y


def model(hidden=(32,), seed=0):
    return build_model(ModelSpec([f"f{i}" for i in range(D)], 4, hidden=hidden), seed=seed)


def accuracy(learner, X, y):
    return float((learner.predict(X) == y).mean())


@pytest.fixture(scope="module")
def two_tasks():
    return (blobs([0, 1], seed=1), blobs([2, 3], seed=2), blobs([0, 1], 30, seed=3), blobs([2, 3], 30, seed=4))


def params(m):
    return [p.detach().clone() for p in m.parameters()]


@pytest.mark.parametrize(
    "strategy,last_n,changed",
    [("head", 2, [False, False, False, False, True, True]),
     ("last_n", 2, [False, False, True, True, True, True]),
     ("last_n", 1, [False, False, False, False, True, True]),
     ("full", 2, [True, True, True, True, True, True])],
)
def test_strategy_trains_only_its_layers(two_tasks, strategy, last_n, changed):
    (XA, yA), *_ = two_tasks
    m = model(hidden=(16, 16))
    before = params(m)
    learner = ContinualLearner(m, replay=ReplayBuffer(50), strategy=strategy, last_n=last_n, epochs=3, device="cpu")
    report = learner.fit(XA, yA)
    after = params(learner.model)
    assert [not torch.equal(a, b) for a, b in zip(before, after)] == changed
    assert report.strategy == strategy
    assert report.trainable_params == sum(p.numel() for p, c in zip(m.parameters(), changed) if c)
    # freezing is undone after fit: the caller's model is trainable again
    assert all(p.requires_grad for p in learner.model.parameters())


def test_replay_keeps_the_old_task_and_naive_forgets(two_tasks):
    (XA, yA), (XB, yB), (XA_te, yA_te), (XB_te, yB_te) = two_tasks
    naive = ContinualLearner(model(), replay=None, epochs=15, device="cpu")
    replay = ContinualLearner(model(), replay=ReplayBuffer(40, seed=0), epochs=15, device="cpu")
    for learner in (naive, replay):
        learner.fit(XA, yA)
        assert accuracy(learner, XA_te, yA_te) > 0.95
        learner.fit(XB, yB)
        assert accuracy(learner, XB_te, yB_te) > 0.9
    assert accuracy(naive, XA_te, yA_te) < 0.3  # class-incremental without replay: forgotten
    assert accuracy(replay, XA_te, yA_te) > 0.85
    assert replay.replay.class_counts() == {0: 10, 1: 10, 2: 10, 3: 10}


def test_fit_report_and_buffer_update(two_tasks):
    (XA, yA), (XB, yB), *_ = two_tasks
    buf = ReplayBuffer(30, seed=0)
    learner = ContinualLearner(model(), replay=buf, epochs=2, batch_size=16, device="cpu", min_steps=0)
    r1 = learner.fit(XA, yA)
    assert isinstance(r1, FitReport)
    assert (r1.replay_size_before, r1.replay_size_after, r1.epochs_run) == (0, 30, 2)
    assert r1.steps == 2 * int(np.ceil(len(yA) / 16))
    assert r1.device == "cpu" and r1.time_s > 0 and r1.replay_nbytes == buf.nbytes
    X, y, logits = buf.arrays()
    assert logits.shape == (30, 4) and not np.isnan(logits).any()
    # stored logits are the model's outputs for the stored rows at insertion time
    with torch.no_grad():
        np.testing.assert_allclose(learner.model(torch.as_tensor(X)).numpy(), logits, rtol=1e-4, atol=1e-4)
    r2 = learner.fit(torch.as_tensor(XB), torch.as_tensor(yB))  # tensors work too
    assert (r2.experience, r2.replay_size_before) == (1, 30)
    assert buf.experience_counts() == {0: 15, 1: 15}
    assert set(r2.to_dict()) >= {"epochs_run", "steps", "train_loss", "val_accuracy", "time_s", "device",
                                 "replay_size_before", "replay_size_after", "replay_nbytes", "strategy",
                                 "stopped_early"}


def test_same_seed_same_weights(two_tasks):
    (XA, yA), *_ = two_tasks

    def train(seed):
        learner = ContinualLearner(model(seed=0), replay=ReplayBuffer(20, seed=seed), epochs=2,
                                   val_fraction=0.2, seed=seed, device="cpu")
        learner.fit(XA, yA)
        return params(learner.model)

    a, b, c = train(0), train(0), train(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_defaults_need_only_a_model_and_a_buffer(two_tasks):
    (XA, yA), (XB, yB), (XA_te, yA_te), (XB_te, yB_te) = two_tasks
    learner = ContinualLearner(model(), replay=ReplayBuffer(200))
    learner.fit(XA, yA)
    learner.fit(XB, yB)
    assert accuracy(learner, np.concatenate([XA_te, XB_te]), np.concatenate([yA_te, yB_te])) > 0.9
    proba = learner.predict_proba(XA_te)
    assert proba.shape == (len(yA_te), 4)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_early_stopping_restores_the_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, D)).astype(np.float32)
    y = rng.integers(0, 4, size=300)  # pure noise: validation cannot improve for long
    learner = ContinualLearner(model(hidden=(64,)), replay=None, epochs=60, val_fraction=0.3, patience=3,
                               optimizer="sgd", lr=0.3, device="cpu", restore_best=True)
    report = learner.fit(X, y)
    assert report.stopped_early and report.epochs_run < 60
    assert report.n_val == 90 and report.n_train == 210
    best = max(h["val_accuracy"] - 1e-3 * h["val_loss"] for h in report.history)
    assert report.val_accuracy == pytest.approx(
        next(h["val_accuracy"] for h in report.history if h["val_accuracy"] - 1e-3 * h["val_loss"] == best))


def test_ewc_holds_important_weights_closer_to_the_previous_task():
    rng = np.random.default_rng(0)
    XA = rng.normal(size=(200, D)).astype(np.float32)
    yA = (XA[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(np.int64)  # noisy: the Fisher is not ~0
    XB = rng.normal(size=(200, D)).astype(np.float32)
    yB = 2 + (XB[:, 1] > 0).astype(np.int64)

    def drift(ewc):
        learner = ContinualLearner(model(), replay=None, ewc=ewc, epochs=5, device="cpu")
        learner.fit(XA, yA)
        anchor = params(learner.model)[0]
        learner.fit(XB, yB)
        return float(((params(learner.model)[0] - anchor) ** 2).sum())

    assert drift(100.0) < 0.8 * drift(0.0)


def test_checkpoints_are_plain_weights(tmp_path, two_tasks):
    (XA, yA), *_ = two_tasks
    learner = ContinualLearner(model(), replay=ReplayBuffer(10), epochs=1, device="cpu", checkpoint_dir=str(tmp_path))
    report = learner.fit(XA, yA)
    state = torch.load(report.checkpoint, weights_only=True)
    assert set(state) == set(learner.model.state_dict())
    assert ReplayBuffer.load(tmp_path / "experience-0000-replay.npz").class_counts() == {0: 5, 1: 5}


def test_labels_outside_the_head_are_refused(two_tasks):
    (XA, _), *_ = two_tasks
    learner = ContinualLearner(model(), epochs=1, device="cpu")
    with pytest.raises(ValueError, match="labels"):
        learner.fit(XA, np.full(len(XA), 7))
    with pytest.raises(ValueError, match="strategy"):
        ContinualLearner(model(), strategy="everything")


def test_layers_of_an_mlp_are_its_linears():
    m = model(hidden=(16, 16))
    assert [type(l).__name__ for l in layers_of(m)] == ["Linear", "Linear", "Linear"]


def test_model_spec_encoding_and_round_trip():
    spec = ModelSpec(["amount", "country", "age"], 2, hidden=(8,), categorical={"country": ["DE", "FR"]})
    X = spec.encode([{"amount": 3.0, "country": "FR", "age": None},
                     {"amount": float("nan"), "country": "US", "age": 40},
                     {"country": "DE"}])
    assert X.dtype == np.float32 and X.shape == (3, spec.input_dim) == (3, 4)
    assert X.tolist() == [[3.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 40.0], [0.0, 1.0, 0.0, 0.0]]
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    m = build_model(spec, seed=1)
    assert isinstance(m, torch.nn.Sequential) and m(torch.as_tensor(X)).shape == (3, 2)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), build_model(spec, seed=1).parameters()))
    with pytest.raises(ValueError, match="categorical"):
        ModelSpec(["a"], 2, categorical={"b": ["x"]})


def test_logit_adjustment_only_when_the_experience_brings_unseen_classes(two_tasks):
    (XA, yA), (XB, yB), *_ = two_tasks
    # domain-incremental: the same classes, shifted inputs and a 9:1 prior
    rng = np.random.default_rng(5)
    keep = np.flatnonzero((yA == 0) | (rng.random(len(yA)) < 0.11))
    XD, yD = XA[keep] + 0.5, yA[keep]

    def second_fit(tau, X2, y2):
        learner = ContinualLearner(model(), replay=ReplayBuffer(40, seed=0), epochs=3, logit_adjust=tau, device="cpu")
        first = learner.fit(XA, yA)
        assert not first.logit_adjusted  # nothing to replay yet
        report = learner.fit(X2, y2)
        return params(learner.model), report

    (w_on, r_on), (w_off, r_off) = second_fit(1.0, XD, yD), second_fit(0.0, XD, yD)
    assert not r_on.logit_adjusted and not r_off.logit_adjusted
    assert all(torch.equal(a, b) for a, b in zip(w_on, w_off))  # off: tau makes no difference
    (w_on, r_on), (w_off, r_off) = second_fit(1.0, XB, yB), second_fit(0.0, XB, yB)
    assert r_on.logit_adjusted and not r_off.logit_adjusted
    assert not all(torch.equal(a, b) for a, b in zip(w_on, w_off))


def test_report_names_the_transfer_and_the_parameter_counts(two_tasks):
    (XA, yA), *_ = two_tasks
    m = model(hidden=(16, 16))
    report = ContinualLearner(m, replay=None, strategy="head", epochs=1, device="cpu").fit(XA, yA)
    assert report.total_params == sum(p.numel() for p in m.parameters())
    assert report.trainable_params == 16 * 4 + 4
    assert report.transfer["strategy"] == "head" and report.transfer["backbone_lr_scale"] == 1.0
    assert report.optimizer == "adam" and report.lr == 1e-3  # the defaults


def test_a_small_experience_gets_enough_steps(two_tasks):
    """120 rows in batches of 32 are 4 steps an epoch: 15 epochs (60 Adam steps) left the new classes unlearnt;
    min_steps gives such an experience more epochs, so it is learnt (with replay, the old one is kept)."""
    (XA, yA), (XB, yB), (XA_te, yA_te), (XB_te, yB_te) = two_tasks
    short = ContinualLearner(model(), replay=ReplayBuffer(40, seed=0), epochs=15, device="cpu", min_steps=0)
    enough = ContinualLearner(model(), replay=ReplayBuffer(40, seed=0), epochs=15, device="cpu")
    for learner in (short, enough):
        learner.fit(XA, yA)
        report = learner.fit(XB, yB)
    assert accuracy(short, XB_te, yB_te) < 0.8
    assert report.epochs_run > 15 and accuracy(enough, XB_te, yB_te) > 0.9 and accuracy(enough, XA_te, yA_te) > 0.85
