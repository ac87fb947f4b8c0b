"""The bootstrapping experiment (issue 8, part 3): does starting from pretrained towers beat random init?

The ``audiovec demo`` recipe (Whisper tiny.en tower + all-MiniLM-L6-v2 backbone, symmetric InfoNCE, the
demo's learning rates, crop and projector) with the starting weights varied:

- ``pretrained``: both towers pretrained (the demo itself);
- ``random_text``: pretrained Whisper + randomly initialised MiniLM;
- ``random_audio``: randomly initialised Whisper + pretrained MiniLM;
- ``random_both``: both random;
- ``qwen_scratch``: a Qwen2.5-Omni-architecture audio tower (the real ``Qwen2_5OmniAudioEncoder``, 128 mel
  bins, 4 layers x 384, Whisper tiny's encoder size) from random init + pretrained MiniLM.

Each at 25 / 50 / 100 % of the training split (nested, per-source stratified subsets written as manifests),
with the tower frozen (the demo's ``frozen_tower``: backbone + projector train, tower tokens cached) and,
for some variants, trained (``full``). Every cell runs the *same number of steps* at the same batch size, so
the fractions differ in how many distinct clips the model sees, not in how many updates it gets (25 % data
= 4x the epochs). One corpus serves every cell; the test split is the corpus's held-out-wording split.

    python benchmarks/ablation.py                 # the full grid (~45 min on 2 busy cores)
    python benchmarks/ablation.py --quick         # CI: 2 variants x 1 fraction x few steps (< 2 min)
    python benchmarks/ablation.py --resume        # skip cells already in the output JSON

Writes ``benchmarks/results/ablation.json`` (one record per cell) and, with ``--plot``, the cvR@5 plot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, base_parser, machine, table, write_json

VARIANTS = {
    "pretrained": "(a) Whisper tiny.en pretrained + MiniLM pretrained",
    "random_text": "(b) Whisper tiny.en pretrained + MiniLM random",
    "random_audio": "(c) Whisper tiny.en random + MiniLM pretrained",
    "random_both": "(d) Whisper tiny.en random + MiniLM random",
    "qwen_scratch": "(e) Qwen2.5-Omni-architecture tower from scratch + MiniLM pretrained",
}
# Qwen2.5-Omni's audio encoder at Whisper tiny's encoder size (4 layers x 384, FFN 1536, 6 heads)
QWEN_SCRATCH_CONFIG = {
    "num_mel_bins": 128, "d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6,
    "encoder_ffn_dim": 1536, "output_dim": 384, "n_window": 100, "max_source_positions": 1500,
}  # fmt: skip
QWEN_DOWNSAMPLE = (
    2  # 25 tokens/s / 2 = Whisper's 50 tokens/s / 4: the backbone sees 12.5 audio tokens/s either way
)
DEFAULT_TRAINED = ("pretrained", "qwen_scratch")


def parse_args(argv: list[str] | None = None) -> Any:
    p = base_parser(__doc__.splitlines()[0])
    p.set_defaults(threads=0)
    p.add_argument(
        "--work", type=Path, default=None, help="corpus, subsets, base models (default runs/ablation)"
    )
    p.add_argument("--corpus", type=Path, default=None, help="reuse this corpus folder (default WORK/corpus)")
    p.add_argument("--clips", type=int, default=600, help="corpus size (the demo's default)")
    p.add_argument("--steps", type=int, default=30, help="training steps, the same for every cell")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS)
    )
    p.add_argument("--fractions", default="0.25,0.5,1.0")
    p.add_argument(
        "--trained", default=",".join(DEFAULT_TRAINED), help="variants also run with the tower trained"
    )
    p.add_argument("--towers", default="frozen,trained", help="tower modes to run (frozen, trained)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lr", type=float, default=None, help="tower/backbone learning rate (default: the demo's)"
    )
    p.add_argument(
        "--new-lr", type=float, default=None, help="projector/temperature rate (default: the demo's)"
    )
    p.add_argument(
        "--extra", action="store_true", help="add this run's cells to --out as extra_cells, keeping its grid"
    )
    p.add_argument("--resume", action="store_true", help="keep cells already in --out, run the rest")
    p.add_argument("--plot", type=Path, default=None, help="write the cvR@5-vs-data plot here")
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    args = p.parse_args(argv)
    from audiovec.demo import DemoOptions

    args.lr = DemoOptions.lr if args.lr is None else args.lr
    args.new_lr = DemoOptions.new_lr if args.new_lr is None else args.new_lr
    if args.quick:
        args.clips, args.steps, args.batch_size = (
            min(args.clips, 80),
            min(args.steps, 6),
            min(args.batch_size, 8),
        )
        args.variants, args.fractions, args.trained = "pretrained,random_both", "0.5", ""
    if args.threads <= 0:  # the idle cores: another job may be using the rest
        args.threads = max(1, (os.cpu_count() or 1) - round(os.getloadavg()[0]))
    return args


# ---------------------------------------------------------------------------------------------- data
def subset_manifests(train_manifest: Path, fractions: list[float], out: Path, seed: int) -> dict[float, Path]:
    """Nested, per-source stratified subsets of the training split, one manifest per fraction.

    Each source's rows are shuffled once with ``seed``; a fraction keeps the first ``round(f * n)`` of
    every source, so 25 % is inside 50 % is inside 100 % and the source mix stays the same.
    """
    from audiovec.data.manifest import read_manifest, write_manifest

    rows = read_manifest(train_manifest)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_source.setdefault(str(row.get("source") or "other"), []).append(row)
    rng = np.random.default_rng(seed)
    order = {src: [group[i] for i in rng.permutation(len(group))] for src, group in sorted(by_source.items())}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for f in fractions:
        keep = [r for group in order.values() for r in group[: max(1, round(f * len(group)))]]
        keep.sort(key=lambda r: r["id"])
        paths[f] = out / f"train_{round(100 * f)}.jsonl"
        write_manifest(keep, paths[f], relative=False)
    return paths


# ---------------------------------------------------------------------------------------------- models
def build_base_models(variants: list[str], work: Path, seed: int) -> dict[str, Path]:
    """One saved starting model per variant, through the demo's own composition code."""
    from audiovec.demo import DemoOptions, compose_base_model

    flags = {
        "pretrained": (False, False), "random_text": (False, True),
        "random_audio": (True, False), "random_both": (True, True),
    }  # fmt: skip
    paths: dict[str, Path] = {}
    for variant in variants:
        folder = work / "models" / variant
        if variant == "qwen_scratch":
            paths[variant] = build_qwen_scratch(
                compose_base_model(DemoOptions(seed=seed), work / "models" / "pretrained"), folder, seed
            )
            continue
        audio, text = flags[variant]
        paths[variant] = compose_base_model(
            DemoOptions(seed=seed, random_audio=audio, random_text=text), folder
        )
    return paths


