"""The records a model registry keeps (provenance, version info, a loaded version), its errors, and
the file helpers it writes them with (sha256, atomic JSON, directory fsync).  Pure; see
:mod:`trainers.registry` for the layout."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from streams.contracts.events import json_default

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(RuntimeError):
    """A registry operation cannot be done (unknown model/version, bad name, nothing to roll back)."""


class IntegrityError(RegistryError):
    """A registry file does not match the sha256 recorded for it; the version is refused."""

    def __init__(self, path: str | os.PathLike, expected: str, actual: str) -> None:
        super().__init__(
            f"integrity check failed for {os.fspath(path)}: manifest says sha256 {expected}, file has {actual}. "
            "The artifact was modified or corrupted after registration; do not load it. "
            "Restore it from a backup or register the model again."
        )
        self.path = os.fspath(path)
        self.expected = expected
        self.actual = actual


@dataclass
class Provenance:
    """Where a version comes from and what it was measured at."""

    parent_version: str | None = None
    request_id: str | None = None
    alert_ids: list[str] = field(default_factory=list)
    window: dict[str, float] | None = None  # {"start": ..., "end": ...}
    metrics: dict[str, Any] = field(default_factory=dict)  # the promotion-gate report
    training: dict[str, Any] = field(default_factory=dict)  # fit report: strategy, device, time, n
    code_version: str = ""
    base_model: dict[str, str] = field(default_factory=dict)  # {"source": ..., "licence": ...}
    reference_profile_id: str | None = None
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Provenance":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class VersionInfo:
    """One registered version as listed by the registry (no artifact is read)."""

    model: str
    version: str
    created_at: float
    path: str
    weights_sha256: str
    manifest_sha256: str
    promoted: bool | None = None  # gate verdict recorded at registration (None: not gated)
    current: bool = False
    promoted_at: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    live_verdict: dict[str, Any] | None = None  # judged on live traffic (registry_records.live_verdict)
    live_verdicts: list[dict[str, Any]] = field(default_factory=list)  # the earlier ones, oldest first

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LoadedVersion:
    """A verified version: spec, weights (torch tensors), replay buffer, provenance."""

    info: VersionInfo
    spec: Any  # trainers.training.models.ModelSpec
    classes: list[Any] | None
    state_dict: dict[str, Any]
    replay: Any  # trainers.training.replay.ReplayBuffer | None
    provenance: Provenance
    report: dict[str, Any] | None

    def build_model(self):
        """The torch module of this version, weights loaded."""
        from trainers.training.models import build_model

        model = build_model(self.spec)
        model.load_state_dict(self.state_dict)
        return model


# --------------------------------------------------------------------------- helpers


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def code_version(repo: str | os.PathLike | None = None) -> str:
    """``git describe --always --dirty`` of this project, or ``driftloop <version>`` without git."""
    repo = Path(repo) if repo else Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=repo, capture_output=True, text=True, timeout=5, check=True,
        )
        if out.stdout.strip():
            return "git:" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version

        return "driftloop " + version("driftloop")
    except Exception:
        return "unknown"


def _check_name(kind: str, name: str) -> str:
    name = str(name)
    if not _NAME.match(name):
        raise RegistryError(
            f"{kind} name {name!r} is not allowed; use 1-128 letters, digits, '.', '_' or '-' (starting with a letter or digit)"
        )
    return name


def _write_json_atomic(path: Path, obj: Any) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, default=json_default).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tokenizer_file(feature: str) -> str:
    """File name of a text feature's tokenizer in a version folder (hashed when the name is not file-safe)."""
    safe = _NAME.match(feature) is not None and len(feature) <= 64
    return f"tokenizer.{feature if safe else hashlib.sha256(feature.encode()).hexdigest()[:16]}.json"


# --------------------------------------------------------------------------- serving history


