"""Open, apply and materialise the repository through Feast's Python API.

``open_store`` picks the online store: ``"sqlite"`` (embedded default, from
``feature_store.yaml``) or ``"redis"`` (``feature_store.redis.yaml``; the address is
given here or read from ``DRIFTLOOP_REDIS_CONNECTION``).  Importing this module
imports Feast; keep it out of module level in command modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import feature_repo  # noqa: F401  (sets the telemetry opt-outs before Feast is imported)
from feast import FeatureService, FeatureStore

ONLINE_STORES = ("sqlite", "redis")
REDIS_ENV = "DRIFTLOOP_REDIS_CONNECTION"
DEFAULT_REDIS = "127.0.0.1:6379"


def config_file(repo_path: str | Path, online: str = "sqlite") -> Path:
    """The feature_store*.yaml of ``repo_path`` for the chosen online store."""
    if online not in ONLINE_STORES:
        raise ValueError(f"online store {online!r} is not one of {ONLINE_STORES}")
    name = "feature_store.yaml" if online == "sqlite" else "feature_store.redis.yaml"
    path = Path(repo_path) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {repo_path} a driftloop feature repository?")
    return path


def open_store(repo_path: str | Path, online: str = "sqlite", redis_connection: str | None = None) -> FeatureStore:
    """A FeatureStore on ``repo_path`` with the chosen online store."""
    path = config_file(repo_path, online)
    if online == "redis":
        if redis_connection:
            os.environ[REDIS_ENV] = redis_connection
        else:
            os.environ.setdefault(REDIS_ENV, DEFAULT_REDIS)
    return FeatureStore(repo_path=str(Path(repo_path).resolve()), fs_yaml_file=path.resolve())


@dataclass(frozen=True)
class ApplyResult:
    applied: list[str]
    deleted: list[str]


def apply(store: FeatureStore) -> ApplyResult:
    """Register every object of ``feature_repo.definitions`` and delete registered objects
    that are no longer defined (what ``feast apply`` does for a repository)."""
    from feature_repo.definitions import objects

    wanted = objects()
    names = {(type(o).__name__, o.name) for o in wanted}
    stale: list[Any] = []
    try:
        registered = [
            *store.list_feature_services(),
            *store.list_feature_views(),
            *store.list_entities(),
            *store.list_data_sources(),
        ]
    except Exception:  # empty or missing registry: nothing to delete
        registered = []
    for obj in registered:
        if (type(obj).__name__, obj.name) not in names and obj.name != "__dummy":
            stale.append(obj)
    store.apply(wanted, objects_to_delete=stale, partial=not stale)
    return ApplyResult(sorted(f"{t}:{n}" for t, n in names), sorted(f"{type(o).__name__}:{o.name}" for o in stale))


def materialize(store: FeatureStore, end: datetime | None = None, views: list[str] | None = None) -> datetime:
    """Incremental materialisation up to ``end`` (default: now); returns ``end``."""
    end = end or datetime.now(timezone.utc)
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    store.materialize_incremental(end_date=end, feature_views=views)
    return end


def feature_service_for(store: FeatureStore, model: str, version: str | None = None) -> FeatureService:
    """The service feeding ``model`` (``<model>_v<version>``, then ``<model>``), or a clear error."""
    tried = [f"{model}_v{version}"] if version is not None else []
    tried.append(model)
    for name in tried:
        try:
            return store.get_feature_service(name)
        except Exception:
            continue
    known = sorted(s.name for s in store.list_feature_services())
    raise LookupError(
        f"no feature service for model {model!r} version {version!r} (tried {tried}); "
        f"known services: {known}. Define one in feature_repo/feature_services.py and run `driftloop features apply`."
    )


def service_refs(service: FeatureService) -> list[str]:
    """``view:feature`` references of a service (what get_online_features takes)."""
    refs = []
    for proj in service.feature_view_projections:
        for f in proj.features:
            refs.append(f"{proj.name_to_use()}:{f.name}")
    return refs


def request_features(service: FeatureService) -> list[str]:
    raw = (service.tags or {}).get("request_features", "")
    return [s.strip() for s in raw.split(",") if s.strip()]
