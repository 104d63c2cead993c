"""Fetch the wheels the GPU machine lacks (Ray with its dashboard/Jobs API deps) into ``.whl/``.

The GPU machine has PyTorch, numpy, aiohttp, grpcio, protobuf, requests, prometheus-client,
pyyaml, safetensors ... but no Ray and no network.  This downloads (with pip, here) the
missing wheels for its Python (3.12, manylinux x86-64), and slims Ray's wheel (drops the
Java jars, RLlib and ray.llm: 79 MB -> about 45 MB) so that everything fits the 64 MiB a
device call may carry.  Then carry ``.whl`` and run ``bash infra/gpu/check_gpu_finetune.sh``.

    python3 infra/gpu/prepare_wheels.py [--python-version 3.12] [--dest .whl]

Add ``/.whl/`` to ``.git/info/exclude`` so the wheels never get committed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Versions pinned to what the project's .venv runs (ray 2.60.0 and its [default] extras).
WHEELS = [
    "ray==2.60.0", "aiohttp_cors==0.8.1", "colorful==0.5.8", "opencensus==0.11.4", "opencensus-context==0.1.3",
    "opentelemetry-api==1.45.2", "opentelemetry-sdk==1.45.2", "opentelemetry-exporter-prometheus==0.66b2",
    "opentelemetry-proto==1.45.2", "opentelemetry-semantic-conventions==0.66b2", "pydantic==2.14.4",
    "pydantic-core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5", "typing-extensions==4.16.0",
    "jsonschema==4.26.0", "jsonschema-specifications==2025.9.1", "referencing==0.37.0", "rpds-py==2026.9.1",
    "googleapis-common-protos==1.76.0",
]
DROP = ("ray/jars/", "ray/rllib/", "ray/llm/")
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]


def slim(wheel: Path, drop: tuple[str, ...] = DROP) -> Path:
    """Rewrite ``wheel`` without the ``drop`` folders, RECORD updated. Returns the same path."""
    tmp = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        record_name = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
        kept = []
        for item in zin.infolist():
            if item.filename.startswith(drop) or item.filename == record_name:
                continue
            data = zin.read(item)
            zout.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            kept.append(f"{item.filename},sha256={digest},{len(data)}")
        kept.append(f"{record_name},,")
        zout.writestr(record_name, "\n".join(kept) + "\n")
    tmp.replace(wheel)
    return wheel


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python-version", default="3.12")
    p.add_argument("--dest", type=Path, default=ROOT / ".whl")
    p.add_argument("--pip", default=f"{sys.executable} -m pip", help="pip command (default: this Python's)")
    args = p.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    cmd = args.pip.split() + ["download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                              args.python_version, "--implementation", "cp", "-d", str(args.dest)]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd + WHEELS, check=True)
    for w in args.dest.glob("ray-*.whl"):
        before = w.stat().st_size
        slim(w)
        print(f"slimmed {w.name}: {before / 2**20:.1f} -> {w.stat().st_size / 2**20:.1f} MiB")
    total = sum(w.stat().st_size for w in args.dest.glob("*.whl"))
    print(f"{len(list(args.dest.glob('*.whl')))} wheels, {total / 2**20:.1f} MiB in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
