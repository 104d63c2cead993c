"""Batch encoding of typed events for :class:`streams.judge.windows.Encoder`: numeric features as one float matrix,
bucketed by :class:`GridSearch` (exact ``np.searchsorted`` of many features at once, without binary searches)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np


class GridSearch:
    """``np.searchsorted(edges[j], x[j], side="left")`` for the rows of a float matrix at once, exactly, without
    a binary search per value (its unpredictable branches made the per-feature searchsorted ~40 ns a value).

    Per edge array ``e`` (m sorted finite values), a uniform grid of ``G`` cells over ``[e[0], e[-1]]``: the
    cell of a value is ``c(x) = int(min(max((x - e[0]) * (G / (e[-1] - e[0])), 0), G - 1))``, a non-decreasing
    function of ``x`` (each float operation rounds monotonically).  So an edge whose cell is below ``c(x)`` is
    below ``x``, one whose cell is above it is above ``x``, and ``searchsorted(e, x) = L[c(x)] + #{edges of
    cell c(x) below x}``, with ``L[k]`` the number of edges in cells before ``k``.  ``G`` is chosen so that a
    cell holds at most ``max_block`` edges; the count is ``max_block`` vectorised comparisons with the
    following edges (those past the cell are above ``x``; each row's edges are followed by ``+inf`` pads).
    NaN and +-inf fall in a cell like any value (NaN's index is meaningless: callers mark NaN missing).
    The edges' cells are recomputed with the same operations at every call and compared with the tables
    (a few thousand values): if the floating-point environment gave another answer, the call falls back
    to ``np.searchsorted``.  Rows whose edges are not finite, not increasing or too clustered always use it.
    """

    def __init__(self, edges: Sequence[np.ndarray], max_block: int = 4) -> None:
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges]
        self.max_block = max_block
        self.fast: list[int] = []  # rows done on the grid
        self.slow: list[int] = []  # rows done by np.searchsorted
        plan = []
        for j, e in enumerate(self.edges):
            grid = self._grid(e)
            if grid is None:
                self.slow.append(j)
            else:
                self.fast.append(j)
                plan.append((e, *grid))
        if not plan:
            return
        k = self.max_block
        pads = np.full(k, np.inf)
        e_pad, tabs, lo, inv, top, tab_base, start, edge_row = [], [], [], [], [], [], [], []
        pos = tab_pos = 0
        for r, (e, g, lo_j, inv_j, cells) in enumerate(plan):
            e_pad += [e, pads]
            tabs.append(pos + np.searchsorted(cells, np.arange(g), side="left"))  # L[k] as a position in e_pad
            lo.append(lo_j)
            inv.append(inv_j)
            top.append(float(g - 1))
            tab_base.append(tab_pos)
            start.append(pos)
            edge_row.append(np.full(len(e), r))
            pos += len(e) + k
            tab_pos += g
        self._e_pad = np.concatenate(e_pad)
        self._tab = np.concatenate(tabs).astype(np.int64)
        self._lo = np.array(lo)[:, None]
        self._inv = np.array(inv)[:, None]
        self._top = np.array(top)[:, None]
        self._tab_base = np.array(tab_base, dtype=np.int64)[:, None]
        self._start = np.array(start, dtype=np.int64)[:, None]
        # the edges of every fast row and their cells, for the per-call check
        rows = np.concatenate(edge_row)
        self._all_edges = np.concatenate([p[0] for p in plan])
        self._edge_lo, self._edge_inv, self._edge_top = self._lo[rows, 0], self._inv[rows, 0], self._top[rows, 0]
        self._edge_cells = self._cells(self._all_edges, self._edge_lo, self._edge_inv, self._edge_top)

    def _grid(self, e: np.ndarray):
        m = len(e)
        if m < 2 or not np.isfinite(e).all() or not (e[1:] > e[:-1]).all():
            return None
        lo = float(e[0])
        for g in (4 * m, 16 * m, 64 * m):
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                inv = float(np.float64(g) / (np.float64(e[-1]) - np.float64(lo)))
            if not (math.isfinite(inv) and inv > 0):
                return None
            cells = self._cells(e, lo, inv, float(g - 1))
            if np.bincount(cells, minlength=g).max() <= self.max_block:
                return g, lo, inv, cells
        return None

    @staticmethod
    def _cells(x: np.ndarray, lo: Any, inv: Any, top: Any) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.subtract(x, lo)
            np.multiply(v, inv, out=v)
            np.fmax(v, 0.0, out=v)  # fmax/fmin: NaN gives the other operand (a cell; NaN is marked missing later)
            np.fmin(v, top, out=v)
        return v.astype(np.int64)

    def search(self, x: np.ndarray) -> np.ndarray:
        """(rows, n) float64 matrix (one row per edge array, C order) -> (rows, n) int64 indices."""
        out = np.empty(x.shape, dtype=np.int64)
        fast = self.fast
        if fast and not np.array_equal(self._cells(self._all_edges, self._edge_lo, self._edge_inv, self._edge_top),
                                       self._edge_cells):
            fast = []  # another floating-point environment (flush-to-zero?): searchsorted for this call
        if fast:
            xf = x if len(fast) == len(x) else x[fast]
            c = self._cells(xf, self._lo, self._inv, self._top)
            c += self._tab_base
            p = self._tab[c]
            res = p - self._start
            e_pad = self._e_pad
            for t in range(self.max_block):
                res += e_pad[p] < xf
                if t + 1 < self.max_block:
                    p += 1
            if len(fast) == len(x):
                out = res
            else:
                out[fast] = res
        for j in (self.slow if fast else range(len(x))):
            out[j] = np.searchsorted(self.edges[j], x[j], side="left")
        return out


class BatchEncoding:
    """The event and matrix paths of :class:`streams.judge.windows.Encoder` (a mixin: it uses the encoder's
    ``segments``, ``numeric_names``, ``_numeric_getter``, ``_cats``, ``_cat_local``, ``encode``, ``_grid``,
    ``_num_missing``, ``_num_offsets`` and ``_num_rows``)."""

    def encode_matrix(self, x: np.ndarray) -> np.ndarray:
        """Fast path: ``x`` is (n, len(numeric_names)) floats in ``numeric_names`` order, NaN = missing.

        Returns indices feature-major (all events of the first feature, then the next), like :meth:`encode`.
        """
        return self._numeric_matrix(np.ascontiguousarray(x.T, dtype=float)).ravel()

    def _numeric_matrix(self, xt: np.ndarray) -> np.ndarray:
        """(F_num, n) C-ordered floats (NaN = missing) -> (F_num, n) global bucket indices (the same as
        ``np.searchsorted`` per feature, through :class:`GridSearch`)."""
        out = self._grid.search(xt)
        nan = np.isnan(xt)
        if nan.any():
            out[nan] = np.broadcast_to(self._num_missing, out.shape)[nan]
        out += self._num_offsets
        return out

    def encode_events(self, events: Sequence[Any]) -> np.ndarray:
        """``encode(events_to_columns(events), len(events))``, faster when every numeric feature of every
        event is a number (the usual batch): the numeric features are encoded as one matrix."""
        n = len(events)
        feats = [e.features for e in events]
        rows, mat = self._numeric_rows(feats)
        if self.numeric_names and mat is None:
            return self.encode(self._columns(feats, rows, mat), n)
        out = np.empty((len(self.segments), n), dtype=np.int64)
        if self.numeric_names:
            out[self._num_rows] = self._numeric_matrix(np.ascontiguousarray(mat.T))
        for i, seg in enumerate(self.segments):
            if seg.kind == "categorical":
                col = np.array([f.get(seg.name) for f in feats], dtype=object)
                out[i] = seg.offset + self._cat_local(self._cats[seg.name], col)
        return out.ravel()

    def events_to_columns(self, events: Sequence[Any]) -> dict[str, Any]:
        """Typed events -> columns: one float matrix for numeric features, object arrays for categorical ones."""
        feats = [e.features for e in events]
        return self._columns(feats, *self._numeric_rows(feats))

    def _numeric_rows(self, feats: Sequence[Mapping[str, Any]]) -> tuple[list | None, np.ndarray | None]:
        """(rows of numeric values, their float matrix when every value is a number, else None)."""
        if not self.numeric_names:
            return None, None
        try:  # every numeric feature present (the usual case): one C-level pass
            rows = list(map(self._numeric_getter, feats))
        except KeyError:
            rows = [list(map(f.get, self.numeric_names)) for f in feats]
        # no dtype: numpy infers float/int/bool when every value is a number (the usual case);
        # text gives a string dtype and None an object dtype: then column by column, so that
        # text is counted invalid whatever else the batch holds (np.array(..., float) would parse "12")
        mat = np.array(rows)
        if mat.dtype.kind in "fiub" and mat.ndim == 2:
            return rows, mat.astype(float, copy=False)
        return rows, None

    def _columns(self, feats: Sequence[Mapping[str, Any]], rows: list | None, mat: np.ndarray | None) -> dict[str, Any]:
        cols: dict[str, Any] = {}
        if self.numeric_names:
            if mat is not None:
                for j, name in enumerate(self.numeric_names):
                    cols[name] = mat[:, j]
            else:
                for j, name in enumerate(self.numeric_names):
                    cols[name] = np.array([r[j] for r in rows], dtype=object)
        for seg in self.segments:
            if seg.kind == "categorical":
                cols[seg.name] = np.array([f.get(seg.name) for f in feats], dtype=object)
        return cols


__all__ = ["BatchEncoding", "GridSearch"]
