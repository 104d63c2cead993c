"""Pretrained token embeddings: WordLlama ``l2_supercat`` (256-d), read from the wordllama wheel.

The wheel ships exactly one weight file and its tokenizer:

* ``wordllama/weights/l2_supercat_256.safetensors`` (16,384,096 bytes): one tensor
  ``embedding.weight``, float16, shape [32000, 256] (Llama-2 vocabulary);
* ``wordllama/tokenizers/l2_supercat_tokenizer_config.json`` (1,842,796 bytes): the Llama-2
  BPE tokenizer in Hugging Face ``tokenizers`` JSON form.

They are read with ``safetensors`` and ``tokenizers`` only; the wordllama package is never
imported (its loader falls back to downloading from the Hugging Face hub when a file is
missing; this one raises instead).  WordLlama's own inference encodes with
``add_special_tokens=False`` and mean-pools token vectors over the attention mask; do the
same to match its published results.  The 256-d matrix is a Matryoshka embedding: its first
64 or 128 columns are themselves usable smaller embeddings (``dim=64|128``).

>>> emb, tok, origin = load_wordllama_embeddings()       # doctest: +SKIP
>>> emb.shape, emb.dtype, tok.get_vocab_size()          # doctest: +SKIP
((32000, 256), dtype('float32'), 32000)
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from trainers.datasets._wheel import locate, record_sha256, sha256_file

DIST = "wordllama"
CONFIG = "l2_supercat"
WEIGHTS_DIM = 256  # the only weight file in the wheel
WEIGHTS_FILE = f"wordllama/weights/{CONFIG}_{WEIGHTS_DIM}.safetensors"
TOKENIZER_FILE = f"wordllama/tokenizers/{CONFIG}_tokenizer_config.json"
TENSOR_KEY = "embedding.weight"
TRUNCATABLE_DIMS = (64, 128, 256)  # Matryoshka prefixes of the 256-d file

LICENCE = "MIT"
LICENCE_NOTE = (
    "wordllama (code, and the l2_supercat weights, whose model card is tagged MIT) is MIT, "
    "Copyright (c) 2024 Lee Miller. The package README says l2_supercat 'is a LLaMA 2 "
    "vocabulary model': it was trained from the concatenated token-embedding codebooks of "
    "models that use the LLaMA 2 tokenizer, 'including LLaMA 2 70B and phi 3 medium' "
    "(config hf_model_id meta-llama/Llama-2-70b-hf), and the tokenizer is Llama 2's; those "
    "upstream weights are under the Llama 2 Community License (Meta). Cite: Miller, "
    "'WordLlama: Recycled Token Embeddings from Large Language Models', 2024, "
    "https://github.com/dleemiller/WordLlama."
)


@functools.lru_cache(maxsize=1)
def _read() -> tuple[np.ndarray, str, dict[str, Any]]:
    wpath, dist = locate(DIST, WEIGHTS_FILE)
    tpath, _ = locate(DIST, TOKENIZER_FILE)
    from safetensors import safe_open

    sha = sha256_file(wpath)
    expected = record_sha256(dist, WEIGHTS_FILE)
    if expected is not None and expected != sha:
        raise ValueError(f"{wpath}: sha256 {sha} differs from the wheel RECORD ({expected})")
    with safe_open(str(wpath), framework="np") as f:
        matrix = f.get_tensor(TENSOR_KEY)
    if matrix.ndim != 2 or matrix.shape[1] != WEIGHTS_DIM:
        raise ValueError(f"{wpath}: {TENSOR_KEY} has shape {matrix.shape}, expected [vocab, {WEIGHTS_DIM}]")
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    matrix.setflags(write=False)
    origin = {
        "package": DIST,
        "version": dist.version,
        "file": WEIGHTS_FILE,
        "sha256": sha,
        "record_verified": expected is not None,
        "tokenizer_file": TOKENIZER_FILE,
        "tokenizer_sha256": sha256_file(tpath),
        "tensor": TENSOR_KEY,
        "stored_dtype": "float16",
        "config": CONFIG,
        "licence": LICENCE,
        "licence_note": LICENCE_NOTE,
    }
    return matrix, str(tpath), origin


def load_wordllama_embeddings(dim: int = 256):
    """``(matrix, tokenizer, origin)``, offline.

    * ``matrix``: numpy float32 [32000, dim], a fresh writable array (the first ``dim``
      columns of the 256-d file; ``dim`` in 64, 128, 256);
    * ``tokenizer``: a fresh ``tokenizers.Tokenizer`` (no padding/truncation configured;
      encode with ``add_special_tokens=False`` as wordllama does);
    * ``origin``: dict with ``package, version, file`` (path inside the wheel), ``sha256`` of
      that file (checked against the wheel's RECORD), ``licence, licence_note`` and the
      tokenizer file and its sha256.

    Raises ``MissingDataPackage`` (a FileNotFoundError) naming what to install when the
    wordllama wheel is absent; nothing is ever downloaded.
    """
    if dim not in TRUNCATABLE_DIMS:
        raise ValueError(f"dim must be one of {TRUNCATABLE_DIMS} (the wheel holds the {WEIGHTS_DIM}-d file)")
    matrix, tpath, origin = _read()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tpath)
    if tokenizer.get_vocab_size() != matrix.shape[0]:
        raise ValueError(f"{TOKENIZER_FILE}: vocabulary {tokenizer.get_vocab_size()} != {matrix.shape[0]} rows")
    out = dict(origin, dim=dim, vocab_size=int(matrix.shape[0]))
    return np.array(matrix[:, :dim], dtype=np.float32, copy=True), tokenizer, out
