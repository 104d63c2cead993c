"""Transfer strategies (trainers/training/transfer.py) on a small model with BatchNorm,
Dropout, an unused Linear and a head (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from trainers.training.continual import ContinualLearner, ReplayBuffer, trainable_parameters  # noqa: E402
from trainers.training.models import ModelSpec, build_model  # noqa: E402
from trainers.training.transfer import LoRALinear, TransferConfig, prepare, weight_layers  # noqa: E402

torch.set_num_threads(1)
D = 8


class Net(nn.Module):
    """body: Linear, BatchNorm, ReLU, Dropout, Linear, ReLU; an unused Linear; a head."""

    def __init__(self, width: int = 16, n_classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.body = nn.Sequential(nn.Linear(D, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.5),
                                      nn.Linear(width, width), nn.ReLU())
            self.unused = nn.Linear(width, width)  # registered after the body, never called
            self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(self.body(x))


X0 = torch.randn(64, D, generator=torch.Generator().manual_seed(0))
Y0 = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(1))


def train_steps(prepared, steps=5, shift=3.0):
    """A few SGD steps on data whose mean is far from the BN's running mean."""
    opt = torch.optim.SGD(prepared.param_groups, lr=0.1)
    for _ in range(steps):
        prepared.train_mode()
        loss = nn.functional.cross_entropy(prepared.model(X0 + shift), Y0)
        opt.zero_grad()
        loss.backward()
        opt.step()


def snapshot(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def changed(before, after):
    return sorted(k for k in before if not torch.equal(before[k], after[k]))


def test_head_only_freezes_the_backbone_and_its_batchnorm_statistics():
    net = Net()
    before = snapshot(net)
    p = prepare(net, TransferConfig(strategy="head"), lr=0.1, example_input=X0[:1])
    assert p.head == "head" and p.trainable == ["head.weight", "head.bias"]
    assert p.n_trainable == 16 * 3 + 3 and p.n_total == sum(v.numel() for v in net.parameters())
    train_steps(p)
    # the frozen body ran in eval mode: Dropout off, BN statistics untouched
    assert not net.body[3].training and not net.body[1].training and net.head.training
    assert changed(before, snapshot(net)) == ["head.bias", "head.weight"]
    assert p.finalize() is net and all(q.requires_grad for q in net.parameters())


def test_batchnorm_adapt_moves_statistics_but_not_affine_and_train_trains_it():
    net = Net()
    before = snapshot(net)
    p = prepare(net, TransferConfig(strategy="head", batchnorm="adapt"), lr=0.1, example_input=X0[:1])
    assert "body.1.weight" not in p.trainable
    train_steps(p)
    assert net.body[1].training and not net.body[3].training  # BN adapts, Dropout of the frozen body stays off
    assert changed(before, snapshot(net)) == ["body.1.num_batches_tracked", "body.1.running_mean",
                                              "body.1.running_var", "head.bias", "head.weight"]
    p.finalize()

    net = Net()
    before = snapshot(net)
    p = prepare(net, TransferConfig(strategy="head", batchnorm="train"), lr=0.1, example_input=X0[:1])
    assert p.trainable == ["body.1.weight", "body.1.bias", "head.weight", "head.bias"]
    train_steps(p)
    assert {"body.1.weight", "body.1.bias", "body.1.running_mean"} <= set(changed(before, snapshot(net)))
    assert not {"body.0.weight", "body.4.weight", "unused.weight"} & set(changed(before, snapshot(net)))


def test_last_n_counts_the_weight_layers_that_forward_runs():
    net = Net()
    # registration order would say [body.0, body.1 (BN), body.4, unused, head]
    assert weight_layers(net, X0[:1]) == ["body.0", "body.4", "head"]
    p = prepare(net, TransferConfig(strategy="last_n", last_n=2), lr=0.1, example_input=X0[:1])
    assert p.trainable == ["body.4.weight", "body.4.bias", "head.weight", "head.bias"]
    p.finalize()
    p = prepare(net, TransferConfig(strategy="last_n", last_n=3), lr=0.1, example_input=X0[:1])
    assert p.trainable == ["body.0.weight", "body.0.bias", "body.4.weight", "body.4.bias", "head.weight", "head.bias"]
    train_steps(p)
    assert not net.body[1].training  # BN is not counted as a layer and stays frozen (batchnorm="freeze")
    assert net.body[3].training  # Dropout between trained layers stays on
    p.finalize()


def test_head_defaults_to_the_last_layer_that_runs():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)

        class NoHead(nn.Module):
            def __init__(self):
                super().__init__()
                self.enc = nn.Linear(D, 8)
                self.fc = nn.Linear(8, 3)
                self.spare = nn.Linear(8, 3)  # registered last, never called

            def forward(self, x):
                return self.fc(torch.relu(self.enc(x)))

        m = NoHead()
    p = prepare(m, TransferConfig(strategy="head"), lr=0.1, example_input=X0[:1])
    assert p.head == "fc" and p.trainable == ["fc.weight", "fc.bias"]
    p.finalize()
    p = prepare(m, TransferConfig(strategy="head", head="enc"), lr=0.1, example_input=X0[:1])
    assert p.trainable == ["enc.weight", "enc.bias"]


