"""What a model folder says and how the model's parts are rebuilt from it: :class:`EmbedderConfig`
(``config.json``), the backbone, the tokenizer (never running the folder's code), the dtype."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiovec import __version__
from audiovec.audio import DEFAULT_WINDOW_SECONDS, SAMPLE_RATE
from audiovec.errors import CheckpointError, ConfigError, UnsafeCheckpointError
from audiovec.serialization import recover_directory

CONFIG_NAME = "config.json"
ARCHITECTURE = "AudioTextEmbedder"
LOG_MEL_FLOORS = ("file", "window")


@dataclass
class EmbedderConfig:
    """Everything needed to rebuild the model's structure; serialised as ``config.json``."""

    tower_kind: str
    tower_config: dict[str, Any]
    backbone_config: dict[str, Any]
    tower_layers: str = "last"  # last | mean (Whisper): which hidden states make the audio tokens
    projector_downsample: int = 1
    projector_max_tokens: int = 0  # 0: every (downsampled) token reaches the backbone
    projector_layers: int = 1  # 1: linear, 2: MLP
    pooling: str = "mean"
    window_seconds: float | None = (
        None  # None: the tower's own (see window_policy); set when the model is built
    )
    min_seconds: float = 0.0
    text_max_length: int = 512
    audio_adapter: dict[str, Any] | None = None  # {r, alpha, targets}: backbone LoRA used by audio only
    log_mel_floor: str | None = None  # file | window; None: the tower's own (see window_policy)
    matryoshka_dims: list[int] | None = None  # sizes trained with the Matryoshka loss (train/matryoshka.py)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "architecture": ARCHITECTURE,
            "audiovec_version": __version__,
            "tower": {"kind": self.tower_kind, "config": self.tower_config, "layers": self.tower_layers},
            "projector": {
                "downsample": self.projector_downsample,
                "max_tokens": self.projector_max_tokens,
                "layers": self.projector_layers,
            },
            "backbone": {"config": self.backbone_config},
            "pooling": self.pooling,
            "normalize": True,
            "features": {
                "n_mels": int(self.tower_config.get("num_mel_bins", 128)),
                "sample_rate": SAMPLE_RATE,
                "window_seconds": self.window_seconds,
                "log_mel_floor": self.log_mel_floor,
                "min_seconds": self.min_seconds,
            },
            "text": {"max_length": self.text_max_length},
            **({"audio_adapter": self.audio_adapter} if self.audio_adapter else {}),
            **({"matryoshka_dims": list(self.matryoshka_dims)} if self.matryoshka_dims else {}),
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = CONFIG_NAME) -> EmbedderConfig:
        if data.get("architecture") != ARCHITECTURE:
            raise ConfigError(f"{source}: not an audiovec model (architecture={data.get('architecture')!r})")
        features = data.get("features", {})
        window = features.get("window_seconds", DEFAULT_WINDOW_SECONDS)  # null: the tower's own
        try:
            return cls(
                tower_kind=data["tower"]["kind"],
                tower_layers=data["tower"].get("layers", "last"),
                tower_config=data["tower"]["config"],
                backbone_config=data["backbone"]["config"],
                projector_downsample=int(data.get("projector", {}).get("downsample", 1)),
                projector_max_tokens=int(data.get("projector", {}).get("max_tokens", 0)),
                projector_layers=int(data.get("projector", {}).get("layers", 1)),
                pooling=data.get("pooling", "mean"),
                window_seconds=None if window is None else float(window),
                # folders written before the floor was a setting floored every window at its own peak
                log_mel_floor=features.get("log_mel_floor", "window"),
                min_seconds=float(features.get("min_seconds", 0.0)),
                text_max_length=int(data.get("text", {}).get("max_length", 512)),
                audio_adapter=data.get("audio_adapter"),
                matryoshka_dims=data.get("matryoshka_dims"),
                extra=data.get("extra", {}),
            )
        except KeyError as exc:
            raise ConfigError(f"{source}: missing field {exc}") from None


def build_backbone(config: dict[str, Any] | Any) -> nn.Module:
    """A transformers *base* model (no LM head) from its config dict or config object."""
    from transformers import AutoModel

    if isinstance(config, dict):
        config = backbone_config_from_dict(config)
    if not getattr(config, "_attn_implementation_internal", None):
        config._attn_implementation = "sdpa"
    backbone = AutoModel.from_config(config)
    if getattr(backbone, "pooler", None) is not None:  # BERT-style pooler: unused, drop it
        backbone.pooler = None
    return backbone


def backbone_config_from_dict(data: dict[str, Any]) -> Any:
    from transformers import CONFIG_MAPPING

    model_type = data.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"backbone config has unknown model_type {model_type!r}")
    return CONFIG_MAPPING[model_type].from_dict({k: v for k, v in data.items() if k != "model_type"})


def read_config(folder: Path) -> EmbedderConfig:
    """The :class:`EmbedderConfig` of a model folder (``config.json``)."""
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME}; is this an audiovec model folder?")
    try:
        data = json.loads(config_file.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{config_file}: invalid JSON ({exc})") from None
    return EmbedderConfig.from_json(data, str(config_file))


def load_tokenizer(folder: str | os.PathLike) -> Any:
    """A folder's tokenizer, never running code shipped inside the folder (``trust_remote_code=False``)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except ValueError as exc:
        if "trust_remote_code" in str(exc) or "custom code" in str(exc):
            raise UnsafeCheckpointError(
                f"{folder}: the tokenizer needs custom code from the folder; audiovec never runs it"
            ) from None
        raise CheckpointError(f"{folder}: cannot load the tokenizer ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{folder}: cannot load the tokenizer ({exc})") from None


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """A local folder as is; an ``org/name`` hub id is downloaded only when the user has network."""
    folder = recover_directory(path)
    if folder.is_dir():
        return folder
    text = str(path)
    if text.count("/") == 1 and not text.startswith((".", "/")) and not folder.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(text))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"{text}: not a local folder, and the hub download failed ({exc})"
            ) from None
    raise CheckpointError(f"{path}: model folder not found")


def parse_dtype(value: torch.dtype | str) -> torch.dtype:
    """A dtype from its name (fp32, bf16, fp16 and their long forms), or itself."""
    if isinstance(value, torch.dtype):
        return value
    names = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if value not in names:
        raise ConfigError(f"unknown dtype {value!r}; choose fp32, bf16 or fp16")
    return names[value]


def config_dict(config: Any) -> dict[str, Any]:
    """A transformers config as the plain dict config.json stores (no version stamps)."""
    data = copy.deepcopy(config.to_dict())
    data.pop("transformers_version", None)
    data.pop("_attn_implementation_autoset", None)
    return data


def no_init():
    """Context in which transformers modules skip their random initialisation (weights come next)."""
    try:
        from transformers.initialization import no_init_weights

        return no_init_weights()
    except ImportError:  # pragma: no cover - older transformers
        import contextlib

        return contextlib.nullcontext()


__all__ = [
    "ARCHITECTURE",
    "CONFIG_NAME",
    "EmbedderConfig",
    "backbone_config_from_dict",
    "build_backbone",
    "config_dict",
    "load_tokenizer",
    "no_init",
    "parse_dtype",
    "read_config",
    "resolve_model_dir",
]
