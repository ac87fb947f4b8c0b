"""The routes: a :class:`ServiceState` built once by :func:`create_app`, and one named function per
endpoint that reads it from ``request.app.state.service``.

* ``POST /v1/embeddings``: the OpenAI request (``input``: string or list, ``encoding_format`` ``float`` or
  ``base64``); audio items are ``{"type": "input_audio", "input_audio": {"data": <base64>}}`` or
  ``data:audio/<fmt>;base64,...`` strings.
* ``POST /v1/search`` (needs ``db``), ``POST /v1/classify`` (:class:`audiovec.apps.classify.ZeroShotClassifier`
  over label vectors computed in the batcher), ``GET /v1/models``, ``GET /health``.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections import OrderedDict
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from audiovec.apps.classify import DEFAULT_TEMPLATES, ZeroShotClassifier, average_prompts, prompts
from audiovec.apps.index import AudioIndex
from audiovec.dims import request_dimensions, truncate_embeddings
from audiovec.errors import ConfigError
from audiovec.serve.batching import MicroBatcher
from audiovec.serve.inputs import as_list, audio_bytes, decode_clip, is_text, parse_json, text_of
from audiovec.serve.limits import RequestError, ServiceLimits, error_body
from audiovec.serve.transport import GuardMiddleware

LABEL_CACHE_SIZE = 64  # label sets whose classifiers are kept (label vectors cost a text forward pass)


@dataclass
class ServiceState:
    """What every route shares: the model, its batcher, the index, the limits and the counters."""

    model: Any
    batcher: MicroBatcher
    limits: ServiceLimits
    model_name: str
    index: Any = None
    classifiers: OrderedDict[tuple, ZeroShotClassifier] = field(default_factory=OrderedDict)
    requests: int = 0
    errors: int = 0

    async def read_json(self, request: Request) -> dict[str, Any]:
        self.requests += 1
        return parse_json(await request.body())

    async def timed(self, work: Awaitable[Any]) -> Any:
        """``work`` within the request timeout (503 past it)."""
        try:
            return await asyncio.wait_for(work, self.limits.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(
                503, f"request took longer than {self.limits.request_timeout_s:g} s", "timeout"
            ) from None

    async def embed_items(self, items: list[Any], where: str) -> tuple[np.ndarray, int]:
        """Mixed text/audio items → vectors in order and the text tokens read (one submission per kind)."""
        loop = asyncio.get_running_loop()
        texts: list[tuple[int, str]] = []
        clips: list[tuple[int, bytes]] = []
        for i, item in enumerate(items):
            label = f"{where}[{i}]"
            raw = audio_bytes(item, label)
            if raw is None:
                texts.append((i, self._checked_text(text_of(item), label)))
            else:
                clips.append((i, raw))
        max_s = self.limits.max_audio_seconds
        waves = await asyncio.gather(
            *(loop.run_in_executor(None, decode_clip, raw, f"{where}[{i}]", max_s) for i, raw in clips)
        )
        out = np.zeros((len(items), self.model.embedding_dim), dtype=np.float32)
        tokens = 0
        pending = []
        if texts:
            pending.append(self.batcher.texts_with_usage([t for _, t in texts]))
        if waves:
            pending.append(self.batcher.waves(list(waves)))
        results = list(await asyncio.gather(*pending))
        if texts:
            out[[i for i, _ in texts]], tokens = results.pop(0)
        if waves:
            out[[i for i, _ in clips]] = results.pop(0)
        return out, tokens

    def _checked_text(self, text: str, label: str) -> str:
        if not text.strip():
            raise RequestError(400, f"{label}: empty text", "invalid_input")
        if len(text) > self.limits.max_text_chars:
            raise RequestError(
                413, f"{label}: text longer than {self.limits.max_text_chars} characters", "too_long"
            )
        return text

    async def classifier(self, labels: list[str], templates: list[str]) -> ZeroShotClassifier:
        """The classifier of a label set, its label vectors computed in the batcher (then cached)."""
        key = (tuple(labels), tuple(templates))
        if key not in self.classifiers:
            vectors = await self.timed(self.batcher.texts(prompts(labels, templates)))
            try:
                self.classifiers[key] = ZeroShotClassifier(
                    self.model, labels, templates, vectors=average_prompts(vectors, len(labels))
                )
            except ConfigError as exc:
                raise RequestError(422, str(exc), "invalid_type") from None
            while len(self.classifiers) > LABEL_CACHE_SIZE:
                self.classifiers.popitem(last=False)
        return self.classifiers[key]

    def error(self, status: int, message: str, code: str) -> JSONResponse:
        self.errors += 1
        return JSONResponse(error_body(status, message, code), status_code=status)


def state_of(request: Request) -> ServiceState:
    return request.app.state.service


# ------------------------------------------------------------------------------ routes


async def health(request: Request) -> dict[str, Any]:
    state = state_of(request)
    return {
        "status": "ok",
        "model": state.model_name,
        "dim": state.model.embedding_dim,
        "forward_passes": state.batcher.forward_passes,
        "batched_jobs": state.batcher.jobs,
        "items": state.batcher.items,
        "requests": state.requests,
        "errors": state.errors,
        "index_rows": state.index.count() if state.index is not None else None,
    }


async def models(request: Request) -> dict[str, Any]:
    name = state_of(request).model_name
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "audiovec"}]}


async def embeddings(request: Request) -> dict[str, Any]:
    state = state_of(request)
    body = await state.read_json(request)
    if "input" not in body:
        raise RequestError(422, "missing field 'input'", "invalid_type")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise RequestError(422, f"encoding_format must be 'float' or 'base64', got {fmt!r}", "invalid_type")
    try:
        dims = request_dimensions(body.get("dimensions"), state.model)  # any size in 1..D (audiovec.dims)
    except ConfigError as exc:
        raise RequestError(400, str(exc), "invalid_input") from None
    items = as_list(body["input"], "input", state.limits)
    vectors, tokens = await state.timed(state.embed_items(items, "input"))
    vectors = truncate_embeddings(vectors, dims)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
            if fmt == "base64"
            else v.tolist(),
        }
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": body.get("model") or state.model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def search(request: Request) -> dict[str, Any]:
    state = state_of(request)
    body = await state.read_json(request)
    if state.index is None:
        raise RequestError(404, "this server has no index (start it with --db DIR)", "no_index")
    k, max_k = body.get("k", 10), state.limits.max_k
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= max_k:
        raise RequestError(422, f"'k' must be an integer in 1..{max_k}", "invalid_type")
    if "query" not in body or isinstance(body["query"], list):
        raise RequestError(422, "'query' must be one string or one input_audio object", "invalid_type")
    vector = (await state.timed(state.embed_items([body["query"]], "query")))[0][0]
    hits = await asyncio.get_running_loop().run_in_executor(
        None, state.index.search, state.index.query_vector(vector), k
    )
    return {"object": "list", "data": [h.to_json() for h in hits]}


async def classify(request: Request) -> dict[str, Any]:
    state = state_of(request)
    body = await state.read_json(request)
    labels, templates, top_k = _classify_options(body, state.limits)
    items = as_list(body.get("input"), "input", state.limits)
    if any(is_text(x) for x in items):
        raise RequestError(
            422, "'input' items must be audio (input_audio or data:audio URIs)", "invalid_type"
        )
    classifier = await state.classifier(labels, templates)
    audio, _ = await state.timed(state.embed_items(items, "input"))
    names = dict(zip(classifier.labels, labels))  # the request's spelling of each label
    data = []
    for i, prediction in enumerate(classifier.classify_vectors(audio)):
        top = [
            {"label": names[name], "score": prediction.scores[name], "prob": prob}
            for name, prob in prediction.top(top_k)
        ]
        scores = {names[name]: score for name, score in prediction.scores.items()}
        data.append({"index": i, "label": names[prediction.label], "scores": scores, "top": top})
    return {"object": "list", "data": data}


def _classify_options(body: dict[str, Any], limits: ServiceLimits) -> tuple[list[str], list[str], int]:
    """``labels``, ``templates`` and ``top_k`` of a classify request, checked."""
    labels = body.get("labels")
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) and x.strip() for x in labels)
    ):
        raise RequestError(422, "'labels' must be a list of at least two non-empty strings", "invalid_type")
    if len(set(labels)) != len(labels) or len(labels) > limits.max_inputs:
        raise RequestError(422, f"'labels' must be distinct and at most {limits.max_inputs}", "invalid_type")
    templates = body.get("templates") or list(DEFAULT_TEMPLATES)
    if not isinstance(templates, list) or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise RequestError(422, "'templates' must be strings containing '{}'", "invalid_type")
    top_k = body.get("top_k", 5)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise RequestError(422, "'top_k' must be a positive integer", "invalid_type")
    return labels, templates, top_k


# ------------------------------------------------------------------------------ errors


async def on_request_error(request: Request, exc: RequestError) -> JSONResponse:
    return state_of(request).error(exc.status, exc.message, exc.code)


async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return state_of(request).error(exc.status_code, str(exc.detail), "http_error")


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return state_of(request).error(422, str(exc.errors())[:500], "invalid_type")


# ------------------------------------------------------------------------------ the app


def create_app(
    model: Any,
    db: str | os.PathLike | None = None,
    api_key: str | None = None,
    limits: ServiceLimits | None = None,
    model_name: str = "audiovec",
) -> Any:
    """An ASGI app serving ``model`` (and the index in ``db``, if given), behind :class:`GuardMiddleware`."""
    limits = limits or ServiceLimits()
    state = ServiceState(model, MicroBatcher(model, limits.max_batch, limits.max_wait_ms), limits, model_name)
    if db is not None:
        state.index = AudioIndex.open(db)
        state.index.check_model(model)

    @asynccontextmanager
    async def lifespan(_: Any):
        state.batcher.start()
        try:
            yield
        finally:
            state.batcher.stop()

    app = FastAPI(title="audiovec", lifespan=lifespan)
    app.state.service = state
    app.state.batcher = state.batcher
    app.add_exception_handler(RequestError, on_request_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    app.add_api_route("/v1/embeddings", embeddings, methods=["POST"])
    app.add_api_route("/v1/search", search, methods=["POST"])
    app.add_api_route("/v1/classify", classify, methods=["POST"])
    return GuardMiddleware(app, api_key, limits)


__all__ = ["ServiceState", "create_app"]
