"""Train the demo's recipe on a manifest and score it on held-out real sources.

The real-sound experiments (``ablation_real.py``, ``instrument_supplement.py``, ``speech_supplement.py``)
differ only in what they train on or which recipe field they change; this is the step they share, so their
numbers come from the same trainer settings and the same held-out scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# no final save, plot or checkpoints: an experiment keeps only its scores
EXPERIMENT_OVERRIDES = {"output.save_final": False, "output.plot": False, "output.checkpoint_every": 0}


def corpus_training_rows(corpus: Path) -> list[dict[str, Any]]:
    """The built corpus's training rows, audio paths made absolute (so a manifest elsewhere can list them)."""
    from audiovec.data.manifest import read_manifest

    return read_manifest(corpus / "train.jsonl", resolve=True)


def write_training_manifest(rows: list[dict[str, Any]], path: Path) -> Path:
    """Validated rows with absolute audio paths (the rows point into several folders)."""
    from audiovec.data.manifest import write_manifest

    write_manifest(rows, path, relative=False)
    return path


def train_recipe_run(
    options: Any,
    base: Path,
    manifest: Path,
    run_dir: Path,
    threads: int,
    overrides: dict[str, Any] | None = None,
    token_caches: dict[str, Any] | None = None,
    token_key: str = "tokens",
) -> tuple[Any, dict[str, Any]]:
    """Train ``options``' recipe from ``base`` on ``manifest``; returns the model (in eval mode) and the summary.

    With a frozen tower, runs that pass the same ``token_caches`` and ``token_key`` share the tower's tokens
    for the clips they have in common, so each clip is encoded once across the runs.
    """
    from audiovec.demo.run import train_recipe
    from audiovec.train.trainer import Trainer

    recipe = train_recipe(
        options, base, manifest, run_dir,
        {**EXPERIMENT_OVERRIDES, "train.num_threads": threads, **(overrides or {})},
    )  # fmt: skip
    trainer = Trainer(recipe)
    model = trainer.model
    if token_caches is not None and model.tower.token_cache is not None:
        model.tower.token_cache = token_caches.setdefault(token_key, model.tower.token_cache)
    summary = trainer.fit()
    model.eval()
    return model, summary


def heldout_scores(model: Any, heldout: Path) -> dict[str, Any]:
    """Retrieval on the held-out manifest, grouped by category (``evaluate``'s result for that set)."""
    import torch

    from audiovec.evaluation.evaluate import evaluate
    from audiovec.evaluation.retrieval_sets import from_manifest

    with torch.no_grad():
        return evaluate(
            model, [from_manifest(heldout, name="heldout")], use_cache=False, group_by="category"
        )["heldout"]


def headline(held: dict[str, Any]) -> dict[str, Any]:
    """T2A, A2T and macro-over-categories hit_rate@5, and T2A per category, rounded for a results file."""
    groups = held["by_category"]["groups"]
    return {
        "t2a_hit_rate@5": round(held["t2a"]["hit_rate@5"], 4),
        "a2t_hit_rate@5": round(held["a2t"]["hit_rate@5"], 4),
        "t2a_macro_hit_rate@5": round(held["by_category"]["macro"]["t2a"]["hit_rate@5"], 4),
        "by_category": {c: round(g["t2a"].get("hit_rate@5", float("nan")), 4) for c, g in groups.items()},
    }
