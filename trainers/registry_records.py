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
from typing import Any, Mapping

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
