# The image of the Ray pods (RayCluster, RayJob submitter) and of the dispatcher:
# rayproject/ray of the Ray version driftloop is tested with, plus driftloop at /app.
# Same image everywhere = same Ray and Python versions on client and cluster, and the
# dispatcher's runtime_env "pythonpath" (/app) exists on every Ray node.
#   docker build -f infra/k8s/ray.Dockerfile -t driftloop-ray:2.60.0-py311-gpu .
# CPU-only variant (smaller): --build-arg RAY_IMAGE_SUFFIX=py311-cpu -t driftloop-ray:2.60.0-py311-cpu
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
# keep the base image's Ray: driftloop accepts any ray[default]>=2.40
RUN pip install --no-cache-dir -e /app "ray[default]==${RAY_VERSION}"
