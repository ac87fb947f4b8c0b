"""The ```python examples of docs/integrations.md run, section by section, in an empty working folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"


def sections() -> dict[str, list[str]]:
    """``{"## heading": [python blocks]}`` for the sections of the page that have examples."""
    found: dict[str, list[str]] = {}
    for part in re.split(r"^(?=## )", DOC.read_text(encoding="utf-8"), flags=re.M):
        heading = part.splitlines()[0] if part.startswith("## ") else None
        blocks = re.findall(r"^```python\n(.*?)^```$", part, flags=re.M | re.S)
        if heading and blocks:
            found[heading] = blocks
    return found


def test_the_page_has_the_sections_this_suite_expects() -> None:
    expected = {
        "## sentence-transformers",
        "## MTEB",
        "## Model cards and the Hub",
        "## LanceDB",
        "## Ray Data",
    }
    assert expected <= set(sections())


@pytest.mark.slow
@pytest.mark.parametrize("heading", sorted(sections()))
def test_examples_run(heading: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the examples never reach the network
    for block in sections()[heading]:
        code = compile(block, f"{DOC.name} ({heading})", "exec", dont_inherit=True)  # no __future__ of ours
        exec(code, {"__name__": "__docs__"})  # noqa: S102
    assert os.getcwd() == str(tmp_path)
