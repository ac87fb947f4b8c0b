"""The layering the design names is true and stays true: the import-linter contract in pyproject.toml
(ground → model → build/evaluation → train → apps → demo/serve → cli), and no module reaches into another's
private names (``from audiovec.x import _y``, ``x._y`` on an imported audiovec module)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = [REPO / "src" / "audiovec", REPO / "benchmarks"]


def private_uses(path: Path) -> list[str]:
    """``file:line name`` for each private name of another audiovec module this file uses."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()  # local names bound to audiovec modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("audiovec"):
            for alias in node.names:
                own_package = path.name == "__init__.py" and node.module == _package(path)
                if alias.name.startswith("_") and not alias.name.startswith("__") and not own_package:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.module}.{alias.name}")
                if (alias.asname or alias.name).islower():  # a module (classes are CapWords; their
                    modules.add(alias.asname or alias.name)  # methods are shared by subclass-like reuse)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("audiovec") and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def _package(init: Path) -> str:
    return ".".join(init.parent.relative_to(REPO / "src").parts)


def test_no_private_names_across_modules() -> None:
    files = [p for root in SCANNED for p in sorted(root.rglob("*.py"))]
    assert files
    uses = [use for path in files for use in private_uses(path)]
    assert not uses, "private names used across modules:\n" + "\n".join(uses)


def test_private_use_is_detected(tmp_path: Path) -> None:
    planted = REPO / "benchmarks" / "_planted_private_use.py"  # inside REPO so the reported path is relative
    planted.write_text("from audiovec.model import _unit\nfrom audiovec import model\nmodel._dtype('fp32')\n")
    try:
        assert len(private_uses(planted)) == 2
    finally:
        planted.unlink()


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is in the test extra")
def test_import_contract_is_kept() -> None:
    run = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
