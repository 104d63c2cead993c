"""Transfer strategies: which parameters of a model train, at which learning rate, and
what happens to its BatchNorm layers and low-rank adapters.

:func:`prepare` applies a :class:`TransferConfig` to a model for one training run and
returns a :class:`PreparedModel` with the optimizer's parameter groups. Call its
:meth:`~PreparedModel.train_mode` instead of ``model.train()`` and its
:meth:`~PreparedModel.finalize` when training is over.

Strategies:

* ``head``: feature extraction. Only the head trains; the backbone is frozen.
* ``layers``: the modules whose names match ``layers`` (fnmatch patterns over
  ``model.named_modules()``) train, with the head.
* ``last_n``: the last ``last_n`` weight layers that one traced forward pass runs
  train (the head among them). Weight layers are modules that own parameters and
  are not normalisation layers (BatchNorm, LayerNorm, GroupNorm, RMSNorm, ...) nor
  PReLU: Linear, Conv*, Embedding, EmbeddingBag, RNN/LSTM/GRU, MultiheadAttention,
  custom layers with their own weights. Modules that forward never calls do not count.
* ``full``: every parameter trains; the backbone at ``lr * backbone_lr_scale``
  (default 0.1 for ``full``: discriminative fine-tuning of a trained backbone).
* ``lora``: low-rank adapters (:class:`LoRALinear`) on the chosen ``nn.Linear``
  layers train, with the head; :meth:`PreparedModel.finalize` merges them into the
  weights, so the result has the original architecture and ``state_dict`` keys.

The head is the module named by ``head``, else a submodule named ``head``, else the
last weight layer that forward runs. It always trains at ``lr``.

BatchNorm (``batchnorm``) in the frozen part: ``freeze`` keeps it in eval mode (its
running statistics do not move) with frozen affine parameters; ``adapt`` updates its
running statistics on the new data, affine parameters frozen; ``train`` trains it like
a trained layer (affine parameters at the backbone rate). BatchNorm inside the trained
part always trains. Frozen submodules (those with parameters, none of them trained)
run in eval mode, so their Dropout is off, as in a frozen feature extractor.

>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
>>> p = prepare(m, TransferConfig(strategy="last_n", last_n=2), lr=0.1, example_input=torch.zeros(1, 4))
>>> p.trainable, [g["lr"] for g in p.param_groups]
(['2.weight', '2.bias', '4.weight', '4.bias'], [0.1, 0.1])
>>> p.finalize() is m
True
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "BATCHNORM_POLICIES",
    "LoRALinear",
    "PreparedModel",
    "STRATEGIES",
    "TransferConfig",
    "prepare",
    "weight_layers",
]

STRATEGIES = ("head", "layers", "last_n", "full", "lora")
BATCHNORM_POLICIES = ("freeze", "adapt", "train")
#: default ``backbone_lr_scale`` per strategy (``full``: the backbone learns 10x slower than the head)
DEFAULT_BACKBONE_LR_SCALE = {"full": 0.1}

_NORM_TYPES: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
if hasattr(nn, "RMSNorm"):
    _NORM_TYPES += (nn.RMSNorm,)
_NOT_LAYERS = _NORM_TYPES + (nn.PReLU,)
_BN = nn.modules.batchnorm._BatchNorm
_MAX_LISTED = 60


@dataclass(frozen=True)
class TransferConfig:
    """How to fine-tune a model (JSON-serialisable; see the module docstring).

    ``layers`` and ``lora_targets`` are fnmatch patterns over module names (``*``
    matches dots too, so ``"body.*"`` covers everything under ``body``).
    ``backbone_lr_scale``: learning rate of every trained parameter outside the head,
    as a fraction of ``lr``; ``None`` = the strategy's default (0.1 for ``full``,
    1.0 otherwise), resolved at construction. ``lora_targets`` empty = every
    ``nn.Linear`` that forward runs, except the head. Raises ``ValueError`` on a bad
    value, saying which values are allowed.
    """

    strategy: str = "full"
    layers: tuple[str, ...] = ()
    last_n: int = 2
    backbone_lr_scale: float | None = None
    batchnorm: str = "freeze"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()
    head: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown transfer strategy {self.strategy!r}; use one of {STRATEGIES}")
        if self.batchnorm not in BATCHNORM_POLICIES:
            raise ValueError(f"unknown batchnorm policy {self.batchnorm!r}; use one of {BATCHNORM_POLICIES}")
        for name in ("layers", "lora_targets"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            value = tuple(value)
            if not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{name} must be non-empty strings (fnmatch patterns of module names), got {value!r}")
            object.__setattr__(self, name, value)
        if self.strategy == "layers" and not self.layers:
            raise ValueError("strategy 'layers' needs layers=(pattern, ...) naming the modules to train, e.g. ('body.2', 'body.4*')")
        if self.layers and self.strategy != "layers":
            raise ValueError(f"layers is set but strategy is {self.strategy!r}; set strategy='layers' or drop layers")
        if self.lora_targets and self.strategy != "lora":
            raise ValueError(f"lora_targets is set but strategy is {self.strategy!r}; set strategy='lora' or drop lora_targets")
        if int(self.last_n) != self.last_n or self.last_n < 1:
            raise ValueError(f"last_n must be an integer >= 1, got {self.last_n!r}")
        object.__setattr__(self, "last_n", int(self.last_n))
        scale = self.backbone_lr_scale
        if scale is None:
            scale = DEFAULT_BACKBONE_LR_SCALE.get(self.strategy, 1.0)
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"backbone_lr_scale must be a number > 0, got {scale!r}; "
                             "to freeze the backbone use strategy='head'")
        object.__setattr__(self, "backbone_lr_scale", float(scale))
        if int(self.lora_rank) != self.lora_rank or self.lora_rank < 1:
            raise ValueError(f"lora_rank must be an integer >= 1, got {self.lora_rank!r}")
        object.__setattr__(self, "lora_rank", int(self.lora_rank))
        if not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha!r}")
        object.__setattr__(self, "lora_alpha", float(self.lora_alpha))
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        object.__setattr__(self, "lora_dropout", float(self.lora_dropout))
        if self.head is not None and (not isinstance(self.head, str) or not self.head):
            raise ValueError(f"head must be a module name (see model.named_modules()) or None, got {self.head!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists); :meth:`from_dict` reads it back."""
        d = asdict(self)
        d["layers"], d["lora_targets"] = list(self.layers), list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "TransferConfig":
        """Build from a mapping; unknown keys raise ``ValueError`` naming the known ones."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown transfer option(s) {unknown}; known: {sorted(known)}")
        for k in ("layers", "lora_targets"):
            if k in d and d[k] is not None and not isinstance(d[k], str):
                d[k] = tuple(d[k])
        return cls(**d)


class LoRALinear(nn.Module):
    """``base(x) + (alpha / rank) * dropout(x) @ A.T @ B.T`` with ``base`` frozen.

    ``A``: ``(rank, in_features)``, Kaiming-uniform (as ``nn.Linear``); ``B``:
    ``(out_features, rank)``, zeros, so the wrapped layer starts as ``base``. Input
    ``(..., in_features)``, output ``(..., out_features)``. :meth:`merge` folds the
    adapter into ``base.weight`` and returns ``base`` (same shapes, same keys).
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        self.base = base
        self.rank = int(rank)
        self.alpha = float(alpha)
        self.scaling = self.alpha / self.rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(self.rank, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, self.rank, device=w.device, dtype=w.dtype))
        if generator is not None and generator.device != torch.device("cpu"):
            generator = None
        a = torch.empty(self.rank, base.in_features, dtype=torch.float32)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        with torch.no_grad():
            self.lora_A.copy_(a)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B @ A``, shape ``(out_features, in_features)`` (differentiable)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """Add the adapter to ``base.weight`` (in place) and return ``base``."""
        self.base.weight.add_(self.delta_weight().to(self.base.weight.dtype))
        return self.base


