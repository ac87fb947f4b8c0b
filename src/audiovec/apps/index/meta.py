"""What an index records about its model: which model made it (a built-in name or a folder), its vector size,
and loading that model back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiovec.dims import check_truncate_dim
from audiovec.errors import AudiovecError, ConfigError

if TYPE_CHECKING:
    from audiovec.apps.index import AudioIndex


class IndexStoreError(AudiovecError):
    """The index folder is missing, malformed, or was built by another model."""


def index_dim(meta: dict[str, Any], model: Any, dim: int | None, where: Path) -> int:
    """The vector size an index stores: ``dim`` (a ``truncate_dim`` in 1..model size), else the size it was
    built with, else the model's; a size other than the one already stored is refused."""
    full = int(model.embedding_dim)
    if meta.get("model_dim", meta.get("dim")) not in (None, full):
        raise IndexStoreError(
            f"{where}: built with a {meta.get('model_dim', meta.get('dim'))}-d model, this model gives "
            f"{full}-d vectors; use a new --db folder"
        )
    chosen = None
    if dim is not None:
        chosen = check_truncate_dim(dim, full, "dim (--dim)") or full
    stored = meta.get("dim")
    if chosen is not None and stored not in (None, chosen):
        raise IndexStoreError(
            f"{where}: stores {stored}-d vectors, asked for {chosen}; use --dim {stored} or a new --db folder"
        )
    return int(chosen or stored or getattr(model, "truncate_dim", None) or full)


def load_index_model(index: AudioIndex, model_path: str | os.PathLike | None = None) -> Any:
    """The model that built ``index`` (from the recorded folder unless ``model_path`` is given)."""
    from audiovec.model import AudioTextEmbedder

    path = model_path or index.meta().get("model_dir")
    if not path:
        raise ConfigError(f"{index.dir}: the index does not record its model folder; pass --model")
    model = AudioTextEmbedder.from_pretrained(path)
    index.check_model(model)
    return model
