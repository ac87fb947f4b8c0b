"""A training run killed with SIGKILL and resumed logs the same losses as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "tiny" / "m1.yaml"
ARGS = [
    "--steps", "30", "--batch_size", "8", "--chunk_size", "4", "--checkpoint_every", "4", "--keep_last", "2",
    "--data.dev", "null", "--save_final", "false", "--plot", "false", "--data.train", "[{fsdd: {n: 64}}]",
]  # fmt: skip
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "audiovec.train", str(RECIPE), *ARGS, "--output.dir", str(out), *extra]


def train_losses(out: Path) -> dict[int, float]:
    records = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


@pytest.mark.slow
def test_sigkill_then_resume_reproduces_losses(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = subprocess.run(command(straight), env=ENV, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = train_losses(straight)
    assert sorted(reference) == list(range(1, 31))

    proc = subprocess.Popen(
        command(killed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO
    )
    deadline = time.monotonic() + 300
    while not any(int(p.name[-8:]) >= 8 for p in killed.glob("checkpoint-*")):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    partial = train_losses(killed)
    assert 8 <= max(partial) < 30  # really stopped mid-run

    done = subprocess.run(
        command(killed, "--resume"), env=ENV, capture_output=True, text=True, timeout=400, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stderr
    resumed = train_losses(killed)
    assert sorted(resumed) == list(range(1, 31))  # each step logged once, no gaps
    for step, loss in reference.items():
        assert abs(resumed[step] - loss) <= 1e-6, (step, resumed[step], loss)
    kept = sorted(p.name for p in killed.glob("checkpoint-*"))
    assert kept == ["checkpoint-00000028", "checkpoint-00000030"]  # keep_last 2
    assert not list(killed.glob(".tmp-*"))
