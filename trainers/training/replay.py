"""Replay buffers: a fixed-capacity memory of past examples (and their logits).

Two policies:

* ``class_balanced`` (default): capacity is shared fairly between experiences and,
  inside each experience, between its classes (water-filling: a group that has fewer
  examples than its share gives the rest to the others). Every class seen keeps a share.
* ``reservoir``: classic reservoir sampling (Vitter's algorithm R), a uniform sample
  of everything ever added.

Both are deterministic given ``seed``. Buffers merge, and save to ``.npz`` (no pickles)
with JSON metadata that names the model version they belong to.

>>> import numpy as np
>>> buf = ReplayBuffer(4, seed=0)
>>> buf.add(np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 0, 0, 1, 1, 1]))
>>> len(buf), buf.class_counts()
(4, {0: 2, 1: 2})
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

POLICIES = ("class_balanced", "reservoir")
FORMAT = "driftloop.replay/1"


def _to_numpy(a: Any, dtype=None) -> np.ndarray | None:
    if a is None:
        return None
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    return a.astype(dtype, copy=False) if dtype is not None else a


def fair_shares(sizes: np.ndarray, capacity: int) -> np.ndarray:
    """Split ``capacity`` over groups of the given sizes as evenly as possible.

    Water-filling: no group gets more than it has; leftover goes to the larger groups;
    remainders go to the groups listed first.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.zeros_like(sizes)
    left = int(min(capacity, sizes.sum()))
    active = np.flatnonzero(sizes > 0)
    while left > 0 and active.size:
        share, extra = divmod(left, active.size)
        room = sizes[active] - out[active]
        give = np.minimum(room, share)
        if extra:
            # the first `extra` groups that still have room after `share` get one more
            spare = np.flatnonzero(room > give)[:extra]
            give[spare] += 1
        out[active] += give
        left -= int(give.sum())
        active = active[out[active] < sizes[active]]
        if give.sum() == 0:
            break
    return out


