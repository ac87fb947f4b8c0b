"""ONNX export (audio and text graphs) and the onnxruntime-backed model: parity with PyTorch, the same encode
API (arrays, files, windows of long audio, streaming, errors), loading by folder or ``backend="onnx"``, the
CLI, and the real built-in model (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from audiovec.cli import main  # noqa: E402
from audiovec.errors import CheckpointError, ConfigError  # noqa: E402
from audiovec.model import AudioTextEmbedder  # noqa: E402
from audiovec.onnx_export import (  # noqa: E402
    AUDIO_GRAPH,
    ONNX_MANIFEST,
    TEXT_GRAPH,
    export_onnx,
    is_onnx_dir,
    quantize_onnx,
)
from audiovec.onnx_runtime import OnnxEmbedder  # noqa: E402
from audiovec.tiny import save_tiny_embedder, tiny_embedder  # noqa: E402

RATE = 16_000
TEXTS = ["a dog barks", "rain on a tin roof at night", "hello", "the engine of a car starts and idles"]
# Whisper tower + BERT backbone (the built-in model's architecture); the second variant covers the traced
# branches the first does not take: a projector with max_tokens (segment means), the layer-mean tower,
# silence padding of short clips (content_lengths) and last-token pooling.
VARIANTS = {
    "plain": {},
    "branches": {"projector_max_tokens": 16, "tower_layers": "mean", "min_seconds": 2.0, "pooling": "last"},
}


def waves(seconds: tuple[float, ...] = (0.3, 2.0, 7.5, 30.0, 47.0), seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(max(seconds) * RATE)) / RATE
    out = []
    for i, s in enumerate(seconds):
        n = int(s * RATE)
        tone = np.sin(2 * np.pi * (220 + 90 * i) * t[:n]) * 0.3
        out.append((tone + rng.normal(0, 0.02, n)).astype(np.float32))
    return out


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def exported(request, tmp_path_factory) -> tuple[AudioTextEmbedder, Path]:
    model = tiny_embedder("whisper", "bert", **VARIANTS[request.param])
    out = tmp_path_factory.mktemp("onnx") / request.param
    export_onnx(model, out)
    return model, out


def test_fp32_parity_audio_and_text(exported) -> None:
    model, folder = exported
    onnx_model = AudioTextEmbedder.from_pretrained(folder)
    assert isinstance(onnx_model, OnnxEmbedder) and onnx_model.precision == "fp32"
    clips = waves()  # 0.3 s (padded to one STFT frame) … 47 s (two windows, duration-weighted)
    ref = model.encode_audio(clips, sample_rate=RATE, batch_size=3)
    got = onnx_model.encode_audio(clips, sample_rate=RATE, batch_size=3)
    assert got.shape == ref.shape == (len(clips), model.embedding_dim)
    assert np.abs(got - ref).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # batch composition does not change a vector (dynamic batch and length axes)
    alone = onnx_model.encode_audio(clips[2], sample_rate=RATE)
    assert alone.shape == (model.embedding_dim,) and np.abs(alone - ref[2]).max() < 1e-4
    ref_t, got_t = model.encode_text(TEXTS, batch_size=3), onnx_model.encode_text(TEXTS, batch_size=3)
    assert np.abs(got_t - ref_t).max() < 1e-4
    assert np.abs(onnx_model.encode_text(TEXTS[1]) - ref_t[1]).max() < 1e-4


def test_files_streaming_and_errors_go_through_the_shared_code(exported, tmp_path, fsdd_clips) -> None:
    model, folder = exported
    onnx_model = AudioTextEmbedder.from_pretrained(folder, backend="onnx")
    long_file = tmp_path / "long.wav"
    sf.write(long_file, np.concatenate(waves((20.0, 25.0))), RATE)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    files = [*fsdd_clips[:3], long_file, bad]
    # the 45 s file is streamed window batch by window batch (stream_over_seconds=10) on both backends
    ref = model.encode_audio_detailed(files, batch_size=2, on_error="skip", stream_over_seconds=10.0)
    got = onnx_model.encode_audio_detailed(files, batch_size=2, on_error="skip", stream_over_seconds=10.0)
    assert set(got.errors) == set(ref.errors) == {4} and "bad.wav" in got.errors[4]
    assert np.isnan(got.vectors[4]).all()
    assert np.abs(got.vectors[:4] - ref.vectors[:4]).max() < 1e-4
    stream = onnx_model.encode_audio_stream(long_file, batch_size=1)
    assert np.abs(stream - ref.vectors[3]).max() < 1e-4


def test_int8_export_is_close_and_smaller(exported, tmp_path) -> None:
    model, folder = exported
    int8_dir = quantize_onnx(folder, tmp_path / "int8")
    assert json.loads((int8_dir / ONNX_MANIFEST).read_text())["precision"] == "int8"
    size = {d: sum(f.stat().st_size for f in d.glob("*.onnx")) for d in (folder, int8_dir)}
    assert size[int8_dir] < 0.6 * size[folder]
    # unsigned 8-bit weights: onnxruntime's signed-weight kernels saturate on AVX2 CPUs without VNNI
    for graph in (AUDIO_GRAPH, TEXT_GRAPH):
        proto = onnx.load(str(int8_dir / graph))
        weights = {t.name: t.data_type for t in proto.graph.initializer}
        kinds = {weights[n.input[1]] for n in proto.graph.node if n.op_type == "MatMulInteger"}
        assert kinds == {onnx.TensorProto.UINT8}, graph
    q = AudioTextEmbedder.from_pretrained(int8_dir)
    clips = waves((1.0, 12.0, 30.0))
    cos = (q.encode_audio(clips, sample_rate=RATE) * model.encode_audio(clips, sample_rate=RATE)).sum(1)
    assert cos.min() >= 0.99
    cos_t = (q.encode_text(TEXTS) * model.encode_text(TEXTS)).sum(1)
    assert cos_t.min() >= 0.99
    with pytest.raises(ConfigError, match="already int8"):
        quantize_onnx(int8_dir, tmp_path / "again")


def test_loading_rules(tmp_path) -> None:
    torch_dir = save_tiny_embedder(tmp_path / "torch", tower="whisper", backbone="bert")
    assert not is_onnx_dir(torch_dir) and not is_onnx_dir(tmp_path / "missing") and not is_onnx_dir(None)
    assert isinstance(AudioTextEmbedder.from_pretrained(torch_dir), AudioTextEmbedder)
    with pytest.raises(CheckpointError, match="audiovec export MODEL --onnx DIR"):
        AudioTextEmbedder.from_pretrained(torch_dir, backend="onnx")
    with pytest.raises(ConfigError, match="unknown backend 'tf'"):
        AudioTextEmbedder.from_pretrained(torch_dir, backend="tf")
    out = export_onnx(AudioTextEmbedder.from_pretrained(torch_dir), tmp_path / "onnx")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        AudioTextEmbedder.from_pretrained(out, device="cuda")
    with pytest.raises(ConfigError, match="runs as exported, not as 'bf16'"):
        AudioTextEmbedder.from_pretrained(out, dtype="bf16")
    assert isinstance(AudioTextEmbedder.from_pretrained(out, device="cpu", dtype="fp32"), OnnxEmbedder)
    with pytest.raises(ConfigError, match="not empty"):
        export_onnx(AudioTextEmbedder.from_pretrained(torch_dir), out)
    (out / ONNX_MANIFEST).write_text('{"format": "other"}')
    with pytest.raises(CheckpointError, match="is not 'audiovec-onnx'"):
        AudioTextEmbedder.from_pretrained(out)


def test_cli_export_int8(tmp_path, capsys) -> None:
    src = save_tiny_embedder(tmp_path / "src", tower="whisper", backbone="bert")
    out = tmp_path / "int8"
    assert main(["export", str(src), "--onnx", str(out), "--int8"]) == 0
    assert "int8 ONNX export" in capsys.readouterr().out
    manifest = json.loads((out / ONNX_MANIFEST).read_text())
    assert manifest["precision"] == "int8" and not list(out.glob("*.onnx.data"))
    model = AudioTextEmbedder.from_pretrained(out)
    assert model.encode_text("a dog barks").shape == (model.embedding_dim,)
    # a packed Qwen-Omni tower is refused with the reason, not half-exported
    qwen = save_tiny_embedder(tmp_path / "qwen")
    assert main(["export", str(qwen), "--onnx", str(tmp_path / "q")]) == 1
    assert "supports whisper towers, not 'qwen3_omni'" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_builtin_model_parity(tmp_path, fsdd_clips) -> None:
    """The real built-in model: fp32 within 1e-4 of PyTorch; int8 cosine >= 0.99 on average (>= 0.98 each)
    and text-clip scores within 0.03 of PyTorch's (the same nearest clip wherever PyTorch's leads clearly)."""
    model = AudioTextEmbedder.from_pretrained("audiovec-sounds", dtype="fp32", backend="torch")
    fp32 = export_onnx(model, tmp_path / "fp32")
    int8 = quantize_onnx(fp32, tmp_path / "int8")
    clips = [*fsdd_clips[:4], *_sound_clips()]
    texts = ["a man says a number", "a dog barking", "rain falling", "a bell ringing", "a car engine"]
    ref_a, ref_t = model.encode_audio(clips, sample_rate=RATE), model.encode_text(texts)
    f, q = AudioTextEmbedder.from_pretrained(fp32), AudioTextEmbedder.from_pretrained(int8)
    assert np.abs(f.encode_audio(clips, sample_rate=RATE) - ref_a).max() < 1e-4
    assert np.abs(f.encode_text(texts) - ref_t).max() < 1e-4
    qa, qt = q.encode_audio(clips, sample_rate=RATE), q.encode_text(texts)
    cos_a, cos_t = (qa * ref_a).sum(1), (qt * ref_t).sum(1)
    assert cos_a.mean() >= 0.99 and cos_t.mean() >= 0.99
    assert cos_a.min() >= 0.98 and cos_t.min() >= 0.98
    ref_s, q_s = ref_t @ ref_a.T, qt @ qa.T
    drift = float(np.abs(q_s - ref_s).max())
    assert drift < 0.03
    # where PyTorch's best clip leads by more than twice the drift, int8 must pick the same one
    top2 = np.sort(ref_s, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * drift
    assert clear.any() and (q_s.argmax(1) == ref_s.argmax(1))[clear].all()


def _sound_clips() -> list[np.ndarray]:
    """Non-speech clips of distinct character: noise bursts, a chirp, a low hum."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * RATE) / RATE
    return [
        (rng.normal(0, 0.2, t.size) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32),
        (0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)).astype(np.float32),
        (0.3 * np.sin(2 * np.pi * 60 * t) + 0.1 * np.sin(2 * np.pi * 120 * t)).astype(np.float32),
    ]


def test_export_without_the_onnx_extra_names_it(tmp_path) -> None:
    """With onnx/onnxruntime absent (a plain install), `audiovec export` fails with one line naming the extra
    (``None`` in ``sys.modules`` behaves as a missing package: import fails, ``find_spec`` returns None)."""
    import subprocess
    import sys

    src = save_tiny_embedder(tmp_path / "src", tower="whisper", backbone="bert")
    code = (
        "import sys\n"
        "sys.modules.update(onnx=None, onnxruntime=None)\n"  # as if not installed: import fails, find_spec None
        "from audiovec.cli import main\n"
        f"sys.exit(main(['export', {str(src)!r}, '--onnx', {str(tmp_path / 'out')!r}, '--int8']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "audiovec[onnx]" in lines[0], proc.stderr[-2000:]