def build_qwen_scratch(pretrained: Path, folder: Path, seed: int) -> Path:
    """The pretrained MiniLM backbone + a randomly initialised Qwen2.5-Omni audio tower + a new projector."""
    import torch

    from audiovec.compose import init_projector  # the projector init `audiovec compose` uses
    from audiovec.model import AudioTextEmbedder
    from audiovec.towers import build_tower

    if (folder / "config.json").is_file():
        return folder
    base = AudioTextEmbedder.from_pretrained(pretrained)
    torch.manual_seed(seed + 202)
    tower = build_tower("qwen2_5_omni", QWEN_SCRATCH_CONFIG)
    tower.encoder.apply(tower.encoder._init_weights)
    model = AudioTextEmbedder.from_parts(
        tower, base.backbone, base.tokenizer, projector_downsample=QWEN_DOWNSAMPLE,
        window_seconds=base.config.window_seconds, min_seconds=base.config.min_seconds,
    )  # fmt: skip
    init_projector(model.projector, seed)
    model.save_pretrained(folder)
    return folder


def check_random_init(models: dict[str, Path]) -> dict[str, Any]:
    """Which tower / backbone tensors of each random variant still equal the pretrained ones (should be
    none, except Whisper's fixed sinusoidal position table, which the architecture defines, not learns)."""
    from safetensors.torch import load_file

    def weights(folder: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for file in sorted(folder.glob("*.safetensors")):
            out.update(load_file(file))
        return out

    if "pretrained" not in models:
        return {}
    ref = weights(models["pretrained"])
    report = {}
    for variant in ("random_text", "random_audio", "random_both"):
        if variant not in models:
            continue
        parts = {
            "random_text": ("backbone.",),
            "random_audio": ("tower.",),
            "random_both": ("tower.", "backbone."),
        }
        mine = weights(models[variant])
        names = [n for n in ref if n.startswith(parts[variant]) and n in mine]
        same = [n for n in names if ref[n].shape == mine[n].shape and bool((ref[n] == mine[n]).all())]
        close = [n for n in names if n not in same and ref[n].shape == mine[n].shape and bool(
            (ref[n].float() - mine[n].float()).abs().max() < 1e-2)]  # fmt: skip
        report[variant] = {"tensors": len(names), "identical": same, "within_1e-2": close}
    return report


def tower_fingerprint(model: Any) -> str:
    """Hash of the tower's weights: cells whose frozen towers are identical share one token cache."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.tower.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- one cell
def recipe_for(model_dir: Path, manifest: Path, run_dir: Path, tower: str, args: Any) -> Any:
    """The demo's training recipe (learning rates, warm-up, crop, precision), at the ablation's size."""
    from audiovec.demo import DemoOptions
    from audiovec.train.config import Recipe, from_dict

    demo = DemoOptions()
    data = {
        "name": "ablation",
        "model": {"path": str(model_dir)},
        "data": {"train": [str(manifest)], "max_seconds": demo.max_seconds, "num_workers": 0},
        "train": {
            "trainable": "frozen_tower" if tower == "frozen" else "full", "steps": args.steps,
            "batch_size": args.batch_size, "lr": args.lr, "new_lr": args.new_lr,
            "warmup_steps": max(1, args.steps // 20), "seed": args.seed, "precision": demo.precision,
            "num_threads": args.threads,
        },
        "output": {
            "dir": str(run_dir), "checkpoint_every": 0, "keep_last": 1, "progress": args.progress,
            "plot": False, "save_final": False, "log_every": 1,
        },
    }  # fmt: skip
    return from_dict(Recipe, data).validate()


def run_cell(variant: str, fraction: float, tower: str, model_dir: Path, manifest: Path, test_set: Any,
             caches: dict[str, Any], args: Any) -> dict[str, Any]:  # fmt: skip
    """Train one cell with the library's Trainer, evaluate on the held-out test split, return its record."""
    import torch

    from audiovec.data.manifest import read_manifest
    from audiovec.evaluate import evaluate
    from audiovec.train.trainer import Trainer

    start = time.perf_counter()
    run_dir = args.work / "runs" / f"{variant}-{round(100 * fraction)}-{tower}-s{args.steps}-lr{args.lr:g}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    trainer = Trainer(recipe_for(model_dir, manifest, run_dir, tower, args))
    model = trainer.model
    if model.tower.token_cache is not None:  # frozen tower: share tokens with cells of the same tower
        model.tower.token_cache = caches.setdefault(tower_fingerprint(model), model.tower.token_cache)
    summary = trainer.fit()
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        result = evaluate(model, [test_set], use_cache=False)[test_set.name]
    n_train = len(read_manifest(manifest))
    record = {
        "variant": variant, "description": VARIANTS[variant], "fraction": fraction, "train_clips": n_train,
        "tower": tower, "steps": summary["steps"], "batch_size": args.batch_size, "lr": args.lr, "new_lr": args.new_lr,
        "epochs": round(summary["steps"] * args.batch_size / n_train, 2),
        "final_loss": round(float(np.mean(summary["losses"][-5:])), 4) if summary["losses"] else None,
        "t2a": _pick(result["t2a"]), "a2t": _pick(result["a2t"]),
        "chance": {"t2a": _pick(result["chance"]["t2a"]), "a2t": _pick(result["chance"]["a2t"])},
        "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    del trainer, model
    return record


def _pick(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(metrics[k]), 4) for k in ("hit_rate@5", "recall@1", "ndcg@10") if k in metrics}


# ---------------------------------------------------------------------------------------------- report
def cell_key(record: dict[str, Any]) -> tuple[str, float, str]:
    return record["variant"], float(record["fraction"]), record["tower"]


def markdown_table(cells: list[dict[str, Any]]) -> str:
    """Rows = variant x tower mode, columns = data fraction, values = t2a hit_rate@5 (cvR@5)."""
    fractions = sorted({float(c["fraction"]) for c in cells})
    rows = sorted(
        {(c["variant"], c["tower"]) for c in cells}, key=lambda r: (list(VARIANTS).index(r[0]), r[1])
    )
    by = {cell_key(c): c for c in cells}
    head = "| variant | tower | " + " | ".join(f"{round(100 * f)} % data" for f in fractions) + " |"
    lines = [head, "|---|---|" + "---|" * len(fractions)]
    for variant, tower in rows:
        vals = []
        for f in fractions:
            c = by.get((variant, f, tower))
            vals.append(f"{c['t2a']['hit_rate@5']:.3f} / {c['a2t']['hit_rate@5']:.3f}" if c else "–")
        lines.append(f"| {VARIANTS[variant]} | {tower} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def plot(cells: list[dict[str, Any]], path: Path) -> Path:
    """cvR@5 (t2a hit_rate@5) vs data fraction: one line per variant and tower mode, chance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = dict(
        zip(VARIANTS, ("tab:green", "tab:orange", "tab:blue", "tab:red", "tab:purple"), strict=True)
    )
    for variant in VARIANTS:
        for tower, style in (("frozen", "-"), ("trained", ":")):
            mine = sorted(
                (c for c in cells if c["variant"] == variant and c["tower"] == tower),
                key=lambda c: c["fraction"],
            )
            if not mine:
                continue
            xs = [100 * c["fraction"] for c in mine]
            ys = [c["t2a"]["hit_rate@5"] for c in mine]
            label = f"{VARIANTS[variant].split(')')[0]}) {variant}, tower {tower}"
            ax.plot(
                xs, ys, style, marker="o" if tower == "frozen" else "s", color=colours[variant], label=label
            )
    chance = float(np.mean([c["chance"]["t2a"]["hit_rate@5"] for c in cells]))
    ax.axhline(chance, ls="--", color="grey", label=f"chance ({chance:.3f})")
    fractions = sorted({100 * c["fraction"] for c in cells})
    ax.set_xticks(fractions, [f"{round(f)} %" for f in fractions])
    ax.set_xlabel("share of the training split (same number of steps in every cell)")
    ax.set_ylabel("T2A cvR@5 (hit_rate@5), held-out wording test split")
    ax.set_ylim(0, max(0.5, max(c["t2a"]["hit_rate@5"] for c in cells) + 0.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from audiovec.benchmarks_data import from_manifest
    from audiovec.data.synth import build_corpus

    torch.set_num_threads(args.threads)
    out = args.out or RESULTS / ("ablation_quick.json" if args.quick else "ablation.json")
    temp = None
    if args.work is None:
        if args.quick:
            temp = tempfile.TemporaryDirectory(prefix="audiovec-ablation-")
            args.work = Path(temp.name)
        else:
            args.work = Path("runs/ablation")
    args.work = args.work.resolve()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    fractions = [float(f) for f in args.fractions.split(",") if f]
    trained = [v for v in args.trained.split(",") if v and v in variants]
    # frozen cells first, the full split first: its tower tokens fill the shared caches for the nested subsets
    towers = args.towers.split(",")
    grid = [(v, f, "frozen") for f in sorted(fractions, reverse=True) for v in variants if "frozen" in towers]
    grid += [
        (v, f, "trained") for f in sorted(fractions, reverse=True) for v in trained if "trained" in towers
    ]

    start = time.perf_counter()
    corpus_dir = args.corpus or args.work / "corpus"
    corpus = build_corpus(corpus_dir, n=args.clips, seed=args.seed, progress=args.progress)
    subsets = subset_manifests(Path(corpus["train"]), fractions, args.work / "subsets", args.seed)
    models = build_base_models(variants, args.work, args.seed)
    init_check = check_random_init(models)
    test_set = from_manifest(corpus["test"], name="test")
    setup_s = time.perf_counter() - start
    print(f"corpus {corpus['counts']['train']['total']} train / {corpus['counts']['test']['total']} test clips; "
          f"{len(grid)} cells, {args.steps} steps x batch {args.batch_size}, {args.threads} threads; setup {setup_s:.0f} s", flush=True)  # fmt: skip

    cells: list[dict[str, Any]] = []
    if args.resume and out.is_file():
        cells = [c for c in json.loads(out.read_text()).get("cells", []) if c.get("steps") == args.steps]
    done = {cell_key(c) for c in cells}
    caches: dict[str, Any] = {}

    def save() -> None:
        if args.extra:  # checks beside the grid: keep the file's grid and settings, replace nothing else
            data = json.loads(out.read_text())
            data["extra_cells"] = [c for c in data.get("extra_cells", []) if c not in cells] + cells
            out.write_text(json.dumps(data, indent=2) + "\n")
            return
        write_json(
            "ablation",
            {
                "machine": machine(),
                "settings": {
                    "clips": args.clips,
                    "steps": args.steps,
                    "batch_size": args.batch_size,
                    "seed": args.seed,
                    "threads": args.threads,
                    "fractions": fractions,
                    "variants": variants,
                    "trained": trained,
                    "qwen_scratch_config": QWEN_SCRATCH_CONFIG,
                    "qwen_projector_downsample": QWEN_DOWNSAMPLE,
                    "recipe": "audiovec demo (DemoOptions defaults: lr 5e-5, new_lr 1e-3, crop 10 s, fp32, "
                    "Whisper projector downsample 4); same steps and batch in every cell",
                },  # fmt: skip
                "corpus": {
                    "dir": str(corpus_dir),
                    "counts": corpus["counts"],
                    "subsets": {str(f): str(p) for f, p in subsets.items()},
                },  # fmt: skip
                "random_init_check": init_check,
                "setup_s": round(setup_s, 1),
                "cells": cells,
            },
            out,
            quick=args.quick,
        )

    for variant, fraction, tower in grid:
        if (variant, fraction, tower) in done:
            continue
        record = run_cell(
            variant, fraction, tower, models[variant], subsets[fraction], test_set, caches, args
        )
        cells.append(record)
        save()
        print(f"{variant:13s} {round(100 * fraction):3d} % {tower:7s}  t2a cvR@5 {record['t2a']['hit_rate@5']:.3f}  "
              f"a2t {record['a2t']['hit_rate@5']:.3f}  (chance {record['chance']['t2a']['hit_rate@5']:.3f})  "
              f"loss {record['final_loss']}  {record['wall_s']:.0f} s", flush=True)  # fmt: skip
    save()
    rows = [
        {"variant": c["variant"], "data": f"{round(100 * c['fraction'])} %", "tower": c["tower"],
         "t2a@5": c["t2a"]["hit_rate@5"], "a2t@5": c["a2t"]["hit_rate@5"], "t2a R@1": c["t2a"].get("recall@1", 0.0),
         "t2a nDCG@10": c["t2a"].get("ndcg@10", 0.0), "s": c["wall_s"]}
        for c in cells
    ]  # fmt: skip
    print(table(rows, list(rows[0])) if rows else "no cells")
    print("\n" + markdown_table(cells))
    if args.plot:
        print(f"plot: {plot(cells, args.plot)}")
    print(f"results: {out}   total {time.perf_counter() - start:.0f} s")
    if temp is not None:
        temp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
