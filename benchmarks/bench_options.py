"""Encoding options against audiovec's defaults: torch threads, channels-last convolutions, torch.compile.

Each option runs on its own copy of the model (same seed, same weights) so none changes another, all
interleaved in one process with the default (1 torch thread, eager, fp32) as the baseline: the naive
transformers path of ``bench_encode.py`` at 1 and 2 threads (does our lead hold when both get the second
core?), ours at 2 threads, ours with the tower's convolution weights in ``channels_last`` (oneDNN's
preferred layout), ours with ``torch.compile`` (inductor, dynamic shapes) on each tower layer and on the
backbone. Whole-tower compilation is not offered: the omni encoders split clips with ``.tolist()`` and
``.item()``, so dynamo breaks the graph there and recompiles per batch shape (measured once: 465 s to
compile, then 8x slower than eager, hitting the recompile limit). Vectors are compared to the baseline.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from _common import (
    audio_seconds,
    base_parser,
    interleaved,
    machine,
    paths_table,
    realistic_clips,
    repeats_for,
    set_threads,
    summarise,
    write_result,
)
from _models import build_model
from bench_encode import BATCH, SR, naive_encode

BASELINE = "ours (default: 1 thread, eager)"


def with_threads(threads: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with ``threads`` torch threads, the previous count restored after."""

    def run() -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def channels_last_convs(model: Any) -> int:
    """Store every 2-D convolution weight of the tower in ``channels_last``; returns how many."""
    convs = [m for m in model.tower.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    return len(convs)


def compile_layers(model: Any) -> int:
    """``torch.compile`` each tower layer and the backbone's forward (dynamic shapes); returns how many."""
    layers = model.tower.encoder.layers
    for i, layer in enumerate(layers):
        layers[i] = torch.compile(layer, dynamic=True)
    model.backbone.forward = torch.compile(model.backbone.forward, dynamic=True)
    return len(layers) + 1


def bench_model(name: str, n_clips: int, repeats: int) -> dict[str, Any]:
    from transformers import WhisperFeatureExtractor

    clips = realistic_clips(n_clips, seed=1)
    fe = WhisperFeatureExtractor(feature_size=128)
    base, laid_out, compiled = build_model(name), build_model(name), build_model(name)
    applied = {
        "channels_last_convs": channels_last_convs(laid_out),
        "compiled_modules": compile_layers(compiled),
    }

    def ours(model: Any) -> Callable[[], np.ndarray]:
        return lambda: model.encode_audio(clips, batch_size=BATCH, sample_rate=SR)

    paths = {
        BASELINE: ours(base),
        "ours, 2 threads": with_threads(2, ours(base)),
        "ours, channels_last convs": ours(laid_out),
        "ours, compiled layers + backbone": ours(compiled),
        "naive (transformers), 1 thread": lambda: naive_encode(base, fe, clips),
        "naive (transformers), 2 threads": with_threads(2, lambda: naive_encode(base, fe, clips)),
    }
    reference = paths[BASELINE]()
    max_diff = {}
    for label, fn in paths.items():
        if label.startswith("ours"):
            max_diff[label] = float(np.abs(fn() - reference).max())  # compiles here, outside the timing
    times = interleaved(paths, repeats, warmup=1)
    stats = summarise(times, BASELINE, n_clips)
    naive_1, naive_2 = times["naive (transformers), 1 thread"], times["naive (transformers), 2 threads"]
    ours_2 = times["ours, 2 threads"]
    return {
        "model": name,
        "clips": n_clips,
        "audio_seconds": audio_seconds(clips),
        "applied": applied,
        "paths": stats,
        "max_abs_diff_vs_baseline": max_diff,
        "lead_over_naive": {
            "1 thread": float(np.median([n / o for n, o in zip(naive_1, times[BASELINE])])),
            "2 threads": float(np.median([n / o for n, o in zip(naive_2, ours_2)])),
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma list: tiny, m1-T-L (default tiny,m1-2-2)")
    parser.add_argument("--clips", type=int, default=None, help="clips per model (default tiny 64 / m1 16)")
    args = parser.parse_args(argv)
    set_threads(1)
    models = (args.models or ("tiny" if args.quick else "tiny,m1-2-2")).split(",")
    repeats = repeats_for(args, full=5)
    results = []
    for name in models:
        n = args.clips or (8 if args.quick else (64 if name == "tiny" else 16))
        res = bench_model(name, n, repeats)
        results.append(res)
        print(f"\n{name}: {n} clips, {res['audio_seconds']:.0f} s of audio, {repeats} rounds")
        print(paths_table(res["paths"], ["median_s", "items_per_s", "speedup_vs_baseline"]))
        print(
            "max |diff| vs the default:", {k: f"{v:.1e}" for k, v in res["max_abs_diff_vs_baseline"].items()}
        )
        print("our lead over the naive path:", {k: round(v, 2) for k, v in res["lead_over_naive"].items()})
    result = {
        "machine": machine(),
        "config": {"batch_size": BATCH, "repeats": repeats, "length_mix": "as bench_encode.py"},
        "models": results,
    }
    write_result("options", result, args)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
