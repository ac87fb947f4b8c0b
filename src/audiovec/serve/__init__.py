"""An HTTP service over one model: OpenAI-compatible embeddings, search, zero-shot classification.

One job per module: :mod:`~audiovec.serve.app` (the routes over a shared state),
:mod:`~audiovec.serve.batching` (one worker thread merges concurrent requests into forward passes),
:mod:`~audiovec.serve.inputs` (what a request may carry: inline base64 audio only, never a path or URL),
:mod:`~audiovec.serve.transport` (API key, body size and read time, request-head deadline, bind rule),
:mod:`~audiovec.serve.limits` (the bounds and the JSON error shape) and :mod:`~audiovec.serve.run`.

Limits: body size (413), audio duration (413), slow request heads and bodies (408), processing time (503);
errors are JSON ``{"error": {"message", "type", "code"}}``. With an API key every endpoint but ``/health``
needs ``Authorization: Bearer <key>`` (constant-time comparison; 401 otherwise).
"""

from __future__ import annotations

from audiovec.serve.app import ServiceState, create_app
from audiovec.serve.batching import MicroBatcher
from audiovec.serve.inputs import decode_clip
from audiovec.serve.limits import RequestError, ServiceLimits
from audiovec.serve.run import serve
from audiovec.serve.transport import (
    API_KEY_ENV,
    GuardMiddleware,
    HeaderTimeoutProtocol,
    check_bind,
    is_loopback,
    uvicorn_config,
)

__all__ = [
    "API_KEY_ENV",
    "GuardMiddleware",
    "HeaderTimeoutProtocol",
    "MicroBatcher",
    "RequestError",
    "ServiceLimits",
    "ServiceState",
    "check_bind",
    "create_app",
    "decode_clip",
    "is_loopback",
    "serve",
    "uvicorn_config",
]
