"""torchrun --nproc_per_node 2 (gloo, CPU) on the tiny model == one process on the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from audiovec.tiny import tiny_embedder

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "tiny" / "full.yaml"
COMMON = [
    "--steps", "2", "--batch_size", "8", "--checkpoint_every", "1", "--keep_last", "5",
    "--data.dev", "null", "--save_final", "false", "--plot", "false", "--warmup_steps", "1",
    # Adam's eps well above the tiny model's smallest gradients (~1e-9): at the default 1e-8 the first step
    # is lr * g / (|g| + eps), which turns float noise in a near-zero gradient into an update difference of
    # up to 8 % of lr; with 1e-4 the weights compare the two runs' gradients (they agree to 2e-7)
    "--eps", "1e-4",
]  # fmt: skip


def run(cmd: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_processes_match_one_process(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    # one process: the whole global batch of 8 at once
    run(
        [
            sys.executable,
            "-m",
            "audiovec.train",
            str(RECIPE),
            *COMMON,
            "--chunk_size",
            "0",
            "--output.dir",
            str(single),
        ]
    )
    # two processes × 4, each in GradCache chunks of 2, embeddings all-gathered with gradient
    run(
        ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "audiovec.train", str(RECIPE), *COMMON,
         "--chunk_size", "2", "--output.dir", str(double)]
    )  # fmt: skip
    one, two = losses(single), losses(double)
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert abs(a - b) <= 1e-5, (one, two)

    initial = dict(tiny_embedder(tower="qwen2_5_omni", backbone="qwen2", seed=0).named_parameters())
    for step in (1, 2):
        a = load_file(str(single / f"checkpoint-{step:08d}" / "trainable.safetensors"))
        b = load_file(str(double / f"checkpoint-{step:08d}" / "trainable.safetensors"))
        assert a.keys() == b.keys() and len(a) > 50
        moved = 0.0
        for name in a:
            torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=0, msg=name)
            if name in initial:
                moved = max(moved, (a[name] - initial[name].detach()).abs().max().item())
        assert moved > 1e-4  # the parameters really were updated
        assert "audio_bos_eos_token" not in " ".join(a)  # Qwen2.5-Omni's unused parameter stays frozen
