"""Moved: the tiny models are :mod:`audiovec.tiny`, the bundled FSDD files
:func:`audiovec.data.fsdd.bundled_files`; the omni reference path lives in the test suite
(``tests/helpers/omni_reference.py``). This re-export goes away in the next release."""

from __future__ import annotations

import warnings

from audiovec.data.fsdd import BUNDLED_DIR as FSDD_DIR
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.tiny import (
    BACKBONE_CONFIGS,
    BERT_TINY,
    QWEN2_TINY,
    QWEN3_OMNI_AUDIO_TINY,
    QWEN3_TINY,
    QWEN25_OMNI_AUDIO_TINY,
    TOWER_CONFIGS,
    WHISPER_TINY,
    save_tiny_embedder,
    tiny_backbone,
    tiny_embedder,
    tiny_tokenizer,
    tiny_tower,
)

warnings.warn(
    "audiovec.testing moved: import audiovec.tiny (tiny models) or audiovec.data.fsdd.bundled_files",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "BACKBONE_CONFIGS", "BERT_TINY", "FSDD_DIR", "QWEN2_TINY", "QWEN25_OMNI_AUDIO_TINY", "QWEN3_OMNI_AUDIO_TINY",
    "QWEN3_TINY", "TOWER_CONFIGS", "WHISPER_TINY", "fsdd_files", "save_tiny_embedder", "tiny_backbone",
    "tiny_embedder", "tiny_tokenizer", "tiny_tower",
]  # fmt: skip
