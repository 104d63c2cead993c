"""Reference bootstrap: which events become the reference of a version that has none (pure)."""

from __future__ import annotations

import math
from typing import Sequence


def bootstrap_cutoff(ts_sorted: Sequence[float], n_events: int, hop: float) -> float | None:
    """The reference bootstrap rule that the worker and ``backtest`` share.

    A version without a registered reference builds one from its events before the cutoff
    ``E = (floor(t_N / hop) + 1) * hop``, the end of the hop slot holding the N-th event in
    event-time order (so the reference is made of whole hop slots, i.e. whole tumbling windows);
    windows starting before ``E`` are not judged, windows starting at ``E`` or later are.
    None while fewer than ``n_events`` events are known.  Units: seconds of event time.

    >>> bootstrap_cutoff([1.0, 5.0, 61.0, 62.0], 3, 60.0)
    120.0
    """
    if len(ts_sorted) < max(int(n_events), 1):
        return None
    return (math.floor(float(ts_sorted[max(int(n_events), 1) - 1]) / hop) + 1) * hop
