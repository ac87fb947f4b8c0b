"""Drop backbone layers: pick which to keep, renumber their weights, and fix the config to match.

The pure helpers (:func:`select_layers`, :func:`pruned_config`, :func:`layer_prefix`, :func:`renumber`)
work on names and dicts only, so ``compose --llm-layers`` uses them to read just the kept layers from the
source checkpoint. :func:`prune` applies them to a saved audiovec model folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiovec.build.reader import CheckpointReader
from audiovec.build.sources import read_config
from audiovec.errors import CheckpointError, ConfigError
from audiovec.serialization import SAFE_INDEX, SAFE_WEIGHTS, atomic_directory, save_state_dict

STRATEGIES = ("first", "last", "uniform", "custom")
# config fields holding one entry per layer (sub-selected) or a list of layer indices (remapped)
PER_LAYER_FIELDS = ("layer_types",)
LAYER_INDEX_FIELDS = ("mlp_only_layers",)
_NUMBERED = re.compile(r"^(.*?)\.(\d+)\.")


def select_layers(num_layers: int, keep: int | Sequence[int], strategy: str = "first") -> list[int]:
    """Indices (ascending) of the layers to keep out of ``num_layers``.

    ``keep`` is a count for ``first`` (the bottom layers, which the seed's pruned models keep), ``last``
    or ``uniform`` (evenly spread, always including the first and last layer), or an explicit list of
    indices (``custom``; negative indices count from the top).
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown layer strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if not isinstance(keep, int):
        picked = sorted({i + num_layers if i < 0 else i for i in keep})
        if not picked or picked[0] < 0 or picked[-1] >= num_layers:
            raise ConfigError(f"layers {list(keep)} are not a non-empty subset of 0..{num_layers - 1}")
        return picked
    if strategy == "custom":
        raise ConfigError("strategy 'custom' needs an explicit list of layer indices")
    if not 1 <= keep <= num_layers:
        raise ConfigError(
            f"cannot keep {keep} layers of a backbone with {num_layers}; choose 1..{num_layers}"
        )
    if strategy == "first":
        return list(range(keep))
    if strategy == "last":
        return list(range(num_layers - keep, num_layers))
    if keep == 1:
        return [0]
    return sorted({round(i * (num_layers - 1) / (keep - 1)) for i in range(keep)})


def pruned_config(config: dict[str, Any], layers: Sequence[int]) -> dict[str, Any]:
    """A copy of a transformers config dict describing only ``layers`` (renumbered from 0)."""
    old = int(config["num_hidden_layers"])
    if not layers or min(layers) < 0 or max(layers) >= old:
        raise ConfigError(f"layers {list(layers)} are out of range for {old} layers")
    out = json.loads(json.dumps(config))
    out["num_hidden_layers"] = len(layers)
    for name in PER_LAYER_FIELDS:
        values = out.get(name)
        if isinstance(values, list) and len(values) == old:
            out[name] = [values[i] for i in layers]
    for name in LAYER_INDEX_FIELDS:
        values = out.get(name)
        if isinstance(values, list):
            out[name] = [layers.index(i) for i in values if i in layers]
    if isinstance(out.get("max_window_layers"), int):  # layers below it use full attention (Qwen2/Qwen3)
        out["max_window_layers"] = sum(1 for i in layers if i < config["max_window_layers"])
    return out


def layer_prefix(keys: Iterable[str], num_layers: int) -> str:
    """The key prefix of the numbered layer stack (``layers`` in Qwen, ``encoder.layer`` in BERT)."""
    seen: dict[str, set[int]] = {}
    for key in keys:
        match = _NUMBERED.match(key)
        if match:
            seen.setdefault(match.group(1), set()).add(int(match.group(2)))
    found = [p for p, idx in seen.items() if idx == set(range(num_layers))]
    if len(found) != 1:
        raise CheckpointError(
            f"cannot tell which weights are the {num_layers} backbone layers (candidates: {sorted(seen) or 'none'})"
        )
    return found[0]


def renumber(key: str, prefix: str, mapping: dict[int, int]) -> str | None:
    """``key`` with its layer index mapped through ``mapping``; ``None`` when its layer is dropped."""
    head = prefix + "."
    if not key.startswith(head):
        return key
    index, _, rest = key[len(head) :].partition(".")
    if not index.isdigit():
        return key
    new = mapping.get(int(index))
    return None if new is None else f"{head}{new}.{rest}"


@dataclass
class PruneResult:
    out: Path
    kept_layers: list[int]
    num_layers_before: int
    tensors_kept: int
    tensors_dropped: int


def prune(
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    keep_layers: int | Sequence[int],
    strategy: str = "first",
    overwrite: bool = False,
) -> PruneResult:
    """Write a copy of a saved audiovec model with only some backbone layers (read lazily, kept only)."""

    src = Path(model_dir)
    if not src.is_dir():
        raise CheckpointError(f"{src}: model folder not found")
    config = read_config(src)
    if config.get("architecture") != "AudioTextEmbedder":
        raise ConfigError(
            f"{src / 'config.json'}: not an audiovec model (prune works on audiovec model folders)"
        )
    backbone = config["backbone"]["config"]
    old = int(backbone["num_hidden_layers"])
    layers = select_layers(old, keep_layers, strategy)
    reader = CheckpointReader(src)
    backbone_keys = [k.removeprefix("backbone.") for k in reader.weight_map if k.startswith("backbone.")]
    prefix = "backbone." + layer_prefix(backbone_keys, old)
    mapping = {old_i: new_i for new_i, old_i in enumerate(layers)}
    state, dropped = {}, 0
    for key in list(reader.weight_map):
        new_key = renumber(key, prefix, mapping)
        if new_key is None:
            dropped += 1
        else:
            state[new_key] = reader.get(key)
    new_config = json.loads(json.dumps(config))
    new_config["backbone"]["config"] = pruned_config(backbone, layers)
    history = new_config.setdefault("extra", {}).setdefault("pruned", [])
    history.append({"num_layers_before": old, "kept_layers": layers, "strategy": strategy})
    target = Path(out)
    with atomic_directory(target, overwrite=overwrite) as tmp:
        for item in src.iterdir():
            weights = item.name in (SAFE_WEIGHTS, SAFE_INDEX) or item.name.endswith(
                (".safetensors", ".bin", ".pt")
            )
            if item.is_file() and item.name != "config.json" and not weights:
                shutil.copy2(item, tmp / item.name)
        (tmp / "config.json").write_text(json.dumps(new_config, indent=2, sort_keys=True) + "\n")
        save_state_dict(state, tmp)
    return PruneResult(target, layers, old, len(state), dropped)
