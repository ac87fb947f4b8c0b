"""Run an ONNX export (:mod:`audiovec.onnx_export`) with onnxruntime behind the model's encode API.

:class:`OnnxEmbedder` has the same ``encode_audio`` / ``encode_audio_detailed`` / ``encode_audio_stream`` /
``encode_text`` as :class:`~audiovec.model.AudioTextEmbedder` — the very same functions: decoding, windows
of long audio, length batching and duration-weighted pooling are reused, and only ``forward_audio`` /
``forward_text`` (the two graphs) run in onnxruntime. Load it with
``AudioTextEmbedder.from_pretrained(DIR)`` (an export folder) or ``from_pretrained(DIR, backend="onnx")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiovec.errors import CheckpointError, ConfigError
from audiovec.features import LogMelExtractor
from audiovec.model import CONFIG_NAME, AudioTextEmbedder, EmbedderConfig, load_tokenizer
from audiovec.onnx_export import read_manifest
from audiovec.quantize import Calibration


class OnnxEmbedder:
    """An ONNX export's audio and text graphs in onnxruntime sessions, with the PyTorch model's encode API."""

    def __init__(
        self, folder: str | Path, threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        self.manifest = read_manifest(folder)
        self.precision: str = self.manifest["precision"]
        config_file = folder / CONFIG_NAME
        if not config_file.is_file():
            raise CheckpointError(f"{folder}: no {CONFIG_NAME}; re-run `audiovec export` into a new folder")
        self.config = EmbedderConfig.from_json(json.loads(config_file.read_text()), str(config_file))
        self.tokenizer = load_tokenizer(folder)
        n_mels = int(self.config.tower_config["num_mel_bins"])
        self.feature_extractor = LogMelExtractor(n_mels, min_seconds=self.config.min_seconds)
        self.embedding_dim = int(self.config.backbone_config["hidden_size"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = providers or ["CPUExecutionProvider"]
        self.audio_session = ort.InferenceSession(
            str(folder / self.manifest["audio"]), options, providers=providers
        )
        self.text_session = ort.InferenceSession(
            str(folder / self.manifest["text"]), options, providers=providers
        )
        self.folder = folder
        self.truncate_dim: int | None = None  # as on the PyTorch model (audiovec.dims)
        self.calibration = Calibration.load(
            folder
        )  # int8 ranges of the vectors, when the export carries them

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        **kwargs: Any,
    ) -> OnnxEmbedder:
        """Load an export folder; ``device`` may only be the CPU (onnxruntime's CPU provider) and ``dtype``
        only fp32 (the graphs' inputs and outputs; an int8 export is a separate folder)."""
        if device is not None and torch.device(device).type != "cpu":
            raise ConfigError(
                f"the ONNX backend runs on the CPU, not {device!r}; load the PyTorch model for it"
            )
        if dtype is not None and dtype not in (torch.float32, "fp32", "float32"):
            raise ConfigError(
                f"an ONNX export runs as exported, not as {dtype!r}; drop dtype, or export with --int8"
            )
        return cls(path, **kwargs)

    # the attributes the shared encode code reads
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def eval(self) -> OnnxEmbedder:
        return self

    # ------------------------------------------------------------------------------ the two graphs
    def forward_audio(
        self, features: torch.Tensor, lengths: torch.Tensor, content_lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        if content_lengths is None:
            content_lengths = lengths
        (vectors,) = self.audio_session.run(
            None,
            {
                "features": features.detach().float().cpu().numpy(),
                "lengths": lengths.detach().cpu().numpy().astype(np.int64),
                "content_lengths": content_lengths.detach().cpu().numpy().astype(np.int64),
            },
        )
        return torch.from_numpy(vectors)

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        (vectors,) = self.text_session.run(
            None,
            {
                "input_ids": input_ids.detach().cpu().numpy().astype(np.int64),
                "attention_mask": attention_mask.detach().cpu().numpy().astype(np.int64),
            },
        )
        return torch.from_numpy(vectors)

    # ------------------------------------------------------------------------------ shared with the torch model
    featurize = AudioTextEmbedder.featurize
    tokenize = AudioTextEmbedder.tokenize
    encode_text = AudioTextEmbedder.encode_text
    encode_audio = AudioTextEmbedder.encode_audio
    encode_audio_detailed = AudioTextEmbedder.encode_audio_detailed
    encode_audio_stream = AudioTextEmbedder.encode_audio_stream
    windows_per_batch = AudioTextEmbedder.windows_per_batch
    file_peak = AudioTextEmbedder.file_peak
    stream_peak = AudioTextEmbedder.stream_peak
    _embed_waves = AudioTextEmbedder._embed_waves
    _finish = AudioTextEmbedder._finish
    calibrate = AudioTextEmbedder.calibrate
    similarity = staticmethod(AudioTextEmbedder.similarity)


def load_onnx(
    path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None
) -> OnnxEmbedder:
    """What ``AudioTextEmbedder.from_pretrained(path, backend="onnx")`` returns."""
    return OnnxEmbedder.from_pretrained(path, device, dtype)
