"""Training step: samples/s and peak memory, plain vs gradient checkpointing vs GradCache.

One step = embed audio and captions (``PairEncoder``, what the trainer wraps), symmetric InfoNCE with a
learnable temperature, backward, AdamW step; everything trains (``trainable: full``), fp32 as the CPU
recipes run. Plain: one forward/backward over the whole batch. Checkpointing: the same with
``gradient_checkpointing_enable`` on the tower and the backbone. GradCache: chunks of ``--chunk`` clips
(``audiovec.train.gradcache``), the same loss as the full batch. Peak memory: RSS growth over the step.
"""

from __future__ import annotations

import copy
import functools
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from _common import base_parser, machine, make_clips, measure_peak, set_threads, table, write_json
from _models import build_model, describe

MODES = ("plain", "checkpointing", "gradcache")
CAPTIONS = ["a man saying seven", "a woman speaking softly", "dogs barking near a street", "piano notes",
            "rain and wind outside", "a siren in the city", "two people talking", "a bell rings three times"]  # fmt: skip


def make_batch(model: Any, batch: int, seconds: float, seed: int) -> Any:
    from audiovec.train.batches import AudioCaptionBatch, Tokens

    rng = np.random.default_rng(seed)
    clips = make_clips([seconds] * batch, seed=seed)
    feats = model.featurize(clips)
    texts = [CAPTIONS[int(rng.integers(len(CAPTIONS)))] + f" {i % 10}" for i in range(batch)]
    toks = model.tokenize(texts)
    return AudioCaptionBatch(
        feats["features"], feats["lengths"], Tokens(toks["input_ids"], toks["attention_mask"])
    )


def prepare(base: Any, mode: str) -> tuple[Any, Any, Any, Any]:
    from audiovec.train.encoder import PairEncoder
    from audiovec.train.loss import ContrastiveLoss
    from audiovec.train.setup import enable_checkpointing

    model = copy.deepcopy(base).train()
    model.requires_grad_(True)
    for name, p in model.named_parameters():
        if "audio_bos_eos_token" in name:
            p.requires_grad_(False)
    if mode == "checkpointing":
        enable_checkpointing(model.backbone)
        enable_checkpointing(model.tower.encoder)
    loss = ContrastiveLoss(0.07)
    params = [p for p in model.parameters() if p.requires_grad] + list(loss.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5)
    return model, PairEncoder(model, "audio", None), loss, opt


def step(mode: str, encoder: Any, loss_fn: Any, opt: Any, batch: Any, chunk: int) -> float:
    from audiovec.train.gradcache import full_batch_step, gradcache_step

    opt.zero_grad(set_to_none=True)
    if mode == "gradcache":
        loss = gradcache_step(encoder, batch.split(chunk), loss_fn)
    else:
        loss = full_batch_step(encoder, batch, loss_fn)
    opt.step()
    return float(loss)


def bench_model(name: str, batches: list[int], seconds: float, repeats: int, chunk: int) -> dict[str, Any]:
    base = build_model(name)
    rows = []
    for mode in MODES:
        model, encoder, loss_fn, opt = prepare(base, mode)
        step(mode, encoder, loss_fn, opt, make_batch(model, min(batches), seconds, 99), chunk)  # warm-up
        for b in batches:
            batch = make_batch(model, b, seconds, b)
            times, peaks = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                mem = measure_peak(functools.partial(step, mode, encoder, loss_fn, opt, batch, chunk))
                times.append(time.perf_counter() - start)
                peaks.append(mem["peak_delta_mb"])
            t = statistics.median(times)
            rows.append({"model": name, "mode": mode, "batch": b, "median_s": t, "samples_per_s": b / t,
                         "peak_mem_mb": max(peaks), "repeats": repeats})  # fmt: skip
            print(table(rows[-1:], ["model", "mode", "batch", "median_s", "samples_per_s", "peak_mem_mb"]))
    return {"model": name, "shape": describe(base), "clip_seconds": seconds, "rows": rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma list (default tiny,m1-1-1; quick tiny)")
    parser.add_argument("--batches", default=None, help="comma list (default 32,64,128; quick 8,16)")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length (the tiny recipes crop 2 s)")
    parser.add_argument("--chunk", type=int, default=8, help="GradCache chunk (clips per forward)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    models = (args.models or ("tiny" if args.quick else "tiny,m1-1-1")).split(",")
    batches = [int(b) for b in (args.batches or ("8,16" if args.quick else "32,64,128")).split(",")]
    repeats = args.repeats or (1 if args.quick else 2)
    results = [bench_model(m, batches, args.seconds, repeats, args.chunk) for m in models]
    rows = [r for res in results for r in res["rows"]]
    print(f"\ntraining step, {args.seconds:g} s clips, fp32, torch threads {torch.get_num_threads()}")
    print(table(rows, ["model", "mode", "batch", "median_s", "samples_per_s", "peak_mem_mb"]))
    result = {
        "machine": machine(),
        "config": {"batches": batches, "clip_seconds": args.seconds, "gradcache_chunk": args.chunk,
                   "repeats": repeats, "threads": args.threads, "precision": "fp32", "trainable": "full"},
        "models": results,
    }  # fmt: skip
    path = write_json("train_step", result, args.out, args.quick)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
