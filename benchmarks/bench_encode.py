"""Encoding throughput: ``encode_audio`` vs the naive transformers path, same weights, same clips.

Naive path (what a user of the omni thinker would write): ``WhisperFeatureExtractor`` padding every clip to
30 s with an attention mask → the thinker's ``get_audio_features`` (valid frames packed, the audio tower)
→ projector → backbone on fixed batches in file order, padded to the longest clip → masked mean → L2, under
``torch.no_grad``. Ours: ``model.encode_audio(clips, sample_rate=16000)`` (valid-length log-mel, length
bucketing, ``inference_mode``), in the same dtype and again in bf16. Padding efficiency counts the tokens
the tower's transformer layers and the backbone actually computed (forward hooks) against the clips'
valid tokens. Peak memory: RSS growth during encoding, each path in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import (
    base_parser,
    interleaved,
    machine,
    make_clips,
    measure_peak,
    realistic_durations,
    run_probe,
    set_threads,
    summarise,
    table,
    write_json,
)
from _models import build_model, describe

SR = 16_000
BATCH = 16


def processor_features(fe: Any, part: list[np.ndarray], per_clip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded-to-30 s features and frame mask; ``per_clip`` extracts each clip alone first (so the last
    frames see reflect padding, not the zeros of the 30 s pad) — only to check that the math is the same."""
    if not per_clip:
        inputs = fe(part, sampling_rate=SR, padding="max_length", max_length=30 * SR,
                    return_attention_mask=True, return_tensors="pt")  # fmt: skip
        return inputs["input_features"], inputs["attention_mask"]
    features = torch.zeros(len(part), 128, 3000)
    mask = torch.zeros(len(part), 3000, dtype=torch.long)
    for row, clip in enumerate(part):
        alone = fe([clip], sampling_rate=SR, padding="longest", return_tensors="pt")["input_features"][0]
        features[row, :, : alone.shape[-1]] = alone
        mask[row, : alone.shape[-1]] = 1
    return features, mask


def naive_encode(
    model: Any, fe: Any, clips: list[np.ndarray], batch: int = BATCH, per_clip: bool = False
) -> np.ndarray:
    """The transformers way: pad to 30 s, thinker audio features, backbone on file-order batches."""
    out = []
    with torch.no_grad():
        for start in range(0, len(clips), batch):
            part = clips[start : start + batch]
            features, mask = processor_features(fe, part, per_clip)
            lengths = mask.sum(-1)
            # Qwen3OmniMoeThinker.get_audio_features: pack the valid frames, run the audio tower
            packed = features.permute(0, 2, 1)[mask.bool()].permute(1, 0).to(model.dtype)
            tokens = model.tower.encoder(packed, feature_lens=lengths).last_hidden_state
            n_tokens = model.tower.output_lengths(lengths)
            token_mask = torch.arange(int(n_tokens.max()))[None, :] < n_tokens[:, None]
            padded = tokens.new_zeros(len(part), token_mask.shape[1], tokens.shape[-1])
            padded[token_mask] = tokens
            embeds = model.projector.linear(padded)
            hidden = model.backbone(inputs_embeds=embeds, attention_mask=token_mask.long(), use_cache=False)
            weights = token_mask[..., None].to(hidden.last_hidden_state.dtype)
            pooled = (hidden.last_hidden_state * weights).sum(1) / weights.sum(1)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).numpy())
    return np.concatenate(out)


def ours_encode(model: Any, clips: list[np.ndarray], batch: int = BATCH) -> np.ndarray:
    return model.encode_audio(clips, batch_size=batch, sample_rate=SR)


