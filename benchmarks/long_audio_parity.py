"""Long audio: audiovec's windows against what the omni model itself does with the whole file.

The reference is transformers' own path on a raw waveform: the processor's feature extractor (the published
preprocessor_config.json, the processor's audio settings: Qwen2.5-Omni pads to 300 s and truncates there,
Qwen3-Omni takes the whole file), the thinker's ``get_audio_features`` and its LLM (the thinker's forward on
an audio-only prompt), mean-pooled and normalised. audiovec is the same tower and LLM with the identity
projector (what composing the checkpoint with itself gives), run under several window policies:

- ``30s/window``: every file cut in 30 s windows, each floored at its own log-mel peak (audiovec before
  the per-tower policy),
- ``30s/file``: the same windows floored at the file's peak (isolates the floor),
- ``32s/file``: windows at a multiple of Qwen3-Omni's 8 s attention window (isolates the alignment),
- ``policy``: the tower's window policy (``audiovec.model.window_policy``: 300 s / whole file up to 600 s).

Columns: ``vec_gap`` = 1 − cosine of our final vector and the reference's; ``clip_gap`` = the same between
the references of two different clips of that length (the tiny random models put every vector within ~1e-4
of every other, Qwen3-Omni's within float32 rounding, so a gap means something only next to it);
``vec_share`` = |ours − ref| / |ref − the other clip's ref|, the gap as a share of that spread (over 1: the
window policy moves the vector further than another recording does); ``tok_rel_max``, the largest relative difference
|ours − ref| / |ref| of a tower token; ``tok_off``, the share of tokens that differ beyond float noise
(relative difference over 1e-6): the tokens that saw other context or other features than in the
reference. The clips are real speech (FSDD, 8 kHz: the upper mel bins are empty, so the floor matters) whose
level changes every 25 s over 30 dB (``tests/helpers/omni_reference.varying_speech``), as a recording with loud and
quiet passages. Results: ``benchmarks/results/long_audio.json``; summary in docs/long-audio.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import base_parser, machine, set_threads, table, write_json
from audiovec.audio import SAMPLE_RATE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference lives with the tests
from helpers.omni_reference import (  # noqa: E402
    OMNI_KINDS,
    embedder_from_thinker,
    thinker_reference,
    tiny_thinker,
    tower_tokens,
    varying_speech,
)

LENGTHS = (5, 20, 30, 45, 60, 90, 120)
QUICK_LENGTHS = (20, 45)
TOKEN_NOISE = 1e-6  # relative difference of a token beyond float32 noise (the same input: ~3e-7)


def policies(kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        "30s/window": dict(window_seconds=30.0, log_mel_floor="window"),
        "30s/file": dict(window_seconds=30.0, log_mel_floor="file"),
    }
    if kind == "qwen3_omni":
        out["32s/file"] = dict(window_seconds=32.0, log_mel_floor="file")
    out["policy"] = {}
    return out


def token_stats(ours: torch.Tensor, ref: torch.Tensor) -> dict[str, Any]:
    """Largest per-token relative difference, and the share of tokens that differ beyond float noise."""
    if ours.shape != ref.shape:
        return {"tok_rel_max": None, "tok_off": None, "tokens": f"{ours.shape[0]} vs {ref.shape[0]}"}
    rel = (ours.double() - ref.double()).norm(dim=-1) / ref.double().norm(dim=-1).clamp(min=1e-12)
    return {
        "tok_rel_max": float(rel.max()),
        "tok_off": float((rel > TOKEN_NOISE).double().mean()),
        "tokens": ref.shape[0],
    }


def measure(kind: str, lengths: tuple[int, ...]) -> list[dict[str, Any]]:
    thinker = tiny_thinker(kind)
    models = {name: embedder_from_thinker(thinker, kind, **opts) for name, opts in policies(kind).items()}
    rows = []
    for seconds in lengths:
        wave, other = varying_speech(seconds, seed=0), varying_speech(seconds, seed=1)
        ref, ref_tokens = thinker_reference(thinker, kind, wave)
        ref_other, _ = thinker_reference(thinker, kind, other)
        clip_gap = 1.0 - float(ref @ ref_other)
        spread = float(np.linalg.norm(ref.astype(np.float64) - ref_other))
        for name, model in models.items():
            vec = model.encode_audio(wave, sample_rate=SAMPLE_RATE)
            row = {
                "tower": kind,
                "seconds": seconds,
                "policy": name,
                "window_s": model.config.window_seconds,
                "floor": model.config.log_mel_floor,
                "vec_cos": float(vec @ ref),
                "vec_gap": 1.0 - float(vec @ ref),
                "clip_gap": clip_gap,
                "vec_share": float(np.linalg.norm(vec.astype(np.float64) - ref)) / spread,
                **token_stats(tower_tokens(model, wave), ref_tokens),
            }
            rows.append(row)
            print(
                " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--towers", nargs="+", default=list(OMNI_KINDS), choices=OMNI_KINDS)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    lengths = QUICK_LENGTHS if args.quick else LENGTHS
    rows = [row for kind in args.towers for row in measure(kind, lengths)]
    columns = [
        "tower",
        "seconds",
        "policy",
        "window_s",
        "floor",
        "vec_gap",
        "clip_gap",
        "vec_share",
        "tok_rel_max",
        "tok_off",
    ]
    print(table(rows, columns))
    path = write_json("long_audio", {"machine": machine(), "rows": rows}, args.out, args.quick)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
