"""Model architectures as plug-ins: a name or reference in ``ModelSpec.arch`` -> a factory -> an ``nn.Module``.

A factory is ``factory(spec: ModelSpec, *, seed: int | None, pretrained: bool) -> torch.nn.Module``
taking its options from ``spec.arch_options``.  ``spec.arch`` is resolved, in this order, as

1. a built-in name: ``mlp`` (:mod:`trainers.architectures.mlp`), ``wordllama-text``
   (:mod:`trainers.architectures.text`);
2. an entry point of the ``driftloop.architectures`` group (``[project.entry-points."driftloop.architectures"]``
   in your package's pyproject), so an installed package can bring its own architecture;
3. an importable reference ``package.module:function``.

A module built with ``pretrained=True`` may carry ``backbone_origin`` (a dict: ``package``,
``version``, ``file``, ``sha256``, ``licences``...): where its pretrained weights came from,
for the registry's provenance and the licence gate.  Its task head should be a submodule named
``head`` (the transfer strategies train it; :mod:`trainers.training.transfer`).

>>> from trainers.training.models import ModelSpec
>>> type(build(ModelSpec(["x"], 2, hidden=(4,)), seed=0)).__name__
'Sequential'
>>> resolve("no_such_module:factory")
Traceback (most recent call last):
...
ValueError: architecture 'no_such_module:factory' could not be imported (No module named 'no_such_module'); ...
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
from typing import Any, Callable

ENTRY_POINT_GROUP = "driftloop.architectures"
BUILTIN = {
    "mlp": "trainers.architectures.mlp:build",
    "wordllama-text": "trainers.architectures.text:build",
}

Factory = Callable[..., Any]


def resolve(ref: str) -> Factory:
    """The factory named by ``ref`` (built-in name, entry point or ``module:function``).

    Raises ValueError saying which forms are accepted when ``ref`` names nothing importable."""
    target = BUILTIN.get(ref)
    if target is None:
        eps = [ep for ep in md.entry_points(group=ENTRY_POINT_GROUP) if ep.name == ref]
        if eps:
            return eps[0].load()
        target = ref
    if ":" not in target:
        known = sorted(set(BUILTIN) | {ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP)})
        raise ValueError(f"unknown architecture {ref!r}: use one of {known}, or 'package.module:function'")
    mod_name, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"architecture {ref!r} could not be imported ({exc}); install the package that "
                         "provides it in the trainer's environment (and on the Ray workers)") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise ValueError(f"architecture {ref!r}: {mod_name} has no callable {attr!r}")
    return fn


def build(spec: Any, seed: int | None = None, pretrained: bool = False) -> Any:
    """The ``nn.Module`` of ``spec`` (see the module docstring)."""
    return resolve(spec.arch)(spec, seed=seed, pretrained=pretrained)


def origin_of(model: Any) -> dict[str, Any] | None:
    """The pretrained backbone's origin recorded by the factory, or None (trained from scratch)."""
    o = getattr(model, "backbone_origin", None)
    return dict(o) if o else None
