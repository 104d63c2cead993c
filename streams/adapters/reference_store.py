"""Reference profiles on disk, looked up by a safe id: no event ever names a file.

A profile for (model, version) lives at ``<folder>/by-id/<id>.json`` where ``<id>`` is the
sha256 (hex) of the JSON text ``["<model>", "<version>"]``: whatever the names hold (``/``,
``..``, an absolute path, ``|``, any Unicode), the file name is 64 hex digits inside the folder.

The legacy layout ``<folder>/<model>/<version>.json`` (files placed by hand, older demos) is still
read, only when both names are safe path components (valid names, no ``/`` or ``\\``, not ``.``
or ``..``, not starting with ``.``) and the resolved file (symlinks followed) stays inside the
folder.  It is never written.

A file that cannot be read as a profile (not JSON, not a profile, another model's profile, an
unreadable file) is "no reference": one warning per file version (path, size, mtime) and
``broken`` counts it; it is looked at again after ``recheck_s`` like a missing file, so a fixed
file is picked up without a restart.  Misses are cached for ``recheck_s`` (events of a model
without a reference do not stat the disk each time).

    store = ReferenceStore(Path("~/.driftloop/references").expanduser())
    store.save(profile)                      # driftloop's writers: atomically, by id
    store.get("fraud", "3")                  # -> ReferenceProfile | None
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from streams.contracts.validate import is_valid_name

log = logging.getLogger("driftloop.references")

BY_ID = "by-id"


def reference_id(model: str, version: str) -> str:
    """The file id of (model, version): sha256 hex of ``json.dumps([model, version])``."""
    key = json.dumps([str(model), str(version)], ensure_ascii=True)
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _safe_component(name: str) -> bool:
    return (is_valid_name(name) and "/" not in name and "\\" not in name and not name.startswith(".")
            and ":" not in name)


class ReferenceStore:
    """Reference profiles by (model, version): registered files by id (and safe legacy paths), else
    those the worker built (``put``)."""

    def __init__(self, folder: str | os.PathLike, recheck_s: float = 5.0, *,
                 on_broken: Callable[[str, str, Path, str], None] | None = None) -> None:
        self.folder = Path(folder)
        self.recheck_s = float(recheck_s)
        self.on_broken = on_broken  # (model, version, path, why): e.g. a metric
        self.broken = 0  # broken files seen (each file version once)
        self._cache: dict[tuple[str, str], Any] = {}
        self._missing: dict[tuple[str, str], float] = {}
        self._reported: set[tuple[str, int, int]] = set()

    # ------------------------------------------------------------------ paths
    def path(self, model: str, version: str) -> Path:
        """Where the profile of (model, version) is written: ``<folder>/by-id/<sha256>.json``."""
        return self.folder / BY_ID / f"{reference_id(model, version)}.json"

    def legacy_path(self, model: str, version: str) -> Path | None:
        """``<folder>/<model>/<version>.json`` when both names are safe and it resolves inside the folder, else None."""
        model, version = str(model), str(version)
        if not (_safe_component(model) and _safe_component(version)):
            return None
        p = self.folder / model / f"{version}.json"
        try:
            root = self.folder.resolve()
            if not p.resolve().is_relative_to(root):
                return None
        except (OSError, RuntimeError, ValueError):
            return None
        return p

    # ------------------------------------------------------------------ lookup
    def get(self, model: str, version: str) -> Any:
        """The profile of (model, version), or None (never raises for what is on disk)."""
        key = (model, version)
        prof = self._cache.get(key)
        if prof is not None:
            return prof
        now = time.monotonic()
        if now - self._missing.get(key, -1e18) < self.recheck_s:
            return None
        for p in (self.path(model, version), self.legacy_path(model, version)):
            if p is None:
                continue
            prof = self._load(model, version, p)
            if prof is not None:
                self._cache[key] = prof
                self._missing.pop(key, None)
                log.info("reference for %s v%s: %s (%s)", ascii(model), ascii(version), prof.id, p)
                return prof
        self._missing[key] = now
        return None

    def _load(self, model: str, version: str, p: Path) -> Any:
        from streams.judge.profile import ReferenceProfile

        try:
            if not p.is_file():
                return None
            prof = ReferenceProfile.load(p)
            if (str(prof.model), str(prof.model_version)) != (model, version):
                raise ValueError(f"it is the profile of {ascii(prof.model)} v{ascii(prof.model_version)}")
            return prof
        except Exception as exc:  # noqa: BLE001 - a bad file is "no reference", never a crash
            self._report(model, version, p, exc)
            return None

    def _report(self, model: str, version: str, p: Path, exc: BaseException) -> None:
        try:
            st = p.stat()
            sig = (str(p), st.st_size, st.st_mtime_ns)
        except OSError:
            sig = (str(p), -1, -1)
        if sig in self._reported:
            return
        self._reported.add(sig)
        self.broken += 1
        why = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("reference file %s for %s v%s is not a usable profile (%s); treated as no reference "
                    "(fix or remove it; it is read again within %g s)", p, ascii(model), ascii(version), why, self.recheck_s)
        if self.on_broken is not None:
            try:
                self.on_broken(model, version, p, why)
            except Exception:  # noqa: BLE001
                log.exception("on_broken callback failed")

    # ------------------------------------------------------------------ writes
    def put(self, profile: Any, save: bool = True) -> None:
        """Use ``profile`` for its (model, version) from now on; with ``save``, write it if no file exists."""
        key = (str(profile.model), str(profile.model_version))
        self._cache[key] = profile
        self._missing.pop(key, None)
        if save and not self.path(*key).exists():
            self.save(profile)

    def save(self, profile: Any) -> Path:
        """Write ``profile`` to its id path atomically (replacing any file there); returns the path."""
        p = self.path(str(profile.model), str(profile.model_version))
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.stem}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            profile.save(tmp)
            os.replace(tmp, p)
        finally:
            if tmp.exists():
                tmp.unlink()
        return p

    def forget(self, model: str, version: str) -> None:
        """Drop the cached profile and miss of (model, version): the next ``get`` reads the disk."""
        self._cache.pop((model, version), None)
        self._missing.pop((model, version), None)
