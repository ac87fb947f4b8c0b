"""Micro-batching: one worker thread runs every forward pass, merging the items of concurrent requests.

The worker takes up to ``max_batch`` queued items (or what arrived within ``max_wait_ms``); texts go
through ``forward_text`` sorted by length, clips through :func:`audiovec.encode.embed_waves` (the windows
of every clip batched by length, pooled by duration: ``encode_audio``'s vectors). The tokenizer and the
model are only ever touched by this thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any

import numpy as np
import torch

from audiovec.audio import window_spans
from audiovec.encode import embed_waves

log = logging.getLogger(__name__)


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
        """Per job: one vector per clip, the windows of every clip of every job batched together."""
        waves = [w for job in group for w in job[1]]
        self.items += len(waves)
        by_clip = embed_waves(self.model, dict(enumerate(waves)), self.max_batch, on_batch=self._count_pass)
        out = np.stack([by_clip[i] for i in range(len(waves))]).astype(np.float32, copy=False)
        return _split(out, [len(job[1]) for job in group])

    def _count_pass(self, _: int) -> None:
        self.forward_passes += 1


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


__all__ = ["MicroBatcher"]
