"""GPU benchmark: M1 at full size (Qwen3-Omni audio tower + Qwen2.5-0.5B, random weights).

Measures (1) the practical peak: the best bf16 matmul TFLOP/s of the device; (2) encoding throughput on
10 s clips with bf16 weights: ``encode_audio`` end to end (features on the GPU) and the model forward alone
on precomputed features; (3) the training step of the real ``audiovec.train.Trainer`` at batch 128 (fp32
master weights, bf16 autocast, AdamW, symmetric InfoNCE, as ``audiovec train`` runs it), trying plain →
gradient checkpointing → GradCache until one fits, with peak memory; (4) model FLOP utilisation: FLOPs of
one plain step counted with ``torch.utils.flop_counter.FlopCounterMode`` (on a small batch, scaled
linearly; recomputation not counted) over the measured step time, against both the datasheet's dense bf16
peak (989 TFLOP/s for H100 SXM / H200; ``--peak-tflops`` overrides) and the measured matmul peak.

Needs only torch, transformers (and numpy); no network, no weights. Results go to ``--out-dir``
(``$OUT`` from ``gpu.sh``) as ``gpu.json`` and ``gpu.md``, rewritten after every section so a timeout
still leaves what was measured. ``--tiny`` runs the same code on the tiny model (CPU or GPU) for tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _gpu import (  # noqa: E402
    datasheet_peak_tflops,
    enable_checkpointing,
    make_clips,
    make_trainer,
    master_dtypes,
    measure_matmul_tflops,
    mfu,
    stub_missing_audio_decoders,
    sync,
    trainer_batch,
    write_manifest,
)

STUBBED = stub_missing_audio_decoders()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _models import build_model, describe  # noqa: E402

SR = 16_000


class Report:
    """Collects results and rewrites ``gpu.json`` / ``gpu.md`` after each section."""

    def __init__(self, out_dir: Path, meta: dict[str, Any]) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, Any] = {"benchmark": "gpu", **meta, "sections": {}}

    def add(self, name: str, value: Any) -> None:
        self.data["sections"][name] = value
        self.flush()

    def flush(self) -> None:
        (self.out_dir / "gpu.json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        (self.out_dir / "gpu.md").write_text(self.markdown())

    def markdown(self) -> str:
        d = self.data
        lines = [f"# GPU benchmark ({d.get('model_name')})", "",
                 f"device: {d.get('device_name')}; torch {d.get('torch')}; transformers {d.get('transformers')}",
                 f"model: {json.dumps(d.get('model'))}", ""]  # fmt: skip
        for name, sec in d["sections"].items():
            lines.append(f"## {name}")
            if isinstance(sec, dict):
                for k, v in sec.items():
                    lines.append(f"- {k}: {_fmt(v)}")
            else:
                lines.append(f"- {_fmt(sec)}")
            lines.append("")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "; ".join(_fmt(x) for x in v)
    return str(v)


def reset_mem(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def count_flops(fn: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def peaks(args: Any, device: torch.device, device_name: str) -> dict[str, Any]:
    """The two peaks MFU is reported against: the datasheet's (or ``--peak-tflops``) and a measured matmul."""
    n = args.matmul_n or (512 if device.type == "cpu" else 8192)
    measured = measure_matmul_tflops(device, n=n, iters=3 if device.type == "cpu" else 20)
    datasheet = args.peak_tflops or datasheet_peak_tflops(device_name)
    return {
        "datasheet_bf16_dense_tflops": datasheet,
        "datasheet_source": "--peak-tflops" if args.peak_tflops else ("device name" if datasheet else None),
        "measured_matmul_bf16_tflops": measured,
        "matmul_n": n,
        "measured_over_datasheet": measured / datasheet if datasheet else None,
    }


def _mfus(flops: float, seconds: float, peak: dict[str, Any]) -> dict[str, float | None]:
    return {
        "mfu_datasheet": mfu(flops, seconds, peak["datasheet_bf16_dense_tflops"]),
        "mfu_measured_peak": mfu(flops, seconds, peak["measured_matmul_bf16_tflops"]),
    }


