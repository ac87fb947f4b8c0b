"""Reduced-size runs of benchmarks/routing_latency.py and benchmarks/search_1m.py (shape, not timing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.bench import run_quick

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def run(script: str, tmp_path: Path, *args: str) -> dict:
    return run_quick(script, tmp_path, *args, timeout=1500)


ALL = {
    "exact",
    "audiovec_hnsw",
    "usearch_f32",
    "faiss_hnsw",
    "faiss_ivfpq",
    "lancedb_ivf_pq",
    "lancedb_ivf_hnsw_sq",
    "lancedb_ivf_hnsw_pq",
}
GRAPHS = ("audiovec_hnsw", "usearch_f32", "faiss_hnsw")


def check_search(data: dict, methods: set[str]) -> None:
    by = {r["method"]: r for r in data["results"]}
    assert set(by) == methods
    assert by["exact"]["best"]["recall_at_10"] == 1.0
    # recall is a property of the algorithms, not of the machine: the graphs find the true neighbours
    for name in set(GRAPHS) & methods:
        assert max(p["recall_at_10"] for p in by[name]["sweep"]) >= 0.95, name
    for r in data["results"]:
        assert all(p["p50_ms"] > 0 and p["p99_ms"] >= p["p50_ms"] for p in r["sweep"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_search_1m_reduced_every_method(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    pytest.importorskip("usearch")
    data = run("search_1m.py", tmp_path)  # --quick: 5,000 rows, 20 queries
    assert data["config"]["rows"] == 5000 and data["config"]["clusters"] == 20
    check_search(data, ALL)


@pytest.mark.slow
def test_routing_latency_reduced(tmp_path: Path) -> None:
    pytest.importorskip("ctranslate2")
    pytest.importorskip("sentence_transformers")
    data = run("routing_latency.py", tmp_path, "--intents", "2", "--test-speakers", "1")
    assert data["config"]["intents"] == ["lights_on", "lights_off"] and data["config"]["test_clips"] == 18
    assert set(data["modes"]) == {"phrases", "phrases+clips", "serve, phrases+clips"}
    for mode in data["modes"].values():
        for way in ("audiovec", "asr"):
            assert 0.0 <= mode[way]["accuracy"] <= 1.0 and mode[way]["p50_ms"] > 0
            assert set(mode[way]["per_language"]) == {"English", "French", "German", "Spanish"}
    # Whisper tiny.en transcribes eSpeak English commands: the ASR baseline is a real one
    assert data["modes"]["phrases"]["asr"]["per_language"]["English"] >= 0.5
    assert isinstance(data["goal"]["phrases"]["holds"], bool)
