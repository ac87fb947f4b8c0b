"""ONNX export of the built-in model: parity, held-out quality and encode speed vs PyTorch, in one run.

1. Parity on held-out real clips and their captions: fp32 ONNX vs PyTorch fp32 (max abs difference of the
   unit vectors) and int8 ONNX vs PyTorch fp32 (cosine per vector).
2. Quality: hit_rate@5 (text→audio and audio→text) on the corpus's held-out real sources
   (``$AUDIOVEC_CORPUS/heldout.jsonl``, as ``audiovec eval`` / benchmarks/ablation_real.py score them) for
   PyTorch fp32, ONNX fp32 and ONNX int8; the int8 drop.
3. Speed: encode throughput of the same clips (real speech, a retrieval mix of durations) with the same
   threads for PyTorch fp32 (the baseline), PyTorch bf16, ONNX fp32 and ONNX int8, interleaved rounds,
   median ratios.

    python benchmarks/bench_onnx.py [--quick] [--threads 1]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

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

MODEL = "audiovec-sounds"
# a corpus built by `audiovec data sounds --out DIR` (docs/corpus.md); $AUDIOVEC_CORPUS names DIR
HELDOUT = Path(os.environ.get("AUDIOVEC_CORPUS", "runs/corpus")) / "heldout.jsonl"


def parse_args(argv: list[str] | None = None) -> Any:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--model", default=MODEL, help="an audiovec model folder or built-in name")
    p.add_argument("--heldout", type=Path, default=HELDOUT, help="held-out manifest (JSONL)")
    p.add_argument("--clips", type=int, default=None, help="clips in the speed run (default 32; quick 4)")
    p.add_argument(
        "--eval-clips", type=int, default=None, help="held-out clips scored (default all; quick 24)"
    )
    p.add_argument("--work", type=Path, default=None, help="where the exports go (default a temp folder)")
    return p.parse_args(argv)


def heldout_subset(path: Path, n: int | None, work: Path) -> Path:
    """The manifest itself, or its first ``n`` rows (audio paths made absolute) in ``work``."""
    if n is None:
        return path
    from audiovec.data.manifest import read_manifest, write_manifest

    rows = read_manifest(path)[:n]
    out = work / "heldout_subset.jsonl"
    write_manifest(rows, out)
    return out


def parity(torch_model: Any, onnx_fp32: Any, onnx_int8: Any, clips: list[Path], texts: list[str]) -> dict:
    ref_a = torch_model.encode_audio(clips)
    ref_t = torch_model.encode_text(texts)
    out: dict[str, Any] = {"clips": len(clips), "texts": len(texts)}
    for name, model in (("fp32", onnx_fp32), ("int8", onnx_int8)):
        a, t = model.encode_audio(clips), model.encode_text(texts)
        cos_a, cos_t = (a * ref_a).sum(1), (t * ref_t).sum(1)
        out[name] = {
            "audio_max_abs_diff": float(np.abs(a - ref_a).max()),
            "text_max_abs_diff": float(np.abs(t - ref_t).max()),
            "audio_cosine_min": float(cos_a.min()),
            "audio_cosine_mean": float(cos_a.mean()),
            "text_cosine_min": float(cos_t.min()),
            "text_cosine_mean": float(cos_t.mean()),
        }
    return out


def quality(models: dict[str, Any], manifest: Path) -> dict[str, Any]:
    from audiovec.evaluation.evaluate import evaluate
    from audiovec.evaluation.retrieval_sets import from_manifest

    data = from_manifest(manifest, name="heldout")
    out: dict[str, Any] = {"clips": len(data.audio), "texts": len(data.texts)}
    for name, model in models.items():
        result = evaluate(model, [data], use_cache=False)["heldout"]
        out[name] = {
            "t2a_hit_rate@5": round(result["t2a"]["hit_rate@5"], 4),
            "a2t_hit_rate@5": round(result["a2t"]["hit_rate@5"], 4),
            "t2a_mrr@10": round(result["t2a"].get("mrr@10", float("nan")), 4),
        }
        out["chance_t2a_hit_rate@5"] = round(result["chance"]["t2a"]["hit_rate@5"], 4)
    for key in ("t2a_hit_rate@5", "a2t_hit_rate@5"):
        out[f"int8_drop_{key}"] = round(out["torch_fp32"][key] - out["onnx_int8"][key], 4)
        out[f"fp32_drop_{key}"] = round(out["torch_fp32"][key] - out["onnx_fp32"][key], 4)
    return out


def speed(models: dict[str, Any], clips: list[np.ndarray], repeats: int) -> dict[str, Any]:
    paths = {name: (lambda m=m: m.encode_audio(clips, sample_rate=16_000)) for name, m in models.items()}
    times = interleaved(paths, repeats)
    seconds = audio_seconds(clips)
    result = summarise(times, "torch_fp32", len(clips))
    for row in result.values():
        row["audio_seconds_per_s"] = seconds / row["median_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    from audiovec.data.manifest import read_manifest
    from audiovec.model import AudioTextEmbedder
    from audiovec.onnx_export import export_onnx, quantize_onnx

    n_clips = args.clips or (4 if args.quick else 32)
    n_eval = args.eval_clips or (24 if args.quick else None)
    repeats = repeats_for(args, full=3)
    own_work = args.work is None
    work = Path(tempfile.mkdtemp(prefix="bench-onnx-")) if own_work else args.work
    work.mkdir(parents=True, exist_ok=True)
    try:
        torch_fp32 = AudioTextEmbedder.from_pretrained(
            args.model, device="cpu", dtype="fp32", backend="torch"
        )
        torch_bf16 = AudioTextEmbedder.from_pretrained(
            args.model, device="cpu", dtype="bf16", backend="torch"
        )
        for sub in ("fp32", "int8"):
            shutil.rmtree(work / sub, ignore_errors=True)
        export_onnx(torch_fp32, work / "fp32")
        quantize_onnx(work / "fp32", work / "int8")
        sizes = {
            p: sum(f.stat().st_size for f in (work / p).glob("*.onnx")) / 2**20 for p in ("fp32", "int8")
        }
        onnx_fp32 = AudioTextEmbedder.from_pretrained(work / "fp32")
        onnx_int8 = AudioTextEmbedder.from_pretrained(work / "int8")
        for m in (onnx_fp32, onnx_int8):
            for s in (m.audio_session, m.text_session):
                assert s.get_session_options().intra_op_num_threads == args.threads
        manifest = heldout_subset(args.heldout, n_eval, work)
        rows = read_manifest(manifest)
        pclips = [Path(r["audio"]) for r in rows[: min(len(rows), 40)]]
        ptexts = [r["captions"][0] for r in rows[: min(len(rows), 40)]]
        record: dict[str, Any] = {
            "machine": machine(),
            "model": args.model,
            "threads": args.threads,
            "graph_mb": {k: round(v, 2) for k, v in sizes.items()},
            "features": "log-mel by audiovec's LogMelExtractor (torch) outside the graph, same for all paths",
            "parity": parity(torch_fp32, onnx_fp32, onnx_int8, pclips, ptexts),
        }
        print(record["parity"], flush=True)
        record["quality"] = quality(
            {"torch_fp32": torch_fp32, "onnx_fp32": onnx_fp32, "onnx_int8": onnx_int8}, manifest
        )
        print(record["quality"], flush=True)
        clips = realistic_clips(n_clips)
        models = {
            "torch_fp32": torch_fp32,
            "torch_bf16": torch_bf16,
            "onnx_fp32": onnx_fp32,
            "onnx_int8": onnx_int8,
        }
        record["speed"] = {
            "clips": n_clips,
            "audio_seconds": round(audio_seconds(clips), 1),
            "repeats": repeats,
            "paths": speed(models, clips, repeats),
        }
        columns = ["median_s", "items_per_s", "audio_seconds_per_s", "speedup_vs_baseline"]
        print(paths_table(record["speed"]["paths"], columns))
        write_result("onnx", record, args)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
