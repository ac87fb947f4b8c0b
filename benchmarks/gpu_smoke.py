"""GPU smoke check (< 3 min), run by ``gpu.sh`` before the full benchmark.

1. **vectors**: M1 (random weights, fp32) encodes clips (2 s and 12 s) and texts on the CPU; the same
   weights on CUDA in fp32 (TF32 off) must give the same vectors (cosine >= 0.9999, also after removing
   the mean vector, since random weights make all vectors alike), and in bf16 within bf16 tolerance
   (cosine >= 0.99). Without CUDA the CPU's bf16 is compared instead (the same code, for tests).
2. **trainer_step**: one step of the real ``audiovec.train.Trainer`` on the saved fp32 model (fp32 master
   weights, bf16 autocast, gradient checkpointing as in ``configs/m1.yaml``), a batch of 10 s clips: the
   loss is finite, the weights move, and the peak memory is reported.
3. **ddp** (``--ddp``, under ``torchrun``): a process group on NCCL (gloo without CUDA) over the GPUs
   present, one rank per GPU (a 1-rank group on one GPU): an all-reduce, then one DDP step of the real
   Trainer on the tiny model; every rank must end with the same weights.

Writes ``smoke.json`` (``ddp.json`` for step 3) to ``--out-dir``; exit status 1 when a check fails.
``--tiny`` runs everything on the tiny model (CPU tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _gpu import (  # noqa: E402
    SR,
    make_clips,
    make_trainer,
    master_dtypes,
    stub_missing_audio_decoders,
    sync,
    trainer_batch,
    write_manifest,
)

STUBBED = stub_missing_audio_decoders()

import numpy as np  # noqa: E402
import torch  # noqa: E402

TEXTS = ["a dog barks twice", "rain on a tin roof", "a man speaking about the weather"]
FP32_COSINE = 0.9999
FP32_CENTERED_COSINE = 0.99
BF16_COSINE = 0.99


def compare(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Row cosines and max abs difference of two sets of unit vectors, also after removing the mean row."""
    cos = (reference * other).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1))
    ref_c, oth_c = reference - reference.mean(0), other - other.mean(0)
    denom = np.linalg.norm(ref_c, axis=1) * np.linalg.norm(oth_c, axis=1)
    centered = (ref_c * oth_c).sum(1) / np.maximum(denom, 1e-30)
    return {
        "min_cosine": float(cos.min()),
        "min_centered_cosine": float(centered.min()),
        "max_abs_diff": float(np.abs(reference - other).max()),
    }


def _encode(model: Any) -> tuple[np.ndarray, np.ndarray]:
    clips = make_clips(3, 2.0) + make_clips(1, 12.0, seed=3)
    audio = model.encode_audio(clips, batch_size=4, sample_rate=SR)
    return np.asarray(audio, dtype=np.float64), np.asarray(model.encode_text(TEXTS), dtype=np.float64)


def check_vectors(model: Any, model_dir: Path) -> dict[str, Any]:
    """CPU fp32 reference → (CUDA fp32, CUDA bf16) or (CPU bf16); saves the fp32 weights to ``model_dir``."""
    model.eval()
    ref_audio, ref_text = _encode(model)
    model.save_pretrained(model_dir)  # fp32 master weights for the trainer step
    cuda = torch.cuda.is_available()
    targets = [("cuda fp32", "cuda", torch.float32), ("cuda bf16", "cuda", torch.bfloat16)]
    if not cuda:
        targets = [("cpu bf16", "cpu", torch.bfloat16)]
    out: dict[str, Any] = {"reference": "cpu fp32", "ok": True}
    for name, device, dtype in targets:
        model.to(device=device, dtype=dtype)
        audio, text = _encode(model)
        entry = {"audio": compare(ref_audio, audio), "text": compare(ref_text, text)}
        fp32 = dtype == torch.float32
        ok = all(
            e["min_cosine"] >= (FP32_COSINE if fp32 else BF16_COSINE)
            and (not fp32 or e["min_centered_cosine"] >= FP32_CENTERED_COSINE)
            for e in (entry["audio"], entry["text"])
        )
        entry["ok"] = ok
        out[name] = entry
        out["ok"] = out["ok"] and ok
    model.to("cpu")
    return out


