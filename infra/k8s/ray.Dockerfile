# The image of the Ray pods (RayCluster, RayJob submitter) and of the dispatcher:
# rayproject/ray of the Ray version driftloop is tested with, plus driftloop at /app.
# Same image everywhere = same Ray and Python versions on client and cluster, and the
# dispatcher's runtime_env "pythonpath" (/app) exists on every Ray node.
#   docker build -f infra/k8s/ray.Dockerfile -t driftloop-ray:2.60.0-py311-gpu .
# CPU-only variant (smaller): --build-arg RAY_IMAGE_SUFFIX=py311-cpu --build-arg TORCH_INDEX_URL=<PyTorch's CPU
#   wheel index> -t driftloop-ray:2.60.0-py311-cpu   (docker-compose.yml builds this one)
# tests/test_infra_files.py checks that RAY_VERSION equals the installed ray.__version__.
ARG RAY_VERSION=2.60.0
ARG RAY_IMAGE_SUFFIX=py311-gpu
FROM rayproject/ray:${RAY_VERSION}-${RAY_IMAGE_SUFFIX}
ARG RAY_VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 FEAST_USAGE=False DO_NOT_TRACK=1 RAY_USAGE_STATS_ENABLED=0
# the image's user is `ray` (uid 1000, gid 100); the editable install writes into /app
USER root
RUN mkdir -p /app && chown 1000:100 /app
USER 1000:100
WORKDIR /app
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 streams streams
COPY --chown=1000:100 trainers trainers
COPY --chown=1000:100 feature_repo feature_repo
COPY --chown=1000:100 infra infra
# PyTorch: from TORCH_INDEX_URL when set, before the project, so the project's install keeps it. docker-compose.yml
# passes PyTorch's CPU index there (CPU-only wheels, a fraction of the CUDA build's size). Empty (the default): torch
# comes from PyPI with the project, and PyPI's Linux x86_64 torch is the CUDA build (PyPI has no CPU-only torch: a
# `torch==X+cpu` cannot be published there). Neither variant is built by the project's CI (no Docker engine).
ARG TORCH_INDEX_URL=""
# keep the base image's Ray: driftloop accepts any ray[default]>=2.40
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch>=2.4"; fi \
 && pip install --no-cache-dir -e /app "ray[default]==${RAY_VERSION}"
