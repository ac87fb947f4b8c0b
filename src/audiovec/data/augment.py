"""Waveform augmentation for training: level, background noise, room reverb and microphone colouration.

Game and library sound effects are clean, close-miked and normalised; the recordings users search are not.
Each transform keeps what a caption says true (a dog barking in a reverberant room with hiss is still a dog
barking), so the captions stay as they are. Everything is a pure function of a numpy generator, which the
dataset seeds from ``(seed, clip id, version)``: a clip has ``variants`` fixed versions (version 0 is the
clean clip), so a frozen tower's token cache still hits from the second visit of each version on (for clips
under the training crop length; a longer clip gets a new crop, and so new tokens, every epoch anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audiovec.audio import SAMPLE_RATE
from audiovec.errors import ConfigError


@dataclass
class AugmentSpec:
    """How often and how strongly each transform applies; ``variants: 0`` turns augmentation off."""

    variants: int = 0  # versions per clip (0/1: only the clean clip; 3: clean + two augmented)
    gain_db: list[float] = field(default_factory=lambda: [-12.0, 6.0])
    noise_p: float = 0.5
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])
    reverb_p: float = 0.3
    rt60_s: list[float] = field(default_factory=lambda: [0.2, 0.9])
    filter_p: float = 0.3

    def validate(self) -> AugmentSpec:
        if not isinstance(self.variants, int) or isinstance(self.variants, bool) or self.variants < 0:
            raise ConfigError(f"data.augment.variants must be an integer >= 0, got {self.variants!r}")
        for name in ("noise_p", "reverb_p", "filter_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"data.augment.{name} must be within [0, 1], got {value}")
        for name in ("gain_db", "snr_db", "rt60_s"):
            bounds = getattr(self, name)
            if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
                raise ConfigError(f"data.augment.{name} must be [low, high], got {bounds!r}")
            low, high = bounds
            if low > high:
                raise ConfigError(f"data.augment.{name}: low {low} is above high {high}")
        if self.rt60_s[0] <= 0:
            raise ConfigError(f"data.augment.rt60_s must be positive, got {self.rt60_s}")
        return self

    @property
    def active(self) -> bool:
        return self.variants > 1


def augment(wave: np.ndarray, spec: AugmentSpec, rng: np.random.Generator) -> np.ndarray:
    """One augmented version of a mono 16 kHz clip (same length, float32, peak at most 1)."""
    out = np.asarray(wave, dtype=np.float64)
    if out.size == 0 or not np.any(out):
        return np.asarray(wave, dtype=np.float32)
    # the order of a recording: the source in a room, background sound, then the microphone's band limit
    if rng.random() < spec.reverb_p:
        out = reverberate(out, float(rng.uniform(*spec.rt60_s)), rng)
    if rng.random() < spec.noise_p:
        out = add_noise(out, float(rng.uniform(*spec.snr_db)), rng)
    if rng.random() < spec.filter_p:
        out = colour(out, rng)
    out = out * 10.0 ** (float(rng.uniform(*spec.gain_db)) / 20.0)
    peak = float(np.max(np.abs(out)))
    if peak > 1.0:  # scale down rather than clip: clipping would add distortion no caption mentions
        out = out / peak
    return out.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white, pink or brown noise ``snr_db`` below the clip's RMS (room tone, wind, hiss)."""
    exponent = float(rng.choice([0.0, 1.0, 2.0]))  # power falls as 1/f**exponent
    spectrum = np.fft.rfft(rng.standard_normal(wave.shape[0]))
    freqs = np.fft.rfftfreq(wave.shape[0], d=1.0 / SAMPLE_RATE)
    # nothing below 20 Hz: the log-mel front end hardly sees it, so it would only lower the audible SNR
    shape = np.where(freqs >= 20.0, np.maximum(freqs, 20.0) ** (-exponent / 2.0), 0.0)
    noise = np.fft.irfft(spectrum * shape, n=wave.shape[0])
    level = _rms(noise)
    if level == 0.0:
        return wave
    return wave + noise * (_rms(wave) / level) * 10.0 ** (-snr_db / 20.0)


def reverberate(wave: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response (exponentially decaying noise after the direct sound),
    keeping the clip's length and RMS."""
    length = max(2, int(rt60 * SAMPLE_RATE))
    t = np.arange(length) / SAMPLE_RATE
    response = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    response[0] = 0.0
    response *= float(rng.uniform(0.3, 1.0)) / max(np.sqrt(np.sum(response**2)), 1e-12)
    response[0] = 1.0  # the direct path
    n = wave.shape[0] + length - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(wave, size) * np.fft.rfft(response, size), size)[: wave.shape[0]]
    level = _rms(wet)
    return wet * (_rms(wave) / level) if level > 0 else wave


def colour(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A microphone or speaker's band limit: a smooth low-pass (1.5-7 kHz) or high-pass (80-500 Hz)."""
    order = float(rng.choice([1.0, 2.0]))
    if rng.random() < 0.5:
        cutoff = float(rng.uniform(1500.0, 7000.0))

        def response(freqs: np.ndarray) -> np.ndarray:
            return 1.0 / np.sqrt(1.0 + (freqs / cutoff) ** (2 * order))
    else:
        cutoff = float(rng.uniform(80.0, 500.0))

        def response(freqs: np.ndarray) -> np.ndarray:
            ratio = freqs / cutoff
            return ratio**order / np.sqrt(1.0 + ratio ** (2 * order))

    size = 1 << (2 * wave.shape[0] - 1).bit_length()  # zero-padded: the response must not wrap around
    freqs = np.fft.rfftfreq(size, d=1.0 / SAMPLE_RATE)
    return np.fft.irfft(np.fft.rfft(wave, size) * response(freqs), size)[: wave.shape[0]]
