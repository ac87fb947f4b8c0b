"""audiovec as a LanceDB embedding function: ``get_registry().get("audiovec").create(model=...)``.

A table whose schema names the function (through ``SourceField`` / ``VectorField`` of a ``LanceModel``, or
the ``embedding_functions`` schema metadata that ``audiovec index`` writes) embeds its source column of audio
on ``add`` and a string query on ``search``, so plain ``lancedb`` searches audio with text::

    import audiovec, lancedb
    from lancedb.embeddings import get_registry
    from lancedb.pydantic import LanceModel, Vector

    func = get_registry().get("audiovec").create()  # the built-in model "audiovec-sounds"

    class Clip(LanceModel):
        path: str = func.SourceField()
        vector: Vector(func.ndims()) = func.VectorField()

    table = lancedb.connect("db").create_table("clips", schema=Clip)
    table.add([{"path": "dog.wav"}, {"path": "rain.flac"}])
    table.search("a dog barking").limit(1).to_list()

Source values are audio paths (``str`` / ``os.PathLike``; also the file's bytes); a ``str`` query is text,
while a :class:`pathlib.Path`, bytes or a ``{"array", "sampling_rate"}`` dict query is audio (the way
LanceDB's OpenCLIP function takes a ``str`` as text and a PIL image as an image). A whole file gives one
vector (window vectors averaged, as :meth:`~audiovec.model.AudioTextEmbedder.encode_audio`).

LanceDB re-creates the function from the table metadata on every ``add`` and ``search``; loaded models are
therefore kept in a per-process cache (:func:`cached_model`), so that costs one load per process.

LanceDB has no plugin discovery (no entry points), so the ``"audiovec"`` name must be registered in the
process: ``import audiovec`` installs a hook that registers it as soon as ``lancedb.embeddings`` is
imported (before or after audiovec), without importing LanceDB itself.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from lancedb.embeddings import EmbeddingFunction, EmbeddingFunctionConfig, get_registry, register
from pydantic import PrivateAttr

from audiovec.errors import ConfigError
from audiovec.model import AudioTextEmbedder

log = logging.getLogger(__name__)

NAME = "audiovec"
DEFAULT_MODEL = (
    "audiovec-sounds"  # = audiovec.build.pretrained.DEFAULT_MODEL (kept literal: no torch on import)
)

_models: dict[tuple[str, str | None, str | None], Any] = {}
_lock = threading.Lock()


def cached_model(model: str, device: str | None = None, dtype: str | None = None) -> Any:
    """The :class:`~audiovec.model.AudioTextEmbedder` at ``model`` (built-in name or folder), loaded once
    per process and ``(model, device, dtype)``."""
    key = (model, device, dtype)
    with _lock:
        if key not in _models:
            _models[key] = AudioTextEmbedder.from_pretrained(model, device=device, dtype=dtype)
        return _models[key]


@register(NAME)
class AudiovecEmbeddings(EmbeddingFunction):
    """Audio sources, text (or audio) queries, one unit vector each, from an audiovec model.

    ``model``: a built-in model name or a model folder; ``dim``: its vector size when known (saves loading
    the model just to create a table schema); ``device`` / ``dtype`` as ``from_pretrained``.
    """

    model: str = DEFAULT_MODEL
    device: str | None = None
    dtype: str | None = None
    batch_size: int = 16
    dim: int | None = None
    max_retries: int = 0  # a local model: a failure is not a rate limit, retrying cannot help
    _loaded: Any = PrivateAttr(default=None)

    def embedder(self) -> Any:
        """The loaded audiovec model (shared by every function instance naming the same model)."""
        if self._loaded is None:
            self._loaded = cached_model(self.model, self.device, self.dtype)
        return self._loaded

    def ndims(self) -> int:
        return int(self.dim) if self.dim is not None else int(self.embedder().embedding_dim)

    # LanceDB wraps these in a retry loop that sleeps and then hides the error in a generic Exception;
    # a local model fails the same way every time, so the audiovec error is raised as it is.
    def compute_query_embeddings_with_retry(self, *args: Any, **kwargs: Any) -> list[np.ndarray | None]:
        return self.compute_query_embeddings(*args, **kwargs)

    def compute_source_embeddings_with_retry(self, *args: Any, **kwargs: Any) -> list[np.ndarray | None]:
        return self.compute_source_embeddings(*args, **kwargs)

    def compute_query_embeddings(self, query: Any, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        """A ``str`` is text; a ``Path``, bytes or ``{"array", "sampling_rate"}`` dict is audio."""
        if isinstance(query, str):
            return [self.embedder().encode_text(query)]
        if isinstance(query, dict):
            if "array" not in query or "sampling_rate" not in query:
                raise ConfigError(
                    f"audiovec query dict has keys {sorted(query)}; pass {{'array': ..., 'sampling_rate': ...}}"
                )
            wave = np.asarray(query["array"], dtype=np.float32)
            return [self.embedder().encode_audio(wave, sample_rate=int(query["sampling_rate"]))]
        if isinstance(query, (os.PathLike, bytes, bytearray, memoryview)):
            return [self.embedder().encode_audio(query if not isinstance(query, Path) else str(query))]
        raise ConfigError(
            f"audiovec cannot embed a query of type {type(query).__name__}; pass text (str), an audio file "
            "(pathlib.Path or bytes) or {'array': ..., 'sampling_rate': ...}"
        )

    def compute_source_embeddings(self, sources: Any, *args: Any, **kwargs: Any) -> list[np.ndarray | None]:
        """One vector per audio path (or file bytes); an unreadable one gets ``None`` (logged), which
        LanceDB's ``on_bad_vectors`` then handles ("error" by default; "drop" skips the row)."""
        items = self.sanitize_input(sources)
        out: list[np.ndarray | None] = [None] * len(items)
        good = [i for i, item in enumerate(items) if item is not None]
        if not good:
            return out
        inputs = [os.fspath(items[i]) if isinstance(items[i], os.PathLike) else items[i] for i in good]
        result = self.embedder().encode_audio_detailed(inputs, batch_size=self.batch_size, on_error="skip")
        for j, i in enumerate(good):
            if j in result.errors:
                log.warning("audiovec: no vector for %s", result.errors[j])
            else:
                out[i] = result.vectors[j]
        return out

    def sanitize_input(self, sources: Any) -> list[Any]:
        if isinstance(sources, (str, bytes, os.PathLike)):
            return [sources]
        if isinstance(sources, pa.ChunkedArray):
            sources = sources.combine_chunks()
        if isinstance(sources, pa.Array):
            return sources.to_pylist()
        return list(sources)


def function_metadata(
    model: str, dim: int | None = None, source_column: str = "path", vector_column: str = "vector"
) -> dict[bytes, bytes]:
    """The ``embedding_functions`` schema metadata LanceDB writes for a table using this function, so a
    table created by other means (``audiovec index``) is searchable by string in plain ``lancedb``."""
    args: dict[str, Any] = {"model": model} | ({"dim": int(dim)} if dim is not None else {})
    func = AudiovecEmbeddings.create(**args)
    conf = EmbeddingFunctionConfig(source_column=source_column, vector_column=vector_column, function=func)
    meta = get_registry().get_table_metadata([conf])
    return {k.encode(): v for k, v in meta.items()}


__all__ = ["AudiovecEmbeddings", "NAME", "cached_model", "function_metadata"]
