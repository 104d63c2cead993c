"""The layout keeps its promises: pure folders import no Kafka, Faust, Feast or Ray; modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURE = ["streams/contracts", "streams/judge", "streams/alerts", "streams/worker", "streams/report", "trainers/training",
        "trainers/records.py", "trainers/dispatch/ledger.py"]
ADAPTER_PACKAGES = {"faust", "aiokafka", "kafka", "feast", "ray", "mode"}


def _modules(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = ROOT / p
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


@pytest.mark.parametrize("path", _modules(PURE), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_import_no_adapter_package(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):  # lazy imports inside functions count too
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & ADAPTER_PACKAGES, f"{path.relative_to(ROOT)} imports {sorted(imported & ADAPTER_PACKAGES)}"


def test_no_module_is_over_about_500_lines():
    big = {str(p.relative_to(ROOT)): n for p in _modules(["streams", "trainers"])
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 520}
    assert not big, f"split these modules (over ~500 lines): {big}"
