"""Running the service: the bind rule first, then uvicorn with the hardened transport until interrupted."""

from __future__ import annotations

import logging
import os
from contextlib import suppress
from dataclasses import asdict
from typing import Any

import uvicorn

from audiovec.serve.app import create_app
from audiovec.serve.limits import ServiceLimits
from audiovec.serve.transport import check_bind, uvicorn_config

log = logging.getLogger(__name__)


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


__all__ = ["serve"]
