"""Reading tensors out of foreign checkpoint layouts: single or sharded safetensors (pickle only when
allowed), wrapper prefixes (DDP, torch.compile), the component's prefix picked by probing, PEFT adapters
refused, tokenizer files copied."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audiovec.build.sources import (
    PICKLE_INDEX,
    PICKLE_WEIGHTS,
    SAFE_INDEX,
    SAFE_WEIGHTS,
    TOKENIZER_FILES,
    WRAPPER_PREFIXES,
    Component,
)
from audiovec.errors import CheckpointError, UnsafeCheckpointError

PEFT_MARKERS = (".lora_A.", ".lora_B.", ".lora_embedding_A", ".base_layer.", ".lora_magnitude_vector")


@dataclass
class CheckpointReader:
    """Lazy reader over a checkpoint's weights: opens a shard only when one of its tensors is asked for.

    ``opened`` lists the weight files actually opened, in order. ``fetch(name) -> Path`` downloads a
    missing shard (hub sources); without it a missing shard is an error.
    """

    folder: Path
    allow_pickle: bool = False
    fetch: Callable[[str], Path] | None = None
    opened: list[str] = field(default_factory=list)
    _map: dict[str, str] | None = field(default=None, repr=False)
    _handles: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def for_component(cls, comp: Component, allow_pickle: bool = False) -> CheckpointReader:
        fetch = None
        if comp.hub_id:
            hub_id = comp.hub_id
            sub = comp.text_options.get("sentence_transformers", {}).get("transformer", ".")  # 0_Transformer/
            prefix = "" if sub == "." else f"{sub}/"

            def fetch(name: str) -> Path:
                from huggingface_hub import hf_hub_download

                return Path(hf_hub_download(hub_id, prefix + name))

        return cls(comp.path, allow_pickle=allow_pickle, fetch=fetch)

    # -- the key → file map, from the index alone (or the single file's header)
    @property
    def weight_map(self) -> dict[str, str]:
        if self._map is None:
            self._map = self._load_map()
        return self._map

    def _load_map(self) -> dict[str, str]:
        index = self.folder / SAFE_INDEX
        if index.is_file():
            return self._read_index(index)
        if (self.folder / SAFE_WEIGHTS).is_file() or (self.fetch and not self._pickles()):
            handle = self._open(SAFE_WEIGHTS)
            return dict.fromkeys(handle.keys(), SAFE_WEIGHTS)
        pickles = self._pickles()
        if pickles:
            if not self.allow_pickle:
                raise UnsafeCheckpointError(
                    f"{self.folder} holds only pickle weights ({pickles[0]}); loading pickle can run "
                    "arbitrary code. Convert it to safetensors, or pass allow_pickle=True if you trust it."
                )
            if pickles[0] == PICKLE_INDEX:
                return self._read_index(self.folder / PICKLE_INDEX)
            return dict.fromkeys(self._open(pickles[0]).keys(), pickles[0])
        found = sorted(p.name for p in self.folder.iterdir())[:12]
        raise CheckpointError(
            f"{self.folder}: no weights (expected {SAFE_WEIGHTS} or {SAFE_INDEX}; found: {', '.join(found)})"
        )

    def _pickles(self) -> list[str]:
        names = (PICKLE_INDEX, *PICKLE_WEIGHTS)
        return [n for n in names if (self.folder / n).is_file()]

    @staticmethod
    def _read_index(index: Path) -> dict[str, str]:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: malformed index ({exc!r})") from None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: weight_map is not an object")
        return weight_map

    def _open(self, name: str) -> Any:
        if name in self._handles:
            return self._handles[name]
        file = self.folder / name
        if not file.is_file():
            if self.fetch is None:
                raise CheckpointError(f"{file}: weight file is missing (named by the checkpoint index)")
            file = self.fetch(name)
        self.opened.append(name)
        if name.endswith(".safetensors"):
            from safetensors import safe_open

            try:
                handle = safe_open(str(file), framework="pt", device="cpu")
            except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
                raise CheckpointError(
                    f"{file}: unreadable safetensors shard, truncated or corrupt ({exc})"
                ) from None
        else:
            try:
                handle = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
            except Exception as exc:  # noqa: BLE001
                raise CheckpointError(f"{file}: unreadable pickle weights ({exc})") from None
            handle = _state_dict_of(handle, file)
        self._handles[name] = handle
        return handle

    def storage_dtype(self, key: str) -> torch.dtype:
        """The dtype ``key`` is stored in (read from the safetensors header, no tensor data)."""
        handle = self._open(self.weight_map[key])
        if isinstance(handle, dict):
            return handle[key].dtype if handle[key].is_floating_point() else torch.float32
        return _SAFETENSORS_DTYPES.get(handle.get_slice(key).get_dtype(), torch.float32)

    # -- queries
    def __contains__(self, key: str) -> bool:
        return key in self.weight_map

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.weight_map if k.startswith(prefix)]

    def files_for(self, keys: Iterable[str]) -> set[str]:
        """The weight files that hold ``keys`` (known from the index without opening anything)."""
        return {self.weight_map[k] for k in keys if k in self.weight_map}

    def get(self, key: str) -> torch.Tensor:
        """Read one tensor (only this one) from its shard."""
        if key not in self.weight_map:
            raise CheckpointError(f"{self.folder}: tensor {key!r} is not in the checkpoint")
        name = self.weight_map[key]
        handle = self._open(name)
        if isinstance(handle, dict):
            if key not in handle:
                raise CheckpointError(f"{self.folder / name}: tensor {key!r} is missing from the file")
            return handle[key]
        try:
            return handle.get_tensor(key)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{self.folder / name}: cannot read tensor {key!r} ({exc})") from None

    def close(self) -> None:
        self._handles.clear()


def candidate_prefixes(comp: Component) -> list[str]:
    """Every key prefix ``comp`` may have: its layout's prefixes, each also behind a wrapper prefix."""
    return [wrapper + prefix for wrapper in WRAPPER_PREFIXES for prefix in comp.prefixes]


_SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F64": torch.float64,
}
# where training frameworks nest the model's state_dict in a saved dict (DeepSpeed's mp_rank_00_model_states.pt
# under "module", Lightning and many scripts under "state_dict", others under "model")
_NESTED_STATE = ("module", "state_dict", "model")


def _state_dict_of(obj: Any, file: Path) -> dict[str, torch.Tensor]:
    """The ``name -> tensor`` dict a pickle holds, directly or nested one level (see ``_NESTED_STATE``)."""

    def is_state(d: Any) -> bool:
        return (
            isinstance(d, dict)
            and bool(d)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())
        )

    if is_state(obj):
        return obj
    if isinstance(obj, dict):
        for key in _NESTED_STATE:
            if is_state(obj.get(key)):
                return obj[key]
        top = ", ".join(repr(k) for k in list(obj)[:8])
        raise CheckpointError(
            f"{file}: not a state dict of tensors (top-level keys: {top or 'none'}); expected name -> tensor, "
            f"or one nested under {', '.join(repr(k) for k in _NESTED_STATE)}"
        )
    raise CheckpointError(f"{file}: holds a {type(obj).__name__}, not a state dict of tensors")


def pick_prefix(reader: CheckpointReader, comp: Component, probe: Iterable[str]) -> str:
    """The first candidate prefix (:func:`candidate_prefixes`) under which the checkpoint holds the probe
    names; a clear error for unmerged PEFT weights or for keys under none of them."""
    probe = list(probe)
    keys = reader.weight_map
    peft = next((k for k in keys if any(m in k for m in PEFT_MARKERS)), None)
    if peft is not None:
        raise CheckpointError(
            f"{comp.path}: holds unmerged PEFT adapter weights (e.g. {peft!r}), not a model's own weights; "
            "merge them first (peft_model.merge_and_unload().save_pretrained(out)) and pass that folder"
        )
    for prefix in candidate_prefixes(comp):
        if any(prefix + name in reader for name in probe[:8]):
            return prefix
    sample = ", ".join(list(keys)[:5])
    raise CheckpointError(
        f"{comp.path}: found no {comp.role} weights under {' or '.join(repr(p) for p in comp.prefixes)} "
        f"(also tried behind {', '.join(repr(w) for w in WRAPPER_PREFIXES if w)}; layout {comp.layout}; "
        f"probed {probe[0]!r}; first keys: {sample or 'none'})"
    )


def copy_tokenizer_files(folder: Path, out: Path) -> list[str]:
    """Copy the tokenizer files of ``folder`` into ``out``; returns the names copied."""
    import shutil

    copied = []
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, out / name)
            copied.append(name)
    return copied
