"""Run the atheris decode fuzz target for a bounded time in a subprocess: no crash, hang, OOM or stray error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audiovec.data.fsdd import bundled_files as fsdd_files
from helpers.badaudio import make_corpus, restore_permissions

pytest.importorskip("atheris")

TARGET = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_decode.py"
MAX_LEN = 65536


def seed_folder(root: Path) -> Path:
    """The target's own seeds plus every small regular file of the bad-input corpus (M4A, WebM, broken...)."""
    seeds = root / "seeds"
    subprocess.run(
        [sys.executable, str(TARGET), "--write-seeds", str(seeds)], check=True, capture_output=True
    )
    cases = make_corpus(root / "corpus", fsdd_files()[::60][:3])
    try:
        for case in cases:
            path = case.path
            readable = path.is_file() and not path.is_symlink() and os.access(path, os.R_OK)
            if readable and 0 < path.stat().st_size <= MAX_LEN:
                shutil.copyfile(path, seeds / f"{case.kind}{path.suffix}")
    finally:
        restore_permissions(cases)
    return seeds


def run_fuzzer(tmp_path: Path, seconds: int) -> tuple[int, str]:
    seeds = seed_folder(tmp_path)
    work, artifacts = tmp_path / "work", tmp_path / "artifacts"
    work.mkdir()
    artifacts.mkdir()
    args = [
        sys.executable,
        str(TARGET),
        str(work),
        str(seeds),
        f"-max_total_time={seconds}",
        "-timeout=30",
        "-rss_limit_mb=3072",
        f"-max_len={MAX_LEN}",
        "-seed=1234",
        f"-artifact_prefix={artifacts}/",
    ]
    proc = subprocess.run(
        args, capture_output=True, text=True, errors="replace", timeout=seconds + 300, cwd=tmp_path
    )
    log = proc.stdout + proc.stderr
    found = sorted(p.name for p in artifacts.iterdir())
    assert proc.returncode == 0 and not found, f"fuzzer found {found}:\n{log[-4000:]}"
    runs = re.search(r"Done (\d+) runs", log)
    assert runs, log[-2000:]
    return int(runs.group(1)), log


def test_fuzz_decode_briefly(tmp_path: Path) -> None:
    runs, _ = run_fuzzer(tmp_path, seconds=15)
    assert runs > 100  # it really executed inputs


@pytest.mark.slow
def test_fuzz_decode_for_minutes(tmp_path: Path) -> None:
    """One minute in CI (the default suite runs 15 s); longer campaigns: AUDIOVEC_FUZZ_SECONDS=3600."""
    seconds = int(os.environ.get("AUDIOVEC_FUZZ_SECONDS", "60"))
    runs, _ = run_fuzzer(tmp_path, seconds=seconds)
    assert runs > 30 * seconds
