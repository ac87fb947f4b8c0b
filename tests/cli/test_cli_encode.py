"""``audiovec encode`` as a user runs it: a real subprocess over real files, one of them broken."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from audiovec.model import AudioTextEmbedder


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audiovec.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_encode_folder_skips_bad_file(tiny_model_dir, fsdd_clips, tmp_path):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    for p in fsdd_clips[:3]:
        shutil.copy(p, folder / p.name)
    shutil.copy(fsdd_clips[3], folder / "sub" / fsdd_clips[3].name)
    (folder / "corrupt.wav").write_bytes(b"not audio at all" * 10)
    (folder / "notes.txt").write_text("ignored: not an audio extension")
    out = tmp_path / "vectors.npy"
    proc = _run("encode", str(tiny_model_dir), str(folder), "--out", str(out), "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert "corrupt.wav" in proc.stderr and "encoded 4 of 5 files" in proc.stderr
    vectors = np.load(out)
    ids = [json.loads(line) for line in out.with_suffix(".ids.jsonl").read_text().splitlines()]
    assert vectors.shape == (4, 64) and len(ids) == 4
    model = AudioTextEmbedder.from_pretrained(tiny_model_dir)
    expected = model.encode_audio([row["path"] for row in ids])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_encode_all_good_exits_zero(tiny_model_dir, fsdd_clips, tmp_path):
    out = tmp_path / "v.npy"
    proc = _run("encode", str(tiny_model_dir), *map(str, fsdd_clips[:2]), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert np.load(out).shape == (2, 64)


def test_encode_missing_model_is_a_clear_error(fsdd_clips, tmp_path):
    proc = _run("encode", str(tmp_path / "no-model"), str(fsdd_clips[0]), "--out", str(tmp_path / "v.npy"))
    assert proc.returncode == 1
    assert "no-model" in proc.stderr and "not found" in proc.stderr


@pytest.mark.slow
def test_encode_sharded_under_torchrun(tiny_model_dir, fsdd_clips, tmp_path):
    out = tmp_path / "v.npy"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free rendezvous port: a fixed one fails when anything else holds it
        "--nproc_per_node",
        "2",
        "-m",
        "audiovec.cli",
        "encode",
        str(tiny_model_dir),
        *map(str, fsdd_clips[:5]),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    single = tmp_path / "single.npy"
    assert (
        _run(
            "encode", str(tiny_model_dir), *map(str, fsdd_clips[:5]), "--out", str(single), "--no-progress"
        ).returncode
        == 0
    )
    np.testing.assert_allclose(np.load(out), np.load(single), atol=1e-5)
