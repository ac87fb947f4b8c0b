"""The recipe ablation on held-out real sources at CI size: ``benchmarks/ablation_real.py --quick`` (small
real-sound corpus, two variants, a few steps) runs and writes JSON of the documented shape; a resumed run adds
a second seed without rerunning the first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

pytestmark = pytest.mark.slow


def _ablation(tmp_path: Path, corpus: Path, *extra: str) -> None:
    out, plot = tmp_path / "ablation_real.json", tmp_path / "ablation_real.png"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "ablation_real.py"), "--quick", "--out", str(out), "--plot", str(plot),
         "--work", str(tmp_path / "work"), "--corpus", str(corpus), *extra],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ablation_real_quick_writes_every_variant(tmp_path: Path, small_real_corpus: Path) -> None:
    out = tmp_path / "ablation_real.json"
    plot = tmp_path / "ablation_real.png"
    _ablation(tmp_path, small_real_corpus)
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["benchmark"] == "ablation_real"
    assert [v["variant"] for v in data["variants"]] == ["default", "random_audio"]
    assert data["corpus"]["heldout"]["by_kind"] == {"real": data["corpus"]["heldout"]["total"]}
    for variant in data["variants"]:
        assert variant["steps"] == data["steps"]  # the same updates for every variant
        assert 0.0 <= variant["t2a_hit_rate@5"] <= 1.0 and variant["by_category"]
    assert plot.stat().st_size > 1000
    first = {(v["variant"], v["seed"]): v for v in data["variants"]}

    _ablation(tmp_path, small_real_corpus, "--resume", "--variants", "default", "--seeds", "0", "1")
    data = json.loads(out.read_text())
    assert [(v["variant"], v["seed"]) for v in data["variants"]] == [
        ("default", 0),
        ("random_audio", 0),
        ("default", 1),
    ]
    assert data["variants"][0] == first[("default", 0)]  # resumed, not rerun
    default = next(row for row in data["summary"] if row["variant"] == "default")
    assert default["seeds"] == [0, 1] and default["t2a_hit_rate@5_sd"] is not None
