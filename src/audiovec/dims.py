"""Smaller vectors from a Matryoshka-trained model: keep the first ``dim`` components and L2-normalise
again (sentence-transformers' ``truncate_dim``). Shared by ``encode_*``, the service and the index."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audiovec.errors import ConfigError


def check_truncate_dim(dim: int | None, full: int, what: str = "truncate_dim") -> int | None:
    """``dim`` as an int in ``1..full`` (``None`` and ``full`` mean the full vector), else a ConfigError
    naming the valid range."""
    if dim is None:
        return None
    number = isinstance(dim, (int, np.integer)) and not isinstance(dim, bool)
    if not number or not 1 <= int(dim) <= full:
        raise ConfigError(
            f"{what}={dim!r}: the model's vectors have {full} dimensions; use a size in 1..{full}"
        )
    return None if int(dim) == full else int(dim)


def truncate_embeddings(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """The first ``dim`` components of each vector, L2-normalised again (rows of NaN stay NaN; an
    all-zero prefix stays zero). ``None``: ``vectors`` unchanged. Works on one vector or a matrix."""
    if dim is None:
        return vectors
    dim = check_truncate_dim(dim, vectors.shape[-1])
    if dim is None:
        return vectors
    cut = np.asarray(vectors[..., :dim], dtype=np.float32)
    norms = np.linalg.norm(cut, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cut / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def describe_dims(trained: Sequence[int] | None, full: int) -> str:
    """How a model's sizes read in messages: ``"384 (trained sizes 384, 192, 96, 48)"``."""
    if not trained:
        return f"{full} (not Matryoshka-trained: smaller sizes lose quality)"
    return f"{full} (trained sizes {', '.join(str(d) for d in trained)})"


def request_dimensions(value: object, model: object) -> int | None:
    """The OpenAI ``dimensions`` field of an embeddings request, checked against ``model``: the size in
    ``1..D`` to truncate the vectors to, or ``None`` for full vectors (absent field: ``model.truncate_dim``).
    Any size is honoured; a model trained with Matryoshka sizes (``config.matryoshka_dims``) keeps its
    quality at those."""
    full = int(model.embedding_dim)  # type: ignore[attr-defined]
    if value is None:
        value = getattr(model, "truncate_dim", None)
        if value is None:
            return None
    trained = getattr(getattr(model, "config", None), "matryoshka_dims", None)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= full:
        raise ConfigError(
            f"dimensions={value!r}: this model gives vectors of {describe_dims(trained, full)}; "
            f"ask for an integer in 1..{full} or leave the field out"
        )
    return None if value == full else value
