#!/usr/bin/env bash
# GPU check: one fine-tuning job through the dispatcher -> Ray Jobs API path (see check_gpu_finetune.py).
#
#   bash infra/gpu/check_gpu_finetune.sh [--rows 200000 --dim 64 --epochs 3 ...]
#
# Python: $PYTHON, else the repo's .venv when it works here, else python3.  When that Python
# cannot import ray (the GPU machine: no network, no ray), the wheels in .whl/ are installed
# into its environment (prepare them here with `python3 infra/gpu/prepare_wheels.py`, then
# carry .whl); last resort: pip from the network.
# Writes $OUT/gpu_finetune.json when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]] && .venv/bin/python -c "import ray, torch" 2>/dev/null; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import ray, safetensors, yaml" 2>/dev/null; then
  # Into the interpreter's own environment, not --target + PYTHONPATH: Ray starts its job
  # supervisor workers with a PYTHONPATH of its own, and they must still import ray.
  if compgen -G ".whl/*.whl" >/dev/null; then
    echo "installing $(ls .whl/*.whl | wc -l) carried wheels" >&2
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl
  else
    echo "no ray here and no .whl/: trying pip (needs network)" >&2
    "$PY" -m pip install -q "ray[default]==2.60.0" safetensors pyyaml
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
"$PY" -c "import torch, ray; print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'ray', ray.__version__, 'cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" infra/gpu/check_gpu_finetune.py "$@"
