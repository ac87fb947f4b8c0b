"""benchmarks/bench_ray_encode.py at reduced size: the three paths run and write JSON of the documented
shape, and both parallel paths give the one-process vectors (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_bench_ray_encode_quick(tmp_path: Path) -> None:
    out = tmp_path / "ray.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_ray_encode.py"), "--quick", "--clips", "4", "--seconds", "2",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["workers"] == 2
    assert set(data["paths"]) == {"one process", "torchrun", "ray"}
    assert all(p["files_per_s"] > 0 and p["wall_s"] > 0 for p in data["paths"].values())
    assert all(d <= 1e-5 for d in data["max_abs_diff_vs_one_process"].values()), data
