"""What a request may carry: JSON bodies, input lists, inline base64 audio (never a path or a URL: the
server never opens a file a request names) and clips within the duration limit."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from typing import Any

import numpy as np

from audiovec.audio import SAMPLE_RATE, load_audio
from audiovec.errors import AudioDecodeError
from audiovec.serve.limits import RequestError, ServiceLimits

_DATA_URI = re.compile(r"^data:audio/([\w.+-]+)?(;[\w=.+-]+)*;base64,", re.IGNORECASE)
_PATH_LIKE = re.compile(r"^(/|\./|\.\./|~|[a-z][a-z0-9+.-]*://|[a-z]:[\\/]|\\\\)", re.IGNORECASE)
_REFUSED_KEYS = {"path", "url", "file", "file_path", "uri"}


def parse_json(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object (400 / 422 otherwise)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"request body is not valid JSON ({exc})", "invalid_json") from None
    if not isinstance(data, dict):
        raise RequestError(422, "request body must be a JSON object", "invalid_type")
    return data


def as_list(value: Any, name: str, limits: ServiceLimits) -> list[Any]:
    """A field holding one item or a list of them, as a non-empty list of at most ``max_inputs`` items."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise RequestError(400, f"'{name}' is empty", "invalid_input")
    if len(items) > limits.max_inputs:
        raise RequestError(413, f"'{name}' has more than {limits.max_inputs} items", "too_many_inputs")
    if all(isinstance(x, int) for x in items) or any(isinstance(x, list) for x in items):
        raise RequestError(400, f"'{name}': token-id inputs are not supported; send strings", "invalid_input")
    return items


def decode_base64(text: str, where: str) -> bytes:
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


def audio_bytes(item: Any, where: str) -> bytes | None:
    """The raw bytes of an audio item, or None when ``item`` is text."""
    if isinstance(item, str):
        match = _DATA_URI.match(item)
        if match:
            return decode_base64(item[match.end() :], where)
        if item.lower().startswith("data:"):
            raise RequestError(400, f"{where}: only base64 data:audio/... URIs are accepted", "invalid_audio")
        return None
    if not isinstance(item, dict):
        raise RequestError(422, f"{where}: expected a string or an input_audio object", "invalid_type")
    kind = item.get("type")
    if kind == "text" and isinstance(item.get("text"), str):
        return None
    if kind != "input_audio" or not isinstance(item.get("input_audio"), dict):
        if (_REFUSED_KEYS | {"audio_url"}) & set(item) or kind in ("audio_url", "file"):
            raise RequestError(
                400,
                f"{where}: server-side paths and URLs are not accepted; send base64 audio",
                "path_refused",
            )
        raise RequestError(
            422, f"{where}: expected {{'type': 'input_audio', 'input_audio': {{...}}}}", "invalid_type"
        )
    audio = item["input_audio"]
    refused = _REFUSED_KEYS & set(audio)
    if refused:
        raise RequestError(
            400, f"{where}: server-side paths and URLs are not accepted ({sorted(refused)})", "path_refused"
        )
    data = audio.get("data")
    if not isinstance(data, str):
        raise RequestError(422, f"{where}: input_audio.data must be a base64 string", "invalid_type")
    match = _DATA_URI.match(data)
    return decode_base64(data[match.end() :] if match else data, where)


def text_of(item: Any) -> str:
    return item if isinstance(item, str) else item["text"]


def is_text(item: Any) -> bool:
    if isinstance(item, str):
        return not _DATA_URI.match(item)
    return isinstance(item, dict) and item.get("type") == "text"


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


__all__ = ["as_list", "audio_bytes", "decode_base64", "decode_clip", "is_text", "parse_json", "text_of"]
