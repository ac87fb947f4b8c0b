"""The building blocks of the synthetic events: tones, band-limited noise, decays, bursts and gates
(numpy/scipy; 16 kHz)."""

from __future__ import annotations

import functools

import numpy as np
from scipy import signal

from audiovec.demo.synth.common import SAMPLE_RATE, seconds

SR = SAMPLE_RATE


def time_axis(duration: float) -> np.ndarray:
    return np.arange(seconds(duration)) / SR


def tone(freq: np.ndarray | float, duration: float, harmonics: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """A (possibly swept) tone: ``freq`` is a scalar or a per-sample frequency track in Hz."""
    n = seconds(duration)
    track = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(track) / SR
    return sum(a * np.sin((h + 1) * phase) for h, a in enumerate(harmonics))


@functools.lru_cache(maxsize=256)
def sos(lo: float, hi: float, order: int) -> np.ndarray:
    if lo <= 0:
        return signal.butter(order, hi, fs=SR, output="sos")
    return signal.butter(order, [lo, min(hi, SR / 2 - 100)], btype="bandpass", fs=SR, output="sos")


def band(noise: np.ndarray, lo: float, hi: float, order: int = 2) -> np.ndarray:
    return signal.sosfilt(sos(float(lo), float(hi), order), noise)


def low(x: np.ndarray, cutoff: float, order: int = 2) -> np.ndarray:
    return signal.sosfilt(sos(0.0, float(cutoff), order), x)


def place(out: np.ndarray, sound: np.ndarray, at: float, gain: float = 1.0) -> None:
    s = seconds(at)
    if s >= len(out):
        return
    n = min(len(sound), len(out) - s)
    out[s : s + n] += gain * sound[:n]


def decay(freq: float, dur: float, rate: float) -> np.ndarray:
    t = time_axis(dur)
    return np.sin(2 * np.pi * freq * t) * np.exp(-t * rate)


def burst(rng: np.random.Generator, dur: float, lo: float, hi: float, rate: float) -> np.ndarray:
    t = time_axis(dur)
    return band(rng.standard_normal(len(t)), lo, hi) * np.exp(-t * rate)


def gates(duration: float, on: float, off: float, start: float = 0.0) -> np.ndarray:
    """1 while a repeating on/off pattern is on, else 0 (with 5 ms ramps)."""
    t = time_axis(duration)
    gate = (((t - start) % (on + off)) < on) & (t >= start)
    return np.convolve(gate.astype(float), np.ones(80) / 80, mode="same")


def moving_band(rng, d, centre, width, smooth=0.6):
    """Noise whose spectral peak follows ``centre`` (Hz per STFT frame)."""
    n = seconds(d)
    f, _, z = signal.stft(rng.standard_normal(n), fs=SR, nperseg=512)
    c = np.interp(np.linspace(0, 1, z.shape[1]), np.linspace(0, 1, len(centre)), centre)
    z *= np.exp(-0.5 * ((f[:, None] - c[None, :]) / width) ** 2) + 0.02 * smooth
    return signal.istft(z, fs=SR, nperseg=512)[1][:n]
