"""Signed registry manifests: an HMAC-SHA256 over a version's manifest, with a key from the environment.

Hashes alone catch corruption, not an attacker: whoever can edit ``weights.safetensors`` can also
rewrite the sha256s in ``manifest.json`` and ``index.json``.  With a key set, :class:`ModelRegistry`
(``trainers/registry.py``) writes ``manifest["signature"] = {"alg": "hmac-sha256", "key_id", "hmac"}``
on ``register`` (and on ``promote``/``sign`` of an unsigned version while migrating) and checks it on
every ``verify``/``load``: a re-hashed manifest no longer matches its signature.

The key comes from ``DRIFTLOOP_REGISTRY_KEY`` (the key itself), else ``DRIFTLOOP_REGISTRY_KEY_FILE``
(a file holding it), else ``registry.key_file`` in the config; never from the config file itself.
With no key, manifests are neither signed nor checked (hashes only, as before).

>>> key = SigningKey(b"k" * 32, "test")
>>> m = {"format": "driftloop.registry/1", "model": "fraud", "version": "1", "files": {}}
>>> m["signature"] = key.sign(m)
>>> key.check(m).valid
True
>>> m["files"]["weights.safetensors"] = {"sha256": "00", "bytes": 1}
>>> key.check(m).valid
False
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from trainers.registry_records import IntegrityError, RegistryError

KEY_ENV = "DRIFTLOOP_REGISTRY_KEY"
KEY_FILE_ENV = "DRIFTLOOP_REGISTRY_KEY_FILE"
ALG = "hmac-sha256"
MIN_KEY_BYTES = 16
SIGNATURE = "signature"  # the manifest's field holding the signature
_MAKE_KEY = "python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class RegistrySettings:
    """The ``registry`` config section.

    ``allow_unsigned``: with a key set, still load unsigned manifests (a registry from before signing,
    while migrating: ``driftloop models sign`` them, then turn this off).  ``key_file``: a file holding the
    signing key, when neither ``DRIFTLOOP_REGISTRY_KEY`` nor ``DRIFTLOOP_REGISTRY_KEY_FILE`` is set.
    """

    allow_unsigned: bool = False
    key_file: str = ""


@dataclass(frozen=True)
class SignatureState:
    """What a manifest's signature says: ``signed`` or not, and ``valid`` (None: no key to check it with)."""

    signed: bool
    valid: bool | None
    key_id: str | None = None  # the signing key's id recorded in the manifest
    checked_with: str | None = None  # the id of the key it was checked with

    def describe(self) -> str:
        if not self.signed:
            return "unsigned" + ("" if self.checked_with is None else " (a registry key is set)")
        if self.valid is None:
            return f"signed (key {self.key_id}), not checked: no registry key set ({KEY_ENV})"
        if self.valid:
            return f"signed (key {self.key_id}), valid"
        return f"signed (key {self.key_id}), INVALID with key {self.checked_with}"


class SigningKey:
    """An HMAC key; its repr and ``key_id`` never show the secret."""

    __slots__ = ("_secret", "source")

    def __init__(self, secret: bytes, source: str) -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise RegistryError(f"the registry signing key from {source} is {len(secret)} bytes; use at least "
                                f"{MIN_KEY_BYTES} random bytes, e.g. {_MAKE_KEY}")
        self._secret = bytes(secret)
        self.source = source

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r}, source={self.source!r})"

    @property
    def key_id(self) -> str:
        """A short public name of the key (a hash of it), recorded beside each signature."""
        return hashlib.sha256(b"driftloop.registry.key-id\0" + self._secret).hexdigest()[:12]

    def digest(self, manifest: Mapping[str, Any]) -> str:
        return hmac.new(self._secret, canonical(manifest), hashlib.sha256).hexdigest()

    def sign(self, manifest: Mapping[str, Any]) -> dict[str, str]:
        """The signature to store as ``manifest["signature"]``."""
        return {"alg": ALG, "key_id": self.key_id, "hmac": self.digest(manifest)}

    def check(self, manifest: Mapping[str, Any]) -> SignatureState:
        sig = manifest.get(SIGNATURE)
        if not isinstance(sig, Mapping):
            return SignatureState(False, None, checked_with=self.key_id)
        ok = sig.get("alg") == ALG and hmac.compare_digest(str(sig.get("hmac", "")), self.digest(manifest))
        return SignatureState(True, ok, str(sig.get("key_id") or "?"), self.key_id)


