"""One exception hierarchy for the whole package: catch ``AudiovecError`` to catch them all."""

from __future__ import annotations


class AudiovecError(Exception):
    """Base class of every error audiovec raises on purpose."""


class AudioDecodeError(AudiovecError):
    """An audio source could not be turned into a usable waveform."""

    def __init__(self, source: object, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{describe_source(source)}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[object, str]]:
        """Picklable (worker processes, DataLoader workers): a path travels as is, any other source (a
        file object, an array, bytes) as its description."""
        import os

        source = self.source if isinstance(self.source, (str, os.PathLike)) else describe_source(self.source)
        return type(self), (source, self.reason)


class ConfigError(AudiovecError):
    """A configuration (model, recipe, route file) is missing, malformed or inconsistent."""


class CheckpointError(AudiovecError):
    """A checkpoint folder or file cannot be read, is incomplete, or is of an unknown kind."""


class UnsafeCheckpointError(CheckpointError):
    """Loading would execute untrusted code (pickle, remote code) and the user did not allow it."""


class DataError(AudiovecError):
    """A dataset, manifest or on-disk layout is malformed."""


def first_line(exc: BaseException, limit: int | None = 200) -> str:
    """The first line of an exception's message (at most ``limit`` characters; ``None``: all), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def describe_source(source: object) -> str:
    """A short, human-readable name for an audio source, used in error messages."""
    if isinstance(source, (str, bytes)) and not isinstance(source, bytes):
        return str(source)
    try:
        import os

        if isinstance(source, os.PathLike):
            return os.fspath(source)  # type: ignore[return-value]
    except Exception:  # pragma: no cover
        pass
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return name
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"<array shape={tuple(shape)}>"
    return f"<{type(source).__name__}>"
