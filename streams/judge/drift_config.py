"""The ``drift`` config section: windows, gating, the decision policy's thresholds and the concept detectors.

Every field has a working default (tuned on 20-feature streams with windows of 500 events: no
false alarm in 10 million no-drift events; every full window with a 0.4 sd shift opens at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Mapping

from streams.judge.policy import Level, Thresholds

RIVER_DETECTORS = ("adwin", "page_hinkley", "ddm", "eddm", "hddm_a", "hddm_w")


@dataclass(frozen=True)
class DriftConfig:
    """The ``drift`` config section.  Every field has a working default."""

    window_seconds: float = 60.0
    hop_seconds: float | None = None  # None: tumbling windows
    min_samples: int = 500  # events (or labelled examples) a window needs for a verdict
    allowed_lateness_s: float = 0.0  # a window closes when the event-time watermark passes end + lateness
    fdr_alpha: float = 0.05  # Benjamini-Hochberg FDR across the features of one window
    immediate_alpha: float = 1e-5  # BH-adjusted p at or below which one window opens an alert
    open_after: int = 2  # consecutive drifting windows to open an alert
    close_after: int = 3  # consecutive clean windows to close it
    thresholds: Thresholds = field(default_factory=Thresholds)
    psi_smoothing: float = 0.5  # added to every PSI bin count
    concept_detectors: tuple[str, ...] = ("cusum",)
    cusum_shift: float = 0.1  # error-rate increase the CUSUM is tuned for (absolute)
    cusum_h: float = 12.0  # alarm threshold in nats (ARL under no change grows ~ exp(h))
    concept_warmup: int = 1000  # labelled examples to estimate the error rate without a labelled reference
    river_history: int = 5000  # River detectors are rebuilt from the last N errors every N errors (state: <= 2N bits)
    reference_events: int = 10000  # backtest without --reference: profile from the first N events
    n_bins: int = 10  # PSI bins of profiles built by backtest
    fine_bins: int = 100  # KS/Wasserstein bins of profiles built by backtest
    top_k: int = 20  # categories kept by profiles built by backtest
    estimate_performance: bool = True  # label-free accuracy estimates per input window (streams.judge.estimate)
    estimate_calibration: str = "isotonic"  # how the reference's labelled scores are calibrated: isotonic | histogram

    def __post_init__(self) -> None:
        th = self.thresholds
        if isinstance(th, Mapping):
            object.__setattr__(self, "thresholds", Thresholds.from_mapping(th))
        elif is_dataclass(th) and any(not isinstance(getattr(th, f.name), Level) for f in fields(th)):
            object.__setattr__(self, "thresholds", Thresholds.from_mapping({f.name: getattr(th, f.name) for f in fields(th)}))
        object.__setattr__(self, "concept_detectors", tuple(self.concept_detectors))
        if self.window_seconds <= 0:
            raise ValueError(f"drift.window_seconds must be > 0, got {self.window_seconds}")
        hop = self.hop
        ratio = self.window_seconds / hop
        if hop <= 0 or hop > self.window_seconds or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(
                f"drift.hop_seconds ({self.hop_seconds}) must divide window_seconds ({self.window_seconds}); "
                "leave it empty for tumbling windows"
            )
        if self.min_samples < 1:
            raise ValueError("drift.min_samples must be >= 1")
        if self.estimate_calibration not in ("isotonic", "histogram"):
            raise ValueError(f"drift.estimate_calibration must be 'isotonic' or 'histogram', got {self.estimate_calibration!r}")
        if self.river_history < 1:
            raise ValueError("drift.river_history must be >= 1")
        unknown = [d for d in self.concept_detectors if d != "cusum" and d not in RIVER_DETECTORS]
        if unknown:
            raise ValueError(f"unknown concept detector(s) {unknown}; choose from {('cusum',) + RIVER_DETECTORS}")

    @property
    def hop(self) -> float:
        return float(self.hop_seconds or self.window_seconds)

    @property
    def tumbling(self) -> bool:
        return self.hop == float(self.window_seconds)
