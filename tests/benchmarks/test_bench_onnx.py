"""Reduced-size runs of the ONNX and peer benchmarks: they finish and write JSON of the documented shape
(parity and quality bounds are asserted where the quick run measures enough; no timing is asserted)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.bench import run_quick

pytest.importorskip("onnxruntime")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
# a corpus built by `audiovec data sounds --out DIR` (docs/corpus.md); $AUDIOVEC_CORPUS names DIR
HELDOUT = Path(os.environ.get("AUDIOVEC_CORPUS", "runs/corpus")) / "heldout.jsonl"


def run(script: str, tmp_path: Path, *args: str) -> dict:
    return run_quick(script, tmp_path, *args, timeout=900)


@pytest.mark.slow
@pytest.mark.skipif(not HELDOUT.is_file(), reason=f"the built corpus is not at {HELDOUT} (docs/corpus.md)")
def test_bench_onnx_quick(tmp_path: Path) -> None:
    data = run("bench_onnx.py", tmp_path)
    assert data["parity"]["fp32"]["audio_max_abs_diff"] < 1e-4
    assert data["parity"]["fp32"]["text_max_abs_diff"] < 1e-4
    assert data["parity"]["int8"]["audio_cosine_mean"] >= 0.99
    q = data["quality"]
    assert q["onnx_fp32"]["t2a_hit_rate@5"] == q["torch_fp32"]["t2a_hit_rate@5"]
    assert q["torch_fp32"]["t2a_hit_rate@5"] > q["chance_t2a_hit_rate@5"]
    assert set(data["speed"]["paths"]) == {"torch_fp32", "torch_bf16", "onnx_fp32", "onnx_int8"}
    assert all(p["speedup_vs_baseline"] > 0 for p in data["speed"]["paths"].values())
    assert data["graph_mb"]["int8"] < 0.6 * data["graph_mb"]["fp32"]


@pytest.mark.slow
def test_bench_peers_quick(tmp_path: Path) -> None:
    data = run("bench_peers.py", tmp_path)
    paths = {p["path"]: p for p in data["paths"]}
    assert {"audiovec_fp32", "audiovec_int8_onnx"} <= set(paths)
    if data["peers_skipped"] is None:
        assert {"htsat_tiny", "htsat_base"} <= set(paths)
        assert paths["htsat_base"]["params"] > paths["htsat_tiny"]["params"] > 1e7
        assert paths["htsat_tiny"]["dim"] == 768 and paths["audiovec_fp32"]["dim"] == 384
    for row in paths.values():
        assert row["items_per_s"] > 0 and row["rss_after_load_mb"] > 0