def test_layers_patterns_train_exactly_the_matched_modules_and_the_head():
    net = Net()
    p = prepare(net, TransferConfig(strategy="layers", layers=("body.4",)), lr=0.1, example_input=X0[:1])
    assert p.trainable == ["body.4.weight", "body.4.bias", "head.weight", "head.bias"]
    p.finalize()
    p = prepare(net, {"strategy": "layers", "layers": ["body.*"]}, lr=0.1, example_input=X0[:1])
    assert p.trainable == ["body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias",
                           "body.4.weight", "body.4.bias", "head.weight", "head.bias"]
    before = snapshot(net)
    train_steps(p)
    assert net.body[1].training  # a matched BN is part of the trained model: it trains
    assert "unused.weight" not in changed(before, snapshot(net))
    assert "body.1.running_mean" in changed(before, snapshot(net))


def test_full_gives_the_backbone_a_lower_learning_rate():
    assert TransferConfig(strategy="full").backbone_lr_scale == 0.1  # documented default for full
    assert TransferConfig(strategy="last_n").backbone_lr_scale == 1.0
    net = Net()
    p = prepare(net, TransferConfig(strategy="full", backbone_lr_scale=0.2), lr=0.5, example_input=X0[:1])
    assert [(g["name"], g["lr"]) for g in p.param_groups] == [("head", 0.5), ("backbone", pytest.approx(0.1))]
    head, backbone = (set(map(id, g["params"])) for g in p.param_groups)
    assert head == {id(net.head.weight), id(net.head.bias)}
    assert backbone == {id(q) for n, q in net.named_parameters() if not n.startswith("head.")}
    assert p.n_trainable == p.n_total


def wide():
    return build_model(ModelSpec([f"f{i}" for i in range(64)], 10, hidden=(256, 256)), seed=0)


def test_lora_trains_adapters_and_head_then_merges_into_the_original_architecture():
    m = wide()
    keys = list(m.state_dict())
    original = snapshot(m)
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(3))
    p = prepare(m, TransferConfig(strategy="lora", lora_rank=4), lr=0.1, example_input=x[:1],
                generator=torch.Generator().manual_seed(0))
    assert isinstance(m[0], LoRALinear) and isinstance(m[2], LoRALinear) and isinstance(m[4], nn.Linear)
    assert p.trainable == ["0.lora_A", "0.lora_B", "2.lora_A", "2.lora_B", "4.weight", "4.bias"]
    full = prepare(wide(), TransferConfig(strategy="full"), lr=0.1, example_input=x[:1])
    assert p.n_total == full.n_trainable and p.n_trainable < 0.1 * full.n_trainable
    opt = torch.optim.SGD(p.param_groups, lr=0.1)
    for _ in range(10):
        p.train_mode()
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(m[0].base.weight, original["0.weight"])  # base weights stay frozen
    assert m[0].lora_B.abs().sum() > 0  # the adapter learned something
    m.eval()
    with torch.no_grad():
        adapted = m(x)
    out = p.finalize()
    assert out is m and list(out.state_dict()) == keys
    assert [type(l) for l in out] == [type(l) for l in wide()]
    assert all(q.requires_grad for q in out.parameters())
    with torch.no_grad():
        torch.testing.assert_close(out(x), adapted, atol=1e-5, rtol=0)
    assert not torch.equal(out[0].weight, original["0.weight"])
    # a fresh model of the same architecture loads the result
    fresh = wide()
    fresh.load_state_dict(out.state_dict())


