"""What one request may cost (:class:`ServiceLimits`) and how a refusal looks (:class:`RequestError`, the
JSON error body every layer of the service answers with)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def error_body(status: int, message: str, code: str) -> dict[str, Any]:
    """``{"error": {"message", "type", "code", "status"}}``, OpenAI's error shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": code, "status": status}}


__all__ = ["RequestError", "ServiceLimits", "error_body"]
