"""Shared by the GPU smoke check and the GPU benchmark: peak FLOP/s (datasheet and measured), MFU, and the
real training ``Trainer`` built on a saved model folder (fp32 master weights, bf16 autocast where supported).

Everything here runs on CPU too (tests), so the GPU run only meets code that has already run.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types
import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch

SR = 16_000
# dense (no sparsity) bf16 tensor-core peaks from the NVIDIA datasheets, TFLOP/s; matched on the device
# name, most specific first. H100 SXM and H200 share the same compute (989.4); the PCIe H100 is lower.
DATASHEET_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),
    ("H100", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("L4", 121.0),
)
CAPTIONS = ["a dog barks twice", "rain on a tin roof", "a man speaking", "a piano melody", "a siren passes"]


def stub_missing_audio_decoders() -> list[str]:
    """The device may lack soundfile/soxr (file decoding only); array inputs at 16 kHz never call them.
    Call before importing audiovec."""
    missing = []
    for name in ("soundfile", "soxr"):
        if importlib.util.find_spec(name) is None:
            module = types.ModuleType(name)

            def _absent(attr: str, _name: str = name) -> Any:
                raise ImportError(f"{_name} is not installed on this machine (needed only to decode files)")

            module.__getattr__ = _absent  # type: ignore[attr-defined]
            sys.modules[name] = module
            missing.append(name)
    return missing


def datasheet_peak_tflops(device_name: str) -> float | None:
    """The datasheet's dense bf16 peak of a GPU, by its name (``NVIDIA H200`` → 989); None if unknown."""
    for key, value in DATASHEET_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def mfu(flops: float, seconds: float, peak_tflops: float | None) -> float | None:
    """Model FLOP utilisation: ``flops / seconds`` over the peak; None without a peak or a time."""
    if not peak_tflops or seconds <= 0:
        return None
    return flops / seconds / (peak_tflops * 1e12)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_tflops(
    device: torch.device, n: int = 8192, iters: int = 20, dtype: torch.dtype = torch.bfloat16
) -> float:
    """Best achieved TFLOP/s of an ``n × n`` by ``n × n`` matmul (the practical peak MFU is judged against)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(iters):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - start) / 1e12)
    return best


def make_clips(n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Synthetic 16 kHz clips (tones + noise): the device has no data set."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR), dtype=np.float32) / SR
    clips = []
    for _ in range(n):
        f = rng.uniform(100, 2000)
        w = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.shape[0])
        clips.append(w.astype(np.float32))
    return clips


def write_manifest(folder: Path, clips: list[np.ndarray]) -> Path:
    """16-bit WAV files (stdlib ``wave``: no soundfile needed to write) and their JSONL manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, clip in enumerate(clips):
        path = folder / f"clip{i:04d}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SR)
            out.writeframes((np.clip(clip, -1, 1) * 32767).astype("<i2").tobytes())
        caption = f"{CAPTIONS[i % len(CAPTIONS)]} {i}"
        rows.append({"id": path.stem, "audio": str(path), "captions": [caption], "source": "synthetic"})
    manifest = folder / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def make_trainer(
    model_dir: Path, manifest: Path, out_dir: Path, batch: int, *, chunk: int = 0, checkpointing: bool = False
) -> Any:
    """The real :class:`audiovec.train.trainer.Trainer` on a saved model folder (its dtype is the master
    weights' dtype: save in fp32 for the trainer's fp32 + bf16-autocast setup), full fine-tuning."""
    from audiovec.train.config import DataSpec, ModelSpec, OutputSpec, Recipe, TrainSpec
    from audiovec.train.trainer import Trainer

    recipe = Recipe(
        model=ModelSpec(path=str(model_dir)),
        data=DataSpec(train=[str(manifest)], max_seconds=30.0),
        train=TrainSpec(
            trainable="full", steps=1000, batch_size=batch, chunk_size=chunk, lr=1e-5, warmup_steps=10,
            precision="auto", gradient_checkpointing=checkpointing,
        ),
        output=OutputSpec(dir=str(out_dir), plot=False, progress=False, save_final=False),
    )  # fmt: skip
    return Trainer(recipe)


def trainer_batch(trainer: Any, clips: list[np.ndarray]) -> dict[str, Any]:
    """A batch as the trainer's DataLoader builds it (``collate_audio``), from in-memory clips: no decoder
    is needed on the device, and the step is the trainer's own."""
    from audiovec.train.data import collate_audio

    items = [
        {"waveform": clip, "caption": f"{CAPTIONS[i % len(CAPTIONS)]} {i}", "labels": [], "id": f"clip{i}",
         "source": "synthetic", "index": i, "epoch": 0, "position": 0}
        for i, clip in enumerate(clips)
    ]  # fmt: skip
    return collate_audio(items, tokenizer=trainer.model.tokenizer, n_mels=trainer.model.tower.n_mels)


def enable_checkpointing(trainer: Any) -> None:
    """Turn on gradient checkpointing in a built trainer, as ``gradient_checkpointing: true`` does."""
    from audiovec.train.setup import enable_checkpointing as checkpointed

    checkpointed(trainer.model.backbone)
    checkpointed(trainer.model.tower.encoder)


def master_dtypes(trainer: Any) -> list[str]:
    """The dtypes of the trainable parameters (the optimizer's master weights)."""
    return sorted({str(p.dtype).removeprefix("torch.") for _, p in trainer.named})
