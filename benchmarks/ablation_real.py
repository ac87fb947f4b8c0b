"""What makes the demo's model find REAL sounds it has never heard: the recipe ablation of issue 12.

Every variant trains with the library's ``Trainer`` on the same real-sound corpus (``audiovec data sounds``)
for the same number of steps and is scored on the corpus's held-out real sources (whole packages, FSDD
speakers and klettres languages never seen in training), per category. Variants change one thing against
the demo's recipe (``default``) — what trains, the projector, the tower layers, the sampling, the loss — or
the starting weights (pretrained vs random, the seed's central claim, re-run on real sources).

    python benchmarks/ablation_real.py --corpus runs/demo/corpus --plot docs/ablation-real.png
    python benchmarks/ablation_real.py --corpus runs/demo/corpus --variants default adapter_r8_linear --seeds 0 1 2 --resume
    python benchmarks/ablation_real.py --quick          # CI: small corpus, 2 variants, a few steps

Writes ``benchmarks/results/ablation_real.json`` (one record per variant and seed) and a Markdown table on
stdout: mean and spread over the seeds run, so a difference can be read against seed-to-seed noise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, base_parser, machine, save_figure, write_json
from _recipe_runs import headline, heldout_scores, train_recipe_run

# name -> (what it tests, DemoOptions changes, recipe overrides)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "default": ("the demo's recipe: audio-only adapter r16, MLP projector, mean of Whisper layers, sqrt balance", {}, {}),
    "full_backbone": ("the previous demo recipe: backbone fine-tuned for audio AND text, linear projector, last layer, no balance",
                      {"trainable": "frozen_tower", "lr": 5e-5, "projector_layers": 1, "tower_layers": "last"},
                      {"data.balance": "none"}),
    "projector_only": ("backbone frozen, only the projector (MLP) trains", {"trainable": "projector"}, {}),
    "adapter_r8_linear": ("adapter rank 8, linear projector", {"adapter_rank": 8, "projector_layers": 1}, {}),
    "last_layer": ("Whisper's last layer only (no layer mean)", {"tower_layers": "last"}, {}),
    "no_balance": ("every clip equally often (no per-source balance)", {}, {"data.balance": "none"}),
    "no_fn_mask": ("no false-negative masking from labels/captions", {}, {"train.mask_false_negatives": False}),
    "facet_mask": ("a pair is masked only if the caption is also true of the other clip (language, words said, accent)",
                   {}, {"train.false_negative_facets": ["language", "says", "accent"]}),
    "augment": ("waveform augmentation: each clip as recorded + 2 fixed versions (level, noise, reverb, band limit)",
                {}, {"data.augment.variants": 3, "train.cache_tower_gb": 4.0}),
    "fixed_temperature": ("temperature fixed at 0.07", {}, {"train.learnable_temperature": False}),
    "max_tokens_16": ("a clip reaches the backbone as at most 16 segments (not 8)", {"projector_max_tokens": 16}, {}),
    "downsample_2": ("projector downsample 2 (25 tokens/s, not 12.5)", {"projector_downsample": 2}, {}),
    "adapter_r32": ("audio adapter rank 32 (not 16)", {"adapter_rank": 32}, {}),
    "batch_256": ("batch 256 (not 64): four times the in-batch negatives per step", {"batch_size": 256}, {}),
    "adapter_lr_1e-3": ("audio adapter lr 1e-3 (not 5e-4)", {"lr": 1e-3}, {}),
    "random_audio": ("Whisper re-initialised (random) + pretrained MiniLM", {"random_audio": True}, {}),
    "random_text": ("pretrained Whisper + MiniLM re-initialised (random)", {"random_text": True}, {}),
}  # fmt: skip
QUICK_VARIANTS = ["default", "random_audio"]


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", type=Path, default=None, help="a built corpus folder (default: build one)"
    )
    parser.add_argument("--corpus-size", default="default", choices=("small", "default", "large"))
    parser.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="one run per seed (initialisation and data order)"
    )
    parser.add_argument("--work", type=Path, default=Path("runs/ablation-real"))
    parser.add_argument("--plot", type=Path, default=None, help="write the bar chart here (PNG)")
    parser.add_argument(
        "--resume", action="store_true", help="skip (variant, seed) runs already in the output JSON"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.corpus_size, args.steps = "small", 4
        args.variants = args.variants or QUICK_VARIANTS
    args.variants = args.variants or list(VARIANTS)
    args.out = args.out or RESULTS / ("ablation_real_quick.json" if args.quick else "ablation_real.json")
    return args


def _model_key(options: Any) -> str:
    fields = (
        "projector_downsample",
        "projector_max_tokens",
        "projector_layers",
        "tower_layers",
        "random_audio",
        "random_text",
        "seed",
    )
    return hashlib.sha256(json.dumps({f: getattr(options, f) for f in fields}).encode()).hexdigest()[:12]


def token_key(options: Any) -> str:
    """Tower tokens depend on the tower alone: not on the projector, nor on the seed unless the tower is
    re-initialised."""
    tower = {"tower_layers": options.tower_layers, "random_audio": options.random_audio}
    if options.random_audio:
        tower["seed"] = options.seed
    return hashlib.sha256(json.dumps(tower).encode()).hexdigest()[:12]


def run_variant(
    name: str, seed: int, corpus: dict[str, Any], args: Any, caches: dict[str, Any]
) -> dict[str, Any]:
    from audiovec.demo.run import DemoOptions, compose_base_model

    what, changes, overrides = VARIANTS[name]
    options = DemoOptions(steps=args.steps, minutes=0, progress=False, seed=seed, **changes)
    base = compose_base_model(options, args.work / "models" / _model_key(options))
    run_dir = args.work / "runs" / f"{name}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    model, summary = train_recipe_run(
        options, base, Path(corpus["train"]), run_dir, args.threads, overrides, caches, token_key(options)
    )
    train_s = time.perf_counter() - start
    held = heldout_scores(model, Path(corpus["heldout"]))
    scores = headline(held)
    return {
        "variant": name, "seed": seed, "what": what, "steps": summary["steps"], "train_s": round(train_s, 1),
        **{k: scores[k] for k in METRICS},
        "chance_t2a": round(held["chance"]["t2a"]["hit_rate@5"], 4),
        "by_category": scores["by_category"],
        "queries": {c: g["t2a_queries"] for c, g in held["by_category"]["groups"].items()},
    }  # fmt: skip


def previous_runs(path: Path, steps: int) -> list[dict[str, Any]]:
    """The runs a results file holds at this budget (other budgets don't mix); early records lack ``seed``."""
    if not path.is_file():
        return []
    return [{"seed": 0, **r} for r in json.loads(path.read_text())["variants"] if r["steps"] == steps]


METRICS = ("t2a_hit_rate@5", "a2t_hit_rate@5", "t2a_macro_hit_rate@5")


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant, in first-seen order: mean and sample standard deviation over its seeds."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_variant.setdefault(record["variant"], []).append(record)
    rows = []
    for name, runs in by_variant.items():
        row: dict[str, Any] = {"variant": name, "seeds": [r.get("seed", 0) for r in runs]}
        for metric in (*METRICS, "chance_t2a"):
            values = [r[metric] for r in runs]
            row[metric] = statistics.fmean(values)
            row[metric + "_sd"] = statistics.stdev(values) if len(values) > 1 else None
        cats = {c for r in runs for c in r["by_category"]}
        row["by_category"] = {
            c: statistics.fmean(r["by_category"][c] for r in runs if c in r["by_category"]) for c in cats
        }
        row["steps"] = runs[0]["steps"]
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], metric: str) -> str:
    sd = row[metric + "_sd"]
    return f"{row[metric]:.3f}" if sd is None else f"{row[metric]:.3f} ± {sd:.3f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    cats = sorted({c for r in rows for c in r["by_category"]})
    head = "| variant | seeds | T2A hit@5 | A2T hit@5 | T2A macro | " + " | ".join(cats) + " |"
    lines = [head, "|---|---|---|---|---|" + "---|" * len(cats)]
    for r in rows:
        cells = " | ".join(f"{r['by_category'].get(c, float('nan')):.2f}" for c in cats)
        metrics = " | ".join(_cell(r, m) for m in METRICS)
        lines.append(f"| {r['variant']} | {len(r['seeds'])} | {metrics} | {cells} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bars are means over seeds; whiskers one standard deviation where a variant has several seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r['variant']} (×{len(r['seeds'])})" if len(r["seeds"]) > 1 else r["variant"] for r in rows]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    width = 0.4
    for offset, metric, label in (
        (-width / 2, "t2a_hit_rate@5", "T2A hit_rate@5"),
        (width / 2, "t2a_macro_hit_rate@5", "T2A macro over categories"),
    ):
        errors = [r[metric + "_sd"] or 0.0 for r in rows]
        ax.bar([i + offset for i in x], [r[metric] for r in rows], width, yerr=errors, capsize=3, label=label)
    ax.axhline(rows[0]["chance_t2a"], color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.set_ylabel("held-out real sources")
    ax.set_title(f"Recipe ablation on held-out real sources ({rows[0]['steps']} steps each)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    from audiovec.demo.corpus.build import build_corpus

    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    corpus_dir = args.corpus or args.work / "corpus"
    corpus = build_corpus(corpus_dir, size=args.corpus_size, progress=False)
    records = previous_runs(args.out, args.steps) if args.resume else []
    done = {(r["variant"], r["seed"]) for r in records}
    caches: dict[str, Any] = {}
    for name in args.variants:
        for seed in args.seeds:
            if (name, seed) in done:
                continue
            record = run_variant(name, seed, corpus, args, caches)
            records.append(record)
            print(
                f"{name} seed {seed}: t2a {record['t2a_hit_rate@5']:.3f} "
                f"macro {record['t2a_macro_hit_rate@5']:.3f} ({record['train_s']} s)",
                flush=True,
            )
            payload = {
                "machine": machine(),
                "corpus": corpus["counts"],
                "steps": args.steps,
                "variants": records,
            }
            write_json("ablation_real", {**payload, "summary": summarise(records)}, args.out, args.quick)
    wanted = [r for r in summarise(records) if r["variant"] in args.variants]
    print(markdown(wanted))
    if args.plot:
        plot(wanted, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
