"""``audiovec encode MODEL FILE_OR_DIR... --out vectors.npy``: embed audio files, skip and report bad ones.

Under ``torchrun`` each rank embeds its share of the files; rank 0 gathers the shards into one output in the
original file order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from audiovec.cli.engine_args import add_engine_args, run_encode
from audiovec.cli.models import add_inputs_and_model, split_model
from audiovec.discovery import find_audio_files


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("encode", help="embed audio files into a .npy matrix (+ ids)")
    add_inputs_and_model(p, "inputs", "INPUT", "audio files or folders (searched recursively)")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output .npy (float32, one row per good file); --engine ray: a folder",
    )
    p.add_argument("--ids", type=Path, help="output ids file (JSON lines; default: OUT with .ids.jsonl)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"])
    p.add_argument("--no-progress", action="store_true")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from audiovec.encode import encode_shard, gather_shards
    from audiovec.model import AudioTextEmbedder

    name, inputs = split_model(args, args.inputs)
    if args.engine == "ray":
        return run_encode(args, name, inputs)
    files = find_audio_files(inputs)
    if not files:
        print("audiovec encode: no audio files found", file=sys.stderr)
        return 1
    rank, world = _init_distributed()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    model = AudioTextEmbedder.from_pretrained(name, device=device, dtype=args.dtype)
    vectors, errors = encode_shard(
        model,
        [str(f) for f in files],
        rank,
        world,
        batch_size=args.batch_size,
        show_progress=not args.no_progress and rank == 0,
    )
    if world > 1:
        vectors, errors = gather_shards(vectors, errors, world)
        if rank != 0:
            return 0
    return _write(args, files, vectors, errors)


def _write(args: argparse.Namespace, files: list[Path], vectors: dict, errors: dict) -> int:
    good = sorted(vectors)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    matrix = np.stack([vectors[i] for i in good]) if good else np.zeros((0, 0), np.float32)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, matrix.astype(np.float32))
    os.replace(tmp, out)
    ids_path = args.ids or out.with_suffix(".ids.jsonl")
    ids_path.write_text(
        "".join(json.dumps({"row": r, "path": str(files[i])}) + "\n" for r, i in enumerate(good))
    )
    for i in sorted(errors):
        print(f"skipped: {errors[i]}", file=sys.stderr)
    print(
        f"encoded {len(good)} of {len(files)} files -> {out} ({matrix.shape[-1] if good else 0}-d), ids -> {ids_path}"
        + (f"; {len(errors)} failed (listed above)" if errors else ""),
        file=sys.stderr,
    )
    return 1 if errors else 0


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()