class TokenCounter:
    """Forward hooks counting what the tower's layers and the backbone computed vs what was useful."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.counts = {"tower_computed": 0, "tower_useful": 0, "backbone_computed": 0, "backbone_useful": 0}
        self.handles = [
            model.tower.encoder.register_forward_pre_hook(self._tower, with_kwargs=True),
            model.backbone.register_forward_pre_hook(self._backbone, with_kwargs=True),
        ]

    def _tower(self, module: Any, args: tuple, kwargs: dict) -> None:
        lens = kwargs.get("feature_lens", args[1] if len(args) > 1 else None)
        useful = int(self.model.tower.output_lengths(lens).sum())
        self.counts["tower_useful"] += useful
        self.counts["tower_computed"] += useful  # packed: the layers see exactly the valid tokens

    def _backbone(self, module: Any, args: tuple, kwargs: dict) -> None:
        mask = kwargs["attention_mask"]
        self.counts["backbone_computed"] += int(mask.numel())
        self.counts["backbone_useful"] += int(mask.sum())

    def efficiency(self) -> dict[str, float]:
        c = self.counts
        return {
            "tower": c["tower_useful"] / max(1, c["tower_computed"]),
            "backbone": c["backbone_useful"] / max(1, c["backbone_computed"]),
            "overall": (c["tower_useful"] + c["backbone_useful"])
            / max(1, c["tower_computed"] + c["backbone_computed"]),
        }

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def feature_efficiency(clips: list[np.ndarray], ours: bool, batch: int) -> float:
    """Useful log-mel frames / computed frames: naive pads every clip to 3000 frames; ours pads each of
    ``encode_audio``'s length batches (``audiovec.encode.length_batches``) to its longest clip."""
    from audiovec.encode import length_batches

    frames = [c.shape[0] // 160 for c in clips]
    if not ours:
        return sum(frames) / (3000 * len(frames))
    pieces = sorted(enumerate(clips), key=lambda p: p[1].shape[0])
    computed = sum(max(c.shape[0] // 160 for _, c in b) * len(b) for b in length_batches(pieces, batch))
    return sum(frames) / computed


def padding_report(model: Any, fe: Any, clips: list[np.ndarray]) -> dict[str, Any]:
    report = {}
    for name, fn in (
        ("naive", lambda: naive_encode(model, fe, clips)),
        ("ours", lambda: ours_encode(model, clips)),
    ):
        counter = TokenCounter(model)
        fn()
        counter.close()
        report[name] = {**counter.efficiency(), **counter.counts}
    report["naive"]["features"] = feature_efficiency(clips, False, BATCH)
    report["ours"]["features"] = feature_efficiency(clips, True, BATCH)
    return report


def probe(args: Any) -> None:
    """Child process: build the model and clips, then report the RSS peak of one path."""
    from transformers import WhisperFeatureExtractor

    set_threads(args.threads)
    dtype = torch.bfloat16 if args.probe.endswith("bf16") else torch.float32
    model = build_model(args.model, dtype)
    clips = make_clips(realistic_durations(args.clips, seed=1), seed=1)
    fe = WhisperFeatureExtractor(feature_size=128)
    fn = (
        (lambda: naive_encode(model, fe, clips))
        if args.probe == "naive"
        else (lambda: ours_encode(model, clips))
    )
    fn()  # warm-up: one-time allocations (thread pools, kernels) are not the path's working memory
    print(json.dumps(measure_peak(fn)))


def bench_model(name: str, n_clips: int, repeats: int, threads: int, memory: bool) -> dict[str, Any]:
    from transformers import WhisperFeatureExtractor

    model = build_model(name)
    model_bf16 = build_model(name).to(torch.bfloat16) if torch.backends.mkldnn.is_available() else None
    if model_bf16 is not None:
        model_bf16.load_state_dict(model.state_dict())
    clips = make_clips(realistic_durations(n_clips, seed=1), seed=1)
    audio_s = sum(c.shape[0] for c in clips) / SR
    fe = WhisperFeatureExtractor(feature_size=128)

    ref = naive_encode(model, fe, clips)
    ours = ours_encode(model, clips)
    same_math = naive_encode(model, fe, clips, per_clip=True)
    accuracy = {"max_abs_diff_fp32": float(np.abs(ours - ref).max()),
                "min_cosine_fp32": float((ours * ref).sum(1).min()),
                "max_abs_diff_fp32_same_features": float(np.abs(ours - same_math).max())}  # fmt: skip
    paths = {
        "naive (transformers)": lambda: naive_encode(model, fe, clips),
        "ours": lambda: ours_encode(model, clips),
    }
    if model_bf16 is not None:
        ours_bf16 = ours_encode(model_bf16, clips)
        accuracy["min_cosine_bf16_vs_fp32"] = float((ours_bf16 * ref).sum(1).min())
        paths["ours bf16"] = lambda: ours_encode(model_bf16, clips)
    times = interleaved(paths, repeats, warmup=0)
    stats = summarise(times, "naive (transformers)", n_clips)
    for s in stats.values():
        s["audio_s_per_s"] = audio_s / s["median_s"]
    result: dict[str, Any] = {
        "model": name,
        "shape": describe(model),
        "clips": n_clips,
        "audio_seconds": audio_s,
        "paths": stats,
        "accuracy": accuracy,
        "padding_efficiency": padding_report(model, fe, clips),
    }
    if memory:
        script = Path(__file__).resolve()
        base = ["--model", name, "--clips", str(n_clips), "--threads", str(threads)]
        result["peak_memory_mb"] = {
            p: run_probe(script, ["--probe", p, *base])["peak_delta_mb"]
            for p in ("naive", "ours", "ours-bf16")
        }
    speed = stats["ours"]["speedup_vs_baseline"]
    best = max(s["speedup_vs_baseline"] for k, s in stats.items() if k != "naive (transformers)")
    result["goals"] = {
        "speedup_fp32": speed,
        "speedup_best": best,
        "speed_goal_3x_holds_fp32": speed >= 3.0,
        "speed_goal_3x_holds_best": best >= 3.0,
        "same_vectors_1e-4_holds": accuracy["max_abs_diff_fp32"] <= 1e-4,
        "same_vectors_1e-4_holds_same_features": accuracy["max_abs_diff_fp32_same_features"] <= 1e-4,
        "padding_goal_0.95_holds": result["padding_efficiency"]["ours"]["overall"] >= 0.95,
    }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma list: tiny, m1-T-L (default tiny,m1-4-4)")
    parser.add_argument("--clips", type=int, default=None, help="clips per model (default tiny 64 / m1 24)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="tiny", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(args)
        return {}
    set_threads(args.threads)
    models = (args.models or ("tiny" if args.quick else "tiny,m1-4-4")).split(",")
    repeats = args.repeats or (1 if args.quick else 3)
    results = []
    for name in models:
        n = args.clips or (16 if args.quick else (64 if name == "tiny" else 24))
        res = bench_model(name, n, repeats, args.threads, memory=not args.no_memory)
        results.append(res)
        print(
            f"\n{name}: {n} clips, {res['audio_seconds']:.0f} s of audio, torch threads {torch.get_num_threads()}"
        )
        rows = [{"path": k, **v} for k, v in res["paths"].items()]
        print(table(rows, ["path", "median_s", "items_per_s", "audio_s_per_s", "speedup_vs_baseline"]))
        eff = res["padding_efficiency"]
        for side in ("naive", "ours"):
            e = eff[side]
            print(f"padding efficiency {side}: features {e['features']:.3f}, tower {e['tower']:.3f}, "
                  f"backbone {e['backbone']:.3f}, overall {e['overall']:.3f}")  # fmt: skip
        print("accuracy:", {k: round(v, 7) for k, v in res["accuracy"].items()})
        if "peak_memory_mb" in res:
            print("peak memory (MB above model):", {k: round(v) for k, v in res["peak_memory_mb"].items()})
        print("goals:", res["goals"])
    result = {
        "machine": machine(),
        "config": {"batch_size": BATCH, "repeats": repeats, "threads": args.threads,
                   "length_mix": "50% 10 s, 25% 15-30 s, 25% 1-5 s (shuffled)"},
        "models": results,
    }  # fmt: skip
    path = write_json("encode", result, args.out, args.quick)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