def _trace(model: nn.Module, example_input: Any) -> list[nn.Module]:
    """Modules that one forward pass (eval mode, no grad) calls, in first-call order."""
    order: list[nn.Module] = []
    seen: set[int] = set()

    def hook(mod, _args):
        if id(mod) not in seen:
            seen.add(id(mod))
            order.append(mod)

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_pre_hook(hook) for m in model.modules()]
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        model.eval()
        with torch.no_grad():
            model(*args)
    except Exception as exc:
        shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args]
        raise ValueError(f"tracing one forward pass failed with example_input {shapes}: {exc}; "
                         "pass an input the model accepts (e.g. the first row of the training data)") from exc
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.training = t
    return order


def _owns_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def weight_layers(model: nn.Module, example_input: Any) -> list[str]:
    """Names of the weight layers that ``model(example_input)`` runs, in call order.

    A weight layer owns parameters directly and is not a normalisation layer or PReLU
    (see the module docstring). Raises ``ValueError`` if the forward pass fails.
    """
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(m)] for m in _trace(model, example_input)
            if id(m) in names and _owns_params(m) and not isinstance(m, _NOT_LAYERS)]


def _listing(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    return shown + (f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def _match(pattern: str, names: list[str]) -> list[str]:
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


@dataclass
class PreparedModel:
    """A model set up for one training run by :func:`prepare`.

    ``param_groups``: optimizer parameter groups (``params``, ``lr``, ``name`` =
    ``head`` | ``backbone``), pass them to any ``torch.optim`` optimizer.
    ``trainable``: names of the trained parameters (adapter names for LoRA);
    ``n_trainable`` / ``n_total``: element counts (``n_total`` is the original
    model's, adapters excluded); ``head``: the head module's name;
    ``trained_modules``: modules trained whole (``""`` = the whole model), then the
    LoRA-wrapped layers.
    """

    model: nn.Module
    config: TransferConfig
    param_groups: list[dict[str, Any]]
    trainable: list[str]
    n_trainable: int
    n_total: int
    head: str
    trained_modules: list[str] = field(default_factory=list)
    _flags: dict[int, tuple[nn.Parameter, bool]] = field(default_factory=dict, repr=False)
    _frozen_roots: list[nn.Module] = field(default_factory=list, repr=False)
    _bn: list[tuple[nn.Module, bool]] = field(default_factory=list, repr=False)
    _lora: list[tuple[str, LoRALinear, list[tuple[nn.Module, str]]]] = field(default_factory=list, repr=False)
    _finalized: bool = field(default=False, repr=False)

    def train_mode(self) -> nn.Module:
        """``model.train()`` with the transfer policy: frozen submodules in eval mode
        (no Dropout, no BatchNorm statistics), then each BatchNorm per ``batchnorm``.
        Call it at the start of every epoch and after every evaluation."""
        self.model.train()
        for m in self._frozen_roots:
            m.eval()
        for bn, trained in self._bn:
            bn.train(trained or self.config.batchnorm != "freeze")
        return self.model

    def effective_parameters(self) -> dict[str, torch.Tensor]:
        """Trained weights under their original names (differentiable): the parameter
        itself, or for a LoRA-wrapped layer ``base.weight + delta``. For penalties
        such as EWC that compare weights with an anchor."""
        out: dict[str, torch.Tensor] = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad and not any(part in ("lora_A", "lora_B") for part in name.split(".")):
                out[name] = p
        for mod_name, w, _ in self._lora:
            out[f"{mod_name}.weight"] = w.base.weight + w.delta_weight()
        return out

    def finalize(self, merge: bool = True) -> nn.Module:
        """End the run: merge LoRA adapters into the base weights (``merge=False``
        drops them instead, e.g. after a failed run), put the original layers back
        and restore every parameter's previous ``requires_grad``. Returns the model
        (the same object), with its original architecture and ``state_dict`` keys.
        Idempotent."""
        if self._finalized:
            return self.model
        for _, w, parents in self._lora:
            base = w.merge() if merge else w.base
            for parent, attr in parents:
                setattr(parent, attr, base)
        for p, flag in self._flags.values():
            p.requires_grad_(flag)
        self._finalized = True
        return self.model


def prepare(model: nn.Module, cfg: TransferConfig | Mapping[str, Any] | None, lr: float, example_input: Any,
            generator: torch.Generator | None = None) -> PreparedModel:
    """Apply ``cfg`` to ``model`` (in place) for one training run.

    ``example_input``: a batch the model accepts (a tensor or a tuple of tensors; one
    row is enough), run once in eval mode without gradients to find the layers that
    forward uses. ``lr``: the head's learning rate. ``generator`` seeds the LoRA
    initialisation. Sets ``requires_grad``, injects :class:`LoRALinear` for ``lora``
    and returns a :class:`PreparedModel`. Raises ``ValueError`` when a pattern or the
    head matches no module (the message lists the model's module names).
    """
    cfg = cfg if isinstance(cfg, TransferConfig) else TransferConfig.from_dict(cfg)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    named = dict(model.named_modules())
    names = [n for n in named if n]
    all_params = list(model.parameters())
    if not all_params:
        raise ValueError("the model has no parameters to train")
    ran = _trace(model, example_input)
    ran_ids = {id(m) for m in ran}
    name_of = {id(m): n for n, m in named.items()}
    layers = [name_of[id(m)] for m in ran if id(m) in name_of and _owns_params(m) and not isinstance(m, _NOT_LAYERS)]
    if not layers:
        raise ValueError("the forward pass ran no weight layer (Linear, Conv, Embedding, ...); nothing to fine-tune")

    # the head
    if cfg.head is not None:
        if cfg.head not in named or not cfg.head:
            raise ValueError(f"head {cfg.head!r} is not a module of the model; modules: {_listing(names)}")
        head = cfg.head
    elif "head" in named:
        head = "head"
    else:
        head = layers[-1]
    if not any(True for _ in named[head].parameters()):
        raise ValueError(f"head {head!r} has no parameters; name the classifier layer with head=...")

    # modules whose whole subtree trains
    if cfg.strategy == "full":
        chosen = [""]
    elif cfg.strategy in ("head", "lora"):
        chosen = [head]
    elif cfg.strategy == "last_n":
        chosen = layers[-cfg.last_n:] + [head]
    else:  # layers
        chosen = [head]
        for pat in cfg.layers:
            hits = _match(pat, names)
            if not hits:
                raise ValueError(f"layers pattern {pat!r} matches no module; modules: {_listing(names)}")
            if not any(True for h in hits for _ in named[h].parameters()):
                raise ValueError(f"layers pattern {pat!r} matches only modules without parameters ({_listing(hits)}); "
                                 f"modules: {_listing(names)}")
            chosen += hits
    chosen = list(dict.fromkeys(chosen))
    in_trained: set[int] = set()
    for n in chosen:
        in_trained.update(id(m) for m in named[n].modules())
    head_params = {id(p) for p in named[head].parameters()}
    train_ids = {id(p) for n in chosen for p in named[n].parameters()}
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    if cfg.batchnorm == "train":
        train_ids.update(id(p) for m in bns for p in m.parameters())

    flags = {id(p): (p, p.requires_grad) for p in all_params}
    n_total = sum(p.numel() for p in all_params)
    for p in all_params:
        p.requires_grad_(id(p) in train_ids)

    lora: list[tuple[str, LoRALinear, list[tuple[nn.Module, str]]]] = []
    if cfg.strategy == "lora":
        try:
            lora = _inject_lora(model, cfg, named, names, head, ran_ids, generator)
        except BaseException:
            for p, flag in flags.values():
                p.requires_grad_(flag)
            raise

    # parameter groups and names (after injection: adapters are new parameters)
    head_group: list[nn.Parameter] = []
    backbone_group: list[nn.Parameter] = []
    trainable: list[str] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        trainable.append(name)
        (head_group if id(p) in head_params else backbone_group).append(p)
    scale = cfg.backbone_lr_scale
    assert scale is not None  # resolved by TransferConfig.__post_init__
    groups: list[dict[str, Any]] = []
    if head_group:
        groups.append({"params": head_group, "lr": float(lr), "name": "head"})
    if backbone_group:
        groups.append({"params": backbone_group, "lr": float(lr) * scale, "name": "backbone"})

    frozen_roots: list[nn.Module] = []

    def walk(m: nn.Module) -> None:
        ps = list(m.parameters())
        if ps and not any(p.requires_grad for p in ps):
            frozen_roots.append(m)
            return
        for c in m.children():
            walk(c)

    walk(model)
    prepared = PreparedModel(
        model=model,
        config=cfg,
        param_groups=groups,
        trainable=trainable,
        n_trainable=sum(p.numel() for g in groups for p in g["params"]),
        n_total=n_total,
        head=head,
        trained_modules=chosen + [n for n, _, _ in lora],
        _flags=flags,
        _frozen_roots=frozen_roots,
        _bn=[(m, id(m) in in_trained or cfg.batchnorm == "train") for m in bns],
        _lora=lora,
    )
    return prepared


def _inject_lora(model: nn.Module, cfg: TransferConfig, named: dict[str, nn.Module], names: list[str], head: str,
                 ran_ids: set[int], generator: torch.Generator | None
                 ) -> list[tuple[str, LoRALinear, list[tuple[nn.Module, str]]]]:
    head_ids = {id(m) for m in named[head].modules()}
    linears = [n for n in names if isinstance(named[n], nn.Linear)]
    if cfg.lora_targets:
        targets: list[str] = []
        for pat in cfg.lora_targets:
            hits = _match(pat, names)
            lin = [n for n in hits if isinstance(named[n], nn.Linear)]
            if not lin:
                raise ValueError(f"lora_targets pattern {pat!r} matches no nn.Linear; Linear modules: {_listing(linears)}")
            for n in lin:
                if id(named[n]) not in ran_ids:
                    raise ValueError(f"lora_targets: {n!r} is never called by forward (unused, or its weight is used "
                                     "directly by its parent, as in MultiheadAttention.out_proj); LoRA cannot wrap it")
            targets += lin
    else:
        targets = [n for n in linears if id(named[n]) in ran_ids]
    targets = [n for n in dict.fromkeys(targets) if id(named[n]) not in head_ids]  # the head trains fully
    if not targets:
        raise ValueError(f"no nn.Linear outside the head {head!r} to adapt; Linear modules: {_listing(linears)}")
    parents: dict[int, list[tuple[nn.Module, str]]] = {}
    for _, parent in model.named_modules(remove_duplicate=False):
        for attr, child in parent._modules.items():
            if child is not None:
                parents.setdefault(id(child), []).append((parent, attr))
    out = []
    for n in targets:
        base = named[n]
        assert isinstance(base, nn.Linear)
        wrapper = LoRALinear(base, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, generator=generator)
        refs = list(dict.fromkeys(parents[id(base)]))
        for parent, attr in refs:
            setattr(parent, attr, wrapper)
        out.append((n, wrapper, refs))
    return out


def layers_of(model: nn.Module) -> list[nn.Module]:
    """Modules that own parameters directly, in registration order (for an MLP: its Linears)."""
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def trainable_parameters(model: nn.Module, strategy: str, last_n: int = 2,
                         example_input: Any = None) -> list[nn.Parameter]:
    """Parameters that ``strategy`` (``full``, ``head`` or ``last_n``) trains, as
    :func:`trainers.training.transfer.prepare` chooses them; ``example_input`` (one
    batch the model accepts) is needed for ``head`` and ``last_n``, which trace forward.
    Leaves ``requires_grad`` as it was."""
    if strategy not in ("full", "head", "last_n"):
        raise ValueError(f"unknown strategy {strategy!r}; use full, head or last_n (or transfer.prepare for the others)")
    if strategy == "full":
        return list(model.parameters())
    if example_input is None:
        raise ValueError(f"strategy {strategy!r} traces one forward pass: pass example_input (a batch the model accepts)")
    prepared = prepare(model, TransferConfig(strategy=strategy, last_n=last_n), 1.0, example_input)
    try:
        chosen = {id(p) for g in prepared.param_groups for p in g["params"]}
        return [p for p in model.parameters() if id(p) in chosen]
    finally:
        prepared.finalize()
