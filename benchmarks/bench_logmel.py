"""Log-mel: audiovec's batched torch extractor vs transformers' WhisperFeatureExtractor.

Baselines (128 bins, 16 kHz): the processor's numpy path (what it runs without torch), padding every clip
to 30 s as the omni processors do, and ``padding="longest"``; the same two with the processor's torch path
(what it picks when torch is installed). Ours: :class:`audiovec.features.LogMelExtractor` on length-sorted
batches of 16 (what ``encode_audio`` does) and on the whole set at once. Accuracy: max |ours − reference|
over valid frames, the reference being the processor on each clip alone (``padding="longest"``).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

from _common import (
    base_parser,
    interleaved,
    machine,
    make_clips,
    set_threads,
    summarise,
    table,
    uniform_durations,
    write_json,
)

SR = 16_000


def processor(numpy_path: bool) -> Any:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=128)
    if numpy_path:  # the path transformers takes when torch is missing
        fe._torch_extract_fbank_features = fe._np_extract_fbank_features
    return fe


def run_processor(fe: Any, clips: list[np.ndarray], padding: str, batch: int) -> list[np.ndarray]:
    out = []
    for start in range(0, len(clips), batch):
        part = clips[start : start + batch]
        kwargs = {"max_length": 30 * SR} if padding == "max_length" else {}
        res = fe(part, sampling_rate=SR, padding=padding, return_attention_mask=True, **kwargs)
        feats, mask = res["input_features"], res["attention_mask"]
        out += [f[:, : int(m.sum())] for f, m in zip(feats, mask, strict=True)]
    return out


def run_ours(extractor: Any, clips: list[np.ndarray], batch: int) -> list[np.ndarray]:
    order = sorted(range(len(clips)), key=lambda i: clips[i].shape[0])
    out: list[np.ndarray] = [None] * len(clips)  # type: ignore[list-item]
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        feats, lengths = extractor([clips[i] for i in idx])
        for i, f, n in zip(idx, feats.numpy(), lengths.tolist(), strict=True):
            out[i] = f[:, :n]
    return out


def max_diff(ours: list[np.ndarray], ref: list[np.ndarray]) -> float:
    worst = 0.0
    for a, b in zip(ours, ref, strict=True):
        if a.shape != b.shape:
            return float("inf")
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=None, help="number of clips (default 64; quick 16)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    from audiovec.features import LogMelExtractor

    n = args.clips or (16 if args.quick else 64)
    repeats = args.repeats or (2 if args.quick else 5)
    high = 8.0 if args.quick else 30.0
    clips = make_clips(uniform_durations(n, 1.0, high, seed=0), seed=0)
    audio_s = sum(c.shape[0] for c in clips) / SR
    extractor = LogMelExtractor(128)
    fe_np, fe_torch = processor(True), processor(False)
    batch = 16

    paths = {
        "processor numpy, pad 30 s": lambda: run_processor(fe_np, clips, "max_length", batch),
        "processor numpy, longest": lambda: run_processor(fe_np, clips, "longest", batch),
        "processor torch, pad 30 s": lambda: run_processor(fe_torch, clips, "max_length", batch),
        "processor torch, longest": lambda: run_processor(fe_torch, clips, "longest", batch),
        "ours, sorted batches of 16": lambda: run_ours(extractor, clips, batch),
        "ours, one batch": lambda: run_ours(extractor, clips, len(clips)),
    }
    times = interleaved(paths, repeats)
    stats = summarise(times, "processor numpy, pad 30 s", n)

    ours = run_ours(extractor, clips, batch)
    ref_np = [run_processor(fe_np, [c], "longest", 1)[0] for c in clips]
    ref_torch = [run_processor(fe_torch, [c], "longest", 1)[0] for c in clips]
    ours_whole = run_ours(extractor, clips, len(clips))
    accuracy = {
        "max_abs_diff_vs_processor_numpy_per_clip": max_diff(ours, ref_np),
        "max_abs_diff_vs_processor_torch_per_clip": max_diff(ours, ref_torch),
        "max_abs_diff_batched_vs_whole": max_diff(ours, ours_whole),
        "max_abs_diff_processor_numpy_vs_torch": max_diff(ref_np, ref_torch),
    }
    best = max(("ours, sorted batches of 16", "ours, one batch"), key=lambda k: stats[k]["items_per_s"])
    goal_speed = stats[best]["speedup_vs_baseline"]
    goals = {
        "speedup_vs_processor_pad30_numpy": goal_speed,
        "speedup_vs_processor_pad30_torch": stats["processor torch, pad 30 s"]["median_s"]
        / stats[best]["median_s"],
        "speed_goal_5x_holds": goal_speed >= 5.0,
        "accuracy_goal_1e-5_holds": accuracy["max_abs_diff_vs_processor_torch_per_clip"] <= 1e-5,
    }
    rows = [{"path": k, **v} for k, v in stats.items()]
    print(
        f"log-mel, {n} clips ({audio_s:.0f} s of audio, 1-{high:g} s), torch threads {torch.get_num_threads()}"
    )
    print(table(rows, ["path", "median_s", "items_per_s", "speedup_vs_baseline"]))
    for k, v in {**accuracy, **goals}.items():
        print(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}")
    result = {
        "machine": machine(),
        "config": {"clips": n, "audio_seconds": audio_s, "durations": f"1-{high:g} s", "batch": batch,
                   "repeats": repeats, "threads": args.threads},
        "baseline": "processor numpy, pad 30 s",
        "paths": stats,
        "accuracy": accuracy,
        "goals": goals,
    }  # fmt: skip
    path = write_json("logmel", result, args.out, args.quick)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
