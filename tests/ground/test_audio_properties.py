"""Property-based tests (hypothesis) of loading, resampling, windowing and window pooling."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from audiovec import audio
from audiovec.audio import SAMPLE_RATE, iter_windows, load_audio, num_windows, window_spans
from audiovec.errors import AudioDecodeError
from audiovec.tiny import tiny_embedder

COMMON_RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 192000]
rates = st.one_of(st.sampled_from(COMMON_RATES), st.integers(audio.MIN_SOURCE_RATE, 200_000))
finite = st.floats(-4.0, 4.0, allow_nan=False, allow_infinity=False, width=32)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def waves(max_len: int = 12_000) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float32, st.integers(1, max_len), elements=finite)


def wav_bytes(data: np.ndarray, rate: int, subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ loading


@FAST
@given(wave=waves(), rate=rates)
def test_resampled_length_finite_and_deterministic(wave: np.ndarray, rate: int) -> None:
    expected = wave.shape[0] * SAMPLE_RATE / rate
    if expected < 0.5:  # shorter than one output sample: refused, never an empty array
        with pytest.raises(AudioDecodeError, match="too short"):
            load_audio(wave, sample_rate=rate)
        return
    out = load_audio(wave, sample_rate=rate)
    assert out.size > 0
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.shape[0] - expected) <= 1.0
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(load_audio(wave, sample_rate=rate), out)


@FAST
@given(wave=waves(4000))
def test_16k_float_input_passes_through_unchanged(wave: np.ndarray) -> None:
    np.testing.assert_array_equal(load_audio(wave, sample_rate=SAMPLE_RATE), wave)


@FAST
@given(data=arrays(np.int16, st.integers(9, 4000)), channels=st.integers(1, 8), first=st.booleans())
def test_integer_pcm_scaled_and_channels_averaged(data: np.ndarray, channels: int, first: bool) -> None:
    """(samples, channels) and (channels, samples) layouts both downmix to the mean; (a 2-D array with
    fewer samples than channels is ambiguous and read channels-first, as documented)."""
    stacked = np.repeat(data[:, None], channels, axis=1)
    out = load_audio(stacked.T if first else stacked, sample_rate=SAMPLE_RATE)
    np.testing.assert_allclose(out, data.astype(np.float64) / 32768.0, atol=1e-7)
    assert np.abs(out).max() <= 1.0


@FAST
@given(data=arrays(np.uint8, st.integers(1, 4000)))
def test_unsigned_pcm_is_centred(data: np.ndarray) -> None:
    out = load_audio(data, sample_rate=SAMPLE_RATE)
    np.testing.assert_allclose(out, (data.astype(np.float64) - 128.0) / 128.0, atol=1e-7)


@FAST
@given(wave=waves(8000), rate=st.sampled_from(COMMON_RATES), subtype=st.sampled_from(["FLOAT", "DOUBLE"]))
@example(wave=np.zeros(1, np.float32), rate=44100, subtype="FLOAT")  # refused by both paths (CI found it)
def test_file_bytes_equal_the_array_path(wave: np.ndarray, rate: int, subtype: str) -> None:
    """A float WAV (as bytes) decodes to exactly what the same samples give as an array, or both are refused
    for the same reason (a clip shorter than one 16 kHz sample, e.g. 1 sample at 44.1 kHz)."""
    outcomes = []
    for source, sample_rate in ((wav_bytes(wave, rate, subtype), None), (wave, rate)):
        try:
            outcomes.append(load_audio(source, sample_rate=sample_rate))
        except AudioDecodeError as exc:
            outcomes.append(exc.reason)
    from_bytes, from_array = outcomes
    if isinstance(from_array, str):
        assert from_bytes == from_array and "too short" in from_array
    else:
        np.testing.assert_allclose(from_bytes, from_array, atol=1e-6)


@FAST
@given(wave=waves(4000), where=st.integers(0, 3999), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_non_finite_samples_are_refused(wave: np.ndarray, where: int, bad: float) -> None:
    wave = wave.copy()
    wave[where % wave.shape[0]] = bad
    with pytest.raises(AudioDecodeError, match="non-finite"):
        load_audio(wave, sample_rate=SAMPLE_RATE)
    with pytest.raises(AudioDecodeError, match="non-finite"):
        load_audio(wav_bytes(wave, SAMPLE_RATE))


@pytest.mark.parametrize("shape", [(0,), (0, 2), (2, 0), (6, 0)])
def test_empty_arrays_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(AudioDecodeError, match="zero-length"):
        load_audio(np.zeros(shape, np.float32), sample_rate=SAMPLE_RATE)


@FAST
@given(payload=st.binary(max_size=2048))
def test_arbitrary_bytes_give_samples_or_a_decode_error(payload: bytes) -> None:
    try:
        out = load_audio(payload)
    except AudioDecodeError as exc:
        assert "bytes>" in str(exc)
    else:
        assert out.dtype == np.float32 and out.size > 0 and np.isfinite(out).all()


# ------------------------------------------------------------------------------------------ windows


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 5_000_000), window=st.floats(0.01, 60.0))
@example(n=169_813, window=0.07421875)  # 1187.5 samples: num_windows once rounded differently
def test_window_spans_cover_the_clip_contiguously(n: int, window: float) -> None:
    spans = window_spans(n, window)
    size = max(1, round(window * SAMPLE_RATE))
    if n == 0:
        assert spans == []
        return
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(0 < end - start <= size for start, end in spans)
    assert all(end - start == size for start, end in spans[:-1])  # only the last may be short
    assert len(spans) == num_windows(n / SAMPLE_RATE, window)
    assert window_spans(n, window) == spans


@settings(max_examples=25, deadline=None)
@given(
    seconds=st.floats(0.01, 3.0),
    rate=st.sampled_from([8000, 11025, 16000, 44100, 48000]),
    window=st.floats(0.05, 1.5),
    block=st.floats(0.05, 1.0),
    channels=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_iter_windows_streams_the_same_windows(
    tmp_path_factory: pytest.TempPathFactory,
    seconds: float,
    rate: int,
    window: float,
    block: float,
    channels: int,
    seed: int,
) -> None:
    """Streaming (small decode blocks, streaming resampler) = window_spans over the whole load_audio."""
    data = np.random.default_rng(seed).uniform(-0.9, 0.9, (max(1, int(seconds * rate)), channels))
    path = tmp_path_factory.mktemp("win") / "clip.wav"
    sf.write(str(path), data.astype(np.float32), rate, subtype="FLOAT")
    whole = load_audio(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audio, "STREAM_BLOCK_SECONDS", block)  # force many block boundaries
        streamed = list(iter_windows(path, window))
    spans = window_spans(whole.shape[0], window)
    assert len(streamed) == len(spans)
    for (start_s, end_s, samples), (start, end) in zip(streamed, spans):
        assert round(start_s * SAMPLE_RATE) == start and round(end_s * SAMPLE_RATE) == end
        np.testing.assert_allclose(samples, whole[start:end], atol=1e-5)


# ------------------------------------------------------------------------------------------ pooling


@pytest.fixture(scope="module")
def short_window_model():
    return tiny_embedder(window_seconds=0.5)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seconds=st.floats(0.05, 1.8), seed=st.integers(0, 2**16))
def test_clip_vector_is_duration_weighted_mean_of_window_vectors(
    short_window_model, seconds: float, seed: int
) -> None:
    model = short_window_model
    wave = np.random.default_rng(seed).normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32)
    clip = model.encode_audio(wave, sample_rate=SAMPLE_RATE)
    spans = window_spans(wave.shape[0], model.config.window_seconds)
    parts = model.encode_audio([wave[a:b] for a, b in spans], sample_rate=SAMPLE_RATE)
    weights = np.array([b - a for a, b in spans], dtype=np.float64)
    pooled = (weights[:, None] * parts.astype(np.float64)).sum(0)
    pooled /= np.linalg.norm(pooled)
    assert np.isfinite(clip).all() and abs(np.linalg.norm(clip) - 1) < 1e-5
    np.testing.assert_allclose(clip, pooled, atol=1e-5)
    # the same clip inside a batch of others gives the same vector
    batch = model.encode_audio(
        [wave[: len(wave) // 2 + 1], wave, np.zeros(7000, np.float32)], sample_rate=SAMPLE_RATE
    )
    np.testing.assert_allclose(batch[1], clip, atol=1e-5)
