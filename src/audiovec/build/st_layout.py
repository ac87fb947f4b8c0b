"""sentence-transformers folders: where the transformer lives, how it pools, where it truncates.

A folder saved by sentence-transformers lists its pipeline in ``modules.json`` (Transformer → Pooling →
Normalize). The transformer sits at the root (sentence-transformers >= 2) or in ``0_Transformer/`` (older
saves); the pooling mode is in ``<pooling path>/config.json``; the truncation length is ``max_seq_length`` in
``sentence_bert_config.json`` (or, in folders saved by sentence-transformers 6, the tokenizer's
``model_max_length``, capped by the model's positions). Reading them, as ``SentenceTransformer`` does, is what
makes ``encode_text`` give its vectors, also for texts longer than ``max_seq_length``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiovec.errors import CheckpointError

MODULES_NAME = "modules.json"
OLD_TRANSFORMER_DIR = "0_Transformer"
OLD_POOLING_DIR = "1_Pooling"
# sentence-transformers' own search order for the Transformer module's config (base/modules/transformer.py)
ST_CONFIG_NAMES = (
    "sentence_bert_config.json", "sentence_roberta_config.json", "sentence_distilbert_config.json",
    "sentence_camembert_config.json", "sentence_albert_config.json", "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)  # fmt: skip
# sentence-transformers pooling mode → audiovec pooling. mean_sqrt_len_tokens is the mean times sqrt(n): the
# same direction, so the same unit vector.
POOLING = {"mean": "mean", "mean_sqrt_len_tokens": "mean", "cls": "cls", "max": "max", "lasttoken": "last"}
# the legacy boolean keys, in sentence-transformers' concatenation order
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
AUDIOVEC_MODULE = "audiovec.st_module.AudiovecModule"  # what audiovec's own save_pretrained lists


@dataclass(frozen=True)
class SentenceTransformersLayout:
    """What a sentence-transformers folder says about its text path.

    ``transformer`` is the folder with the transformer's ``config.json``, weights and tokenizer;
    ``pooling`` an audiovec pooling mode; ``max_length`` the token count texts are truncated at (None: not
    stated); ``normalize`` whether the pipeline ends in Normalize (audiovec vectors are always unit length).
    """

    root: Path
    transformer: Path
    pooling: str
    max_length: int | None
    normalize: bool
    modules: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "transformer": str(self.transformer.relative_to(self.root)) or ".",
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalize": self.normalize,
            "modules": list(self.modules),
        }


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: unreadable sentence-transformers file ({exc})") from None


def _class_name(entry: dict[str, Any]) -> str:
    """``sentence_transformers.models.Pooling`` / ``...sentence_transformer.modules.pooling.Pooling`` → Pooling."""
    return str(entry.get("type", "")).rsplit(".", 1)[-1]


def read_st_layout(folder: Path) -> SentenceTransformersLayout | None:
    """The folder's sentence-transformers pipeline, or None when it is not a sentence-transformers folder.

    Pipelines with modules audiovec does not reproduce (Dense, LayerNorm, a Router, ...) or pooling modes it
    has no equivalent for (weightedmean, several modes concatenated) are refused: their vectors would differ.
    """
    modules_file = folder / MODULES_NAME
    if modules_file.is_file():
        entries = _read_json(modules_file)
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise CheckpointError(f"{modules_file}: expected a list of modules ({{idx, name, path, type}})")
    elif (folder / OLD_TRANSFORMER_DIR / "config.json").is_file():  # old saves may lack modules.json
        entries = [{"path": OLD_TRANSFORMER_DIR, "type": "Transformer"}]
        if (folder / OLD_POOLING_DIR / "config.json").is_file():
            entries.append({"path": OLD_POOLING_DIR, "type": "Pooling"})
    else:
        return None
    if [e.get("type") for e in entries] == [AUDIOVEC_MODULE]:
        return None  # an audiovec model folder (audiovec.st_module), not a sentence-transformers text model
    names = tuple(_class_name(e) for e in entries)
    unsupported = [f"{n} ({e.get('path') or e.get('type')})" for n, e in zip(names, entries, strict=True)
                   if n not in _SUPPORTED_MODULES]  # fmt: skip
    if unsupported:
        raise CheckpointError(
            f"{modules_file}: module(s) {', '.join(unsupported)} not supported: audiovec reproduces "
            f"Transformer → Pooling → Normalize only, so its vectors would differ from SentenceTransformer.encode"
        )
    if not names or names[0] != "Transformer" or names.count("Transformer") != 1:
        raise CheckpointError(f"{modules_file}: expected one Transformer module first, got {list(names)}")
    transformer = folder / str(entries[0].get("path") or "")
    if not (transformer / "config.json").is_file():
        raise CheckpointError(
            f"{modules_file}: the Transformer module's folder {transformer} has no config.json"
        )
    if "Pooling" not in names:
        raise CheckpointError(
            f"{modules_file}: no Pooling module, so SentenceTransformer gives no sentence vector; add one"
        )
    pooling_dir = folder / str(entries[names.index("Pooling")].get("path") or "")
    return SentenceTransformersLayout(
        root=folder,
        transformer=transformer,
        pooling=_pooling_mode(pooling_dir / "config.json"),
        max_length=_max_length(transformer),
        normalize="Normalize" in names,
        modules=names,
    )


def _pooling_mode(file: Path) -> str:
    if not file.is_file():
        raise CheckpointError(f"{file}: the Pooling module's config is missing")
    config = _read_json(file)
    if not isinstance(config, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [m for key, m in _LEGACY_POOLING.items() if config.get(key)] or ["mean"]
    else:
        modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1:
        raise CheckpointError(
            f"{file}: pooling modes {modes} are concatenated; audiovec pools with one mode "
            f"({', '.join(POOLING)})"
        )
    if modes[0] not in POOLING:
        raise CheckpointError(
            f"{file}: pooling mode {modes[0]!r} has no audiovec equivalent; supported: {', '.join(POOLING)}"
        )
    return POOLING[modes[0]]


def _max_length(transformer: Path) -> int | None:
    """``max_seq_length`` as sentence-transformers resolves it: the module config's, else the tokenizer's
    ``model_max_length`` capped by the model's ``max_position_embeddings``."""
    for name in ST_CONFIG_NAMES:
        if (transformer / name).is_file():
            value = _read_json(transformer / name)
            if isinstance(value, dict) and value.get("max_seq_length") is not None:
                return int(value["max_seq_length"])
            break
    limits = []
    tokenizer_config = transformer / "tokenizer_config.json"
    if tokenizer_config.is_file():
        value = _read_json(tokenizer_config)
        if isinstance(value, dict) and isinstance(value.get("model_max_length"), int | float):
            limits.append(int(min(value["model_max_length"], 1 << 62)))
    model_config = _read_json(transformer / "config.json")
    positions = model_config.get("max_position_embeddings") if isinstance(model_config, dict) else None
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else None
