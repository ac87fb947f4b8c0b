"""An HTTP service over one model: OpenAI-compatible embeddings, search, zero-shot classification.

* ``POST /v1/embeddings`` takes the OpenAI request (``input``: string or list of strings, ``encoding_format``
  ``float`` or ``base64``); audio is an extension: an item ``{"type": "input_audio", "input_audio": {"data":
  <base64>, "format": "wav"}}`` or a string ``data:audio/<fmt>;base64,...``. Audio is only ever inline: paths
  and URLs are refused, the server never opens a file a request names.
* ``POST /v1/search`` (needs ``db``), ``POST /v1/classify``, ``GET /v1/models``, ``GET /health``.
* Requests from concurrent clients are micro-batched: a worker thread takes up to ``max_batch`` queued
  items (or what arrived within ``max_wait_ms``) and runs one forward pass; ``/health`` counts them.
* Limits: body size (413), audio duration (413), slow request heads and bodies (408), processing time
  (503); errors are JSON ``{"error": {"message", "type", "code"}}``. With an API key every endpoint but
  ``/health`` needs ``Authorization: Bearer <key>`` (constant-time comparison; 401 otherwise).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import io
import ipaddress
import json
import logging
import os
import queue
import re
import threading
import time
from collections import OrderedDict
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from typing import Any

import h11
import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from audiovec.audio import SAMPLE_RATE, load_audio, window_spans
from audiovec.classify import DEFAULT_LOGIT_SCALE, DEFAULT_TEMPLATES, average_prompts, prompts
from audiovec.dims import request_dimensions, truncate_embeddings
from audiovec.errors import AudioDecodeError, ConfigError
from audiovec.index import pool_windows
from audiovec.model import batch_samples, length_batches

log = logging.getLogger(__name__)

API_KEY_ENV = "AUDIOVEC_API_KEY"
_DATA_URI = re.compile(r"^data:audio/([\w.+-]+)?(;[\w=.+-]+)*;base64,", re.IGNORECASE)
_PATH_LIKE = re.compile(r"^(/|\./|\.\./|~|[a-z][a-z0-9+.-]*://|[a-z]:[\\/]|\\\\)", re.IGNORECASE)


@dataclass
class ServiceLimits:
    """Bounds on what one request may cost."""

    max_body_bytes: int = 25 * 1024 * 1024
    max_audio_seconds: float = 600.0
    max_inputs: int = 256
    max_text_chars: int = 20_000
    request_timeout_s: float = 120.0
    body_read_timeout_s: float = 15.0
    header_timeout_s: float = 10.0  # from connect (or a further request's first byte) to a complete head
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_k: int = 1000


class RequestError(Exception):
    """Becomes a JSON error response with ``status``."""

    def __init__(self, status: int, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


# --------------------------------------------------------------------------------------- micro-batching


class MicroBatcher:
    """Runs every forward pass in one worker thread, merging the items of concurrent requests."""

    def __init__(self, model: Any, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        self.model = model
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.window_seconds = float(model.config.window_seconds)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.forward_passes = 0
        self.jobs = 0
        self.items = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="audiovec-batcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    async def texts(self, texts: list[str]) -> np.ndarray:
        return (await self.texts_with_usage(texts))[0]

    async def texts_with_usage(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Vectors and the token count, both from the worker: the tokenizer is only ever touched there."""
        return await self._submit("text", texts)

    async def waves(self, waves: list[np.ndarray]) -> np.ndarray:
        return await self._submit("audio", waves)

    async def _submit(self, kind: str, payload: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((kind, payload, future, loop))
        return await future

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            jobs = [first]
            try:
                size = _job_size(first, self.window_seconds)
                deadline = time.monotonic() + self.max_wait
                while size < self.max_batch:
                    try:
                        job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    jobs.append(job)
                    size += _job_size(job, self.window_seconds)
                jobs = [j for j in jobs if not j[2].cancelled()]
                self.jobs += len(jobs)
                for kind in ("text", "audio"):
                    group = [j for j in jobs if j[0] == kind]
                    if group:
                        self._process(kind, group)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any one batch
                log.exception("micro-batcher failed on a batch")
                _fail(jobs, exc)

    def _process(self, kind: str, group: list[Any]) -> None:
        try:
            with torch.inference_mode():
                results = self._texts(group) if kind == "text" else self._audio(group)
        except Exception as exc:  # noqa: BLE001 - hand the failure to every waiting request
            log.exception("forward pass failed")
            _fail(group, exc)
            return
        for (_, _, future, loop), result in zip(group, results):
            loop.call_soon_threadsafe(_resolve, future, result, None)

    def _texts(self, group: list[Any]) -> list[tuple[np.ndarray, int]]:
        """Per job: its vectors and the number of tokens the model read for it."""
        flat = [t for job in group for t in job[1]]
        self.items += len(flat)
        out = np.zeros((len(flat), self.model.embedding_dim), dtype=np.float32)
        tokens = np.zeros(len(flat), dtype=np.int64)
        order = sorted(range(len(flat)), key=lambda i: len(flat[i]))
        for start in range(0, len(order), self.max_batch):
            idx = order[start : start + self.max_batch]
            batch = self.model.tokenize([flat[i] for i in idx])
            out[idx] = self.model.forward_text(**batch).float().cpu().numpy()
            tokens[idx] = batch["attention_mask"].sum(dim=1).cpu().numpy()
            self.forward_passes += 1
        sizes = [len(job[1]) for job in group]
        return [(v, int(n.sum())) for v, n in zip(_split(out, sizes), _split(tokens, sizes))]

    def _audio(self, group: list[Any]) -> list[np.ndarray]:
        pieces: list[tuple[int, np.ndarray]] = []  # (clip number, window samples)
        peaks: list[float | None] = []  # per piece: its file's log-mel peak (models that floor per file)
        for clip, wave in enumerate(w for job in group for w in job[1]):
            spans = window_spans(wave.shape[0], self.window_seconds)
            peak = self.model.file_peak(wave, spans)
            for start, end in spans:
                pieces.append((clip, wave[start:end]))
                peaks.append(peak)
        clips = sum(len(job[1]) for job in group)
        self.items += clips
        by_length = sorted(enumerate(w for _, w in pieces), key=lambda p: p[1].shape[0])
        vectors = np.zeros((len(pieces), self.model.embedding_dim), dtype=np.float32)
        # as encode_audio batches: little padding, at most max_batch 30 s windows of audio
        for chunk in length_batches(by_length, self.max_batch, max_samples=batch_samples(self.max_batch)):
            idx = [i for i, _ in chunk]
            batch = self.model.featurize([w for _, w in chunk], [peaks[i] for i in idx])  # see min_seconds
            vectors[idx] = self.model.forward_audio(**batch).float().cpu().numpy()
            self.forward_passes += 1
        rows_of: list[list[int]] = [[] for _ in range(clips)]
        for i, (clip, _) in enumerate(pieces):
            rows_of[clip].append(i)
        out = np.zeros((clips, self.model.embedding_dim), dtype=np.float32)
        for clip, rows in enumerate(rows_of):
            out[clip] = pool_windows(vectors[rows], [pieces[i][1].shape[0] for i in rows])
        return _split(out, [len(job[1]) for job in group])


def _job_size(job: Any, window_seconds: float) -> int:
    if job[0] == "text":
        return len(job[1])
    return sum(len(window_spans(w.shape[0], window_seconds)) for w in job[1])


def _split(array: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0, *sizes])
    return [array[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _fail(jobs: list[Any], error: BaseException) -> None:
    for _, _, future, loop in jobs:
        loop.call_soon_threadsafe(_resolve, future, None, error)


def _resolve(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# --------------------------------------------------------------------------------------- request parsing


def _decode_base64(text: str, where: str) -> bytes:
    if _PATH_LIKE.match(text.strip()):
        raise RequestError(
            400,
            f"{where}: audio must be inline base64; server-side paths and URLs are not accepted",
            "path_refused",
        )
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{where}: invalid base64 audio data", "invalid_base64") from None
    if not data:
        raise RequestError(400, f"{where}: empty audio data", "invalid_audio")
    return data


def _audio_bytes(item: Any, where: str) -> bytes | None:
    """The raw bytes of an audio item, or None when ``item`` is text."""
    if isinstance(item, str):
        match = _DATA_URI.match(item)
        if match:
            return _decode_base64(item[match.end() :], where)
        if item.lower().startswith("data:"):
            raise RequestError(400, f"{where}: only base64 data:audio/... URIs are accepted", "invalid_audio")
        return None
    if not isinstance(item, dict):
        raise RequestError(422, f"{where}: expected a string or an input_audio object", "invalid_type")
    kind = item.get("type")
    if kind == "text" and isinstance(item.get("text"), str):
        return None
    if kind != "input_audio" or not isinstance(item.get("input_audio"), dict):
        refused = {"path", "url", "file", "file_path", "audio_url", "uri"} & set(item)
        if refused or kind in ("audio_url", "file"):
            raise RequestError(
                400,
                f"{where}: server-side paths and URLs are not accepted; send base64 audio",
                "path_refused",
            )
        raise RequestError(
            422, f"{where}: expected {{'type': 'input_audio', 'input_audio': {{...}}}}", "invalid_type"
        )
    audio = item["input_audio"]
    refused = {"path", "url", "file", "file_path", "uri"} & set(audio)
    if refused:
        raise RequestError(
            400, f"{where}: server-side paths and URLs are not accepted ({sorted(refused)})", "path_refused"
        )
    data = audio.get("data")
    if not isinstance(data, str):
        raise RequestError(422, f"{where}: input_audio.data must be a base64 string", "invalid_type")
    match = _DATA_URI.match(data)
    return _decode_base64(data[match.end() :] if match else data, where)


def _text_of(item: Any) -> str:
    return item if isinstance(item, str) else item["text"]


def decode_clip(data: bytes, where: str, max_seconds: float) -> np.ndarray:
    """Bytes → 16 kHz waveform, refusing clips over ``max_seconds`` (header first, then samples)."""
    try:
        import soundfile as sf

        info = sf.info(io.BytesIO(data))
        if info.frames > 0 and info.frames / info.samplerate > max_seconds:
            raise RequestError(413, f"{where}: audio longer than {max_seconds:g} s", "audio_too_long")
    except RequestError:
        raise
    except Exception:  # noqa: BLE001 - not a libsndfile format; the full decode decides
        pass
    try:
        wave = load_audio(data)
    except AudioDecodeError as exc:
        raise RequestError(400, f"{where}: cannot decode audio ({exc.reason})", "invalid_audio") from None
    if wave.shape[0] / SAMPLE_RATE > max_seconds:
        raise RequestError(413, f"{where}: audio longer than {max_seconds:g} s", "audio_too_long")
    return wave


# --------------------------------------------------------------------------------------- ASGI guard


class GuardMiddleware:
    """Checks the API key, then buffers the body under a size limit and a per-chunk read timeout."""

    def __init__(self, app: Any, api_key: str | None, limits: ServiceLimits) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.limits = limits

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self.api_key is not None and scope.get("path") != "/health":
            given = headers.get("authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
                await _send_error(
                    send, 401, "missing or invalid API key (Authorization: Bearer <key>)", "unauthorized"
                )
                return
        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limits.max_body_bytes
            except ValueError:
                await _send_error(send, 400, "invalid Content-Length", "invalid_request")
                return
            if too_big:
                await _send_error(send, 413, self._too_large(), "body_too_large")
                return
        body = bytearray()
        more = scope.get("method") in ("POST", "PUT", "PATCH")
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.limits.body_read_timeout_s)
            except asyncio.TimeoutError:
                await _send_error(send, 408, "request body not received in time", "request_timeout")
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limits.max_body_bytes:
                await _send_error(send, 413, self._too_large(), "body_too_large")
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body larger than {self.limits.max_body_bytes} bytes"


async def _send_error(send: Any, status: int, message: str, code: str) -> None:
    payload = json.dumps(_error_body(status, message, code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            + ([(b"www-authenticate", b"Bearer")] if status == 401 else [])
            + ([(b"connection", b"close")] if status in (408, 413) else []),
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _error_body(status: int, message: str, code: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": code, "status": status}}


# --------------------------------------------------------------------------------------- the app


def create_app(
    model: Any,
    db: str | os.PathLike | None = None,
    api_key: str | None = None,
    limits: ServiceLimits | None = None,
    model_name: str = "audiovec",
) -> Any:
    """A FastAPI app serving ``model`` (and the index in ``db``, if given)."""
    limits = limits or ServiceLimits()
    batcher = MicroBatcher(model, limits.max_batch, limits.max_wait_ms)
    index = None
    if db is not None:
        from audiovec.index import AudioIndex

        index = AudioIndex.open(db)
        index.check_model(model)
    label_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
    counters = {"requests": 0, "errors": 0}

    @asynccontextmanager
    async def lifespan(_: Any):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(title="audiovec", lifespan=lifespan)
    app.state.batcher = batcher

    def error(status: int, message: str, code: str) -> JSONResponse:
        counters["errors"] += 1
        return JSONResponse(_error_body(status, message, code), status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, exc.message, exc.code)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), "http_error")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, str(exc.errors())[:500], "invalid_type")

    async def read_json(request: Request) -> dict[str, Any]:
        counters["requests"] += 1
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"request body is not valid JSON ({exc})", "invalid_json") from None
        if not isinstance(data, dict):
            raise RequestError(422, "request body must be a JSON object", "invalid_type")
        return data

    async def timed(coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, limits.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(
                503, f"request took longer than {limits.request_timeout_s:g} s", "timeout"
            ) from None

    async def embed_items(items: list[Any], where: str) -> tuple[np.ndarray, int]:
        """Mixed text/audio items → vectors in order and the text tokens read (one submission per kind)."""
        loop = asyncio.get_running_loop()
        texts: list[tuple[int, str]] = []
        clips: list[tuple[int, bytes]] = []
        for i, item in enumerate(items):
            label = f"{where}[{i}]"
            raw = _audio_bytes(item, label)
            if raw is None:
                text = _text_of(item)
                if not text.strip():
                    raise RequestError(400, f"{label}: empty text", "invalid_input")
                if len(text) > limits.max_text_chars:
                    raise RequestError(
                        413, f"{label}: text longer than {limits.max_text_chars} characters", "too_long"
                    )
                texts.append((i, text))
            else:
                clips.append((i, raw))
        waves = await asyncio.gather(
            *(
                loop.run_in_executor(None, decode_clip, raw, f"{where}[{i}]", limits.max_audio_seconds)
                for i, raw in clips
            )
        )
        out = np.zeros((len(items), model.embedding_dim), dtype=np.float32)
        tokens = 0
        text_rows, clip_rows = [i for i, _ in texts], [i for i, _ in clips]
        pending = []
        if texts:
            pending.append(batcher.texts_with_usage([t for _, t in texts]))
        if waves:
            pending.append(batcher.waves(list(waves)))
        results = list(await asyncio.gather(*pending))
        if texts:
            out[text_rows], tokens = results.pop(0)
        if waves:
            out[clip_rows] = results.pop(0)
        return out, tokens

    def as_list(value: Any, name: str) -> list[Any]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise RequestError(400, f"'{name}' is empty", "invalid_input")
        if len(items) > limits.max_inputs:
            raise RequestError(413, f"'{name}' has more than {limits.max_inputs} items", "too_many_inputs")
        if all(isinstance(x, int) for x in items) or any(isinstance(x, list) for x in items):
            raise RequestError(
                400, f"'{name}': token-id inputs are not supported; send strings", "invalid_input"
            )
        return items

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model_name,
            "dim": model.embedding_dim,
            "forward_passes": batcher.forward_passes,
            "batched_jobs": batcher.jobs,
            "items": batcher.items,
            "requests": counters["requests"],
            "errors": counters["errors"],
            "index_rows": index.count() if index is not None else None,
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "audiovec"}]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        if "input" not in body:
            raise RequestError(422, "missing field 'input'", "invalid_type")
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise RequestError(
                422, f"encoding_format must be 'float' or 'base64', got {fmt!r}", "invalid_type"
            )
        try:
            dims = request_dimensions(body.get("dimensions"), model)  # any size in 1..D (audiovec.dims)
        except ConfigError as exc:
            raise RequestError(400, str(exc), "invalid_input") from None
        items = as_list(body["input"], "input")
        vectors, tokens = await timed(embed_items(items, "input"))
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
            "model": body.get("model") or model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @app.post("/v1/search")
    async def search(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        if index is None:
            raise RequestError(404, "this server has no index (start it with --db DIR)", "no_index")
        k = body.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= limits.max_k:
            raise RequestError(422, f"'k' must be an integer in 1..{limits.max_k}", "invalid_type")
        if "query" not in body or isinstance(body["query"], list):
            raise RequestError(422, "'query' must be one string or one input_audio object", "invalid_type")
        vector = (await timed(embed_items([body["query"]], "query")))[0][0]
        loop = asyncio.get_running_loop()
        hits = await loop.run_in_executor(None, index.search, index.query_vector(vector), k)
        return {"object": "list", "data": [h.to_json() for h in hits]}

    @app.post("/v1/classify")
    async def classify(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        labels = body.get("labels")
        if (
            not isinstance(labels, list)
            or len(labels) < 2
            or not all(isinstance(x, str) and x.strip() for x in labels)
        ):
            raise RequestError(
                422, "'labels' must be a list of at least two non-empty strings", "invalid_type"
            )
        if len(set(labels)) != len(labels) or len(labels) > limits.max_inputs:
            raise RequestError(
                422, f"'labels' must be distinct and at most {limits.max_inputs}", "invalid_type"
            )
        templates = body.get("templates") or list(DEFAULT_TEMPLATES)
        if not isinstance(templates, list) or not all(isinstance(t, str) and "{}" in t for t in templates):
            raise RequestError(422, "'templates' must be strings containing '{}'", "invalid_type")
        top_k = body.get("top_k", 5)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise RequestError(422, "'top_k' must be a positive integer", "invalid_type")
        items = as_list(body.get("input"), "input")
        if any(_is_text(x) for x in items):
            raise RequestError(
                422, "'input' items must be audio (input_audio or data:audio URIs)", "invalid_type"
            )
        key = (tuple(labels), tuple(templates))
        if key not in label_cache:
            vecs = await timed(batcher.texts(prompts(labels, templates)))
            label_cache[key] = average_prompts(vecs, len(labels))
            while len(label_cache) > 64:
                label_cache.popitem(last=False)
        label_vecs = label_cache[key]
        audio, _ = await timed(embed_items(items, "input"))
        sims = audio @ label_vecs.T
        logits = DEFAULT_LOGIT_SCALE * (sims - sims.max(axis=1, keepdims=True))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        data = []
        for i, (row, prow) in enumerate(zip(sims, probs)):
            order = np.argsort(-row)[:top_k]
            data.append(
                {
                    "index": i,
                    "label": labels[int(order[0])],
                    "scores": {name: float(s) for name, s in zip(labels, row)},
                    "top": [
                        {"label": labels[int(j)], "score": float(row[j]), "prob": float(prow[j])}
                        for j in order
                    ],
                }
            )
        return {"object": "list", "data": data}

    return GuardMiddleware(app, api_key, limits)


def _is_text(item: Any) -> bool:
    if isinstance(item, str):
        return not _DATA_URI.match(item)
    return isinstance(item, dict) and item.get("type") == "text"


# --------------------------------------------------------------------------------------- running


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, insecure_no_auth: bool = False) -> None:
    """Refuse to expose an unauthenticated service beyond this machine unless told explicitly."""
    if not is_loopback(host) and not api_key and not insecure_no_auth:
        raise ConfigError(
            f"refusing to listen on {host} without an API key: pass --api-key (or set {API_KEY_ENV}), "
            "or --insecure-no-auth if the network is trusted"
        )


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request head (uvicorn itself has none).

    Without it a client that sends its request line and headers a byte at a time (slowloris), or connects
    and sends nothing, holds a connection, and a ``limit_concurrency`` slot, forever. A timer starts when
    the connection opens, and on a kept-alive connection when the first byte of the next request arrives
    (idle time between requests stays governed by uvicorn's ``timeout_keep_alive``); parsing a complete
    head cancels it. On expiry the connection is closed, after a JSON 408 with ``Connection: close`` if part
    of a head had arrived. Bodies are timed by :class:`GuardMiddleware`. :func:`uvicorn_config` sets
    ``header_timeout_s`` in a subclass.
    """

    header_timeout_s: float = ServiceLimits.header_timeout_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and data and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # first byte of a further request on a kept-alive connection
        super().data_received(data)
        self._after_events()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._after_events()  # a pipelined request's head may wait, incomplete, in h11's buffer

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _after_events(self) -> None:
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # head parsed (or the connection is done)
        elif self._head_timer is None and self.conn.trailing_data[0]:
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        partial = bool(self.conn.trailing_data[0])
        if partial:  # h11 cannot send a response before a request: written as raw bytes
            self.transport.write(_head_timeout_response(self.header_timeout_s))
        log.info(
            "%s: closed the connection, %s within %g s",
            f"{self.client[0]}:{self.client[1]}" if self.client else "client",
            "request head not complete" if partial else "no request",
            self.header_timeout_s,
        )
        self.transport.close()


def _head_timeout_response(timeout_s: float) -> bytes:
    message = f"request headers not received within {timeout_s:g} s"
    body = json.dumps(_error_body(408, message, "request_timeout")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def uvicorn_config(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    limits: ServiceLimits | None = None,
    log_level: str = "info",
    max_connections: int = 256,
    timeout_keep_alive: int = 5,
) -> uvicorn.Config:
    """The uvicorn configuration :func:`serve` runs: h11 with the request-head deadline of ``limits``."""
    limits = limits or ServiceLimits()
    if not limits.header_timeout_s > 0:
        raise ConfigError(f"header timeout must be positive, got {limits.header_timeout_s}")
    protocol = type(
        "HeaderTimeoutProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout_s": float(limits.header_timeout_s)},
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        log_level=log_level,
        timeout_keep_alive=timeout_keep_alive,
        limit_concurrency=max_connections,
        h11_max_incomplete_event_size=64 * 1024,
    )


def serve(
    model: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key: str | None = None,
    insecure_no_auth: bool = False,
    db: str | os.PathLike | None = None,
    limits: ServiceLimits | None = None,
    model_name: str = "audiovec",
    log_level: str = "info",
    max_connections: int = 256,
) -> None:
    """Run the service with uvicorn until interrupted."""
    check_bind(host, api_key, insecure_no_auth)
    limits = limits or ServiceLimits()
    app = create_app(model, db=db, api_key=api_key, limits=limits, model_name=model_name)
    config = uvicorn_config(
        app, host, port, limits=limits, log_level=log_level, max_connections=max_connections
    )
    log.info("serving %s on http://%s:%d (limits: %s)", model_name, host, port, asdict(limits))
    server = uvicorn.Server(config)
    with suppress(KeyboardInterrupt):
        server.run()
    if not server.started:  # as uvicorn.run: the port was taken, or the app failed to start
        raise SystemExit(3)


__all__ = [
    "API_KEY_ENV",
    "HeaderTimeoutProtocol",
    "MicroBatcher",
    "ServiceLimits",
    "check_bind",
    "create_app",
    "is_loopback",
    "serve",
    "uvicorn_config",
]
