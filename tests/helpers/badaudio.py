"""Generate a corpus of bad and odd audio inputs in a folder, each labelled with the outcome it must give.

Nothing here is a committed blob: every file is written from a real recording (or from nothing) when the
tests run. ``expect`` is ``"vector"`` (decodes to a usable clip) or ``"error"`` (an ``AudioDecodeError``
naming the file). Format variants carry ``reference=True``: their waveform is the clean 16-bit original's,
so their vector must be close to the original's vector.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RATE = 16_000
CLEAN_NAME = "clean_16bit.wav"


@dataclass(frozen=True)
class BadInput:
    kind: str  # short id, unique
    path: Path
    expect: str  # "vector" | "error"
    note: str  # what the input is, for the docs table
    reference: bool = False  # same waveform as the clean original: the vector must match it
    lossy: bool = False  # lossy codec: match more loosely
    reason: str = ""  # a word the error message must contain (when expect == "error")


def is_privileged() -> bool:
    """True when permission bits do not stop this process from reading (root / CAP_DAC_OVERRIDE)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def clean_wave(recordings: list[Path]) -> np.ndarray:
    """A ~2 s speech clip at 16 kHz, peak 0.5: real FSDD digits joined with short gaps."""
    parts = []
    for path in recordings:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        parts.append(soxr.resample(data.mean(axis=1), rate, RATE))
        parts.append(np.zeros(RATE // 10, dtype=np.float32))
    wave = np.concatenate(parts).astype(np.float32)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def make_corpus(root: Path, recordings: list[Path]) -> list[BadInput]:
    """Write every case into ``root`` (created) and return them; the clean original is ``root/CLEAN_NAME``."""
    root.mkdir(parents=True, exist_ok=True)
    wave = clean_wave(recordings)
    clean = root / CLEAN_NAME
    sf.write(str(clean), wave, RATE, subtype="PCM_16")
    cases: list[BadInput] = []

    def add(kind: str, name: str, expect: str, note: str, writer: Callable[[Path], None], **kw) -> None:
        path = root / name
        writer(path)
        cases.append(BadInput(kind, path, expect, note, **kw))

    def sfw(data: np.ndarray, rate: int = RATE, **kw) -> Callable[[Path], None]:
        return lambda p: sf.write(str(p), data, rate, **kw)

    def raw(data: bytes) -> Callable[[Path], None]:
        return lambda p: p.write_bytes(data)

    clean_bytes = clean.read_bytes()
    ref = {"reference": True}

    # ---------------------------------------------------------------- files that cannot be opened at all
    cases.append(
        BadInput(
            "missing", root / "does_not_exist.wav", "error", "path that does not exist", reason="not found"
        )
    )
    add(
        "directory",
        "a_folder.wav",
        "error",
        "a directory named .wav",
        lambda p: p.mkdir(),
        reason="directory",
    )
    add(
        "permission_denied",
        "no_read_permission.wav",
        "vector" if is_privileged() else "error",
        "mode 000 (root reads it anyway; denial is tested as an unprivileged child)",
        lambda p: (p.write_bytes(clean_bytes), p.chmod(0)),
        reason="permission",
    )
    add(
        "fifo",
        "named_pipe.wav",
        "error",
        "a FIFO named .wav (opening it would block)",
        lambda p: os.mkfifo(p),
        reason="not a regular file",
    )
    add(
        "dev_zero_link",
        "endless.wav",
        "error",
        "symlink to /dev/zero (endless stream)",
        lambda p: p.symlink_to("/dev/zero"),
        reason="not a regular file",
    )
    add(
        "broken_link",
        "dangling_link.wav",
        "error",
        "symlink to a missing file",
        lambda p: p.symlink_to(root / "gone.wav"),
        reason="not found",
    )
    add("zero_byte", "empty.wav", "error", "0-byte file", raw(b""), reason="empty")

    # ---------------------------------------------------------------- broken or lying containers
    add(
        "header_only_wav",
        "header_only.wav",
        "error",
        "WAV header, no samples",
        sfw(np.zeros(0, np.float32)),
        reason="zero-length",
    )
    add(
        "cut_header_wav",
        "cut_header.wav",
        "error",
        "WAV cut inside its 44-byte header",
        raw(clean_bytes[:30]),
    )
    add(
        "random_bytes_wav",
        "random.wav",
        "error",
        "64 KiB of random bytes named .wav",
        raw(np.random.default_rng(0).bytes(65536)),
    )
    add(
        "text_as_mp3",
        "notes.mp3",
        "error",
        "a text file named .mp3",
        raw(b"These are my meeting notes.\n" * 200),
    )
    add(
        "html_as_m4a",
        "page.m4a",
        "error",
        "an HTML page named .m4a",
        raw(b"<!doctype html><html><body>404 Not Found</body></html>\n"),
    )
    add(
        "zero_rate_wav",
        "rate_zero.wav",
        "error",
        "WAV header declaring 0 Hz",
        raw(_patch_rate(clean_bytes, 0)),
    )
    add(
        "rate_1hz_wav",
        "rate_1hz.wav",
        "error",
        "WAV declaring 1 Hz (a 64 KB file would expand to 1 GB)",
        raw(_patch_rate(clean_bytes, 1)),
        reason="sample rate",
    )
    add(
        "nan_wav",
        "nan.wav",
        "error",
        "32-bit float WAV with NaN samples",
        sfw(_with(wave, np.nan), subtype="FLOAT"),
        reason="non-finite",
    )
    add(
        "inf_wav",
        "inf.wav",
        "error",
        "32-bit float WAV with +Inf samples",
        sfw(_with(wave, np.inf), subtype="FLOAT"),
        reason="non-finite",
    )
    add(
        "video_only_mp4",
        "video_only.mp4",
        "error",
        "MP4 with a video stream and no audio",
        _video_only,
        reason="no audio",
    )

    # ---------------------------------------------------------------- truncated mid-stream: keep what is there
    add(
        "truncated_wav",
        "truncated.wav",
        "vector",
        "WAV cut at 60 % (header claims more)",
        raw(clean_bytes[: int(len(clean_bytes) * 0.6)]),
    )
    flac = _encoded(wave, "FLAC")
    add("truncated_flac", "truncated.flac", "vector", "FLAC cut at 60 %", raw(flac[: int(len(flac) * 0.6)]))
    mp3 = _encoded(wave, "MP3")
    add("truncated_mp3", "truncated.mp3", "vector", "MP3 cut at 60 %", raw(mp3[: int(len(mp3) * 0.6)]))

    # ---------------------------------------------------------------- odd signals
    add("one_sample", "one_sample.wav", "vector", "a single sample", sfw(wave[RATE // 4 : RATE // 4 + 1]))
    add("ten_ms", "ten_ms.wav", "vector", "10 ms", sfw(wave[RATE // 4 : RATE // 4 + RATE // 100]))
    add("silence", "silence.wav", "vector", "2 s of digital silence", sfw(np.zeros(2 * RATE, np.float32)))
    add("dc_offset", "dc_offset.wav", "vector", "speech + 0.4 DC offset", sfw(wave * 0.5 + 0.4))
    add(
        "clipping",
        "clipped.wav",
        "vector",
        "speech driven 20x into hard clipping",
        sfw(np.clip(wave * 20, -1, 1)),
    )
    add(
        "loud_float",
        "loud_float.wav",
        "vector",
        "float WAV with samples up to +-50",
        sfw(wave * 100, subtype="FLOAT"),
    )

    # ---------------------------------------------------------------- sample formats and layouts of the clean clip
    add("pcm_u8", "u8.wav", "vector", "8-bit unsigned PCM", sfw(wave, subtype="PCM_U8"), **ref)
    add("pcm_24", "s24.wav", "vector", "24-bit PCM", sfw(wave, subtype="PCM_24"), **ref)
    add("pcm_32", "s32.wav", "vector", "32-bit integer PCM", sfw(wave, subtype="PCM_32"), **ref)
    add("float32", "f32.wav", "vector", "32-bit float", sfw(wave, subtype="FLOAT"), **ref)
    add("float64", "f64.wav", "vector", "64-bit float", sfw(wave, subtype="DOUBLE"), **ref)
    add("mulaw", "mulaw.wav", "vector", "G.711 mu-law WAV", sfw(wave, subtype="ULAW"), **ref)
    add("ms_adpcm", "adpcm.wav", "vector", "Microsoft ADPCM WAV", sfw(wave, subtype="MS_ADPCM"), **ref)
    gains = np.array([0.5, 1.5, 1.0, 1.2, 0.8, 1.0], dtype=np.float32)  # mean 1: the downmix is the clip
    add(
        "six_channels",
        "six_channels.wav",
        "vector",
        "6 channels (5.1), downmixed",
        sfw(wave[:, None] * gains[None, :]),
        **ref,
    )
    add("rate_8k", "rate_8k.wav", "vector", "8 kHz", sfw(soxr.resample(wave, RATE, 8000), 8000), **ref)
    add("rate_44k", "rate_44k.wav", "vector", "44.1 kHz", sfw(soxr.resample(wave, RATE, 44100), 44100), **ref)
    add(
        "rate_96k",
        "rate_96k.wav",
        "vector",
        "96 kHz, 24-bit",
        sfw(soxr.resample(wave, RATE, 96000), 96000, subtype="PCM_24"),
        **ref,
    )
    add("aiff", "clip.aiff", "vector", "AIFF", sfw(wave, format="AIFF"), **ref)
    add("flac", "clip.flac", "vector", "FLAC", raw(flac), **ref)
    add(
        "wav_extra_chunks",
        "extra_chunks.wav",
        "vector",
        "WAV with LIST/junk chunks before data and trailing garbage",
        raw(_with_chunks(clean_bytes)),
        **ref,
    )
    add("wrong_extension", "really_flac.mp3", "vector", "FLAC data named .mp3", raw(flac), **ref)
    add("no_extension", "no_extension", "vector", "WAV without a file extension", raw(clean_bytes), **ref)
    add(
        "unicode_name",
        "Gesang – «über» 日本 🎵 test.wav",
        "vector",
        "unicode and spaces in the name",
        raw(clean_bytes),
        **ref,
    )
    add(
        "spaces_name",
        "  leading and trailing spaces  .WAV",
        "vector",
        "spaces at both ends, upper-case extension",
        raw(clean_bytes),
        **ref,
    )

    # ---------------------------------------------------------------- compressed formats (lossy: looser match)
    lossy = {"reference": True, "lossy": True}
    add("mp3", "clip.mp3", "vector", "MP3 (libsndfile / mpg123)", raw(mp3), **lossy)
    add(
        "mp3_big_id3",
        "big_id3.mp3",
        "vector",
        "MP3 with a 2 MiB ID3v2 tag (cover art) and an ID3v1 tag",
        raw(_id3_wrapped(mp3)),
        **lossy,
    )
    add("ogg_vorbis", "clip.ogg", "vector", "OGG/Vorbis", raw(_encoded(wave, "OGG", "VORBIS")), **lossy)
    add("ogg_opus", "clip.opus", "vector", "OGG/Opus", raw(_encoded(wave, "OGG", "OPUS")), **lossy)
    add(
        "m4a_aac",
        "clip.m4a",
        "vector",
        "M4A (AAC in MP4, via FFmpeg)",
        lambda p: _av_write(p, wave, "ipod", "aac"),
        **lossy,
    )
    add(
        "webm_opus",
        "clip.webm",
        "vector",
        "WebM audio (Opus, via FFmpeg)",
        lambda p: _av_write(p, wave, "webm", "libopus"),
        **lossy,
    )
    return cases


# ------------------------------------------------------------------------------------------ writers


def _with(wave: np.ndarray, value: float) -> np.ndarray:
    out = wave.copy()
    out[len(out) // 2 :: 997] = value
    return out


def _encoded(wave: np.ndarray, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, RATE, format=fmt, subtype=subtype)
    return buf.getvalue()


def _patch_rate(wav: bytes, rate: int) -> bytes:
    """Overwrite the sample rate (and byte rate) fields of a canonical 44-byte-header PCM WAV."""
    out = bytearray(wav)
    out[24:28] = struct.pack("<I", rate)
    out[28:32] = struct.pack("<I", rate * 2)
    return bytes(out)


def _with_chunks(wav: bytes) -> bytes:
    """Insert a LIST and a JUNK chunk between ``fmt `` and ``data``, append garbage after the RIFF."""
    fmt_end = 12 + 8 + struct.unpack("<I", wav[16:20])[0]
    info = b"INFOISFT" + struct.pack("<I", 8) + b"audiovec"
    chunks = b"LIST" + struct.pack("<I", len(info)) + info
    chunks += b"JUNK" + struct.pack("<I", 1000) + bytes(1000)
    body = wav[12:fmt_end] + chunks + wav[fmt_end:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body + b"\xde\xad\xbe\xef" * 64


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def _id3_wrapped(mp3: bytes, art_bytes: int = 2 * 1024 * 1024) -> bytes:
    """An ID3v2.4 tag (title + an APIC picture of random bytes) before the stream and ID3v1 after it."""
    title = b"\x03" + "Grüße, 日本".encode()
    frames = b"TIT2" + _syncsafe(len(title)) + b"\x00\x00" + title
    apic = b"\x00image/jpeg\x00\x03cover\x00" + np.random.default_rng(1).bytes(art_bytes)
    frames += b"APIC" + _syncsafe(len(apic)) + b"\x00\x00" + apic
    header = b"ID3\x04\x00\x00" + _syncsafe(len(frames))
    v1 = b"TAG" + b"title".ljust(30, b"\x00") + b"artist".ljust(30, b"\x00") + bytes(30 + 4 + 30) + b"\xff"
    return header + frames + mp3 + v1


def _av_write(path: Path, wave: np.ndarray, container: str, codec: str) -> None:
    import av

    with av.open(str(path), mode="w", format=container) as out:
        rate = 48000 if codec == "libopus" else RATE
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        data = soxr.resample(wave, RATE, rate).astype(np.float32)
        fmt = stream.codec_context.format.name
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, len(data), frame_size):
            chunk = data[start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for conv in _convert(frame, fmt, rate):
                for packet in stream.encode(conv):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _convert(frame, fmt: str, rate: int) -> list:
    import av

    if fmt == "flt":
        return [frame]
    return av.AudioResampler(format=fmt, layout="mono", rate=rate).resample(frame)


def _video_only(path: Path) -> None:
    import av

    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            img = np.full((32, 32, 3), 40 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def restore_permissions(cases: list[BadInput]) -> None:
    """Give mode-000 files their bits back so temp folders can be cleaned up."""
    for case in cases:
        if case.path.is_file() and not case.path.is_symlink() and not os.access(case.path, os.W_OK):
            case.path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def fail_decoding_after(monkeypatch, path: Path, seconds: float) -> None:
    """Make the streaming decoder (``audiovec.audio._stream_blocks``) raise an I/O error once it has given
    ``seconds`` of ``path`` (other sources decode normally): a disk or network share failing mid-file."""
    import audiovec.audio as audio_module

    real = audio_module._stream_blocks

    def failing(source, sample_rate):
        if str(source) != str(path):
            yield from real(source, sample_rate)
            return
        yield np.concatenate(list(real(source, sample_rate)))[: int(seconds * RATE)]
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(audio_module, "_stream_blocks", failing)
