"""Fixtures for the real local Ray cluster.

``ray_cluster`` (session): one local Ray head per test session (``ray start --head``,
2 CPUs, 200 MB object store, dashboard/Jobs API on a free 127.0.0.1 port, token
authentication on), started only when a test asks for it and stopped at session end.
``ray_jobs`` (session): a ``JobSubmissionClient`` for it.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running local Ray cluster (``trainers.dispatch.ray_cluster.LocalCluster``) for this session."""
    from trainers.dispatch.ray_cluster import AUTH_MODE_ENV, AUTH_TOKEN_PATH_ENV, start_local_cluster

    saved = {k: os.environ.get(k) for k in (AUTH_MODE_ENV, AUTH_TOKEN_PATH_ENV)}
    cluster = start_local_cluster(tmp_path_factory.mktemp("ray"), num_cpus=2, object_store_mb=200, timeout_s=180)
    try:
        yield cluster
    finally:
        cluster.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def ray_jobs(ray_cluster: Any) -> Any:
    """``ray.job_submission.JobSubmissionClient`` of the session cluster (token attached by Ray)."""
    from trainers.dispatch.ray_cluster import job_client, use_auth

    use_auth(ray_cluster.token_path)
    return job_client(ray_cluster.dashboard_url)
