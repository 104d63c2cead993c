"""The ``features`` config section: where the feature repository is and which online store it uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class FeaturesSettings:
    """``features:`` section.  ``repo_path`` empty = the repository shipped in ``feature_repo/``.

    ``online_store``: ``sqlite`` (embedded default) or ``redis`` (address in ``redis_connection``,
    else ``DRIFTLOOP_REDIS_CONNECTION``, else ``127.0.0.1:6379``).  ``seed`` and the sizes
    drive ``driftloop features generate``.
    """

    repo_path: str = ""
    online_store: str = "sqlite"
    redis_connection: str = ""
    seed: int = 7
    days: int = 14
    n_customers: int = 500
    n_merchants: int = 100
    n_transactions: int = 20_000

    def __post_init__(self) -> None:
        if self.online_store not in ("sqlite", "redis"):
            raise ValueError(f"features.online_store must be 'sqlite' or 'redis', got {self.online_store!r}")

    @property
    def repo(self) -> Path:
        from feature_repo import REPO_PATH

        return Path(self.repo_path).resolve() if self.repo_path else REPO_PATH


def load(raw: Mapping[str, Any]) -> FeaturesSettings:
    from streams.config import section

    return section(FeaturesSettings, raw.get("features"), "features")
