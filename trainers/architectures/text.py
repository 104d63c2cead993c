"""``wordllama-text``: a text classifier on WordLlama's pretrained token embeddings.

Input: the spec's encoded matrix (:meth:`ModelSpec.encode`): each text feature is ``max_tokens``
token-id columns (-1 = padding); other columns (numeric, one-hot) pass through.  Network::

    backbone  nn.Embedding(32000, dim)   pretrained (WordLlama l2_supercat), masked mean over tokens
    encoder   nn.Linear(dim * n_text + n_other, hidden) + ReLU      (``spec.hidden[0]``; none if hidden is empty)
    head      nn.Linear(hidden, n_classes)

WordLlama's own inference is the masked mean of the token vectors (no special tokens), so the
frozen backbone plus a linear head is exactly "WordLlama embeddings + logistic regression".
The weights come from the installed ``wordllama`` wheel (:mod:`trainers.datasets.wordllama_backbone`);
nothing is downloaded.  Options (``spec.arch_options``): ``dim`` (64, 128 or 256, default 256).

Licences: the package and the l2_supercat weights are MIT, but the embeddings are distilled
from Llama-2-family token embeddings and the tokenizer is Llama 2's, so the origin lists
``LicenseRef-Llama-2-Community`` too and the licence gate asks for an explicit acceptance.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

VOCAB = 32000
LICENCES = ["MIT", "LicenseRef-Llama-2-Community"]


class TextClassifier(nn.Module):
    """Masked-mean token embeddings (+ other columns) -> encoder -> head.  Input float [n, input_dim]."""

    def __init__(self, text_slices: list[tuple[int, int]], other_cols: list[int], vocab: int, dim: int,
                 hidden: int | None, n_classes: int) -> None:
        super().__init__()
        self.text_slices = [tuple(s) for s in text_slices]
        self.register_buffer("other_cols", torch.as_tensor(other_cols, dtype=torch.long), persistent=False)
        self.backbone = nn.Embedding(vocab, dim)
        width = dim * len(text_slices) + len(other_cols)
        self.encoder = nn.Sequential(nn.Linear(width, hidden), nn.ReLU()) if hidden else nn.Identity()
        self.head = nn.Linear(hidden or width, n_classes)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """[n, input_dim] -> [n, dim * n_text + n_other]: the backbone's sentence vectors and the other columns."""
        parts = []
        for a, b in self.text_slices:
            ids = x[:, a:b].long()
            mask = (ids >= 0).unsqueeze(-1).to(self.backbone.weight.dtype)
            vec = self.backbone(ids.clamp(min=0))
            parts.append((vec * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        if self.other_cols.numel():
            parts.append(x.index_select(1, self.other_cols))
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.pool(x)))


def tokenizer_json() -> tuple[str, dict[str, Any]]:
    """WordLlama's tokenizer (``tokenizers`` JSON text) and the backbone origin, from the installed wheel."""
    from trainers.datasets.wordllama_backbone import TOKENIZER_FILE, locate

    path, _ = locate("wordllama", TOKENIZER_FILE)
    _, _, origin = _load(256)
    return path.read_text(encoding="utf-8"), origin


def tokenizer_sha256() -> str:
    """sha256 of WordLlama's tokenizer JSON (what a ``wordllama-text`` spec's text features record)."""
    import hashlib

    return hashlib.sha256(tokenizer_json()[0].encode("utf-8")).hexdigest()


def text_spec(feature_names: list[str], n_classes: int, text_features: list[str], *, max_tokens: int = 64,
              hidden: tuple[int, ...] = (128,), dim: int = 256, **spec_kw: Any) -> Any:
    """A ``wordllama-text`` ModelSpec whose text features use WordLlama's tokenizer (attached, sha256 recorded)."""
    import hashlib

    from trainers.training.models import ModelSpec

    tok, _ = tokenizer_json()
    sha = hashlib.sha256(tok.encode("utf-8")).hexdigest()
    spec = ModelSpec(feature_names, n_classes, hidden=hidden, arch="wordllama-text", arch_options={"dim": dim},
                     text={f: {"tokenizer_sha256": sha, "max_tokens": max_tokens} for f in text_features}, **spec_kw)
    for f in text_features:
        spec.attach_tokenizer(f, tok)
    return spec


def _load(dim: int):
    from trainers.datasets.wordllama_backbone import load_wordllama_embeddings

    matrix, tok, origin = load_wordllama_embeddings(dim)
    origin = dict(origin, licences=list(LICENCES), architecture="wordllama-text")
    return matrix, tok, origin


def build(spec: Any, *, seed: int | None = None, pretrained: bool = False) -> TextClassifier:
    """The classifier of ``spec`` (needs at least one text feature); ``pretrained`` loads WordLlama's embeddings."""
    if not spec.text:
        raise ValueError("wordllama-text needs at least one text feature in ModelSpec.text")
    dim = int(spec.arch_options.get("dim", 256))
    slices = spec.slices()
    text_slices = [slices[f] for f in spec.feature_names if f in spec.text]
    other = [c for f in spec.feature_names if f not in spec.text for c in range(*slices[f])]
    hidden = spec.hidden[0] if spec.hidden else None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = TextClassifier(text_slices, other, VOCAB, dim, hidden, spec.n_classes)
    if pretrained:
        matrix, _, origin = _load(dim)
        foreign = {f: v["tokenizer_sha256"] for f, v in spec.text.items()
                   if v["tokenizer_sha256"] != origin["tokenizer_sha256"]}
        if foreign:  # another tokenizer's ids would index the wrong embedding rows: silently wrong predictions
            raise ValueError(f"wordllama-text: text features {sorted(foreign)} use another tokenizer than WordLlama's "
                             f"(sha256 {origin['tokenizer_sha256']}); leave tokenizer_sha256 out of the spec or use that one")
        with torch.no_grad():
            model.backbone.weight.copy_(torch.from_numpy(matrix))
        model.backbone_origin = origin
    return model