def check_trainer_step(model_dir: Path, work: Path, batch: int, seconds: float) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    clips = make_clips(batch, seconds, seed=1)
    manifest = write_manifest(work / "clips", clips)
    trainer = make_trainer(model_dir, manifest, work / "run", batch, checkpointing=True)
    data = trainer_batch(trainer, clips)
    watch = dict(trainer.named[:1] + [(n, p) for n, p in trainer.named if n.startswith("projector.")][:1])
    before = {n: p.detach().clone() for n, p in watch.items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    loss = trainer.train_step(data)
    sync(device)
    step_s = time.perf_counter() - start
    moved = {n: not torch.equal(before[n], p.detach()) for n, p in watch.items()}
    amp = str(trainer.amp).removeprefix("torch.") if trainer.amp is not None else None
    masters = master_dtypes(trainer)
    ok = math.isfinite(loss) and all(moved.values()) and masters == ["float32"]
    ok = ok and (amp == "bfloat16" or device.type != "cuda")
    return {
        "ok": ok, "device": str(device), "batch": batch, "clip_seconds": seconds, "loss": loss,
        "step_s": step_s, "weights_moved": moved, "master_weights": masters, "autocast": amp,
        "gradient_checkpointing": True,
        "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }  # fmt: skip


def run_ddp(out_dir: Path, work: Path) -> int:
    """One rank of the DDP check (``torchrun --nproc_per_node N gpu_smoke.py --ddp``)."""
    import torch.distributed as dist

    from audiovec.tiny import save_tiny_embedder

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend=backend)  # also with one rank: NCCL itself is what is checked
    result: dict[str, Any] = {"backend": backend, "world_size": world, "ok": False}
    try:
        total = torch.tensor([float(rank + 1)], device=device)
        dist.all_reduce(total)
        result["all_reduce_ok"] = float(total) == world * (world + 1) / 2
        model_dir = work / "tiny-ddp"
        if rank == 0:
            save_tiny_embedder(model_dir)
        dist.barrier()
        clips = make_clips(4 * world, 2.0, seed=2)
        manifest = write_manifest(work / f"clips-rank{rank}", clips)
        trainer = make_trainer(model_dir, manifest, work / f"run-ddp{rank}", 4 * world)
        if trainer.world == 1:  # the Trainer wraps in DDP from 2 processes on; one rank: wrap it the same way
            from torch.nn.parallel import DistributedDataParallel

            trainer.encoder = DistributedDataParallel(trainer.encoder, device_ids=[local] if cuda else None)
        result["wrapped_in_ddp"] = type(trainer.encoder).__name__ == "DistributedDataParallel"
        mine = clips[rank * 4 : rank * 4 + 4]  # each rank its own slice of the global batch
        loss = trainer.train_step(trainer_batch(trainer, mine))
        checksum = torch.stack([p.detach().double().sum() for _, p in trainer.named]).to(device)
        sums = [torch.zeros_like(checksum) for _ in range(world)]
        dist.all_gather(sums, checksum)
        result["weights_equal_across_ranks"] = all(torch.equal(sums[0], s) for s in sums)
        result["loss"] = loss
        result["ok"] = bool(
            result["all_reduce_ok"] and result["weights_equal_across_ranks"] and math.isfinite(loss)
            and result["wrapped_in_ddp"]
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - report, then fail
        result.update(error=repr(exc)[:500], trace=traceback.format_exc()[-2000:])
    finally:
        with contextlib.suppress(Exception):
            dist.barrier()  # leave together: a rank tearing gloo down while another still talks aborts it
            dist.destroy_process_group()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "ddp.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"ddp: {json.dumps(result, default=str)}", flush=True)
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE / "results" / "gpu")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("/tmp/audiovec-gpu"), help="saved models, clips"
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny model (CPU tests)")
    parser.add_argument("--ddp", action="store_true", help="the DDP check only (run under torchrun)")
    parser.add_argument("--train-batch", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.ddp:
        return run_ddp(args.out_dir, args.work_dir)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 on CUDA must be fp32 for the tight comparison
    torch.backends.cudnn.allow_tf32 = False
    from _models import build_model, describe

    name = "tiny" if args.tiny else "m1"
    batch = args.train_batch or (4 if args.tiny else 8)
    seconds = min(args.seconds, 2.0) if args.tiny else args.seconds
    report: dict[str, Any] = {"benchmark": "gpu_smoke", "model_name": name, "stubbed_modules": STUBBED,
                              "torch": torch.__version__, "cuda": torch.cuda.is_available()}  # fmt: skip
    if torch.cuda.is_available():
        report["device_name"] = torch.cuda.get_device_name(0)
    start = time.perf_counter()
    model = build_model(name, dtype=torch.float32, device="cpu")
    report["model"] = describe(model)
    model_dir = args.work_dir / f"{name}-fp32"
    status = 0
    for section, fn in (
        ("vectors", lambda: check_vectors(model, model_dir)),
        ("trainer_step", lambda: check_trainer_step(model_dir, args.work_dir, batch, seconds)),
    ):
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - one failing check must not hide the others
            value = {"ok": False, "error": repr(exc)[:500], "trace": traceback.format_exc()[-2000:]}
        value["section_s"] = time.perf_counter() - t0
        report[section] = value
        status |= 0 if value["ok"] else 1
        print(f"{section}: {json.dumps(value, default=str)}", flush=True)
        if section == "vectors":
            del model
    report["model_dir"] = str(model_dir)
    report["total_s"] = time.perf_counter() - start
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "smoke.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
