"""Model registry: versioned weights with provenance, integrity checks and a promotion pointer.

A registry is a folder (default ``streams.config.home()/"registry"``)::

    <root>/<model>/index.json               versions, current pointer, promotion history
    <root>/<model>/versions/<v>/weights.safetensors
                                spec.json        ModelSpec (+ class names)
                                tokenizer.<feature>.json   tokenizer of each text feature (if any)
                                replay.npz       replay buffer of this version (optional)
                                provenance.json  parent, alerts, request, window, metrics, code, base model
                                report.json/.txt promotion-gate report (optional)
                                manifest.json    sha256 and size of every file above

Weights are safetensors (never pickles).  Every load re-hashes every file against the manifest, and the
manifest against the hash kept in ``index.json``; a mismatch raises :class:`IntegrityError` naming the file
and both hashes.  With a signing key (:mod:`trainers.registry_signing`) every manifest carries an HMAC-SHA256
that every load checks, so editing a file and re-hashing the manifest is caught too (:class:`SignatureError`);
an unsigned manifest is then refused unless ``registry.allow_unsigned``.  A version is staged in a temporary
folder and renamed into place, and ``index.json`` is replaced atomically under a file lock, so a crash never
leaves a half-written version or pointer.

The registry is pure: :meth:`ModelRegistry.promote` and :meth:`ModelRegistry.rollback` (and the live evaluation's
methods, :mod:`trainers.registry_live`: shadow, reject, end of a watch) return the
:class:`~trainers.records.ModelUpdate` to publish; callers publish it.

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
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from trainers.licences import LicenceError, LicencePolicy  # noqa: F401
from trainers.records import ModelUpdate
from trainers.registry_live import LiveEvaluation
from trainers.registry_records import (_NAME, IntegrityError, LoadedVersion, Provenance, RegistryError, VersionInfo,  # noqa: F401
                                       _check_name, _fsync_dir, _write_json_atomic, code_version, end_live_states, live_verdict,
                                       served_at, serving_change, set_live_verdict, sha256_file, tokenizer_file)
from trainers.registry_signing import (SIGNATURE, RegistrySettings, SignatureError, SignatureState, SigningKey,  # noqa: F401
                                       UnsignedManifest, check_manifest, load_key, state_without_key)
from streams.contracts.events import json_default

FORMAT = "driftloop.registry/1"
WEIGHTS = "weights.safetensors"
SPEC = "spec.json"
REPLAY = "replay.npz"
PROVENANCE = "provenance.json"
REPORT_JSON = "report.json"
REPORT_TEXT = "report.txt"
MANIFEST = "manifest.json"


# --------------------------------------------------------------------------- registry


_FROM_ENV: Any = object()


class ModelRegistry(LiveEvaluation):
    """A folder of model versions (see the module docstring for the layout).

    ``key``: the manifest signing key (default: from the environment or ``settings.key_file``, see
    :func:`trainers.registry_signing.load_key`; None: no signing).  ``settings``: the ``registry`` config section.
    """

    def __init__(self, root: str | os.PathLike, *, settings: RegistrySettings | None = None,
                 key: SigningKey | None = _FROM_ENV) -> None:
        self.root = Path(root).resolve()
        self.settings = settings or RegistrySettings()
        self.key: SigningKey | None = load_key(self.settings) if key is _FROM_ENV else key

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
        licence_policy: LicencePolicy | None = None,
    ) -> VersionInfo:
        """Write a new version (next integer) and return its info. It is not promoted.

        ``replay`` is a ``ReplayBuffer`` (saved as ``replay.npz``, its ``model_version`` set to the
        new version) or ``None``.
        ``gate_passed`` records the gate verdict (``report["promoted"]`` when not given).
        ``provenance.base_model`` (a backbone origin) must pass ``licence_policy`` (default: OSI licences
        only), else :class:`LicenceError`; the decision is recorded in it.  Text features' tokenizers are
        stored beside the weights, and the spec's preprocessing fingerprint in the weights' metadata.
        """
        from safetensors.torch import save_file

        model = _check_name("model", model)
        prov = provenance or Provenance()
        if prov.base_model:  # the licence gate: refuse a backbone whose licence is not allowed (or accepted)
            decision = (licence_policy or LicencePolicy()).require(prov.base_model)
            prov.base_model = dict(prov.base_model, licence_decision=decision.to_dict())
        if not prov.code_version:
            prov.code_version = code_version()
        if gate_passed is None and report is not None and "promoted" in report:
            gate_passed = bool(report["promoted"])
        mdir = self.model_dir(model)
        (mdir / "versions").mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=mdir))
        try:
            tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
            fingerprint = spec.fingerprint() if hasattr(spec, "fingerprint") else ""
            save_file(tensors, str(stage / WEIGHTS),
                      metadata={"format": FORMAT, "model": model, "preprocessing_sha256": fingerprint})
            for feature, raw in (spec.tokenizer_files() if getattr(spec, "text", None) else {}).items():
                (stage / tokenizer_file(feature)).write_bytes(raw)
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
                if self.key is not None:
                    manifest[SIGNATURE] = self.key.sign(manifest)
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

    def promote(self, model: str, version: str, *, action: str = "promote", licence_policy: LicencePolicy | None = None,
                actor: str = "", reason: str = "", watch: bool = False, evidence: Mapping[str, Any] | None = None
                ) -> ModelUpdate:
        """Make ``version`` current (after verifying its files and its backbone's licence under
        ``licence_policy``, default OSI only: :class:`LicenceError`) and return the ModelUpdate to publish.
        ``actor`` and ``reason`` go into the serving history (:meth:`changes`).  ``watch``: the previous version is
        served in shadow while the new one is watched (``index["watch"]``; ended by :meth:`end_watch` or
        :meth:`rollback`).  A candidate in shadow or an earlier watch ends here.  ``evidence``: the live gate's, kept
        as the version's live verdict ``promoted``."""
        version = _check_name("version", version)
        self._check_servable(model, version, licence_policy)
        with self._locked(model):
            index = self._read_index(model)
            if version not in index["versions"]:
                raise RegistryError(f"model {model!r} has no version {version!r}; see `driftloop models list`")
            previous = index.get("current")
            if previous == version:
                raise RegistryError(f"version {version} of {model!r} is already current")
            if watch and previous is None:
                raise RegistryError(f"version {version} of {model!r} is its first promoted version: there is no "
                                    "parent to watch it against; promote it without watch")
            if previous is not None:
                index["history"].append(previous)
            index["current"] = version
            index["versions"][version]["promoted_at"] = time.time()
            if evidence is not None:
                set_live_verdict(index["versions"][version], live_verdict("promoted", actor, reason, evidence))
            change = serving_change(action, version, previous, self.version_dir(model, version),
                                    index["versions"][version], actor, reason)
            change.update(end_live_states(index))
            if watch:
                index["watch"] = change["watch"] = {"version": version, "parent": previous, "since": change["at"]}
            index.setdefault("changes", []).append(change)
            self._write_index(model, index)
            if self.key is not None and not self.signature(model, version).signed:
                self._sign_locked(model, version, index)  # allowed unsigned (migration): promoted versions get signed
            sha = index["versions"][version]["weights_sha256"]
        return ModelUpdate(model=model, version=version, previous_version=previous, action=action, sha256=sha,
                           shadow=previous if watch else None)

    def rollback(self, model: str, *, actor: str = "", reason: str = "", evidence: Mapping[str, Any] | None = None,
                 version: str | None = None) -> ModelUpdate | None:
        """Make the previously promoted version current again; returns the ModelUpdate to publish.  The rolled-back
        version keeps the live verdict ``rolled_back`` (with ``evidence``); a watch or a shadow ends.  ``version``: the
        version to roll back (a redo after a crash: None when it was rolled back already; RegistryError when it is
        not live)."""
        with self._locked(model):
            index = self._read_index(model)
            if version is not None and index.get("current") != version:
                if (index["versions"].get(version, {}).get("live_verdict") or {}).get("verdict") == "rolled_back":
                    return None
                raise RegistryError(f"version {version} of {model!r} is not live (live: {index.get('current')}); "
                                    "nothing to roll back")
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
            set_live_verdict(index["versions"][previous], live_verdict("rolled_back", actor, reason, evidence))
            change = serving_change("rollback", target, previous, self.version_dir(model, target),
                                    index["versions"][target], actor, reason)
            index.setdefault("changes", []).append(dict(change, **end_live_states(index)))
            self._write_index(model, index)
            sha = index["versions"][target]["weights_sha256"]
        return ModelUpdate(model=model, version=target, previous_version=previous, action="rollback", sha256=sha)

    # ------------------------------------------------------------ read
    def current(self, model: str) -> str | None:
        return self._read_index(model).get("current")

    def history(self, model: str) -> list[str]:
        return list(self._read_index(model).get("history") or [])

    def changes(self, model: str) -> list[dict[str, Any]]:
        """The serving history: every promotion and rollback (registry_records.serving_change), oldest first."""
        return list(self._read_index(model).get("changes") or [])

    def served_at(self, model: str, at: float) -> str | None:
        """The version that was live at wall-clock time ``at`` (epoch seconds); None before the first promotion."""
        return served_at(self.changes(model), at)

    def versions(self, model: str) -> list[VersionInfo]:
        index = self._read_index(model)
        return [self._info(model, v, index) for v in sorted(index["versions"], key=_version_key)]

    def info(self, model: str, version: str | None = None) -> VersionInfo:
        index = self._read_index(model)
        version = self._resolve(model, version, index)
        return self._info(model, version, index)

    def known_versions(self, model: str) -> set[str] | None:
        """The registered versions of ``model``, or None when the registry does not hold it (any name: a name
        the registry could not store is simply unknown).  The dispatcher's request check asks this."""
        if _NAME.match(str(model)) is None or not (self.root / model / "index.json").is_file():
            return None
        return set(self._read_index(model).get("versions") or {})

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
            live_verdict=entry.get("live_verdict"), live_verdicts=list(entry.get("live_verdicts") or []),
        )

    def verify(self, model: str, version: str | None = None) -> dict[str, str]:
        """Re-hash every file of a version; return {file: sha256} or raise IntegrityError.

        With a signing key the manifest's signature is checked first (:class:`SignatureError`), and an unsigned
        manifest is refused (:class:`UnsignedManifest`) unless ``registry.allow_unsigned``."""
        return self._verify(model, version, allow_unsigned=self.settings.allow_unsigned)

    def _verify(self, model: str, version: str | None, *, allow_unsigned: bool) -> dict[str, str]:
        index = self._read_index(model)
        version = self._resolve(model, version, index)
        vdir = self.version_dir(model, version)
        mpath = vdir / MANIFEST
        if not mpath.is_file():
            raise RegistryError(f"{mpath} is missing; version {version} of {model!r} is incomplete")
        raw = mpath.read_bytes()
        try:
            manifest = json.loads(raw)
        except ValueError:
            manifest = None
        if self.key is not None and isinstance(manifest, dict):  # before the index: a re-hashed index is no help
            check_manifest(self.key, model, version, mpath, manifest, allow_unsigned=allow_unsigned)
        expected = index["versions"][version].get("manifest_sha256")
        actual = hashlib.sha256(raw).hexdigest()
        if expected and actual != expected:
            raise IntegrityError(mpath, expected, actual)
        if not isinstance(manifest, dict):
            raise RegistryError(f"{mpath} is not a JSON manifest; restore the version from a backup or register again")
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

    def signature(self, model: str, version: str | None = None) -> SignatureState:
        """Whether a version's manifest is signed, and (with a key) whether the signature is valid; reads no other file."""
        index = self._read_index(model)
        version = self._resolve(model, version, index)
        mpath = self.version_dir(model, version) / MANIFEST
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read {mpath} ({exc}); restore the version from a backup") from None
        return self.key.check(manifest) if self.key is not None else state_without_key(manifest)

    def sign(self, model: str, version: str | None = None) -> SignatureState:
        """Sign an unsigned version after checking its files against its manifest (migrating a registry from
        before signing); a version already signed with this key is left as it is."""
        if self.key is None:
            raise RegistryError("no registry signing key is set; set DRIFTLOOP_REGISTRY_KEY (or "
                                "DRIFTLOOP_REGISTRY_KEY_FILE, or registry.key_file) first")
        version = self._resolve(model, version, self._read_index(model))
        with self._locked(model):
            self._verify(model, version, allow_unsigned=True)
            index = self._read_index(model)
            return self._sign_locked(model, version, index)

    def _sign_locked(self, model: str, version: str, index: dict[str, Any]) -> SignatureState:
        """Write the signature of an unsigned manifest and its new hash into the index (the caller holds the lock)."""
        assert self.key is not None
        mpath = self.version_dir(model, version) / MANIFEST
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        state = self.key.check(manifest)
        if state.signed:
            if not state.valid:
                raise SignatureError(mpath, state)
            return state
        manifest[SIGNATURE] = self.key.sign(manifest)
        _write_json_atomic(mpath, manifest)
        index["versions"][version]["manifest_sha256"] = sha256_file(mpath)
        self._write_index(model, index)
        return self.key.check(manifest)

    def load(self, model: str, version: str | None = None, *, with_replay: bool = True,
             expect_preprocessing: Any = None) -> LoadedVersion:
        """Verify and load a version (default: the current one), its tokenizers attached to its spec.

        Raises :class:`PreprocessingMismatch` when the spec no longer encodes inputs as the weights were
        trained (e.g. its feature order was changed), or differs from ``expect_preprocessing`` (a
        ModelSpec or a fingerprint: the caller's own preprocessing, e.g. a server's)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        from trainers.training.models import ModelSpec, PreprocessingMismatch

        index = self._read_index(model)
        version = self._resolve(model, version, index)
        hashes = self.verify(model, version)
        vdir = self.version_dir(model, version)
        spec_d = json.loads((vdir / SPEC).read_text(encoding="utf-8"))
        classes = spec_d.pop("classes", None)
        spec = ModelSpec.from_dict(spec_d)
        for feature in spec.text:
            spec.attach_tokenizer(feature, (vdir / tokenizer_file(feature)).read_bytes())
        with safe_open(str(vdir / WEIGHTS), framework="pt") as fh:
            trained_with = (fh.metadata() or {}).get("preprocessing_sha256")
        if trained_with and trained_with != spec.fingerprint():
            raise PreprocessingMismatch(
                f"{model} v{version}: {vdir / SPEC} encodes inputs differently from how the weights were trained "
                f"(preprocessing {spec.fingerprint()[:12]}... vs {trained_with[:12]}...: feature order, scaling, "
                "categories or tokenizer changed); register a new version instead of editing the spec")
        if expect_preprocessing is not None:
            if isinstance(expect_preprocessing, ModelSpec):
                expect_preprocessing.check_same_preprocessing(spec)
            elif expect_preprocessing != spec.fingerprint():
                raise PreprocessingMismatch(f"{model} v{version}: preprocessing {spec.fingerprint()[:12]}... is not "
                                            f"the expected {str(expect_preprocessing)[:12]}...")
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