# ---------------------------------------------------------------------------------------------- encode
def bench_encode(model: Any, device: torch.device, args: Any, peak: dict[str, Any]) -> dict[str, Any]:
    clips = make_clips(args.encode_clips, args.seconds)
    batch = args.encode_batch
    model.encode_audio(clips[:batch], batch_size=batch, sample_rate=SR)  # warm-up
    sync(device)
    reset_mem(device)
    start = time.perf_counter()
    model.encode_audio(clips, batch_size=batch, sample_rate=SR)
    sync(device)
    e2e = time.perf_counter() - start
    peak_mem = peak_gb(device)

    feats = model.featurize(clips[:batch])
    with torch.inference_mode():
        model.forward_audio(**feats)
        sync(device)
        reps = max(1, args.encode_clips // batch)
        start = time.perf_counter()
        for _ in range(reps):
            model.forward_audio(**feats)
        sync(device)
        fwd = (time.perf_counter() - start) / reps
        flops = count_flops(lambda: model.forward_audio(**feats))
    return {
        "clips": args.encode_clips,
        "clip_seconds": args.seconds,
        "batch": batch,
        "weights": str(model.dtype).removeprefix("torch."),
        "encode_audio_clips_per_s": args.encode_clips / e2e,
        "forward_only_clips_per_s": batch / fwd,
        "forward_flops_per_clip_gflop": flops / batch / 1e9,
        "forward_tflops_per_s": flops / fwd / 1e12,
        **_mfus(flops, fwd, peak),
        "peak_memory_gb": peak_mem,
    }


# ---------------------------------------------------------------------------------------------- train
TRAIN_CONFIGS = (("plain", False, 0), ("checkpointing", True, 0), ("gradcache+checkpointing", True, None))


def fp32_model_dir(args: Any, name: str, device: torch.device) -> Path:
    """The fp32 model folder the trainer loads (the smoke check's when it exists, else built and saved)."""
    folder = args.model_dir or (args.work_dir / f"{name}-fp32")
    if not (folder / "config.json").is_file():
        model = build_model(name, dtype=torch.float32, device=str(device))
        model.save_pretrained(folder)
        del model
        reset_mem(device)
    return folder


def bench_train(
    model_dir: Path, device: torch.device, args: Any, deadline: float, peak: dict[str, Any]
) -> dict[str, Any]:
    """The real Trainer's ``train_step``: built once; checkpointing and GradCache switched on in turn (as
    ``gradient_checkpointing`` / ``chunk_size`` in a recipe) until a step fits, or all with --all-configs."""
    b = args.train_batch
    clips = make_clips(b, args.seconds, seed=1)
    manifest = write_manifest(args.work_dir / "train-clips", clips)
    trainer = make_trainer(model_dir, manifest, args.work_dir / "run", b)
    batch = trainer_batch(trainer, clips)
    small = min(8, b)
    # model FLOPs of one plain step (forward + backward), counted on a small batch and scaled
    flops = count_flops(lambda: trainer.train_step(trainer_batch(trainer, clips[:small]))) * b / small
    result: dict[str, Any] = {
        "batch": b,
        "clip_seconds": args.seconds,
        "step": "audiovec.train.Trainer.train_step",
        "master_weights": master_dtypes(trainer),
        "autocast": str(trainer.amp).removeprefix("torch.") if trainer.amp is not None else None,
        "model_flops_per_step_tflop": flops / 1e12,
    }
    attempts: list[dict[str, Any]] = []
    for name, ckpt, chunk in TRAIN_CONFIGS:
        if time.monotonic() > deadline:
            attempts.append({"config": name, "status": "skipped (time budget)"})
            break
        if ckpt:
            enable_checkpointing(trainer)
        trainer.recipe.train.chunk_size = args.chunk if chunk is None else chunk
        trainer.optimizer.zero_grad(set_to_none=True)
        reset_mem(device)
        try:
            trainer.train_step(batch)  # warm-up (allocates optimiser state on the first config)
            sync(device)
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                trainer.train_step(batch)
                sync(device)
                times.append(time.perf_counter() - start)
                if time.monotonic() > deadline:
                    break
            step_s = float(np.median(times))
            entry = {"config": name, "status": "ok", "chunk_size": trainer.recipe.train.chunk_size,
                     "step_s": step_s, "samples_per_s": b / step_s, "peak_memory_gb": peak_gb(device),
                     "achieved_tflops_per_s": flops / step_s / 1e12, **_mfus(flops, step_s, peak),
                     "steps_timed": len(times)}  # fmt: skip
            attempts.append(entry)
            if not args.all_configs:
                break
        except torch.OutOfMemoryError as exc:
            attempts.append({"config": name, "status": f"out of memory ({str(exc).splitlines()[0][:160]})"})
            trainer.optimizer.zero_grad(set_to_none=True)
            reset_mem(device)
    result["attempts"] = attempts
    ok = [a for a in attempts if a["status"] == "ok"]
    if ok:
        best = min(ok, key=lambda a: a["step_s"])
        result.update(
            best_config=best["config"],
            mfu_datasheet=best["mfu_datasheet"],
            mfu_measured_peak=best["mfu_measured_peak"],
        )
        if best["mfu_datasheet"] is not None:
            result["mfu_goal_0_45_holds"] = best["mfu_datasheet"] >= 0.45
    return result


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE / "results" / "gpu")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("/tmp/audiovec-gpu"), help="saved models, clips"
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="an fp32 model folder for the trainer")
    parser.add_argument("--tiny", action="store_true", help="tiny model (tests; runs on CPU)")
    parser.add_argument("--model", default=None, help="override: tiny, m1, m1-T-L")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--encode-clips", type=int, default=None)
    parser.add_argument("--encode-batch", type=int, default=None)
    parser.add_argument("--train-batch", type=int, default=None)
    parser.add_argument("--chunk", type=int, default=32, help="GradCache chunk when plain steps do not fit")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps")
    parser.add_argument(
        "--all-configs", action="store_true", help="time every training config, not the first fit"
    )
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new work after this")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="datasheet peak; default: from the device name"
    )
    parser.add_argument("--matmul-n", type=int, default=None, help="matmul size for the measured peak")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if args.tiny:
        args.seconds = min(args.seconds, 2.0)
    name = args.model or ("tiny" if args.tiny else "m1")
    args.encode_clips = args.encode_clips or (8 if args.tiny else 512)
    args.encode_batch = args.encode_batch or (4 if args.tiny else 64)
    args.train_batch = args.train_batch or (8 if args.tiny else 128)
    args.steps = args.steps or (2 if args.tiny else 5)
    if args.tiny:
        args.chunk = min(args.chunk, 4)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    import transformers

    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or 'unknown'})"
    meta = {
        "model_name": name,
        "device_name": device_name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "stubbed_modules": STUBBED,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    report = Report(args.out_dir, meta)
    status = 0
    start = time.perf_counter()
    peak = peaks(args, device, device_name)
    report.add("peak", peak)
    print(f"peak: {json.dumps(peak)}", flush=True)
    model = build_model(name, dtype=torch.bfloat16, device=str(device))
    report.data["model"] = describe(model)
    report.data["build_s"] = time.perf_counter() - start
    report.flush()
    print(f"built {name} on {device} in {report.data['build_s']:.1f} s: {report.data['model']}", flush=True)

    def train() -> dict[str, Any]:
        nonlocal model
        model = None  # free the bf16 inference copy: the trainer holds fp32 weights + AdamW state
        reset_mem(device)
        return bench_train(fp32_model_dir(args, name, device), device, args, deadline, peak)

    for section, fn in (("encode", lambda: bench_encode(model.eval(), device, args, peak)), ("train", train)):
        if time.monotonic() > deadline:
            report.add(section, {"status": "skipped (time budget)"})
            continue
        try:
            t0 = time.perf_counter()
            value = fn()
            value["section_s"] = time.perf_counter() - t0
            report.add(section, value)
            print(f"{section}: {json.dumps(value, default=str)}", flush=True)
        except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others
            status = 1
            report.add(
                section,
                {"status": "error", "error": repr(exc)[:500], "trace": traceback.format_exc()[-2000:]},
            )
            print(f"{section} failed: {exc!r}", flush=True)
            with contextlib.suppress(Exception):
                reset_mem(device)
    report.data["total_s"] = time.perf_counter() - start
    report.flush()
    if args.model_dir is None and not args.tiny:
        shutil.rmtree(args.work_dir / f"{name}-fp32", ignore_errors=True)
    print(f"wrote {args.out_dir / 'gpu.json'} and gpu.md")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
