"""GPU benchmark: M1 at full size (Qwen3-Omni audio tower + Qwen2.5-0.5B, random weights, bf16).

Measures (1) encoding throughput on 10 s clips: ``encode_audio`` end to end (features on the GPU) and the
model forward alone on precomputed features; (2) a full fine-tuning step at batch 128 (symmetric InfoNCE,
AdamW, the trainer's ``PairEncoder`` with bf16 autocast), trying plain → gradient checkpointing → GradCache
until one fits, with peak memory; (3) model FLOP utilisation: FLOPs of forward + backward counted with
``torch.utils.flop_counter.FlopCounterMode`` (on a small batch, scaled linearly; recomputation not
counted) over the measured step time, against an 800 TFLOP/s bf16 dense peak.

Needs only torch, transformers (and numpy); no network, no weights. Results go to ``--out-dir``
(``$OUT`` from ``gpu.sh``) as ``gpu.json`` and ``gpu.md``, rewritten after every section so a timeout
still leaves what was measured. ``--tiny`` runs the same code on the tiny model (CPU or GPU) for tests.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import platform
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
PEAK_TFLOPS = 800.0
SR = 16_000


def _stub_missing_audio_decoders() -> list[str]:
    """The device may lack soundfile/soxr (file decoding only); array inputs at 16 kHz never call them."""
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


STUBBED = _stub_missing_audio_decoders()
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _models import build_model, describe  # noqa: E402


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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_mem(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def make_clips(n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Synthetic 16 kHz clips (tones + noise): the device has no data set."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR), dtype=np.float32) / SR
    clips = []
    for _ in range(n):
        f = rng.uniform(100, 2000)
        wave = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.shape[0])
        clips.append(wave.astype(np.float32))
    return clips


def count_flops(fn: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------------------- encode
def bench_encode(model: Any, device: torch.device, args: Any) -> dict[str, Any]:
    clips = make_clips(args.encode_clips, args.seconds)
    batch = args.encode_batch
    model.encode_audio(clips[:batch], batch_size=batch, sample_rate=SR)  # warm-up
    sync(device)
    reset_mem(device)
    start = time.perf_counter()
    model.encode_audio(clips, batch_size=batch, sample_rate=SR)
    sync(device)
    e2e = time.perf_counter() - start
    peak = peak_gb(device)

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
        "encode_audio_clips_per_s": args.encode_clips / e2e,
        "forward_only_clips_per_s": batch / fwd,
        "forward_flops_per_clip_gflop": flops / batch / 1e9,
        "forward_tflops_per_s": flops / fwd / 1e12,
        "forward_mfu": flops / fwd / (args.peak_tflops * 1e12),
        "peak_memory_gb": peak,
    }


# ---------------------------------------------------------------------------------------------- train
CAPTIONS = ["a dog barks twice", "rain on a tin roof", "a man speaking", "a piano melody", "a siren passes"]


def make_batch(model: Any, n: int, seconds: float) -> dict[str, Any]:
    feats = model.featurize(make_clips(n, seconds, seed=1))
    toks = model.tokenize([f"{CAPTIONS[i % len(CAPTIONS)]} {i}" for i in range(n)])
    return {"features": feats["features"], "lengths": feats["lengths"], **toks}


def train_setup(model: Any, checkpointing: bool, amp: torch.dtype | None) -> tuple[Any, Any, Any]:
    from audiovec.train.loss import ContrastiveLoss
    from audiovec.train.trainer import PairEncoder, _enable_checkpointing

    model.train()
    model.requires_grad_(True)
    if checkpointing:
        _enable_checkpointing(model.backbone)
        _enable_checkpointing(model.tower.encoder)
    loss = ContrastiveLoss(0.07).to(model.device)
    params = [p for p in model.parameters() if p.requires_grad] + list(loss.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5, foreach=True)
    return PairEncoder(model, "audio", amp), loss, opt


def train_step(encoder: Any, loss_fn: Any, opt: Any, batch: dict[str, Any], chunk: int) -> float:
    from audiovec.train.gradcache import full_batch_step, gradcache_step, split_batch

    opt.zero_grad(set_to_none=True)
    if chunk and chunk < batch["input_ids"].shape[0]:
        loss = gradcache_step(encoder, list(split_batch(batch, chunk)), loss_fn)
    else:
        loss = full_batch_step(encoder, batch, loss_fn)
    opt.step()
    return float(loss)


def bench_train(model: Any, device: torch.device, args: Any, deadline: float) -> dict[str, Any]:
    amp = torch.bfloat16 if device.type == "cuda" or args.tiny else None
    b = args.train_batch
    # model FLOPs of forward + backward, counted on a small batch and scaled (per-sample cost is linear)
    small = min(8, b)
    encoder, loss_fn, opt = train_setup(model, False, amp)
    small_batch = make_batch(model, small, args.seconds)

    def fwd_bwd() -> None:
        loss = loss_fn(*encoder(small_batch))
        loss.backward()

    flops_small = count_flops(fwd_bwd)
    opt.zero_grad(set_to_none=True)
    flops = flops_small * b / small
    batch = make_batch(model, b, args.seconds)
    attempts = []
    configs = [("plain", False, 0), ("checkpointing", True, 0), ("gradcache+checkpointing", True, args.chunk)]
    result: dict[str, Any] = {
        "batch": b,
        "clip_seconds": args.seconds,
        "model_flops_per_step_tflop": flops / 1e12,
    }
    for name, ckpt, chunk in configs:
        if time.monotonic() > deadline:
            attempts.append({"config": name, "status": "skipped (time budget)"})
            break
        del opt
        reset_mem(device)
        encoder, loss_fn, opt = train_setup(model, ckpt, amp)
        try:
            train_step(encoder, loss_fn, opt, batch, chunk)  # warm-up (allocates optimiser state)
            sync(device)
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                train_step(encoder, loss_fn, opt, batch, chunk)
                sync(device)
                times.append(time.perf_counter() - start)
                if time.monotonic() > deadline:
                    break
            step_s = float(np.median(times))
            entry = {"config": name, "status": "ok", "step_s": step_s, "samples_per_s": b / step_s,
                     "peak_memory_gb": peak_gb(device), "achieved_tflops_per_s": flops / step_s / 1e12,
                     "mfu": flops / step_s / (args.peak_tflops * 1e12), "steps_timed": len(times)}  # fmt: skip
            attempts.append(entry)
            if not args.all_configs:
                break
        except torch.OutOfMemoryError as exc:
            attempts.append({"config": name, "status": f"out of memory ({str(exc).splitlines()[0][:160]})"})
            opt.zero_grad(set_to_none=True)
            reset_mem(device)
    result["attempts"] = attempts
    ok = [a for a in attempts if a["status"] == "ok"]
    if ok:
        best = max(ok, key=lambda a: a["mfu"])
        result.update(best_config=best["config"], mfu=best["mfu"], mfu_goal_0_45_holds=best["mfu"] >= 0.45)
    return result


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE / "results" / "gpu")
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
    parser.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)
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
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    import transformers

    meta = {
        "model_name": name,
        "device_name": torch.cuda.get_device_name(0)
        if cuda
        else f"CPU ({platform.processor() or 'unknown'})",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peak_tflops": args.peak_tflops,
        "stubbed_modules": STUBBED,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    report = Report(args.out_dir, meta)
    status = 0
    start = time.perf_counter()
    model = build_model(name, dtype=torch.bfloat16, device=str(device))
    report.data["model"] = describe(model)
    report.data["build_s"] = time.perf_counter() - start
    report.flush()
    print(f"built {name} on {device} in {report.data['build_s']:.1f} s: {report.data['model']}", flush=True)
    for section, fn in (("encode", lambda: bench_encode(model.eval(), device, args)),
                        ("train", lambda: bench_train(model, device, args, deadline))):  # fmt: skip
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
    print(f"wrote {args.out_dir / 'gpu.json'} and gpu.md")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