def test_lora_targets_and_dropping_adapters():
    net = Net()
    before = snapshot(net)
    p = prepare(net, TransferConfig(strategy="lora", lora_targets=("body.4",)), lr=0.1, example_input=X0[:1])
    assert isinstance(net.body[4], LoRALinear) and isinstance(net.body[0], nn.Linear)
    assert p.trainable == ["body.4.lora_A", "body.4.lora_B", "head.weight", "head.bias"]
    train_steps(p)
    assert not net.body[1].training  # the frozen BN keeps its statistics under lora too
    p.finalize(merge=False)  # a failed run: the adapters are dropped
    after = snapshot(net)
    assert list(after) == list(before)
    assert changed(before, after) == ["head.bias", "head.weight"]
    with pytest.raises(ValueError, match=r"matches no nn.Linear.*'body.0'.*'body.4'.*'unused'"):
        prepare(Net(), TransferConfig(strategy="lora", lora_targets=("body.1",)), lr=0.1, example_input=X0[:1])
    with pytest.raises(ValueError, match="never called"):
        prepare(Net(), TransferConfig(strategy="lora", lora_targets=("unused",)), lr=0.1, example_input=X0[:1])


def test_lora_linear_merge_equals_the_unmerged_output():
    base = nn.Linear(12, 5)
    w = LoRALinear(base, rank=3, alpha=6.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(w(X0[:, :1].repeat(1, 12)), base(X0[:, :1].repeat(1, 12)))  # B = 0: starts as the base layer
    with torch.no_grad():
        w.lora_B.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(7, 12, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        unmerged = w(x)
        assert not torch.allclose(unmerged, base(x))
        merged = w.merge()
        torch.testing.assert_close(merged(x), unmerged, atol=1e-5, rtol=0)
    assert merged is base and w.scaling == 2.0


def test_config_validation_and_round_trip():
    cfg = TransferConfig(strategy="lora", lora_targets=["body.*"], lora_rank=2, batchnorm="adapt")
    assert cfg.lora_targets == ("body.*",)
    d = cfg.to_dict()
    assert d["lora_targets"] == ["body.*"] and TransferConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match=r"unknown transfer strategy 'partial'.*'head', 'layers', 'last_n', 'full', 'lora'"):
        TransferConfig(strategy="partial")
    with pytest.raises(ValueError, match="batchnorm"):
        TransferConfig(batchnorm="ignore")
    with pytest.raises(ValueError, match="strategy 'layers' needs layers"):
        TransferConfig(strategy="layers")
    with pytest.raises(ValueError, match="set strategy='layers'"):
        TransferConfig(layers=("body.0",))
    with pytest.raises(ValueError, match=r"unknown transfer option\(s\) \['rank'\]"):
        TransferConfig.from_dict({"strategy": "lora", "rank": 4})
    with pytest.raises(ValueError, match="backbone_lr_scale"):
        TransferConfig(backbone_lr_scale=0.0)


def test_unknown_patterns_and_heads_name_the_available_modules():
    with pytest.raises(ValueError, match=r"'bdy\.\*' matches no module; modules: 'body', 'body.0', 'body.1'.*'unused', 'head'"):
        prepare(Net(), TransferConfig(strategy="layers", layers=("bdy.*",)), lr=0.1, example_input=X0[:1])
    with pytest.raises(ValueError, match=r"head 'classifier' is not a module.*'head'"):
        prepare(Net(), TransferConfig(strategy="head", head="classifier"), lr=0.1, example_input=X0[:1])
    with pytest.raises(ValueError, match="only modules without parameters"):
        prepare(Net(), TransferConfig(strategy="layers", layers=("body.2",)), lr=0.1, example_input=X0[:1])
    with pytest.raises(ValueError, match="tracing one forward pass failed"):
        prepare(Net(), TransferConfig(strategy="head"), lr=0.1, example_input=torch.zeros(1, D + 1))
    net = Net()
    with pytest.raises(ValueError):
        prepare(net, TransferConfig(strategy="lora", lora_targets=("nothing",)), lr=0.1, example_input=X0[:1])
    assert all(q.requires_grad for q in net.parameters())  # a refused prepare leaves the model as it was


def test_legacy_trainable_parameters_uses_the_traced_layers():
    net = Net()
    got = trainable_parameters(net, "last_n", 2, example_input=X0[:1])
    assert [id(q) for q in got] == [id(q) for q in (net.body[4].weight, net.body[4].bias, net.head.weight, net.head.bias)]
    assert all(q.requires_grad for q in net.parameters())
    with pytest.raises(ValueError, match="example_input"):
        trainable_parameters(net, "head")


# ------------------------------------------------------------ end to end
CENTERS = np.random.default_rng(42).normal(scale=3.0, size=(3, D)).astype(np.float32)


def blobs(n_per_class=80, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    return CENTERS[y] + rng.normal(scale=0.7, size=(len(y), D)).astype(np.float32), y


@pytest.mark.parametrize("transfer,optimizer", [
    ({"strategy": "head"}, "sgd"),
    ({"strategy": "layers", "layers": ["body.4"]}, "sgd"),
    ({"strategy": "last_n", "last_n": 2}, "sgd"),
    ({"strategy": "full"}, "sgd"),
    ({"strategy": "full", "batchnorm": "train"}, "adamw"),
    ({"strategy": "lora", "lora_rank": 2, "batchnorm": "adapt"}, "adam"),
])
def test_continual_learner_learns_with_each_strategy(transfer, optimizer):
    X, y = blobs(seed=0)
    Xte, yte = blobs(40, seed=1)
    net = Net(width=32)
    keys = list(net.state_dict())
    lr = 0.1 if optimizer == "sgd" else 0.01
    learner = ContinualLearner(net, replay=ReplayBuffer(30), transfer=transfer, optimizer=optimizer, lr=lr,
                               epochs=10, device="cpu")
    report = learner.fit(X, y)
    assert float((learner.predict(Xte) == yte).mean()) > 0.9
    assert learner.model is net and list(net.state_dict()) == keys  # lora: merged back
    assert report.strategy == transfer["strategy"] and report.transfer["strategy"] == transfer["strategy"]
    assert report.total_params == sum(q.numel() for q in net.parameters())
    assert 0 < report.trainable_params <= report.total_params or transfer["strategy"] == "lora"
    assert report.optimizer == optimizer and report.lr == lr
    assert all(q.requires_grad for q in net.parameters())


def test_continual_learner_lora_is_seeded_and_works_with_ewc():
    X, y = blobs(seed=0)

    def run(seed, ewc):
        base = ContinualLearner(Net(width=32), replay=None, epochs=5, ewc=ewc, device="cpu", optimizer="sgd",
                                min_steps=0)
        base.fit(X, y)
        anchor = base.model.body[0].weight.detach().clone()
        base.transfer = TransferConfig(strategy="lora")
        base.seed = seed
        base.fit(X[:, ::-1].copy(), y)  # a new domain
        return anchor, base.model.body[0].weight.detach().clone()

    a0, w0 = run(0, 0.0)
    _, w0b = run(0, 0.0)
    _, w1 = run(1, 0.0)
    assert torch.equal(w0, w0b) and not torch.equal(w0, w1)
    a, w_ewc = run(0, 100.0)
    assert torch.equal(a, a0)
    assert float(((w_ewc - a) ** 2).sum()) < 0.8 * float(((w0 - a0) ** 2).sum())


def test_learner_refuses_mixed_or_bad_options():
    with pytest.raises(ValueError, match="either transfer"):
        ContinualLearner(Net(), transfer={"strategy": "head"}, strategy="head")
    with pytest.raises(ValueError, match="momentum is for optimizer 'sgd'"):
        ContinualLearner(Net(), optimizer="adam", momentum=0.9)
    with pytest.raises(ValueError, match="unknown optimizer"):
        ContinualLearner(Net(), optimizer="lion")
    with pytest.raises(ValueError, match="strategy 'layers' needs layers"):
        ContinualLearner(Net(), strategy="layers")
    assert ContinualLearner(Net(), strategy="lora").transfer.strategy == "lora"


def test_legacy_last_n_keyword_trains_the_layers_that_run_not_the_unused_one():
    X, y = blobs(seed=0)
    net = Net(width=32)
    before = snapshot(net)
    ContinualLearner(net, replay=None, strategy="last_n", last_n=2, epochs=2, device="cpu").fit(X, y)
    assert changed(before, snapshot(net)) == ["body.4.bias", "body.4.weight", "head.bias", "head.weight"]
