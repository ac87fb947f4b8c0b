"""The bootstrapping experiment at CI size: ``benchmarks/ablation.py --quick`` runs and writes valid JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = pytest.mark.slow


def test_ablation_quick_writes_every_cell(tmp_path: Path) -> None:
    out = tmp_path / "ablation.json"
    plot = tmp_path / "ablation.png"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "ablation.py"), "--quick", "--out", str(out), "--plot", str(plot),
         "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["benchmark"] == "ablation"
    assert data["machine"]["cores"] >= 1
    cells = data["cells"]
    assert {(c["variant"], c["tower"]) for c in cells} == {
        ("pretrained", "frozen"),
        ("random_both", "frozen"),
    }
    steps = {c["steps"] for c in cells}
    assert len(steps) == 1 and steps.pop() == data["settings"]["steps"]  # same updates in every cell
    for cell in cells:
        assert 0 < cell["fraction"] <= 1 and cell["train_clips"] >= 1
        for side in ("t2a", "a2t"):
            for metric in ("hit_rate@5", "recall@1", "ndcg@10"):
                assert 0.0 <= cell[side][metric] <= 1.0
            assert 0.0 < cell["chance"][side]["hit_rate@5"] < 1.0
        assert cell["wall_s"] > 0 and cell["final_loss"] is not None
    # the random variant really starts from fresh weights: no tower/backbone tensor equals the pretrained one
    check = data["random_init_check"]["random_both"]
    assert check["tensors"] > 100 and check["identical"] == []
    # the subsets are nested manifests of the corpus's training split; the test split is untouched
    subset = Path(data["corpus"]["subsets"]["0.5"])
    assert subset.is_file() and len(subset.read_text().splitlines()) == cells[0]["train_clips"]
    assert plot.is_file() and plot.stat().st_size > 0