def default_actor() -> str:
    """Who changes the live version when the caller does not say: ``user@host`` (pid)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


def serving_change(action: str, version: str, previous: str | None, vdir: Path, entry: Mapping[str, Any],
                   actor: str = "", reason: str = "") -> dict[str, Any]:
    """One entry of a model's serving history (``index.json`` ``changes``): what became live and when (wall-clock
    epoch seconds), what it replaced, who did it and why, with the weights' and replay buffer's sha256 and the
    data window the version was trained on (from its provenance)."""
    prov: dict[str, Any] = {}
    files: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        prov = json.loads((vdir / "provenance.json").read_text(encoding="utf-8"))
    with contextlib.suppress(OSError, ValueError):
        files = json.loads((vdir / "manifest.json").read_text(encoding="utf-8")).get("files") or {}
    return {"at": time.time(), "action": action, "version": version, "previous": previous,
            "actor": actor or default_actor(), "reason": reason, "weights_sha256": entry.get("weights_sha256"),
            "replay_sha256": (files.get("replay.npz") or {}).get("sha256"), "data_window": prov.get("window"),
            "request_id": entry.get("request_id")}


def served_at(changes: Sequence[Mapping[str, Any]], at: float) -> str | None:
    """The version that was live at wall-clock time ``at`` (epoch s) by a serving history; None before the first."""
    live = None
    for c in sorted(changes, key=lambda c: c["at"]):
        if c["at"] > at:
            break
        live = c["version"]
    return live


# --------------------------------------------------------------------------- live evaluation (shadow and watch)


def live_verdict(verdict: str, actor: str, reason: str, evidence: Mapping[str, Any] | None) -> dict[str, Any]:
    """A version's verdict on live traffic (its index entry's ``live_verdict``): ``rejected`` (refused in shadow),
    ``rolled_back`` (rolled back after its promotion) or ``kept`` (its watch ended with it live)."""
    return {"verdict": verdict, "at": time.time(), "actor": actor or default_actor(), "reason": reason,
            "evidence": dict(evidence or {})}


def set_live_verdict(entry: dict[str, Any], verdict: dict[str, Any]) -> None:
    """Make ``verdict`` a version's latest live verdict; the one it replaces is kept in ``live_verdicts`` (a promotion's
    shadow evidence stays when its watch ends)."""
    if entry.get("live_verdict"):
        entry.setdefault("live_verdicts", []).append(entry["live_verdict"])
    entry["live_verdict"] = verdict


def live_change(action: str, index: Mapping[str, Any], candidate: str, actor: str = "", reason: str = "",
                **extra: Any) -> dict[str, Any]:
    """A serving-history entry for a change of what is served in shadow (``shadow``, ``reject``, ``watch_end``): the
    live version does not change, so ``version`` and ``previous`` are both the live one (``served_at`` stays right)
    and ``candidate`` names the version shadowed, rejected or no longer watched."""
    live = index.get("current")
    return {"at": time.time(), "action": action, "version": live, "previous": live, "candidate": candidate,
            "actor": actor or default_actor(), "reason": reason,
            "weights_sha256": (index["versions"].get(live) or {}).get("weights_sha256"), **extra}


def end_live_states(index: dict[str, Any]) -> dict[str, Any]:
    """Drop the shadow and the watch of a model whose live version changes (both compared the old live version);
    returns what ended, for its serving-history entry (``{"ended": {"shadow": "4", "watch": "3"}}``, or ``{}``)."""
    ended = {k: index.pop(k)["version"] for k in ("shadow", "watch") if index.get(k)}
    return {"ended": ended} if ended else {}


def describe_change(c: Mapping[str, Any]) -> str:
    """One serving-history entry in words (``driftloop models history``)."""
    what = {"shadow": f"v{c.get('candidate')} in shadow of live v{c['version']}"
                      + (f" (replaces v{c['replaced']} in shadow)" if c.get("replaced") else ""),
            "reject": f"v{c.get('candidate')} rejected in shadow; v{c['version']} stays live, nothing in shadow",
            "watch_end": f"watch of v{c['version']} ended: kept live, v{c.get('parent')} no longer in shadow",
            }.get(c["action"], f"v{c['version']}" + (f" (was v{c['previous']})" if c.get("previous") else " (first)"))
    if c.get("watch"):
        what += f", watched with v{c['watch']['parent']} in shadow"
    for k, v in (c.get("ended") or {}).items():
        what += f"; ends the {k} of v{v}"
    return what


def describe_live(shadow: Mapping[str, Any] | None, watch: Mapping[str, Any] | None, live: str | None) -> str:
    """What a model serves in shadow, in words (``driftloop models show``)."""
    if shadow:
        return f"v{shadow['version']} in shadow of live v{live} (candidate, since {_utc(shadow['since'])})"
    if watch:
        return (f"v{watch['version']} watched after its promotion, its parent v{watch['parent']} in shadow "
                f"(since {_utc(watch['since'])})")
    return "nothing in shadow, no watch"


def describe_verdict(v: Mapping[str, Any] | None) -> str:
    """A version's live verdict in words."""
    if not v:
        return "none"
    words = {"rejected": "rejected in shadow", "rolled_back": "rolled back after promotion", "promoted": "promoted from "
             "shadow", "kept": "kept after its watch"}.get(v.get("verdict"), str(v.get("verdict")))
    return (f"{words} on {_utc(v.get('at') or 0)} by {v.get('actor')}" + (f": {v['reason']}" if v.get("reason") else "")
            + describe_evidence(v.get("evidence") or {}))


def describe_evidence(ev: Mapping[str, Any]) -> str:
    """The live gate's evidence in one parenthesis: the figures behind a verdict (empty without evidence)."""
    if not ev:
        return ""
    if "error_rate" not in ev:  # not the live gate's: as recorded
        return f" (evidence: {json.dumps(ev, sort_keys=True, default=json_default)[:300]})"

    def num(x: Any, f: str = ".3f") -> str:
        return "-" if x is None else format(x, f)

    er, cal, w = ev.get("error_rate") or {}, ev.get("calibration") or {}, ev.get("window") or {}
    parts = [f"{'paired' if ev.get('paired') else 'unpaired'}, n={er.get('n')}",
             f"error rate v{ev.get('subject')} {num(er.get('subject'))} vs v{ev.get('incumbent')} "
             f"{num(er.get('incumbent'))} (p worse {num(er.get('p_value'), '.2g')}"
             + (f", p better {num(ev['better_p'], '.2g')})" if ev.get("better_p") is not None else ")")]
    if er.get("discordant"):
        parts.append(f"discordant pairs {er['discordant'][0]} worse / {er['discordant'][1]} better")
    if cal and cal.get("n") == 0:
        parts.append("calibration not judged (no scores)")
    elif cal:
        parts.append(f"top-label Brier {num(cal.get('difference'), '+.3f')} (p worse {num(cal.get('p_value'), '.2g')})")
    bad_slices = [k for k, s in (ev.get("slices") or {}).items() if k in " ".join(ev.get("failed") or [])]
    if bad_slices or ev.get("slices_unchecked"):
        parts.append(f"slices failed {bad_slices or '-'}, unchecked {sorted(ev.get('slices_unchecked') or {}) or '-'}")
    if w.get("start") is not None:
        parts.append(f"event time {_utc(w['start'])} - {_utc(w.get('end') or w['start'])}")
    return " (" + "; ".join(parts) + ")"


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