class ReplayBuffer:
    """Fixed-capacity, seeded memory of ``(X, y, logits, experience)`` rows."""

    def __init__(self, capacity: int, policy: str = "class_balanced", seed: int = 0) -> None:
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if policy not in POLICIES:
            raise ValueError(f"unknown replay policy {policy!r}; use one of {POLICIES}")
        self.capacity = int(capacity)
        self.policy = policy
        self.seed = int(seed)
        self.model_version: str | None = None
        self.n_seen = 0  # examples ever offered to the buffer
        self.n_experiences = 0  # add() calls (next automatic experience id)
        self._rng = np.random.default_rng(self.seed)
        self.X: np.ndarray | None = None
        self.y = np.zeros(0, dtype=np.int64)
        self.logits: np.ndarray | None = None
        self.experience = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer(capacity={self.capacity}, policy={self.policy!r}, size={len(self)}, "
            f"seen={self.n_seen}, model_version={self.model_version!r})"
        )

    @property
    def nbytes(self) -> int:
        """Memory held by the stored arrays, in bytes."""
        n = self.y.nbytes + self.experience.nbytes
        if self.X is not None:
            n += self.X.nbytes
        if self.logits is not None:
            n += self.logits.nbytes
        return int(n)

    def class_counts(self) -> dict[int, int]:
        classes, counts = np.unique(self.y, return_counts=True)
        return {int(c): int(n) for c, n in zip(classes, counts)}

    def experience_counts(self) -> dict[int, int]:
        exps, counts = np.unique(self.experience, return_counts=True)
        return {int(e): int(n) for e, n in zip(exps, counts)}

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """All stored rows as ``(X, y, logits)`` (no copy)."""
        if self.X is None:
            raise ValueError("the replay buffer is empty")
        return self.X, self.y, self.logits

    # -------------------------------------------------------------------- add
    def add(self, X: Any, y: Any, logits: Any = None, experience: int | None = None) -> None:
        """Offer one batch (usually one experience) to the buffer.

        ``logits`` (optional) are stored with the rows (DER-style replay); NaN entries
        mean "no target" for that class. ``experience`` defaults to a new id per call.
        """
        X = _to_numpy(X, np.float32)
        y = _to_numpy(y, np.int64)
        logits = _to_numpy(logits, np.float32)
        if X.ndim != 2:
            X = X.reshape(X.shape[0], -1)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with one label per row of X: X {X.shape}, y {y.shape}")
        if logits is not None and (logits.ndim != 2 or logits.shape[0] != X.shape[0]):
            raise ValueError(f"logits must be (n, n_classes) with n={X.shape[0]}, got {logits.shape}")
        if self.X is not None and X.shape[1] != self.X.shape[1]:
            raise ValueError(f"X has {X.shape[1]} columns but the buffer holds {self.X.shape[1]}")
        if experience is None:
            experience = self.n_experiences
        self.n_experiences = max(self.n_experiences, int(experience) + 1)
        n = X.shape[0]
        if n == 0:
            return
        exp = np.full(n, int(experience), dtype=np.int64)
        logits = self._align_logits(logits, n)
        if self.policy == "reservoir":
            self._add_reservoir(X, y, logits, exp)
        else:
            self._add_balanced(X, y, logits, exp)
        self.n_seen += n

    def _align_logits(self, new: np.ndarray | None, n: int) -> np.ndarray | None:
        """Make stored and new logits the same width (NaN = no target)."""
        if new is None and self.logits is None:
            return None
        width = max(
            new.shape[1] if new is not None else 0,
            self.logits.shape[1] if self.logits is not None else 0,
        )
        if self.logits is None:
            self.logits = np.full((len(self), width), np.nan, dtype=np.float32)
        elif self.logits.shape[1] < width:
            pad = np.full((len(self), width - self.logits.shape[1]), np.nan, dtype=np.float32)
            self.logits = np.concatenate([self.logits, pad], axis=1)
        if new is None:
            return np.full((n, width), np.nan, dtype=np.float32)
        if new.shape[1] < width:
            new = np.concatenate([new, np.full((n, width - new.shape[1]), np.nan, np.float32)], axis=1)
        return new

    def _concat(self, X, y, logits, exp):
        if self.X is None:
            return X, y, logits, exp
        L = None if logits is None else np.concatenate([self.logits, logits])
        return (
            np.concatenate([self.X, X]),
            np.concatenate([self.y, y]),
            L,
            np.concatenate([self.experience, exp]),
        )

    def _keep(self, X, y, logits, exp, idx: np.ndarray) -> None:
        idx = np.sort(idx)
        self.X, self.y, self.experience = X[idx], y[idx], exp[idx]
        self.logits = None if logits is None else logits[idx]

    def _add_balanced(self, X, y, logits, exp) -> None:
        X, y, logits, exp = self._concat(X, y, logits, exp)
        self._keep(X, y, logits, exp, self._balanced_selection(y, exp))

    def _balanced_selection(self, y: np.ndarray, exp: np.ndarray) -> np.ndarray:
        """Indices to keep: a fair quota per experience, then per class inside it, each
        quota filled by a seeded uniform draw from its group."""
        if len(y) <= self.capacity:
            return np.arange(len(y))
        prio = self._rng.random(len(y))
        exps = np.unique(exp)
        exp_sizes = np.array([(exp == e).sum() for e in exps])
        exp_quota = fair_shares(exp_sizes, self.capacity)
        keep = []
        for e, q in zip(exps, exp_quota):
            rows = np.flatnonzero(exp == e)
            classes = np.unique(y[rows])
            cls_rows = [rows[y[rows] == c] for c in classes]
            cls_quota = fair_shares(np.array([len(r) for r in cls_rows]), int(q))
            for r, cq in zip(cls_rows, cls_quota):
                if cq:
                    keep.append(r[np.argsort(prio[r], kind="stable")[:cq]])
        return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)

    def _add_reservoir(self, X, y, logits, exp) -> None:
        n = X.shape[0]
        size = len(self)
        fill = min(self.capacity - size, n)
        if fill > 0:
            X0, y0, l0, e0 = self._concat(X[:fill], y[:fill], None if logits is None else logits[:fill], exp[:fill])
            self.X, self.y, self.logits, self.experience = X0, y0, l0, e0
        if fill >= n:
            return
        # algorithm R for the rest: item with global index t replaces slot j ~ U[0, t]
        t = self.n_seen + np.arange(fill, n)
        j = np.floor(self._rng.random(n - fill) * (t + 1)).astype(np.int64)
        hit = np.flatnonzero(j < self.capacity)
        if hit.size == 0:
            return
        slots, src = j[hit], hit + fill
        # the last write to a slot wins, as in the sequential algorithm
        last = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
        slots, src = slots[last], src[last]
        self.X[slots] = X[src]
        self.y[slots] = y[src]
        self.experience[slots] = exp[src]
        if logits is not None:
            self.logits[slots] = logits[src]

    # ----------------------------------------------------------------- sample
    def sample(self, n: int, rng: np.random.Generator | None = None):
        """``n`` rows drawn uniformly without replacement (all rows when ``n >= len``).

        Returns ``(X, y, logits)``; ``logits`` is None when nothing stored has logits.
        """
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer; add() an experience first")
        rng = self._rng if rng is None else rng
        k = min(int(n), len(self))
        idx = np.sort(rng.choice(len(self), size=k, replace=False))
        return self.X[idx], self.y[idx], None if self.logits is None else self.logits[idx]

    # ------------------------------------------------------------------ merge
    def merge(self, other: "ReplayBuffer") -> "ReplayBuffer":
        """A new buffer (this one's capacity, policy and seed) holding a fair selection
        of both. Deterministic; neither input changes."""
        if not isinstance(other, ReplayBuffer):
            raise TypeError(f"can only merge a ReplayBuffer, got {type(other).__name__}")
        out = ReplayBuffer(self.capacity, self.policy, self.seed)
        out.model_version = self.model_version
        out.n_seen = self.n_seen + other.n_seen
        out.n_experiences = max(self.n_experiences, other.n_experiences)
        parts = [b for b in (self, other) if len(b)]
        if not parts:
            return out
        dims = {b.X.shape[1] for b in parts}
        if len(dims) > 1:
            raise ValueError(f"cannot merge buffers with different feature widths {sorted(dims)}")
        out._rng = np.random.default_rng([self.seed, other.seed, out.n_seen])
        has_logits = any(b.logits is not None for b in parts)
        width = max((b.logits.shape[1] for b in parts if b.logits is not None), default=0)

        def lg(b):
            L = b.logits if b.logits is not None else np.full((len(b), width), np.nan, np.float32)
            if L.shape[1] < width:
                L = np.concatenate([L, np.full((len(b), width - L.shape[1]), np.nan, np.float32)], 1)
            return L

        X = np.concatenate([b.X for b in parts])
        y = np.concatenate([b.y for b in parts])
        e = np.concatenate([b.experience for b in parts])
        L = np.concatenate([lg(b) for b in parts]) if has_logits else None
        if len(y) <= self.capacity:
            out._keep(X, y, L, e, np.arange(len(y)))
        elif self.policy == "reservoir":
            # weighted sample: a row stands for n_seen/len rows of its source stream
            w = np.concatenate([np.full(len(b), max(b.n_seen, len(b)) / len(b)) for b in parts])
            keys = np.log(out._rng.random(len(y))) / w  # Efraimidis-Spirakis
            out._keep(X, y, L, e, np.argsort(-keys, kind="stable")[: self.capacity])
        else:
            out._keep(X, y, L, e, out._balanced_selection(y, e))
        return out

    # ---------------------------------------------------------- persistence
    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "capacity": self.capacity,
            "policy": self.policy,
            "seed": self.seed,
            "model_version": self.model_version,
            "n_seen": self.n_seen,
            "n_experiences": self.n_experiences,
            "size": len(self),
            "nbytes": self.nbytes,
            "class_counts": {str(k): v for k, v in self.class_counts().items()},
            "rng_state": self._rng.bit_generator.state,
        }

    def save(self, path: str | os.PathLike) -> str:
        """Write the buffer to ``path`` (``.npz``, no pickled objects). Returns the path."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        meta = json.dumps(self.metadata(), sort_keys=True).encode("utf-8")
        arrays = {
            "meta": np.frombuffer(meta, dtype=np.uint8),
            "y": self.y,
            "experience": self.experience,
        }
        if self.X is not None:
            arrays["X"] = self.X
        if self.logits is not None:
            arrays["logits"] = self.logits
        tmp = path + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReplayBuffer":
        """Read a buffer written by :meth:`save`. Files holding pickled objects are refused."""
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except ValueError as exc:
            raise ValueError(
                f"{path} is not a plain-array replay buffer (it holds pickled objects, which "
                "driftloop refuses to load); re-create it with ReplayBuffer.save()"
            ) from exc
        if "meta" not in data:
            raise ValueError(f"{path} has no driftloop metadata; write it with ReplayBuffer.save()")
        meta = json.loads(data["meta"].tobytes().decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: unknown replay buffer format {meta.get('format')!r}, expected {FORMAT!r}")
        buf = cls(meta["capacity"], meta["policy"], meta["seed"])
        buf.model_version = meta.get("model_version")
        buf.n_seen = int(meta["n_seen"])
        buf.n_experiences = int(meta["n_experiences"])
        if meta.get("rng_state"):
            buf._rng.bit_generator.state = meta["rng_state"]
        buf.y = data["y"].astype(np.int64, copy=False)
        buf.experience = data["experience"].astype(np.int64, copy=False)
        buf.X = data.get("X")
        buf.logits = data.get("logits")
        if buf.X is not None and buf.X.shape[0] != buf.y.shape[0]:
            raise ValueError(f"{path} is inconsistent: {buf.X.shape[0]} rows of X for {buf.y.shape[0]} labels")
        return buf
