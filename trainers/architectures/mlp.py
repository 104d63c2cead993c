"""The built-in MLP: Linear/ReLU blocks of ``spec.hidden`` and a linear head (``nn.Sequential``)."""

from __future__ import annotations

from typing import Any


def build(spec: Any, *, seed: int | None = None, pretrained: bool = False) -> Any:
    """``nn.Sequential`` [input_dim -> hidden... -> n_classes]; no pretrained weights (``pretrained`` is ignored)."""
    import torch
    from torch import nn

    if spec.text:
        raise ValueError(f"the mlp architecture reads numeric and categorical features only; text features "
                         f"{sorted(spec.text)} need a text architecture such as 'wordllama-text'")
    dims = [spec.input_dim, *spec.hidden]
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], spec.n_classes))
        return nn.Sequential(*layers)