def canonical(manifest: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the manifest without its signature, as sorted, compact, ASCII JSON."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def state_without_key(manifest: Mapping[str, Any]) -> SignatureState:
    sig = manifest.get(SIGNATURE)
    return SignatureState(isinstance(sig, Mapping), None, str(sig.get("key_id")) if isinstance(sig, Mapping) else None)


def load_key(settings: RegistrySettings | None = None, environ: Mapping[str, str] | None = None) -> SigningKey | None:
    """The signing key from ``DRIFTLOOP_REGISTRY_KEY``, ``DRIFTLOOP_REGISTRY_KEY_FILE`` or ``registry.key_file``
    (in that order), or None when none is set.  A key file that cannot be read is an error, not "no key"."""
    env = os.environ if environ is None else environ
    value = env.get(KEY_ENV, "")
    if value.strip():
        return SigningKey(value.strip().encode("utf-8"), KEY_ENV)
    path = env.get(KEY_FILE_ENV, "").strip() or (settings.key_file if settings else "")
    if not path:
        return None
    where = f"{KEY_FILE_ENV}={path}" if env.get(KEY_FILE_ENV, "").strip() else f"registry.key_file {path}"
    try:
        secret = Path(path).expanduser().read_bytes().strip()
    except OSError as exc:
        raise RegistryError(f"cannot read the registry signing key file ({where}): {exc.strerror}; create it "
                            f"(e.g. {_MAKE_KEY} > FILE; chmod 600 FILE) or unset it") from None
    return SigningKey(secret, f"key file {path}")


class SignatureError(IntegrityError):
    """A manifest's signature does not match it (files re-hashed after signing, or another key); refused."""

    def __init__(self, path: str | os.PathLike, state: SignatureState) -> None:
        RegistryError.__init__(
            self,
            f"manifest signature does not match: {os.fspath(path)} (signed with key {state.key_id}, checked with key "
            f"{state.checked_with}). The manifest or the files it lists were changed after signing; do not load it. "
            "Restore the version from a backup or register it again; if it was signed with another key, set that key.")
        self.path, self.expected, self.actual = os.fspath(path), str(state.key_id), str(state.checked_with)


class UnsignedManifest(RegistryError):
    """A registry key is set but a version's manifest carries no signature."""


def check_manifest(key: SigningKey, model: str, version: str, mpath: Path, manifest: Mapping[str, Any], *,
                   allow_unsigned: bool) -> SignatureState:
    """A version's manifest checked with ``key``: signed (else :class:`UnsignedManifest`, unless ``allow_unsigned``),
    validly (:class:`SignatureError`), for this model and version (a folder copied or moved: :class:`RegistryError`)."""
    state = key.check(manifest)
    if not state.signed:
        if allow_unsigned:
            return state
        raise UnsignedManifest(
            f"{mpath} is not signed, but a registry signing key is set ({key.source}); version {version} of "
            f"{model!r} is refused. If you trust it (a registry from before signing), sign it: `driftloop models "
            f"sign {model} {version}` (or `--all`); or set registry.allow_unsigned: true in the config while "
            "migrating. Otherwise register the version again.")
    if not state.valid:
        raise SignatureError(mpath, state)
    if manifest.get("model") != model or manifest.get("version") != version:
        raise RegistryError(
            f"{mpath} is signed for {manifest.get('model')!r} version {manifest.get('version')!r}, not {model!r} "
            f"version {version!r}: a version folder was copied or moved; restore it from a backup")
    return state
