"""What a run trained on, recorded into the saved model (``config.json`` ``extra.training_data``), so that
``audiovec.evaluation.mteb.model_meta`` can list the training datasets and the model card can name them."""

from __future__ import annotations

from typing import Any

from audiovec.model_card import record_training_data, training_record
from audiovec.train.config import Recipe
from audiovec.train.data import manifest_entry


def recipe_sources(recipe: Recipe) -> list[Any]:
    """The recipe's training data: manifest paths, FSDD row lists and text-pair files, resolved."""
    sources = [manifest_entry(recipe, entry)[0] for entry in recipe.data.train]
    sources += [str(recipe.resolve(p)) if isinstance(p, str) else p for p in recipe.data.text_pairs]
    return sources


def record_recipe_data(model: Any, recipe: Recipe) -> None:
    """Store the recipe's :func:`~audiovec.model_card.training_record` in ``model.config``."""
    if getattr(model, "config", None) is not None and hasattr(model.config, "extra"):
        record_training_data(model, training_record(recipe_sources(recipe)))
