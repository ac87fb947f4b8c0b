"""Audio in: any file, bytes, stream or array → float32 mono at 16 kHz.

Decoding goes through libsndfile (soundfile: WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...) first and falls back to
FFmpeg (PyAV: M4A/AAC, Opus, WebM, ...). Channels are averaged, integer PCM is scaled to [-1, 1), and the
signal is resampled with soxr. Every failure is an :class:`AudioDecodeError` naming the source and the reason.
Only regular files are opened (never pipes or devices), sample rates outside 1 kHz-768 kHz are refused as damaged
headers, and a file cut mid-stream keeps the audio before the cut.

Long recordings are never cut at random: :func:`window_spans` and :func:`iter_windows` split them into
fixed, contiguous windows (30 s by default) so the same file always yields the same windows and vectors.
:func:`iter_windows` streams, so memory stays bounded whatever the length of the file.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

from audiovec.errors import AudioDecodeError, first_line

SAMPLE_RATE = 16_000
DEFAULT_WINDOW_SECONDS = 30.0
STREAM_BLOCK_SECONDS = 10.0
# Rates outside this range are header damage or decompression bombs (a 64 KB WAV claiming 1 Hz would
# resample to 1.5 GB at 16 kHz), not recordings.
MIN_SOURCE_RATE = 1_000
MAX_SOURCE_RATE = 768_000

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray, "torch.Tensor"]  # noqa: F821


def load_audio(source: AudioSource, sample_rate: int | None = None) -> np.ndarray:
    """Decode ``source`` into a float32 mono waveform at 16 kHz.

    ``sample_rate`` is required for arrays and ignored (it is read from the file) otherwise. 2-D arrays are
    read as ``(channels, samples)`` when the first axis is the short one (torch convention) and as
    ``(samples, channels)`` otherwise (soundfile convention).
    """
    if _is_array(source):
        if sample_rate is None:
            raise AudioDecodeError(source, "an array needs its sample_rate")
        wave, rate = _array_to_mono(source), int(sample_rate)
    else:
        if sample_rate is not None:
            raise AudioDecodeError(source, "sample_rate is only for arrays; files carry their own rate")
        wave, rate = _decode(source)
    return _finish(source, wave, rate)


def audio_duration(source: AudioSource, sample_rate: int | None = None) -> float:
    """Duration in seconds, read from the header where possible (no full decode)."""
    if _is_array(source):
        return _array_to_mono(source).shape[0] / float(sample_rate or SAMPLE_RATE)
    if isinstance(source, (str, os.PathLike)):
        _check_path(source)
        seconds = header_seconds(source)
        if seconds is not None:
            return seconds
    return load_audio(source).shape[0] / SAMPLE_RATE


def header_seconds(source: AudioSource) -> float | None:
    """A file's duration from its libsndfile header (~25 µs, nothing decoded), or ``None`` when that cannot
    be told cheaply: not a path, not a readable regular file, a format only FFmpeg reads, no frame count.
    Never raises: the decoder reports bad files."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = os.fspath(source)
    try:
        if not os.path.isfile(path):  # FIFOs block on open and devices never end
            return None
        with sf.SoundFile(path) as handle:
            frames, rate = int(handle.frames), int(handle.samplerate)
    except Exception:  # noqa: BLE001 - unreadable here; load_audio gives the reason
        return None
    return frames / float(rate) if frames > 0 and rate > 0 else None


