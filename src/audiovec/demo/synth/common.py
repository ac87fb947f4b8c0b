"""Shared pieces of the synthetic corpus: the clip record, seeded randomness and signal helpers."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import soxr

SAMPLE_RATE = 16_000
MIN_SECONDS = 1.0
MAX_SECONDS = 10.0
PEAK = 0.89  # -1 dBFS: loud clips keep headroom after 16-bit rounding


@dataclass
class Clip:
    """One rendered clip: float32 mono audio at 16 kHz and the facts its captions are written from."""

    audio: np.ndarray
    source: str  # speech | instrument | event | fsdd | scene
    family: str  # caption template family (see captions.py)
    attrs: dict[str, object]
    labels: list[str] = field(default_factory=list)


def stable_key(*parts: object) -> int:
    """A platform-independent 32-bit integer for strings/ints, for seeding numpy generators."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``parts`` (never on call order)."""
    return np.random.default_rng([int(seed), stable_key(*parts)])


def pick(rng: np.random.Generator, items: list | tuple):
    """One element of ``items``, chosen by ``rng``."""
    return items[int(rng.integers(len(items)))]


def resample(wave: np.ndarray, rate: int) -> np.ndarray:
    """Resample a mono float waveform to 16 kHz."""
    wave = np.asarray(wave, dtype=np.float32)
    if rate == SAMPLE_RATE:
        return wave
    return soxr.resample(wave, rate, SAMPLE_RATE).astype(np.float32)


def seconds(n: float) -> int:
    """Number of samples in ``n`` seconds."""
    return int(round(n * SAMPLE_RATE))


def fade(wave: np.ndarray, ms: float = 10.0) -> np.ndarray:
    """Short linear fade in/out so cut clips do not click."""
    n = min(len(wave) // 2, int(SAMPLE_RATE * ms / 1000))
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        wave = wave.copy()
        wave[:n] *= ramp
        wave[-n:] *= ramp[::-1]
    return wave


def normalize(wave: np.ndarray, gain_db: float = 0.0) -> np.ndarray:
    """Scale to a fixed peak, then apply ``gain_db`` (so 'soft' stays softer than 'loud')."""
    wave = np.asarray(wave, dtype=np.float32)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak < 1e-9:
        return wave
    return (wave * (PEAK / peak) * 10.0 ** (gain_db / 20.0)).astype(np.float32)


def fit_length(wave: np.ndarray, min_s: float = MIN_SECONDS, max_s: float = MAX_SECONDS) -> np.ndarray:
    """Trim (with a fade) to ``max_s`` or pad with trailing silence to ``min_s``."""
    wave = np.asarray(wave, dtype=np.float32)
    hi, lo = seconds(max_s), seconds(min_s)
    if len(wave) > hi:
        wave = fade(wave[:hi], 30.0)
    if len(wave) < lo:
        wave = np.concatenate([wave, np.zeros(lo - len(wave), np.float32)])
    return wave


def trim_silence(wave: np.ndarray, threshold: float = 1e-3, pad_s: float = 0.05) -> np.ndarray:
    """Drop leading and trailing near-silence, keeping ``pad_s`` seconds around the sound."""
    loud = np.flatnonzero(np.abs(wave) > threshold * max(float(np.max(np.abs(wave))), 1e-9))
    if loud.size == 0:
        return wave
    pad = seconds(pad_s)
    return wave[max(0, loud[0] - pad) : loud[-1] + pad + 1]


def mix(foreground: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """Lay ``foreground`` over ``background`` (tiled/cut to its length) at ``snr_db`` (RMS)."""
    n = len(foreground)
    reps = int(np.ceil(n / max(len(background), 1)))
    bg = np.tile(background, reps)[:n] if reps > 1 else background[:n]
    if len(bg) < n:
        bg = np.concatenate([bg, np.zeros(n - len(bg), np.float32)])
    rms_f = float(np.sqrt(np.mean(foreground**2))) + 1e-9
    rms_b = float(np.sqrt(np.mean(bg**2))) + 1e-9
    return (foreground + bg * (rms_f / rms_b) * 10.0 ** (-snr_db / 20.0)).astype(np.float32)
