"""The GPU script on CPU: the command it builds (python or python3, torchrun over the GPUs present), the smoke
check's comparisons, the peaks and MFU arithmetic, and a whole tiny run with only ``python3`` on PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from _gpu import datasheet_peak_tflops, measure_matmul_tflops, mfu  # noqa: E402
from gpu_smoke import compare  # noqa: E402


def _bin(tmp_path: Path, pythons: tuple[str, ...]) -> Path:
    """A PATH folder with the shell tools gpu.sh uses and the given python names (→ this interpreter)."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    for tool in ("dirname", "timeout", "rm", "mkdir", "bash", "env"):
        (folder / tool).symlink_to(shutil.which(tool))
    for name in pythons:  # a wrapper, not a symlink: a venv's python linked from elsewhere loses its venv
        wrapper = folder / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
    return folder


def _gpu_sh(tmp_path: Path, *args: str, pythons=("python3",), timeout: int = 60, **env: str):
    path = _bin(tmp_path, pythons)
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "GPU_COUNT", "OUT", "WORK")}
    environ.update(PATH=str(path), OUT=str(tmp_path / "out"), WORK=str(tmp_path / "work"), **env)
    return subprocess.run(
        [str(BENCH / "gpu.sh"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        check=False,
    )


def _commands(stdout: str) -> list[str]:
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


# ---------------------------------------------------------------------------------------------- gpu.sh
def test_python3_is_used_when_python_is_absent(tmp_path) -> None:
    proc = _gpu_sh(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert all(" python3 " in f" {c} " for c in _commands(proc.stdout))


def test_python_is_preferred_and_python_env_wins(tmp_path) -> None:
    proc = _gpu_sh(tmp_path, "--dry-run", pythons=("python", "python3"))
    assert _commands(proc.stdout)[0].split()[2] == "python"
    proc = _gpu_sh(tmp_path / "b", "--dry-run", PYTHON=sys.executable)
    assert _commands(proc.stdout)[0].split()[2] == sys.executable


def test_no_python_is_one_clear_line(tmp_path) -> None:
    proc = _gpu_sh(tmp_path, "--dry-run", pythons=())
    assert proc.returncode == 2 and "neither python nor python3" in proc.stderr


def test_plan_smoke_then_nccl_over_every_gpu_then_the_benchmark(tmp_path) -> None:
    proc = _gpu_sh(tmp_path, "--dry-run", "--steps", "3", GPU_COUNT="4")
    smoke, ddp, bench = _commands(proc.stdout)
    assert "gpu_smoke.py" in smoke and "--ddp" not in smoke and smoke.startswith("timeout 130 ")
    assert "-m torch.distributed.run --standalone --nproc_per_node 4" in ddp and ddp.endswith(
        f"--work-dir {tmp_path / 'work'}/ddp"
    )
    assert "on nccl" in proc.stdout
    assert "bench_gpu.py" in bench and "--budget-s 300 --steps 3" in bench
    assert f"--model-dir {tmp_path / 'work'}/m1-fp32" in bench  # the smoke step's fp32 folder, reused
    one = _gpu_sh(tmp_path / "one", "--dry-run", "--smoke", GPU_COUNT="1")
    assert len(_commands(one.stdout)) == 2 and "--nproc_per_node 1" in _commands(one.stdout)[1]
    assert "on nccl" in one.stdout  # one GPU: a 1-rank NCCL group, not skipped


def test_a_failing_step_fails_the_script_but_the_others_still_run(tmp_path) -> None:
    proc = _gpu_sh(tmp_path, "--smoke", PYTHON="false", GPU_COUNT="0")
    assert proc.returncode == 1
    assert len(_commands(proc.stdout)) == 2 and proc.stderr.count("gpu.sh: failed") == 2


def test_tiny_run_end_to_end_with_only_python3(tmp_path) -> None:
    """The whole prepared command on CPU: smoke (vectors, Trainer step), DDP over gloo, the benchmark."""
    proc = _gpu_sh(tmp_path, "--tiny", "--steps", "1", "--all-configs", timeout=600, OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    smoke = json.loads((out / "smoke.json").read_text())
    assert smoke["vectors"]["ok"] and smoke["vectors"]["cpu bf16"]["audio"]["min_cosine"] >= 0.99
    step = smoke["trainer_step"]
    assert step["ok"] and step["master_weights"] == ["float32"] and all(step["weights_moved"].values())
    ddp = json.loads((out / "ddp.json").read_text())
    assert ddp["ok"] and ddp["backend"] == "gloo" and ddp["world_size"] == 1 and ddp["wrapped_in_ddp"]
    data = json.loads((out / "gpu.json").read_text())
    assert (out / "gpu.md").read_text().startswith("# GPU benchmark")
    peak, enc, train = (data["sections"][k] for k in ("peak", "encode", "train"))
    assert peak["measured_matmul_bf16_tflops"] > 0 and peak["datasheet_bf16_dense_tflops"] is None  # a CPU
    assert enc["encode_audio_clips_per_s"] > 0 and enc["mfu_measured_peak"] > 0
    assert train["step"] == "audiovec.train.Trainer.train_step" and train["master_weights"] == ["float32"]
    assert [a["config"] for a in train["attempts"]] == ["plain", "checkpointing", "gradcache+checkpointing"]
    assert all(a["status"] == "ok" and a["mfu_measured_peak"] > 0 for a in train["attempts"])
    assert train["attempts"][2]["chunk_size"] == 4 and train["model_flops_per_step_tflop"] > 0


def test_ddp_check_with_two_ranks(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(BENCH / "gpu_smoke.py"), "--ddp", "--out-dir", str(tmp_path), "--work-dir", str(tmp_path / "w")],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    assert ddp["world_size"] == 2 and ddp["weights_equal_across_ranks"] and ddp["all_reduce_ok"]


# ---------------------------------------------------------------------------------------------- arithmetic
@pytest.mark.parametrize(
    ("name", "peak"),
    [("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
     ("NVIDIA A100-SXM4-80GB", 312.0), ("Tesla T4", None)],
)  # fmt: skip
def test_datasheet_peak_by_device_name(name, peak) -> None:
    assert datasheet_peak_tflops(name) == peak


def test_mfu_arithmetic() -> None:
    assert mfu(989e12 * 0.45 * 2.0, 2.0, 989.0) == pytest.approx(0.45)
    assert mfu(1e12, 1.0, 800.0) == pytest.approx(1 / 800)
    assert mfu(1e12, 1.0, None) is None and mfu(1e12, 0.0, 989.0) is None


def test_measured_matmul_peak_is_positive_on_cpu() -> None:
    assert measure_matmul_tflops(torch.device("cpu"), n=64, iters=2) > 0


def test_compare_finds_what_the_smoke_check_must_catch() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal(64)
    ref = np.stack([base + 0.01 * rng.standard_normal(64) for _ in range(4)])  # random weights: all alike
    same = compare(ref, ref.copy())
    assert same["min_cosine"] == pytest.approx(1) and same["min_centered_cosine"] == pytest.approx(1)
    shuffled = compare(ref, ref[[1, 0, 3, 2]])  # rows swapped: raw cosines still ~1, centred ones are not
    assert shuffled["min_cosine"] > 0.99 and shuffled["min_centered_cosine"] < 0.5
