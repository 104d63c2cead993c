"""Model registry: versioned weights with provenance, integrity checks and a promotion pointer.

A registry is a folder (default ``streams.config.home()/"registry"``)::

    <root>/<model>/index.json               versions, current pointer, promotion history
    <root>/<model>/versions/<v>/weights.safetensors
                                spec.json        ModelSpec (+ class names)
                                replay.npz       replay buffer of this version (optional)
                                provenance.json  parent, alerts, request, window, metrics, code, base model
                                report.json/.txt promotion-gate report (optional)
                                manifest.json    sha256 and size of every file above

Weights are safetensors (never pickles).  Every load re-hashes every file against the
manifest, and the manifest against the hash kept in ``index.json``; a mismatch raises
:class:`IntegrityError` naming the file and both hashes.  A version is staged in a
temporary folder and renamed into place, and ``index.json`` is replaced atomically under
a file lock, so a crash never leaves a half-written version or pointer.

The registry is pure: :meth:`ModelRegistry.promote` and :meth:`ModelRegistry.rollback`
return the :class:`~streams.contracts.events.ModelUpdate` to publish; callers publish it.

>>> import tempfile, torch
>>> from trainers.training.models import ModelSpec, build_model
>>> reg = ModelRegistry(tempfile.mkdtemp())
>>> spec = ModelSpec(["x"], 2, hidden=(4,))
>>> v = reg.register("m", spec, build_model(spec, seed=0).state_dict(),
...                  provenance=Provenance(base_model={"source": "scratch", "licence": "Apache-2.0"}))
>>> v.version, reg.current("m")
('1', None)
>>> reg.promote("m", "1").action
'promote'
>>> reg.load("m").info.version
'1'
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from trainers.records import ModelUpdate
from streams.contracts.events import json_default

FORMAT = "driftloop.registry/1"
WEIGHTS = "weights.safetensors"
SPEC = "spec.json"
REPLAY = "replay.npz"
PROVENANCE = "provenance.json"
REPORT_JSON = "report.json"
REPORT_TEXT = "report.txt"
MANIFEST = "manifest.json"

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


# --------------------------------------------------------------------------- registry


class ModelRegistry:
    """A folder of model versions (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # ------------------------------------------------------------ paths & index
    def model_dir(self, model: str) -> Path:
        return self.root / _check_name("model", model)

    def version_dir(self, model: str, version: str) -> Path:
        return self.model_dir(model) / "versions" / _check_name("version", version)

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[Path]:
        mdir = self.model_dir(model)
        (mdir / "versions").mkdir(parents=True, exist_ok=True)
        with open(mdir / ".lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield mdir
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read_index(self, model: str) -> dict[str, Any]:
        path = self.model_dir(model) / "index.json"
        if not path.exists():
            return {"format": FORMAT, "model": model, "versions": {}, "current": None, "history": []}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RegistryError(f"{path} is not valid JSON ({exc}); restore it from a backup") from exc

    def _write_index(self, model: str, index: Mapping[str, Any]) -> None:
        _write_json_atomic(self.model_dir(model) / "index.json", index)

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "index.json").is_file())

    # ------------------------------------------------------------ write
    def register(
        self,
        model: str,
        spec: Any,
        state_dict: Mapping[str, Any],
        *,
        provenance: Provenance | None = None,
        replay: Any = None,
        classes: list[Any] | None = None,
        report: Mapping[str, Any] | None = None,
        report_text: str | None = None,
        gate_passed: bool | None = None,
    ) -> VersionInfo:
        """Write a new version (next integer) and return its info. It is not promoted.

        ``replay`` is a ``ReplayBuffer`` (saved as ``replay.npz``, its ``model_version`` set to the
        new version) or ``None``.
        ``gate_passed`` records the gate verdict (``report["promoted"]`` when not given).
        """
        from safetensors.torch import save_file

        model = _check_name("model", model)
        prov = provenance or Provenance()
        if not prov.code_version:
            prov.code_version = code_version()
        if gate_passed is None and report is not None and "promoted" in report:
            gate_passed = bool(report["promoted"])
        mdir = self.model_dir(model)
        (mdir / "versions").mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=mdir))
        try:
            tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
            save_file(tensors, str(stage / WEIGHTS), metadata={"format": FORMAT, "model": model})
            spec_d = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
            spec_d = dict(spec_d)
            if classes is not None:
                spec_d["classes"] = list(classes)
            (stage / SPEC).write_text(json.dumps(spec_d, indent=2, sort_keys=True), encoding="utf-8")
            if report is not None:
                (stage / REPORT_JSON).write_text(
                    json.dumps(report, indent=2, sort_keys=True, default=json_default), encoding="utf-8"
                )
            if report_text is not None:
                (stage / REPORT_TEXT).write_text(report_text, encoding="utf-8")
            with self._locked(model):
                index = self._read_index(model)
                version = str(self._next_version(mdir, index))
                if replay is not None:
                    replay.model_version = version  # the buffer names the version it belongs to
                    replay.save(stage / REPLAY)
                (stage / PROVENANCE).write_text(
                    json.dumps(prov.to_dict(), indent=2, sort_keys=True, default=json_default), encoding="utf-8"
                )
                files = {}
                for p in sorted(stage.iterdir()):
                    if p.name == MANIFEST:
                        continue
                    files[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                manifest = {"format": FORMAT, "model": model, "version": version, "files": files,
                            "created_at": prov.created_at}
                _write_json_atomic(stage / MANIFEST, manifest)
                for p in stage.iterdir():
                    with open(p, "rb") as fh:
                        os.fsync(fh.fileno())
                final = mdir / "versions" / version
                os.rename(stage, final)  # atomic commit of the version folder
                _fsync_dir(final.parent)
                index["versions"][version] = {
                    "created_at": prov.created_at,
                    "manifest_sha256": sha256_file(final / MANIFEST),
                    "weights_sha256": files[WEIGHTS]["sha256"],
                    "gate_passed": gate_passed,
                    "parent_version": prov.parent_version,
                    "request_id": prov.request_id,
                }
                self._write_index(model, index)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return self.info(model, version)

    @staticmethod
    def _next_version(mdir: Path, index: Mapping[str, Any]) -> int:
        nums = [int(v) for v in index.get("versions", {}) if v.isdigit()]
        nums += [int(p.name) for p in (mdir / "versions").iterdir() if p.name.isdigit()]  # orphans too
        return max(nums, default=0) + 1

    def promote(self, model: str, version: str, *, action: str = "promote") -> ModelUpdate:
        """Make ``version`` current (after verifying its files) and return the ModelUpdate to publish."""
        version = _check_name("version", version)
        self.verify(model, version)
        with self._locked(model):
            index = self._read_index(model)
            if version not in index["versions"]:
                raise RegistryError(f"model {model!r} has no version {version!r}; see `driftloop models list`")
            previous = index.get("current")
            if previous == version:
                raise RegistryError(f"version {version} of {model!r} is already current")
            if previous is not None:
                index["history"].append(previous)
            index["current"] = version
            index["versions"][version]["promoted_at"] = time.time()
            self._write_index(model, index)
            sha = index["versions"][version]["weights_sha256"]
        return ModelUpdate(model=model, version=version, previous_version=previous, action=action, sha256=sha)

    def rollback(self, model: str) -> ModelUpdate:
        """Make the previously promoted version current again; returns the ModelUpdate to publish."""
        with self._locked(model):
            index = self._read_index(model)
            history = index.get("history") or []
            if not history:
                raise RegistryError(
                    f"model {model!r} has no earlier promoted version to roll back to "
                    f"(current: {index.get('current')}); promote a version explicitly instead"
                )
            target = history[-1]
        self.verify(model, target)
        with self._locked(model):
            index = self._read_index(model)
            if not index.get("history") or index["history"][-1] != target:
                raise RegistryError(f"promotion history of {model!r} changed during rollback; try again")
            previous = index["current"]
            index["history"].pop()
            index["current"] = target
            index["versions"][target]["promoted_at"] = time.time()
            index["versions"][previous]["rolled_back_at"] = time.time()
            self._write_index(model, index)
            sha = index["versions"][target]["weights_sha256"]
        return ModelUpdate(model=model, version=target, previous_version=previous, action="rollback", sha256=sha)

    # ------------------------------------------------------------ read
    def current(self, model: str) -> str | None:
        return self._read_index(model).get("current")

    def history(self, model: str) -> list[str]:
        return list(self._read_index(model).get("history") or [])

    def versions(self, model: str) -> list[VersionInfo]:
        index = self._read_index(model)
        return [self._info(model, v, index) for v in sorted(index["versions"], key=_version_key)]

    def info(self, model: str, version: str | None = None) -> VersionInfo:
        index = self._read_index(model)
        version = self._resolve(model, version, index)
        return self._info(model, version, index)

    def find_by_request(self, model: str, request_id: str) -> str | None:
        """The version registered for retrain request ``request_id``, if any."""
        for v, entry in self._read_index(model).get("versions", {}).items():
            if entry.get("request_id") == request_id:
                return v
        return None

    def _resolve(self, model: str, version: str | None, index: Mapping[str, Any]) -> str:
        if version is None or version in ("current", "latest"):
            if version == "latest":
                versions = sorted(index["versions"], key=_version_key)
                if not versions:
                    raise RegistryError(f"model {model!r} has no versions; register one first")
                return versions[-1]
            cur = index.get("current")
            if cur is None:
                if not index["versions"]:
                    raise RegistryError(
                        f"model {model!r} is not in the registry at {self.root}; "
                        "register a base version with `driftloop models register-base`"
                    )
                raise RegistryError(f"model {model!r} has no promoted version; promote one with `driftloop models promote`")
            return cur
        version = _check_name("version", version)
        if version not in index["versions"]:
            raise RegistryError(f"model {model!r} has no version {version!r}; see `driftloop models list {model}`")
        return version

    def _info(self, model: str, version: str, index: Mapping[str, Any]) -> VersionInfo:
        entry = index["versions"][version]
        vdir = self.version_dir(model, version)
        prov: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            prov = json.loads((vdir / PROVENANCE).read_text(encoding="utf-8"))
        return VersionInfo(
            model=model,
            version=version,
            created_at=entry.get("created_at", 0.0),
            path=str(vdir),
            weights_sha256=entry.get("weights_sha256", ""),
            manifest_sha256=entry.get("manifest_sha256", ""),
            promoted=entry.get("gate_passed"),
            current=index.get("current") == version,
            promoted_at=entry.get("promoted_at"),
            provenance=prov,
        )

    def verify(self, model: str, version: str | None = None) -> dict[str, str]:
        """Re-hash every file of a version; return {file: sha256} or raise IntegrityError."""
        index = self._read_index(model)
        version = self._resolve(model, version, index)
        vdir = self.version_dir(model, version)
        mpath = vdir / MANIFEST
        if not mpath.is_file():
            raise RegistryError(f"{mpath} is missing; version {version} of {model!r} is incomplete")
        expected = index["versions"][version].get("manifest_sha256")
        actual = sha256_file(mpath)
        if expected and actual != expected:
            raise IntegrityError(mpath, expected, actual)
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        out = {}
        for name, meta in manifest["files"].items():
            p = vdir / name
            if not p.is_file():
                raise RegistryError(f"{p} is listed in the manifest but missing; restore it or register again")
            got = sha256_file(p)
            if got != meta["sha256"]:
                raise IntegrityError(p, meta["sha256"], got)
            out[name] = got
        extra = sorted(p.name for p in vdir.iterdir() if p.name != MANIFEST and p.name not in manifest["files"])
        if extra:
            raise RegistryError(f"{vdir} holds files not in its manifest: {extra}; remove them or register again")
        return out

    def load(self, model: str, version: str | None = None, *, with_replay: bool = True) -> LoadedVersion:
        """Verify and load a version (default: the current one)."""
        from safetensors.torch import load_file

        from trainers.training.models import ModelSpec

        index = self._read_index(model)
        version = self._resolve(model, version, index)
        hashes = self.verify(model, version)
        vdir = self.version_dir(model, version)
        spec_d = json.loads((vdir / SPEC).read_text(encoding="utf-8"))
        classes = spec_d.pop("classes", None)
        spec = ModelSpec.from_dict(spec_d)
        state = load_file(str(vdir / WEIGHTS))
        replay = None
        if with_replay and REPLAY in hashes:
            from trainers.training.replay import ReplayBuffer

            replay = ReplayBuffer.load(vdir / REPLAY)
        report = None
        if REPORT_JSON in hashes:
            report = json.loads((vdir / REPORT_JSON).read_text(encoding="utf-8"))
        prov = Provenance.from_dict(json.loads((vdir / PROVENANCE).read_text(encoding="utf-8")))
        return LoadedVersion(self._info(model, version, self._read_index(model)), spec, classes, state, replay, prov, report)

    def report_text(self, model: str, version: str | None = None) -> str | None:
        info = self.info(model, version)
        p = Path(info.path) / REPORT_TEXT
        return p.read_text(encoding="utf-8") if p.is_file() else None


def _version_key(v: str) -> tuple[int, str]:
    return (int(v), "") if v.isdigit() else (1 << 62, v)
