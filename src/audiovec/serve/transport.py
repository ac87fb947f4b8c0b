"""Transport hardening, below the routes: the API key, the body size and body read time
(:class:`GuardMiddleware`), the request-head deadline uvicorn lacks (:class:`HeaderTimeoutProtocol`), the
uvicorn configuration that puts them together, and the rule that an open port needs a key (:func:`check_bind`).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from audiovec.errors import ConfigError
from audiovec.serve.limits import ServiceLimits, error_body

log = logging.getLogger(__name__)

API_KEY_ENV = "AUDIOVEC_API_KEY"


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
                await send_error(
                    send, 401, "missing or invalid API key (Authorization: Bearer <key>)", "unauthorized"
                )
                return
        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limits.max_body_bytes
            except ValueError:
                await send_error(send, 400, "invalid Content-Length", "invalid_request")
                return
            if too_big:
                await send_error(send, 413, self._too_large(), "body_too_large")
                return
        body = bytearray()
        more = scope.get("method") in ("POST", "PUT", "PATCH")
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.limits.body_read_timeout_s)
            except asyncio.TimeoutError:
                await send_error(send, 408, "request body not received in time", "request_timeout")
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limits.max_body_bytes:
                await send_error(send, 413, self._too_large(), "body_too_large")
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


async def send_error(send: Any, status: int, message: str, code: str) -> None:
    payload = json.dumps(error_body(status, message, code)).encode()
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
    body = json.dumps(error_body(408, message, "request_timeout")).encode()
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


__all__ = [
    "API_KEY_ENV",
    "GuardMiddleware",
    "HeaderTimeoutProtocol",
    "check_bind",
    "is_loopback",
    "send_error",
    "uvicorn_config",
]
