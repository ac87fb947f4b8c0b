"""Sound files inside game archives: ZIP-style packs (``.zip``, ``.pk3``, ``.wz``), OpenTTD ``.cat`` sound sets
and DOOM ``.wad`` sound lumps. Each reader yields ``(name, bytes)`` of plain audio files (WAV/OGG/FLAC), so
the corpus decodes every sound through the same :func:`audiovec.audio.load_audio` path."""

from __future__ import annotations

import io
import re
import struct
import wave
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath

AUDIO_SUFFIXES = (".wav", ".ogg", ".oga", ".flac", ".aiff", ".aif")
ZIP_SUFFIXES = (".zip", ".pk3", ".wz")
ARCHIVE_SUFFIXES = (*ZIP_SUFFIXES, ".cat", ".wad")


def is_audio(name: str) -> bool:
    return name.lower().endswith(AUDIO_SUFFIXES)


def has_no_suffix(name: str) -> bool:
    """A file name without an extension (some games ship ``sound/rain``): audio only if its bytes say so."""
    return PurePosixPath(name).suffix == ""


def sounds_like_audio(head: bytes) -> bool:
    """Whether the first bytes of a file are a WAV, Ogg, FLAC or AIFF header."""
    return (
        (head[:4] == b"RIFF" and head[8:12] == b"WAVE")
        or head[:4] in (b"OggS", b"fLaC")
        or (head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"))
    )


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def members(name: str, data: bytes | io.BufferedIOBase) -> Iterator[tuple[str, bytes]]:
    """The audio files inside archive ``name`` as ``(archive/inner/path, bytes)``."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in ZIP_SUFFIXES:
        yield from _zip_members(name, data)
    elif suffix == ".cat":
        yield from _cat_members(name, _bytes(data))
    elif suffix == ".wad":
        yield from _wad_members(name, _bytes(data))


def _bytes(data: bytes | io.BufferedIOBase) -> bytes:
    return data if isinstance(data, bytes) else data.read()


def _zip_members(name: str, data: bytes | io.BufferedIOBase) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if not info.is_dir() and is_audio(info.filename):
                yield f"{name}/{info.filename}", archive.read(info)


def _cat_members(name: str, blob: bytes) -> Iterator[tuple[str, bytes]]:
    """OpenTTD sound sets: a table of (offset, size) pairs, each entry a length-prefixed name then a RIFF
    WAV. Entries are found by their RIFF header; the name is the counted string just before it."""
    for match in re.finditer(rb"RIFF", blob):
        start = match.start()
        if start + 8 > len(blob):
            continue
        size = struct.unpack("<I", blob[start + 4 : start + 8])[0] + 8
        length = blob[start - 1] if start else 0
        label = blob[start - 1 - length : start - 1].split(b"\0")[0].decode("latin-1", "ignore").strip()
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or f"sample_{start}"
        yield f"{name}/{PurePosixPath(label).stem}.wav", blob[start : start + size]


def _wad_members(name: str, blob: bytes) -> Iterator[tuple[str, bytes]]:
    """DOOM sound lumps (``DS*``): format 3, a 16-bit rate, a 32-bit sample count, then unsigned 8-bit PCM
    framed by 16 padding bytes on each side. Re-wrapped as WAV."""
    if len(blob) < 12 or blob[:4] not in (b"IWAD", b"PWAD"):
        return
    count, offset = struct.unpack("<ii", blob[4:12])
    for i in range(count):
        pos, size, raw = struct.unpack("<ii8s", blob[offset + 16 * i : offset + 16 * i + 16])
        lump = raw.rstrip(b"\0").decode("ascii", "ignore")
        body = blob[pos : pos + size]
        if not lump.startswith("DS") or size < 8 + 32 or struct.unpack("<H", body[:2])[0] != 3:
            continue
        rate, samples = struct.unpack("<HI", body[2:8])
        pcm = body[8 + 16 : 8 + samples - 16] if samples > 32 else body[8 : 8 + samples]
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(1)
            w.setframerate(rate)
            w.writeframes(pcm)
        yield f"{name}/{lump.lower()}.wav", out.getvalue()
