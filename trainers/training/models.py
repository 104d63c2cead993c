"""Model specifications: what a model reads, how inputs are encoded, and which architecture it is.

A :class:`ModelSpec` is the model's preprocessing contract (seed failure mode F2): feature
order, numeric scaling (center, scale; missing -> the center), categorical one-hot encoding
(unknown or missing -> all zeros) and text features, whose tokenizer is stored with the model
(its sha256 is in the spec) and encoded as ``max_tokens`` token-id columns (-1 = padding).
:meth:`ModelSpec.fingerprint` hashes all of it; the registry stores it with the weights and
refuses a version whose spec no longer matches them, or a server's preprocessing that differs
(:class:`PreprocessingMismatch`).  ``arch`` names the architecture plug-in that builds the
network (:mod:`trainers.architectures`; ``mlp`` is the built-in default).

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

class PreprocessingMismatch(ValueError):
    """Inputs would be encoded differently from how the model was trained (feature order, scaling,
    categories, tokenizer): loading or serving it would give silently wrong predictions."""


@dataclass
class ModelSpec:
    """What a model reads, how it is encoded and shaped (JSON-serialisable; tokenizers attached apart)."""

    feature_names: list[str]
    n_classes: int
    hidden: tuple[int, ...] = (256, 256)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    #: architecture plug-in: ``mlp``, ``wordllama-text``, an entry point of ``driftloop.architectures``
    #: or ``package.module:function`` (see :mod:`trainers.architectures`)
    arch: str = "mlp"
    #: numeric feature -> (center, scale): encoded as (value - center) / scale, missing -> 0 (the center).
    #: Fit it on the base model's training data with :meth:`with_scaling`; versions inherit it.
    scaling: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: text feature -> {"tokenizer_sha256": hex, "max_tokens": int, "lowercase": bool}
    text: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: keyword options of the architecture plug-in (JSON values), e.g. {"dim": 256}
    arch_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scaling = {k: (float(v[0]), float(v[1]) or 1.0) for k, v in dict(self.scaling).items()}
        self.feature_names = list(self.feature_names)
        self.hidden = tuple(int(h) for h in self.hidden)
        self.categorical = {k: [str(c) for c in v] for k, v in dict(self.categorical).items()}
        for k, v in dict(self.text).items():
            if not isinstance(v, Mapping) or not v.get("tokenizer_sha256"):
                raise ValueError(f"text feature {k!r} needs {{'tokenizer_sha256': <sha256 of its tokenizer JSON>, "
                                 "'max_tokens': N}; for arch wordllama-text, register-base fills the sha256 in")
        self.text = {k: {"tokenizer_sha256": str(v["tokenizer_sha256"]), "max_tokens": int(v.get("max_tokens", 64)),
                         "lowercase": bool(v.get("lowercase", False))} for k, v in dict(self.text).items()}
        self.arch_options = dict(self.arch_options)
        self._tokenizers: dict[str, Any] = {}
        self._tokenizer_json: dict[str, bytes] = {}
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError(f"arch must name an architecture plug-in, got {self.arch!r}")
        if int(self.n_classes) < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        self.n_classes = int(self.n_classes)
        unknown = (set(self.categorical) | set(self.text)) - set(self.feature_names)
        if unknown:
            raise ValueError(
                f"categorical or text features {sorted(unknown)} are not in feature_names; "
                "add them to feature_names or drop them from categorical/text"
            )
        if set(self.categorical) & set(self.text):
            raise ValueError(f"features {sorted(set(self.categorical) & set(self.text))} are both categorical and text")
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("feature_names contains duplicates")
        if any(v["max_tokens"] < 1 for v in self.text.values()):
            raise ValueError("text max_tokens must be >= 1")

    def _width(self, f: str) -> int:
        if f in self.categorical:
            return len(self.categorical[f])
        return self.text[f]["max_tokens"] if f in self.text else 1

    @property
    def input_dim(self) -> int:
        """Width of the encoded input (1 per numeric feature, 1 per category, ``max_tokens`` per text feature)."""
        return sum(self._width(f) for f in self.feature_names)

    def columns(self) -> list[str]:
        """Names of the encoded columns, e.g. ``amount``, ``country=DE``, ``text#0``."""
        cols: list[str] = []
        for f in self.feature_names:
            if f in self.categorical:
                cols.extend(f"{f}={c}" for c in self.categorical[f])
            elif f in self.text:
                cols.extend(f"{f}#{i}" for i in range(self.text[f]["max_tokens"]))
            else:
                cols.append(f)
        return cols

    def slices(self) -> dict[str, tuple[int, int]]:
        """Feature -> (first column, end column) in the encoded matrix."""
        out, col = {}, 0
        for f in self.feature_names:
            out[f] = (col, col + self._width(f))
            col += self._width(f)
        return out

    # ------------------------------------------------------------------ text features
    def attach_tokenizer(self, feature: str, tokenizer_json: str | bytes) -> "ModelSpec":
        """Attach the tokenizer of text ``feature`` (its ``tokenizers`` JSON); refuses one whose sha256
        differs from the spec's (:class:`PreprocessingMismatch`).  Returns self."""
        import hashlib

        from tokenizers import Tokenizer

        raw = tokenizer_json.encode("utf-8") if isinstance(tokenizer_json, str) else bytes(tokenizer_json)
        if feature not in self.text:
            raise ValueError(f"{feature!r} is not a text feature of this spec (text features: {sorted(self.text)})")
        sha = hashlib.sha256(raw).hexdigest()
        want = self.text[feature]["tokenizer_sha256"]
        if sha != want:
            raise PreprocessingMismatch(
                f"text feature {feature!r}: this tokenizer's sha256 is {sha}, the spec names {want}; use the "
                "tokenizer the spec names (for a registered version: the one stored with it)"
            )
        self._tokenizers[feature] = Tokenizer.from_str(raw.decode("utf-8"))
        self._tokenizer_json[feature] = raw
        return self

    def missing_tokenizers(self) -> list[str]:
        """Text features without an attached tokenizer."""
        return sorted(set(self.text) - set(self._tokenizer_json))

    def tokenizer_files(self) -> dict[str, bytes]:
        """Text feature -> the attached tokenizer's JSON bytes (what the registry stores with the weights)."""
        missing = self.missing_tokenizers()
        if missing:
            raise ValueError(f"text features {missing} have no tokenizer attached; call ModelSpec.attach_tokenizer")
        return dict(self._tokenizer_json)

    def tokenizer(self, feature: str) -> Any:
        try:
            return self._tokenizers[feature]
        except KeyError:
            raise ValueError(
                f"text feature {feature!r} has no tokenizer attached: load the spec through the registry "
                "(ModelRegistry.load) or call ModelSpec.attach_tokenizer"
            ) from None

    def _encode_text(self, feature: str, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        cfg = self.text[feature]
        tok, L = self.tokenizer(feature), cfg["max_tokens"]
        texts = ["" if r.get(feature) is None else str(r.get(feature)) for r in rows]
        if cfg["lowercase"]:
            texts = [t.lower() for t in texts]
        out = np.full((len(rows), L), -1.0, dtype=np.float32)
        for i, enc in enumerate(tok.encode_batch(texts, add_special_tokens=False)):
            ids = enc.ids[:L]
            out[i, : len(ids)] = ids
        return out

    # ------------------------------------------------------------------ encoding
    def encode(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode feature dicts into a float32 matrix [n, input_dim].

        Numeric features are scaled when the spec has scaling (missing, None or NaN -> 0);
        categorical features are one-hot over the listed categories (unknown or missing -> all
        zeros); text features become ``max_tokens`` token ids (-1 = padding; missing -> all -1).
        """
        out = np.zeros((len(rows), self.input_dim), dtype=np.float32)
        col = 0
        for f in self.feature_names:
            if f in self.text:
                out[:, col : col + self.text[f]["max_tokens"]] = self._encode_text(f, rows)
                col += self.text[f]["max_tokens"]
            elif f in self.categorical:
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
            if f in self.categorical or f in self.text:
                continue
            vals = np.array([float(r[f]) for r in rows if _present(r.get(f))], dtype=np.float64)
            if len(vals) == 0:
                continue
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            spread = (q3 - q1) / 1.349 or float(np.std(vals)) or 1.0
            scaling[f] = (float(med), float(spread))
        out = ModelSpec.from_dict(dict(self.to_dict(), scaling=scaling))
        out._tokenizers, out._tokenizer_json = dict(self._tokenizers), dict(self._tokenizer_json)
        return out

    def fingerprint(self) -> str:
        """sha256 of the preprocessing contract: feature order, encodings, scaling, tokenizers, architecture."""
        import hashlib
        import json

        d = self.to_dict()
        d["columns"] = self.columns()
        return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def check_same_preprocessing(self, other: "ModelSpec") -> None:
        """Raise :class:`PreprocessingMismatch` naming what differs between this spec's encoding and
        ``other``'s (the model's)."""
        if self.fingerprint() == other.fingerprint():
            return
        a, b = self.to_dict(), other.to_dict()
        if a["feature_names"] != b["feature_names"]:
            what = f"feature order {a['feature_names']} (this spec) vs {b['feature_names']} (the model's)"
        else:
            diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            what = "; ".join(f"{k}: {a.get(k)!r} (this spec) vs {b.get(k)!r} (the model's)" for k in diff)[:600] or \
                "encoded columns"
        raise PreprocessingMismatch(f"preprocessing differs from the model's: {what}; encode inputs with the "
                                    "spec stored with the model version")

    def to_dict(self) -> dict[str, Any]:
        d = {
            "feature_names": list(self.feature_names),
            "n_classes": self.n_classes,
            "hidden": list(self.hidden),
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "arch": self.arch,
            "scaling": {k: list(v) for k, v in self.scaling.items()},
        }
        if self.text:
            d["text"] = {k: dict(v) for k, v in self.text.items()}
        if self.arch_options:
            d["arch_options"] = dict(self.arch_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        """The spec of a JSON object; refuses unknown keys (a typo such as ``hiden`` is not silently ignored)."""
        known = {"feature_names", "n_classes", "hidden", "categorical", "arch", "scaling", "text", "arch_options"}
        unknown = sorted(set(d) - known)
        missing = sorted({"feature_names", "n_classes"} - set(d))
        if unknown or missing:
            raise ValueError(f"model spec: {'unknown keys ' + str(unknown) if unknown else ''}"
                             f"{'; ' if unknown and missing else ''}{'missing ' + str(missing) if missing else ''}; "
                             f"known keys: {sorted(known)} (and 'classes' in a spec file)")
        return cls(
            feature_names=list(d["feature_names"]),
            n_classes=int(d["n_classes"]),
            hidden=tuple(d.get("hidden", (256, 256))),
            categorical=dict(d.get("categorical", {})),
            arch=d.get("arch", "mlp"),
            scaling=dict(d.get("scaling", {})),
            text=dict(d.get("text", {})),
            arch_options=dict(d.get("arch_options", {})),
        )


def _present(v: Any) -> bool:
    if v is None or isinstance(v, str):
        try:
            return v is not None and not math.isnan(float(v))
        except ValueError:
            return False
    return not math.isnan(float(v))


def build_model(spec: ModelSpec, seed: int | None = None, *, pretrained: bool = False):
    """Build the network of ``spec`` with its architecture plug-in (:func:`trainers.architectures.build`).

    With ``seed`` the initial weights are reproducible without touching the global RNG; with
    ``pretrained`` a backbone plug-in loads its pretrained weights (from an installed package).
    """
    from trainers.architectures import build

    return build(spec, seed=seed, pretrained=pretrained)
