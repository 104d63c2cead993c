"""Aggregator side of the worker: merged partials per (model, version), global watermarks, judging.

The partials of a window from every source partition are merged, and the window is judged once the
*global* watermark (the smallest over the source partitions that are not idle, reported by watermark
records on the same internal topic, in order after the partials they cover) has passed it.  Windows
are judged in start order, so hysteresis evolves the same way whether one worker or several produced
the partials.  A version without a registered reference builds one from its first
``reference_bootstrap_n`` events by the rule that backtest shares (:func:`streams.judge.bootstrap.bootstrap_cutoff`;
rows sorted by event time, partition, offset); label windows wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, MutableMapping

from streams.worker.state import INPUTS, LABELS, EnginePort, Geometry, mv_key, win_parse

#: label windows of a version still bootstrapping its reference that wait for it (older ones are skipped, counted)
HELD_LABEL_WINDOWS = 64


class Watermarks:
    """Per internal partition: the latest watermark of every source partition, per stream."""

    def __init__(self, d: Mapping[str, Any] | None = None) -> None:
        d = d or {}
        self.offset: int = int(d.get("offset", -1))
        self.wm: dict[str, dict[str, float]] = {k: dict(v) for k, v in (d.get("wm") or {}).items()}
        self.mvs: list[str] = list(d.get("mvs") or [])  # (model, version) keys aggregated on this partition
        self.idle: dict[str, list[str]] = {k: list(v) for k, v in (d.get("idle") or {}).items()}  # stream -> idle sources

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "wm": self.wm, "mvs": self.mvs, "idle": self.idle}

    def update(self, stream: str, src: int, wm: float | None, idle: bool = False) -> bool:
        """Apply a watermark record; True when the global watermark may have moved."""
        idle_now = self.idle.setdefault(stream, [])
        changed = (str(src) in idle_now) != idle
        if idle and changed:
            idle_now.append(str(src))
        elif changed:
            idle_now.remove(str(src))
        cur = self.wm.setdefault(stream, {}).get(str(src))
        if wm is None or (cur is not None and wm <= cur):
            return changed
        self.wm[stream][str(src)] = float(wm)
        return True

    def global_wm(self, stream: str, n_sources: int) -> float | None:
        """Smallest watermark over the ``n_sources`` partitions that are not idle; None until each has reported.

        When every partition is idle, the largest watermark any of them reached (as Flink's watermark valve
        does): everything sent so far is complete."""
        seen = self.wm.get(stream, {})
        skip = set(self.idle.get(stream, ()))
        vals = [seen.get(str(p)) for p in range(n_sources) if str(p) not in skip]
        if not vals:
            known = [v for v in seen.values() if v is not None]
            return float(max(known)) if known else None
        if any(v is None for v in vals):
            return None
        return float(min(vals))  # type: ignore[type-var]


@dataclass
class JudgeOutcome:
    alerts: list[Any] = field(default_factory=list)
    judged: list[tuple[str, str, int]] = field(default_factory=list)  # (stream, window, n)
    reference_windows: list[tuple[str, int]] = field(default_factory=list)  # windows used to build the reference
    reference_built: Any = None  # the ReferenceProfile built now, if any
    skipped_labelled: int = 0  # labelled examples of windows before a profile existed
    labelled: list[tuple[str, int, int]] = field(default_factory=list)  # judged label windows: (window, n, errors)


class AggState:
    """Aggregator state of one (model, version): pending partials, reference, judge state."""

    def __init__(self, model: str, version: str, d: Mapping[str, Any] | None = None) -> None:
        d = d or {}
        self.model, self.version = model, version
        self.offset: int = int(d.get("offset", -1))
        # stream -> window -> {"srcs": {src: {"mode", "n", "acc"}}, "rows": {src: {"max_offset", "n", "acc"}}}
        self.pending: dict[str, dict[str, dict[str, Any]]] = {k: dict(v) for k, v in (d.get("pending") or {}).items()}
        self.judged_through: dict[str, float] = dict(d.get("judged_through") or {})
        self.judge_state: dict | None = d.get("judge_state")
        self.profile: dict | None = d.get("profile")
        self.profile_source: str = d.get("profile_source", "")
        self.ref_windows: list[str] = list(d.get("ref_windows") or [])
        self.ref_n: int = int(d.get("ref_n", 0))
        self.ref_cutoff: float = float(d.get("ref_cutoff", "-inf"))  # windows starting before it are not judged
        # rows kept until the profile exists, in chunks of a chunk store: window -> src -> [chunk key, ...]
        self.rows: dict[str, dict[str, list[str]]] = {k: dict(v) for k, v in (d.get("rows") or {}).items()}
        self.n_labelled: int = int(d.get("n_labelled", 0))
        self.retrain: dict = dict(d.get("retrain") or {})
        self.duplicates: int = int(d.get("duplicates", 0))
        self._prof: tuple[str, Any] | None = None
        self._judge: Any = None

    def to_dict(self) -> dict[str, Any]:
        if self._judge is not None:
            self.judge_state = self._judge.state_dict()
        return {
            "offset": self.offset, "pending": self.pending, "judged_through": self.judged_through,
            "judge_state": self.judge_state, "profile": self.profile, "profile_source": self.profile_source,
            "ref_windows": self.ref_windows, "ref_n": self.ref_n, "ref_cutoff": repr(self.ref_cutoff),
            "rows": self.rows, "n_labelled": self.n_labelled,
            "retrain": self.retrain, "duplicates": self.duplicates,
        }

    # -- profile and judge objects (decoded lazily, cached)
    def profile_obj(self, port: EnginePort) -> Any:
        if self.profile is None:
            return None
        pid = str(self.profile.get("id"))
        if self._prof is None or self._prof[0] != pid:
            self._prof = (pid, port.profile_from_dict(self.profile))
        return self._prof[1]

    def set_profile(self, profile: Any, source: str) -> None:
        self.profile = profile.to_dict()
        self.profile_source = source
        self._prof = (str(profile.id), profile)
        self._judge = None

    def judge_obj(self, port: EnginePort) -> Any:
        if self._judge is None:
            self._judge = port.new_judge(self.profile_obj(port))
            if self.judge_state:
                self._judge.load_state_dict(self.judge_state)
        return self._judge

    # -- records
    def _is_old(self, stream: str, window: str) -> bool:
        done = self.judged_through.get(stream)
        return done is not None and win_parse(window)[0] <= done

    def add(self, rec: Mapping[str, Any], port: EnginePort, chunks: "MutableMapping[str, Any] | None" = None) -> bool:
        """Apply a partial or rows record.  False when it duplicates something already judged.

        ``chunks`` stores bootstrap rows (one key per record, so no state value grows large).
        """
        stream, w, src = rec["stream"], rec["window"], str(rec["src"])
        if self._is_old(stream, w):
            self.duplicates += 1
            return False
        slot = self.pending.setdefault(stream, {}).setdefault(w, {"srcs": {}, "rows": {}})
        if rec["type"] == "partial":
            # A partial is complete for (window, source).  An "acc" partial supersedes rows that a
            # previous owner of the partition shipped for this window before a rebalance (the new
            # owner opened the window in acc mode and counted all of its events).
            slot["srcs"][src] = {"mode": rec["mode"], "n": int(rec["n"]), "acc": rec.get("acc")}
            if rec["mode"] == "acc" and slot["rows"].pop(src, None) is not None:
                for k in self.rows.get(w, {}).pop(src, []):
                    if chunks is not None:
                        chunks.pop(k, None)
            return True
        if slot["srcs"].get(src, {}).get("mode") == "acc":
            return True  # rows from a previous owner, after the complete acc partial: already counted
        r = slot["rows"].setdefault(src, {"max_offset": -1, "n": 0, "acc": None})
        fresh = [row for row in rec["rows"] if int(row[0]) > r["max_offset"]]
        if not fresh:
            return True
        r["max_offset"] = int(fresh[-1][0])
        r["n"] += len(fresh)
        if self.profile is None:
            if chunks is None:
                raise ValueError("rows of a version without a profile need a chunk store")
            ck = f"r|{mv_key(self.model, self.version)}|{w}|{src}|{fresh[0][0]}"
            chunks[ck] = fresh
            self.rows.setdefault(w, {}).setdefault(src, []).append(ck)
        else:
            self._rows_to_acc(port, w, r, fresh)
        return True

    def _rows_to_acc(self, port: EnginePort, w: str, r: dict, rows: list[list[Any]]) -> None:
        from streams.contracts.validate import parse_input

        evs = [parse_input(row[1]) for row in rows]
        start, end = win_parse(w)
        for key, acc in port.accumulate(self.profile_obj(port), evs).items():
            if float(key.start) == start and float(key.end) == end:
                if r["acc"] is not None:
                    acc = port.acc_from_dict(r["acc"]).merge(acc)
                r["acc"] = acc.to_dict()

    # -- judging
    def ready(self, stream: str, global_wm: float | None, geom: Geometry) -> list[str]:
        wins = self.pending.get(stream, {})
        return sorted((w for w in wins if geom.closed(win_parse(w)[1], global_wm)), key=win_parse)

    def take_quality(self) -> list:
        """The judge's quality records since the last call (:mod:`streams.judge.quality`; [] before it exists)."""
        take = getattr(self._judge, "take_quality", None)
        return take() if take is not None else []

    def judge_ready(self, stream: str, global_wm: float | None, geom: Geometry, port: EnginePort, bootstrap_n: int,
                    chunks: "MutableMapping[str, Any] | None" = None) -> JudgeOutcome:
        out = JudgeOutcome()
        ready = self.ready(stream, global_wm, geom)
        if stream == LABELS and self.profile is None:  # label windows wait for the reference, a bounded few
            ready = ready[: max(0, len(self.pending.get(LABELS, {})) - HELD_LABEL_WINDOWS)]
        for w in ready:
            slot = self.pending[stream].pop(w)
            start, end = win_parse(w)
            self.judged_through[stream] = start
            n = sum(int(s["n"]) for s in slot["srcs"].values())
            if stream == INPUTS and self.profile is None:
                self.ref_windows.append(w)
                self.ref_n += n
                out.reference_windows.append((w, n))
                if self.ref_n >= bootstrap_n:
                    out.reference_built = self._build_reference(port, chunks if chunks is not None else {},
                                                                bootstrap_n, geom.hop)
                continue
            if self.profile is None or start < self.ref_cutoff:  # before the reference, or in its own period
                out.skipped_labelled += n if stream == LABELS else 0
                continue
            acc = None
            for part in [s.get("acc") for s in slot["srcs"].values()] + [r.get("acc") for r in slot["rows"].values()]:
                if part:
                    a = port.acc_from_dict(part)
                    acc = a if acc is None else acc.merge(a)
            if acc is None:
                continue
            key = port.window_key(self.model, self.version, start, end, stream)
            alerts = list(self.judge_obj(port).judge(key, acc))
            if stream == LABELS:
                n_lab = int(getattr(acc, "n_labelled", 0) or 0)
                self.n_labelled += n_lab
                out.labelled.append((w, n_lab, int(getattr(acc, "n_errors", 0) or 0)))
            out.alerts.extend(alerts)
            out.judged.append((stream, w, int(getattr(acc, "n", n))))
        return out

    def _build_reference(self, port: EnginePort, chunks: "MutableMapping[str, Any]", bootstrap_n: int,
                         hop: float) -> Any:
        """The reference from the rows of the closed windows (the rule of :func:`bootstrap_cutoff`), or None
        while they hold fewer than ``bootstrap_n`` distinct events (hopping windows count an event per window)."""
        from streams.contracts.validate import parse_input
        from streams.judge.bootstrap import bootstrap_cutoff

        def load(keys: list[str]) -> list[list[Any]]:
            out: list[list[Any]] = []
            for k in keys:
                out.extend(chunks.get(k) or [])
            return out

        ref = set(self.ref_windows)
        rows: list[tuple[float, int, int, dict]] = []
        for w in ref:
            for src, keys in self.rows.get(w, {}).items():
                rows.extend((float(row[1]["ts"]), int(src), int(row[0]), row[1]) for row in load(keys))
        rows.sort(key=lambda t: t[:3])
        seen: set[tuple[int, int]] = set()
        evs = []
        for _, src, off, d in rows:  # hopping windows ship an event once per window: count it once
            if (src, off) not in seen:
                seen.add((src, off))
                evs.append(parse_input(d))
        cutoff = bootstrap_cutoff([e.ts for e in evs], bootstrap_n, hop)
        if cutoff is None:
            self.ref_n = len(evs)
            return None
        profile = port.build_profile([e for e in evs if e.ts < cutoff], self.model, self.version)
        self.set_profile(profile, "bootstrap")
        self.ref_cutoff = cutoff
        for w, by_src in self.rows.items():
            if w in ref or win_parse(w)[0] < cutoff:
                continue
            slot = self.pending.get(INPUTS, {}).get(w)
            if slot is None:
                continue
            for src, keys in by_src.items():
                r = slot["rows"].setdefault(src, {"max_offset": -1, "n": 0, "acc": None})
                rr = load(keys)
                if rr:
                    self._rows_to_acc(port, w, r, rr)
        for by_src in self.rows.values():
            for keys in by_src.values():
                for k in keys:
                    chunks.pop(k, None)
        self.rows = {}
        return profile
