"""Matryoshka training vs the plain demo recipe, scored at every vector size on held-out real sources.

Two models train with the library's ``Trainer`` from the demo's recipe (``benchmarks/ablation_real.py``'s
``default`` variant) for the same steps on the same real-sound corpus: one with the plain symmetric InfoNCE
loss, one with ``train.matryoshka_dims`` (the loss also on the 1/2, 1/4, 1/8 prefixes). Each is then scored
on the corpus's held-out real sources with its vectors truncated to every size (first d components,
re-normalised: ``encode_*(truncate_dim=d)``), from one encoding pass per model.

    python benchmarks/matryoshka_real.py --corpus /work/corpus_full --steps 600 --threads 1
    python benchmarks/matryoshka_real.py --corpus /work/corpus_full --steps 600 --threads 1 --seed 1
    python benchmarks/matryoshka_real.py --quick          # CI: small corpus, a few steps

Writes ``benchmarks/results/matryoshka_real.json`` (``matryoshka_real_seedN.json`` for ``--seed N`` > 0: the
projector initialisation and the batch order change, the corpus does not) and a Markdown table on stdout.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, base_parser, machine, write_json
from _recipe_runs import train_recipe_run
from ablation_real import _model_key, token_key

VARIANTS = {"plain": [], "matryoshka": "auto"}  # train.matryoshka_dims


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", type=Path, default=None, help="a built corpus folder (default: build one)"
    )
    parser.add_argument("--corpus-size", default="default", choices=("small", "default", "large"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--work", type=Path, default=Path("runs/matryoshka-real"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--resume", action="store_true", help="skip variants already in the output JSON")
    parser.add_argument("--seed", type=int, default=0, help="training seed (initialisation, batch order)")
    args = parser.parse_args(argv)
    if args.quick:
        args.corpus_size, args.steps = "small", 4
    name = "matryoshka_real" + (f"_seed{args.seed}" if args.seed else "")
    args.out = args.out or RESULTS / (f"{name}_quick.json" if args.quick else f"{name}.json")
    return args


def score_sizes(model: Any, heldout: Path, sizes: list[int]) -> dict[str, dict[str, float]]:
    """Held-out t2a/a2t hit_rate@5 (and R@1, mAP@10) with the vectors truncated to each size."""
    from audiovec.dims import truncate_embeddings
    from audiovec.evaluation.evaluate import embed_set, score_set
    from audiovec.evaluation.retrieval_sets import from_manifest

    data = from_manifest(heldout, name="heldout")
    audio, text, _ = embed_set(model, data)
    out: dict[str, dict[str, float]] = {}
    for dim in sizes:
        cut = None if dim == audio.shape[1] else dim
        result = score_set(truncate_embeddings(audio, cut), truncate_embeddings(text, cut), data)
        out[str(dim)] = {
            f"{d}_{m}": round(float(result[d][m]), 4)
            for d in ("t2a", "a2t")
            for m in ("hit_rate@5", "recall@1", "mAP@10")
            if m in result[d]
        }
    return out


def run_variant(
    name: str, corpus: dict[str, Any], args: Any, caches: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train one variant; variants passing the same ``caches`` encode each clip with the frozen tower once."""
    import torch

    from audiovec.demo.run import DemoOptions, compose_base_model

    options = DemoOptions(steps=args.steps, minutes=0, progress=False, seed=args.seed)
    base = compose_base_model(options, args.work / "models" / _model_key(options))
    run_dir = args.work / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    model, summary = train_recipe_run(
        options, base, Path(corpus["train"]), run_dir, args.threads,
        {"train.matryoshka_dims": VARIANTS[name]}, caches, token_key(options),
    )  # fmt: skip
    train_s = time.perf_counter() - start
    full = model.embedding_dim
    sizes = [d for d in (full, full // 2, full // 4, full // 8) if d >= 1]
    with torch.no_grad():
        scores = score_sizes(model, Path(corpus["heldout"]), sizes)
    return {
        "variant": name,
        "seed": args.seed,
        "matryoshka_dims": getattr(model.config, "matryoshka_dims", None),
        "steps": summary["steps"],
        "train_s": round(train_s, 1),
        "by_size": scores,
    }


def markdown(records: list[dict[str, Any]]) -> str:
    sizes = list(records[0]["by_size"])
    head = "| variant | " + " | ".join(f"T2A@5 d={d}" for d in sizes) + " | "
    head += " | ".join(f"A2T@5 d={d}" for d in sizes) + " |"
    lines = [head, "|---|" + "---|" * (2 * len(sizes))]
    for r in records:
        t2a = " | ".join(f"{r['by_size'][d]['t2a_hit_rate@5']:.3f}" for d in sizes)
        a2t = " | ".join(f"{r['by_size'][d]['a2t_hit_rate@5']:.3f}" for d in sizes)
        lines.append(f"| {r['variant']} | {t2a} | {a2t} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from audiovec.demo.corpus.build import build_corpus

    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(args.corpus or args.work / "corpus", size=args.corpus_size, progress=False)
    done: dict[str, Any] = {}
    if args.resume and args.out.is_file():
        done = {r["variant"]: r for r in json.loads(args.out.read_text())["variants"]}
    records: list[dict[str, Any]] = []
    caches: dict[str, Any] = {}
    for name in args.variants:
        record = done.get(name) or run_variant(name, corpus, args, caches)
        records.append(record)
        print(f"{name}: {json.dumps(record['by_size'])} ({record['train_s']} s)", flush=True)
        write_json(
            "matryoshka_real",
            {
                "machine": machine(),
                "corpus": corpus["counts"],
                "steps": args.steps,
                "seed": args.seed,
                "variants": records,
            },  # fmt: skip
            args.out,
            args.quick,
        )
    print(markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
