"""Model specifications and the small MLP that driftloop fine-tunes.

A :class:`ModelSpec` says which features a model reads, how categorical values are
one-hot encoded and what shape the network has; :func:`build_model` turns it into an
``nn.Sequential`` so that "the last N layers" means the last N ``nn.Linear`` modules.

>>> spec = ModelSpec(["amount", "country"], 2, hidden=(8,), categorical={"country": ["DE", "FR"]})
>>> spec.input_dim
3
>>> spec.encode([{"amount": 1.5, "country": "FR"}, {"amount": None, "country": "XX"}]).tolist()
[[1.5, 0.0, 1.0], [0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

ARCHES = ("mlp",)


@dataclass
class ModelSpec:
    """What a model reads and how it is shaped (JSON-serialisable)."""

    feature_names: list[str]
    n_classes: int
    hidden: tuple[int, ...] = (256, 256)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    arch: str = "mlp"
    #: numeric feature -> (center, scale): encoded as (value - center) / scale, missing -> 0 (the center).
    #: Fit it on the base model's training data with :meth:`with_scaling`; versions inherit it.
    scaling: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scaling = {k: (float(v[0]), float(v[1]) or 1.0) for k, v in dict(self.scaling).items()}
        self.feature_names = list(self.feature_names)
        self.hidden = tuple(int(h) for h in self.hidden)
        self.categorical = {k: [str(c) for c in v] for k, v in dict(self.categorical).items()}
        if self.arch not in ARCHES:
            raise ValueError(f"unknown arch {self.arch!r}; use one of {ARCHES}")
        if int(self.n_classes) < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        self.n_classes = int(self.n_classes)
        unknown = set(self.categorical) - set(self.feature_names)
        if unknown:
            raise ValueError(
                f"categorical features {sorted(unknown)} are not in feature_names; "
                "add them to feature_names or drop them from categorical"
            )
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("feature_names contains duplicates")

    @property
    def input_dim(self) -> int:
        """Width of the encoded input (one column per numeric feature, one per category)."""
        return sum(len(self.categorical[f]) if f in self.categorical else 1 for f in self.feature_names)

    def columns(self) -> list[str]:
        """Names of the encoded columns, e.g. ``amount``, ``country=DE``."""
        cols: list[str] = []
        for f in self.feature_names:
            if f in self.categorical:
                cols.extend(f"{f}={c}" for c in self.categorical[f])
            else:
                cols.append(f)
        return cols

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode feature dicts into a float32 matrix.

        Numeric features are taken as they are (missing, None or NaN -> 0);
        categorical features are one-hot over the listed categories (unknown or
        missing -> all zeros).
        """
        out = np.zeros((len(rows), self.input_dim), dtype=np.float32)
        col = 0
        for f in self.feature_names:
            if f in self.categorical:
                cats = self.categorical[f]
                index = {c: i for i, c in enumerate(cats)}
                for r, row in enumerate(rows):
                    v = row.get(f)
                    if v is not None:
                        i = index.get(str(v))
                        if i is not None:
                            out[r, col + i] = 1.0
                col += len(cats)
            else:
                values = np.full(len(rows), np.nan)
                for r, row in enumerate(rows):
                    v = row.get(f)
                    if v is None:
                        continue
                    if isinstance(v, str):
                        try:
                            v = float(v)
                        except ValueError as exc:
                            raise ValueError(
                                f"feature {f!r} is numeric but row {r} has {v!r}; "
                                "declare it in ModelSpec.categorical if it is categorical"
                            ) from exc
                    values[r] = float(v)
                present = ~np.isnan(values)
                if f in self.scaling:
                    center, scale = self.scaling[f]
                    values = (values - center) / scale
                out[:, col] = np.where(present, values, 0.0)
                col += 1
        return out

    def with_scaling(self, rows: Sequence[Mapping[str, Any]]) -> "ModelSpec":
        """A copy whose numeric features are standardised with the median and IQR-based spread of ``rows``."""
        scaling = {}
        for f in self.feature_names:
            if f in self.categorical:
                continue
            vals = np.array([float(r[f]) for r in rows if _present(r.get(f))], dtype=np.float64)
            if len(vals) == 0:
                continue
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            spread = (q3 - q1) / 1.349 or float(np.std(vals)) or 1.0
            scaling[f] = (float(med), float(spread))
        return ModelSpec(self.feature_names, self.n_classes, self.hidden, self.categorical, self.arch, scaling)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "n_classes": self.n_classes,
            "hidden": list(self.hidden),
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "arch": self.arch,
            "scaling": {k: list(v) for k, v in self.scaling.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        return cls(
            feature_names=list(d["feature_names"]),
            n_classes=int(d["n_classes"]),
            hidden=tuple(d.get("hidden", (256, 256))),
            categorical=dict(d.get("categorical", {})),
            arch=d.get("arch", "mlp"),
            scaling=dict(d.get("scaling", {})),
        )


def _present(v: Any) -> bool:
    if v is None or isinstance(v, str):
        try:
            return v is not None and not math.isnan(float(v))
        except ValueError:
            return False
    return not math.isnan(float(v))


def build_model(spec: ModelSpec, seed: int | None = None):
    """Build the ``nn.Sequential`` MLP of ``spec`` (Linear/ReLU blocks, linear head).

    With ``seed`` the initial weights are reproducible without touching the global RNG.
    """
    import torch
    from torch import nn

    dims = [spec.input_dim, *spec.hidden]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(dims[-1], spec.n_classes))
    if seed is None:
        return nn.Sequential(*layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in layers:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
    return nn.Sequential(*layers)
