"""The Feast feature repository of the demo domain (card payments) and its tools.

Definitions, one file per concern: ``entities.py``, ``data_sources.py``,
``feature_views.py``, ``feature_services.py``.  ``data_gen.py`` writes the
Parquet sources (seeded) into ``data/`` (git-ignored, regenerated on demand),
``cli.py`` is ``driftloop features``, ``offline.py`` builds training tables.

Importing this package turns Feast's telemetry-like side channels off unless the
user set them explicitly: ``FEAST_USAGE=False`` (usage reporting of older Feast
releases; 0.67 has no usage module left, the variable is set for safety) and
``FEAST_OPENLINEAGE_ENABLED=false`` (OpenLineage emission; only active when the
``openlineage`` package and a config section exist, off here regardless).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("FEAST_OPENLINEAGE_ENABLED", "false")

#: The repository folder shipped with driftloop (holds feature_store.yaml).
REPO_PATH = Path(__file__).resolve().parent
