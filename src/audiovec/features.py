"""Whisper-style log-mel features, batched in torch, without padding every clip to 30 s.

The result equals ``transformers.WhisperFeatureExtractor(feature_size=n_mels)`` applied to each clip on its
own (``padding="longest"``): periodic Hann window of 400, hop 160, Slaney mel filterbank up to 8 kHz,
power spectrum without the last frame, ``log10(max(x, 1e-10))``, floor at the clip's max − 8, then
``(x + 4) / 4``. Each clip is reflect-padded at its own edges before batching, so a clip gives the same
features alone or in a batch; frames past a clip's length are zeros and reported through ``lengths``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from audiovec.audio import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
MIN_SAMPLES = N_FFT // 2 + 1  # reflect padding needs more samples than the pad width


def mel_filters(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> torch.Tensor:
    """The Slaney-normalised mel filterbank Whisper uses, shape ``(n_fft // 2 + 1, n_mels)``."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(
        num_frequency_bins=1 + n_fft // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(np.asarray(bank, dtype=np.float32))


def num_frames(num_samples: int | torch.Tensor) -> int | torch.Tensor:
    """Valid log-mel frames for a clip of ``num_samples`` (one per hop; the last STFT frame is dropped)."""
    return num_samples // HOP_LENGTH


class LogMelExtractor:
    """Callable turning a list of 16 kHz waveforms into ``(features (B, n_mels, T), lengths (B,))``.

    With ``min_seconds > 0`` shorter clips are first padded with silence to that duration (encoders trained
    only on long windows, like Whisper, represent short clips better that way); :meth:`batch` then also
    reports ``content_lengths``, the frames that hold the clip itself, so pooling can ignore the padding.
    """

    def __init__(self, n_mels: int = 128, sample_rate: int = SAMPLE_RATE, min_seconds: float = 0.0) -> None:
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.min_samples = int(round(min_seconds * sample_rate))
        self._filters = mel_filters(n_mels, sample_rate)
        self._window = torch.hann_window(N_FFT, periodic=True)
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = (self._filters.to(device), self._window.to(device))
        return self._cache[device]

    @torch.inference_mode()
    def __call__(
        self,
        waves: Sequence[np.ndarray | torch.Tensor],
        device: torch.device | str | None = None,
        peaks: Sequence[float | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``peaks`` (one per wave, ``None`` for its own) sets where the floor is measured: a window of a
        longer file floored at the *file's* peak − 8 gets the frames the whole file's log-mel has there."""
        if len(waves) == 0:
            raise ValueError("no waveforms given")
        if peaks is not None and len(peaks) != len(waves):
            raise ValueError(f"{len(peaks)} peaks for {len(waves)} waveforms")
        device = torch.device(device or "cpu")
        mel, lengths, invalid = self._log_mel(waves, device)
        peak = mel.masked_fill(invalid, float("-inf")).amax(dim=(1, 2), keepdim=True)
        if peaks is not None:
            given = torch.tensor([float("-inf") if p is None else float(p) for p in peaks], device=device)
            peak = torch.maximum(peak, given[:, None, None])
        mel = torch.maximum(mel, peak - 8.0, out=mel).add_(4.0).div_(4.0).masked_fill_(invalid, 0.0)
        return mel, lengths.to(device)

    @torch.inference_mode()
    def peak(self, wave: np.ndarray | torch.Tensor) -> float:
        """The largest ``log10`` mel value of one waveform (what its floor is measured from)."""
        mel, _, invalid = self._log_mel([wave], torch.device("cpu"))
        return float(mel.masked_fill(invalid, float("-inf")).amax())

    def _log_mel(
        self, waves: Sequence[np.ndarray | torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unfloored ``log10`` mel ``(B, n_mels, T)``, valid lengths and the mask of frames past them."""
        filters, window = self._on(device)
        tensors = [
            pad_short(torch.as_tensor(w, dtype=torch.float32).reshape(-1), max(MIN_SAMPLES, self.min_samples))
            for w in waves
        ]
        lengths = torch.tensor([num_frames(t.shape[0]) for t in tensors], dtype=torch.long)
        pad = N_FFT // 2
        framed = [
            torch.nn.functional.pad(t.to(device)[None, None], (pad, pad), mode="reflect")[0, 0]
            for t in tensors
        ]
        longest = max(f.shape[0] for f in framed)
        batch = torch.zeros(len(framed), longest, device=device)
        for row, f in enumerate(framed):
            batch[row, : f.shape[0]] = f
        spec = torch.stft(batch, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
        spec = spec[..., : int(lengths.max())]
        power = spec.real.square() + spec.imag.square()  # |z|^2 without complex abs (2x faster on CPU)
        mel = (filters.T @ power).clamp_(min=1e-10).log10_()
        frames = torch.arange(mel.shape[-1], device=device)
        invalid = (frames[None, :] >= lengths.to(device)[:, None])[:, None, :]
        return mel, lengths, invalid

    def batch(
        self,
        waves: Sequence[np.ndarray | torch.Tensor],
        device: torch.device | str | None = None,
        peaks: Sequence[float | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"features", "lengths", "content_lengths"}`` for a batch (see the class docstring)."""
        features, lengths = self(waves, device, peaks)
        content = torch.tensor(
            [max(1, num_frames(len(w))) for w in waves], dtype=torch.long, device=lengths.device
        )
        return {"features": features, "lengths": lengths, "content_lengths": torch.minimum(content, lengths)}


def pad_short(wave: torch.Tensor, min_samples: int = MIN_SAMPLES) -> torch.Tensor:
    """Zero-pad clips too short for a single STFT frame (< ~12.5 ms) up to ``min_samples``."""
    if wave.shape[0] >= min_samples:
        return wave
    return torch.nn.functional.pad(wave, (0, min_samples - wave.shape[0]))
