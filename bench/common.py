"""Shared helpers for the drift benchmarks: one thread, telemetry off, timing, RSS, result files.

Import this module first in every bench script (before numpy): it pins BLAS/OpenMP to one
thread, turns off Evidently's usage telemetry, and puts the repository root on ``sys.path``
so ``streams`` imports work when a bench runs as ``python bench/<name>.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

# One thread for every numeric library, so "per core" means per core.  OPENBLAS_CORETYPE is left
# as the machine set it (see /work/.library/env/README.md) and recorded in the results.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_var] = "1"
# Evidently (and its iterative_telemetry dependency) send usage events unless told not to.
os.environ["DO_NOT_TRACK"] = "1"
os.environ["ITERATIVE_DO_NOT_TRACK"] = "1"
os.environ["EVIDENTLY_DISABLE_TELEMETRY"] = "1"

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streams.contracts.events import json_default  # noqa: E402  (after the path setup above)

RESULTS_DIR = ROOT / "bench" / "results"
MODES = ("smoke", "quick", "full")


def parse_args(description: str, argv: Sequence[str] | None = None,
               extra: Iterable[tuple[tuple, dict]] = ()) -> argparse.Namespace:
    """``--smoke | --quick | --full`` (default quick), ``--out-dir``, ``--seed`` and bench-specific options."""
    p = argparse.ArgumentParser(description=description)
    g = p.add_mutually_exclusive_group()
    for m in MODES:
        g.add_argument(f"--{m}", dest="mode", action="store_const", const=m,
                       help=f"{m} size" + (" (default)" if m == "quick" else ""))
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where <name>.json and <name>.md go")
    p.add_argument("--seed", type=int, default=0, help="base random seed")
    for args, kwargs in extra:
        p.add_argument(*args, **kwargs)
    ns = p.parse_args(argv)
    ns.mode = ns.mode or "quick"
    return ns


class Timer:
    """``with Timer() as t: ...``; ``t.s`` is the elapsed wall time in seconds (perf_counter)."""

    def __enter__(self) -> "Timer":
        self._t0 = time.perf_counter()
        self.s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self._t0


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def environment() -> dict[str, Any]:
    """What produced the numbers: versions, CPU, thread settings, BLAS kernel."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "telemetry_off": {k: os.environ.get(k) for k in ("DO_NOT_TRACK", "ITERATIVE_DO_NOT_TRACK")},
    }
    info["git"] = _git_state()
    for mod in ("numpy", "scipy", "pandas", "river", "evidently", "frouros", "sklearn"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # a peer that does not import is reported, not fatal
            info[mod] = f"not importable: {exc.__class__.__name__}"
    try:
        import threadpoolctl

        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for d in threadpoolctl.threadpool_info()
        ]
    except Exception:
        pass
    return info


def _git_state() -> dict[str, Any]:
    """Commit of the checkout and whether streams/ (the engine) had uncommitted changes."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "streams_dirty": bool(git("status", "--porcelain", "--", "streams"))}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def fmt(x: Any, digits: int = 3) -> str:
    """Compact number formatting for Markdown tables (None -> '—')."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "—"
        if math.isinf(x):
            return "∞"
        if x == 0:
            return "0"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(c) for c in r) + " |")
    return "\n".join(out)


def fa_upper_95(n_alarms: int, n_events: int) -> float | None:
    """One-sided 95% upper bound on false alarms per million events (Poisson; 3.0/N for zero alarms)."""
    if n_events <= 0:
        return None
    if n_alarms == 0:
        return 2.995732 / n_events * 1e6
    from scipy.stats import chi2

    return float(chi2.ppf(0.95, 2 * (n_alarms + 1)) / 2.0) / n_events * 1e6


def write_results(name: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.json`` and ``<name>.md``; returns both paths."""
    out_dir = Path(out_dir or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    payload.setdefault("environment", environment())
    payload.setdefault("peak_rss_mb", round(peak_rss_mb(), 1))
    payload.setdefault("written_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    jpath, mpath = out_dir / f"{name}.json", out_dir / f"{name}.md"
    jtmp, mtmp = jpath.with_suffix(".json.tmp"), mpath.with_suffix(".md.tmp")
    jtmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=json_default) + "\n")
    mtmp.write_text(markdown.rstrip() + "\n")
    jtmp.replace(jpath)
    mtmp.replace(mpath)
    return jpath, mpath


@dataclass(frozen=True)
class EventClock:
    """Event time for the i-th event: ``t0 + (i + 0.5) * window_seconds / events_per_window``.

    ``t0`` is a multiple of ``window_seconds`` and each event sits mid-slot, so event-time
    windows aligned to the epoch hold exactly ``events_per_window`` events each.
    """

    window_seconds: float
    events_per_window: int
    t0: float

    @classmethod
    def aligned(cls, window_seconds: float, events_per_window: int, near: float = 1_764_115_200.0) -> "EventClock":
        t0 = math.floor(near / window_seconds) * window_seconds
        return cls(float(window_seconds), int(events_per_window), float(t0))

    @property
    def dt(self) -> float:
        return self.window_seconds / self.events_per_window

    def ts(self, start: int, n: int):
        import numpy as np

        return self.t0 + (start + np.arange(n, dtype=np.float64) + 0.5) * self.dt

    def index_of(self, ts: float) -> int:
        """Event index at event time ``ts`` (a window's end maps to the index one past its last event)."""
        return int(round((ts - self.t0) / self.dt))
