"""audiovec models inside sentence-transformers: ``SentenceTransformer(model_dir, trust_remote_code=True)``.

:meth:`AudioTextEmbedder.save_pretrained` writes the two files sentence-transformers looks for next to the
audiovec files (:func:`audiovec.model_card.write_st_files`): ``modules.json``, whose one module has the type
``audiovec.st_module.AudiovecModule`` (an import path into this installed package, nothing copied into the
folder), and ``config_sentence_transformers.json`` (cosine similarity, empty ``query``/``document`` prompts).

sentence-transformers >= 6.0 imports a module class outside its own namespace only with
``trust_remote_code=True``, for local folders too. With this folder that flag runs no code from the folder:
the type is a dotted path of three parts, which transformers' dynamic-module loader (``file.Class``) cannot
resolve to a file, so sentence-transformers falls back to importing ``audiovec.st_module`` from the
installed package.

:class:`AudiovecModule` is an ``InputModule`` whose ``preprocess`` sorts a batch into texts and audio
(paths with an audio suffix, ``pathlib.Path``, bytes, 1-D/2-D arrays at 16 kHz, ``{"array",
"sampling_rate"}`` / ``{"path"}`` / ``{"bytes"}`` dicts, ``{"audio": ...}`` / ``{"text": ...}``) and whose
``forward`` calls the model's own ``encode_text`` / ``encode_audio``, so the vectors are audiovec's.
sentence-transformers then applies ``truncate_dim``, ``normalize_embeddings`` and ``precision`` itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiovec.audio import SAMPLE_RATE
from audiovec.discovery import AUDIO_EXTENSIONS
from audiovec.errors import DataError
from audiovec.evaluation.evaluate import encode_audio_refs
from audiovec.evaluation.mteb import audio_item_to_ref
from audiovec.model import AudioTextEmbedder

# what save_pretrained writes for sentence-transformers lives in audiovec.model_card (plain JSON): saving
# never imports sentence-transformers (about 10 s here)
from audiovec.model_card import MODULE_TYPE, MODULES_NAME, ST_CONFIG_NAME, ST_VERSION, write_st_files

__all__ = ["MODULE_TYPE", "MODULES_NAME", "ST_CONFIG_NAME", "ST_VERSION", "AudiovecModule", "write_st_files"]


def is_audio_input(item: Any) -> bool:
    """Whether one ``encode`` input is audio (else it must be text)."""
    if isinstance(item, str):
        return Path(item).suffix.lower() in AUDIO_EXTENSIONS and os.path.isfile(item)
    if isinstance(item, dict):
        return "audio" in item or any(k in item for k in ("array", "path", "bytes"))
    return True  # Path, bytes, arrays, tensors, torchcodec decoders: audio; checked in _audio_ref


def _audio_ref(item: Any) -> Any:
    """One audio input → what ``AudioTextEmbedder.encode_audio``/``encode_audio_refs`` read."""
    if isinstance(item, dict) and "audio" in item:
        item = item["audio"]
    if isinstance(item, os.PathLike):
        return os.fspath(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().float().numpy()
    if isinstance(item, np.ndarray):  # bare audio arrays: 16 kHz, mono or multi-channel (either orientation)
        if item.ndim not in (1, 2):
            raise DataError(f"audio array of shape {item.shape}: expected (samples,) or (channels, samples)")
        return item, SAMPLE_RATE  # load_audio makes it mono float32 (channels-first or -last)
    try:
        return audio_item_to_ref(item)
    except DataError:
        raise DataError(
            f"sentence-transformers input of type {type(item).__name__} is neither text nor audio; pass a "
            'string, an audio path, bytes, an array (16 kHz) or {"array", "sampling_rate"}'
        ) from None


try:  # the module class exists only where sentence-transformers is installed (the `st` extra)
    from sentence_transformers.base.modules import InputModule
except ImportError:  # pragma: no cover - exercised only without the extra
    InputModule = None  # type: ignore[assignment,misc]


if InputModule is not None:

    class AudiovecModule(InputModule):  # type: ignore[misc,valid-type]
        """The whole audiovec model as one sentence-transformers input module (text and audio)."""

        save_in_root = True

        def __init__(self, model: Any, audio_batch_size: int = 16, text_batch_size: int = 64) -> None:
            super().__init__()
            self.model = model
            self.audio_batch_size = audio_batch_size
            self.text_batch_size = text_batch_size

        @property
        def modalities(self) -> list[str]:
            return ["text", "audio"]

        @property
        def tokenizer(self) -> Any:
            return self.model.tokenizer

        @property
        def max_seq_length(self) -> int:
            return int(self.model.config.text_max_length)

        def get_embedding_dimension(self) -> int:
            return int(self.model.embedding_dim)

        def preprocess(
            self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any
        ) -> dict[str, Any]:
            """Sort a batch into texts (``prompt`` prepended) and audio references, keeping positions."""
            texts: list[tuple[int, str]] = []
            audio: list[tuple[int, Any]] = []
            for i, item in enumerate(inputs):
                if isinstance(item, dict) and set(item) == {"text"}:
                    item = item["text"]
                if isinstance(item, str) and not is_audio_input(item):
                    texts.append((i, (prompt or "") + item))
                elif isinstance(item, (tuple, list)) and not isinstance(item, np.ndarray):
                    raise DataError(
                        f"input {i}: pairs/lists are not single inputs; an audiovec model embeds one text or "
                        "one clip per item"
                    )
                else:
                    audio.append((i, _audio_ref(item)))
            return {"audiovec_texts": texts, "audiovec_audio": audio, "audiovec_n": len(inputs)}

        def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            """Embed with the model's own encoders; returns ``sentence_embedding`` (N, D) float32 unit rows."""
            n = int(features["audiovec_n"])
            out = np.zeros((n, self.model.embedding_dim), dtype=np.float32)
            texts, audio = features["audiovec_texts"], features["audiovec_audio"]
            if texts:
                vecs = self.model.encode_text([t for _, t in texts], batch_size=self.text_batch_size)
                out[[i for i, _ in texts]] = vecs
            if audio:
                vecs = encode_audio_refs(self.model, [r for _, r in audio], self.audio_batch_size)
                out[[i for i, _ in audio]] = vecs
            features["sentence_embedding"] = torch.from_numpy(out).to(self.model.device)
            return features

        def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
            """Write the audiovec files into ``output_path`` (``SentenceTransformer.save``'s folder)."""
            target = Path(output_path)
            target.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                saved = self.model.save_pretrained(Path(tmp) / "model")
                for file in saved.iterdir():
                    dest = target / file.name
                    if file.name in (ST_CONFIG_NAME, MODULES_NAME) and dest.exists():
                        continue  # sentence-transformers wrote its own (prompts, module list)
                    if dest.is_dir():
                        shutil.rmtree(dest)
                    os.replace(file, dest)

        @classmethod
        def load(
            cls,
            model_name_or_path: str,
            subfolder: str = "",
            token: bool | str | None = None,
            cache_folder: str | None = None,
            revision: str | None = None,
            local_files_only: bool = False,
            **kwargs: Any,
        ) -> AudiovecModule:
            """Load the audiovec model of the folder (hub ids are downloaded by sentence-transformers)."""
            folder = cls.load_dir_path(
                model_name_or_path,
                subfolder=subfolder,
                token=token,
                cache_folder=cache_folder,
                revision=revision,
                local_files_only=local_files_only,
            )
            model_kwargs = kwargs.get("model_kwargs") or {}
            dtype = model_kwargs.get("dtype", model_kwargs.get("torch_dtype"))
            return cls(AudioTextEmbedder.from_pretrained(folder, dtype=dtype if dtype != "auto" else None))