def window_spans(
    num_samples: int, window_seconds: float = DEFAULT_WINDOW_SECONDS, rate: int = SAMPLE_RATE
) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` spans of at most ``window_seconds`` covering all ``num_samples``."""
    if num_samples <= 0:
        return []
    size = max(1, int(round(window_seconds * rate)))
    return [(start, min(start + size, num_samples)) for start in range(0, num_samples, size)]


def iter_windows(
    source: AudioSource,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    sample_rate: int | None = None,
) -> Iterator[tuple[float, float, np.ndarray]]:
    """Yield ``(start_s, end_s, samples)`` windows of a source, streaming where the format allows.

    Windows are exactly the :func:`window_spans` of the whole decoded signal, so streaming and
    non-streaming paths agree. Files that libsndfile can seek are decoded block by block and resampled
    with a streaming resampler; memory then depends on the window length, not the file length. Every
    failure is an :class:`AudioDecodeError` naming the source, also one mid-stream (an I/O error after
    some windows: "failed after <seconds of windows already yielded> s: <reason>").
    """
    size = max(1, int(round(window_seconds * SAMPLE_RATE)))
    blocks = _stream_blocks(source, sample_rate)
    pending: list[np.ndarray] = []
    pending_len = 0
    offset = 0
    try:
        for block in blocks:
            pending.append(block)
            pending_len += block.shape[0]
            while pending_len >= size:
                joined = np.concatenate(pending)
                window, rest = joined[:size], joined[size:]
                yield offset / SAMPLE_RATE, (offset + size) / SAMPLE_RATE, window
                offset += size
                pending, pending_len = [rest], rest.shape[0]
    except AudioDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise many types
        raise AudioDecodeError(
            source, f"failed after {offset / SAMPLE_RATE:.1f} s: {first_line(exc)}"
        ) from None
    if pending_len:
        tail = np.concatenate(pending)
        yield offset / SAMPLE_RATE, (offset + pending_len) / SAMPLE_RATE, tail
    elif offset == 0:
        raise AudioDecodeError(source, "no audio samples (zero-length)")


# --------------------------------------------------------------------------------------------- internals


def _is_array(source: object) -> bool:
    if isinstance(source, np.ndarray):
        return True
    return type(source).__module__.startswith("torch") and hasattr(source, "detach")


def _array_to_mono(array: object) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        array = array.detach().cpu().float().numpy()  # type: ignore[attr-defined]
    data = _scale_pcm(array)
    if data.size == 0:
        raise AudioDecodeError(array, "no audio samples (zero-length)")
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise AudioDecodeError(array, f"expected a 1-D or 2-D array, got {data.ndim}-D")
    channels_first = data.shape[0] < data.shape[1] and data.shape[0] <= 32
    return data.mean(axis=0 if channels_first else 1, dtype=np.float64).astype(np.float32)


def _scale_pcm(data: np.ndarray) -> np.ndarray:
    """Integer PCM → float in [-1, 1); floats pass through as float32."""
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    if data.dtype.kind == "u":
        half = float(2 ** (8 * data.dtype.itemsize - 1))
        return ((data.astype(np.float64) - half) / half).astype(np.float32)
    if data.dtype.kind == "i":
        return (data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))).astype(np.float32)
    if data.dtype.kind == "b":
        return data.astype(np.float32)
    raise AudioDecodeError(data, f"unsupported array dtype {data.dtype}")


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        reason = "broken symbolic link (target not found)" if p.is_symlink() else "file not found"
        raise AudioDecodeError(path, reason) from None
    except OSError as exc:
        raise AudioDecodeError(path, f"cannot access: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise AudioDecodeError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(info.st_mode):
        # FIFOs block on open and devices (/dev/zero) never end: refuse them before any read.
        raise AudioDecodeError(path, "not a regular file (a pipe, device or socket)")
    if not os.access(p, os.R_OK):
        raise AudioDecodeError(path, "permission denied")
    if info.st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    return p


def _readable(source: AudioSource) -> str | BinaryIO:
    """A path string or a seekable binary stream for the decoders."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(_check_path(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioDecodeError(source, "empty input (0 bytes)")
        return io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        if hasattr(source, "seekable") and source.seekable():
            return source  # type: ignore[return-value]
        data = source.read()  # type: ignore[union-attr]
        if not data:
            raise AudioDecodeError(source, "empty stream (0 bytes)")
        return io.BytesIO(data)
    raise AudioDecodeError(source, f"unsupported source type {type(source).__name__}")


def _rewind(stream: str | BinaryIO) -> None:
    if not isinstance(stream, str):
        stream.seek(0)


def _decode(source: AudioSource) -> tuple[np.ndarray, int]:
    stream = _readable(source)
    start = None if isinstance(stream, str) else stream.tell()
    try:
        data, rate = sf.read(stream, dtype="float32", always_2d=True)
        return data.mean(axis=1, dtype=np.float64).astype(np.float32), int(rate)
    except Exception as sf_error:  # noqa: BLE001 - try FFmpeg next
        if start is not None:
            stream.seek(start)  # type: ignore[union-attr]
        try:
            return _decode_with_av(stream)
        except AudioDecodeError as av_error:
            raise AudioDecodeError(
                source, f"cannot decode: {av_error.reason} (libsndfile: {_short(sf_error)})"
            ) from None
        except OSError as exc:  # the file vanished or became unreadable between the two tries
            raise AudioDecodeError(source, f"cannot read: {_short(exc)}") from None


def _decode_with_av(stream: str | BinaryIO) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with FFmpeg. Corrupt packets are skipped (as the ``ffmpeg`` tool
    does), so a file cut mid-stream keeps the audio before the cut, like WAV and MP3 in libsndfile."""
    import av

    parts: list[np.ndarray] = []
    bad_packets = 0
    try:
        with av.open(stream, mode="r") as container:
            audio_streams = [s for s in container.streams if s.type == "audio"]
            if not audio_streams:
                raise AudioDecodeError(stream, "no audio stream in the container")
            audio = audio_streams[0]
            rate = int(audio.codec_context.sample_rate or audio.rate or 0)
            _check_rate(stream, rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for packet in container.demux(audio):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    bad_packets += 1
                    continue
                for frame in frames:
                    for out in resampler.resample(frame):
                        parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
    except AudioDecodeError:
        raise
    except av.error.InvalidDataError:
        raise AudioDecodeError(stream, "not a recognised audio format, or corrupt (FFmpeg)") from None
    except Exception as exc:  # noqa: BLE001 - PyAV raises many types
        raise AudioDecodeError(stream, _short(exc)) from None
    if not parts:
        detail = f" ({bad_packets} corrupt packets)" if bad_packets else ""
        raise AudioDecodeError(stream, f"no audio samples (zero-length){detail}")
    return np.concatenate(parts).astype(np.float32, copy=False), rate


def _check_rate(source: object, rate: int) -> None:
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise AudioDecodeError(
            source,
            f"implausible sample rate {rate} Hz (accepted: {MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz); "
            "the header is probably damaged",
        )


def _finish(source: AudioSource, wave: np.ndarray, rate: int) -> np.ndarray:
    _check_rate(source, rate)
    if wave.size == 0:
        raise AudioDecodeError(source, "no audio samples (zero-length)")
    if not np.isfinite(wave).all():
        raise AudioDecodeError(source, "contains non-finite samples (NaN or Inf)")
    if rate != SAMPLE_RATE:
        resampled = soxr.resample(wave, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
        if resampled.size == 0:  # e.g. 1 sample at 48 kHz: shorter than one output sample
            raise AudioDecodeError(
                source,
                f"too short: {wave.size} samples at {rate} Hz is less than one sample at {SAMPLE_RATE} Hz",
            )
        wave = resampled
    return np.ascontiguousarray(wave, dtype=np.float32)


def _stream_blocks(source: AudioSource, sample_rate: int | None) -> Iterator[np.ndarray]:
    """16 kHz mono blocks of a source; streams files libsndfile can read, decodes the rest whole."""
    if _is_array(source) or not isinstance(source, (str, os.PathLike)):
        yield load_audio(source, sample_rate)
        return
    path = os.fspath(_check_path(source))
    try:
        handle = sf.SoundFile(path)
    except Exception:  # noqa: BLE001 - not libsndfile-readable: decode whole through FFmpeg
        yield load_audio(source)
        return
    with handle:
        rate = int(handle.samplerate)
        _check_rate(source, rate)
        resampler = (
            soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            if rate != SAMPLE_RATE
            else None
        )
        block = max(1, int(STREAM_BLOCK_SECONDS * rate))
        total = emitted = 0
        while True:
            try:
                data = handle.read(block, dtype="float32", always_2d=True)
            except Exception as exc:  # noqa: BLE001 - truncated or corrupt mid-file
                if emitted == 0:  # nothing streamed yet: decode whole, exactly as load_audio does
                    yield load_audio(source)
                    return
                warnings.warn(f"{path}: stopped at {total / rate:.1f} s: {_short(exc)}", stacklevel=3)
                data, last = np.zeros((0, 1), np.float32), True
            else:
                last = data.shape[0] < block
            mono = data.mean(axis=1, dtype=np.float64).astype(np.float32)
            if not np.isfinite(mono).all():
                raise AudioDecodeError(source, "contains non-finite samples (NaN or Inf)")
            total += mono.shape[0]
            out = resampler.resample_chunk(mono, last=last) if resampler is not None else mono
            if out.size:
                emitted += out.size
                yield np.ascontiguousarray(out, dtype=np.float32)
            if last:
                break
        if total == 0:
            raise AudioDecodeError(source, "no audio samples (zero-length)")
        if emitted == 0:
            raise AudioDecodeError(
                source, f"too short: {total} samples at {rate} Hz is less than one sample at {SAMPLE_RATE} Hz"
            )


_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")
_QUOTED_PATH = re.compile(r":?\s*'[^']*'")


def _short(exc: BaseException) -> str:
    """One line of a decoder's message, without errno codes or the (already named) file path."""
    text = _ERRNO.sub("", first_line(exc, limit=None))
    text = text.replace("Error opening", "").strip()
    text = _QUOTED_PATH.sub("", text).strip(" :.")
    return (text or type(exc).__name__)[:200]


def num_windows(duration_seconds: float, window_seconds: float = DEFAULT_WINDOW_SECONDS) -> int:
    """How many windows :func:`window_spans` makes for a clip of this duration (same sample rounding)."""
    samples = int(round(duration_seconds * SAMPLE_RATE))
    return max(1, math.ceil(samples / max(1, int(round(window_seconds * SAMPLE_RATE)))))
