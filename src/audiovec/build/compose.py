"""Module combination: the audio tower of one checkpoint + the LLM of another → one AudioTextEmbedder.

What each part becomes:

- **audio tower**: the source encoder, whole and unchanged, *including its own output projection*
  (the Qwen omni towers end in ``proj`` to ``output_dim``, which feeds their thinker; it is kept, so the
  tower's output is exactly what the source model's LLM received).
- **projector**: always new, ``Linear(tower output_dim → backbone hidden)``. When the widths are equal
  (e.g. the Qwen2.5-Omni-7B tower and its own LLM) it starts as the identity with zero bias, so the backbone
  first sees exactly the tokens it was trained on; otherwise Xavier-uniform weights (seeded) and zero bias.
- **backbone**: the LLM's base model (token embeddings, layers, final norm); the LM head is skipped.
  ``llm_layers`` keeps only some layers; the others are never read.

Tensors are read one by one from only the shards that hold them and copied into a model allocated without
random initialisation, so peak memory stays near the size of the composed model. The result is written to a
temporary folder and renamed into place, with a ``compose_report.json`` saying what came from where.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiovec.build.ct2_whisper import load_ct2_whisper_encoder
from audiovec.build.prune import layer_prefix, pruned_config, renumber, select_layers
from audiovec.build.reader import CheckpointReader, copy_tokenizer_files, pick_prefix
from audiovec.build.sources import Component, detect_audio, detect_llm
from audiovec.errors import CheckpointError, ConfigError
from audiovec.model import AudioTextEmbedder, build_backbone, load_tokenizer, no_init
from audiovec.serialization import atomic_directory
from audiovec.towers import build_tower

REPORT_NAME = "compose_report.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class ComposeResult:
    """Parameter counts, the copy report, and (unless a dry run) the model and where it was written."""

    counts: dict[str, int]
    report: dict[str, Any]
    model: Any = None
    out: Path | None = None
    opened: dict[str, list[str]] = field(default_factory=dict)


def compose(
    audio_encoder: str | os.PathLike,
    llm: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    llm_layers: int | Sequence[int] | None = None,
    layer_strategy: str = "first",
    dtype: str | None = None,
    dry_run: bool = False,
    pooling: str | None = None,
    projector_downsample: int = 1,
    projector_max_tokens: int = 0,
    projector_layers: int = 1,
    tower_layers: str = "last",
    window_seconds: float | None = None,
    min_seconds: float = 0.0,
    text_max_length: int | None = None,
    seed: int = 0,
    allow_pickle: bool = False,
    overwrite: bool = False,
    save: bool = True,
) -> ComposeResult:
    """Build (and unless ``dry_run`` save to ``out``) the model of ``audio_encoder``'s tower + ``llm``.

    ``dtype`` is ``fp32`` / ``bf16`` / ``fp16``, or ``None`` for the LLM checkpoint's own storage dtype.
    ``window_seconds=None`` takes the tower's own window (``model.window_policy``: Whisper 30 s,
    Qwen2.5-Omni 300 s, Qwen3-Omni the whole file up to 600 s, within the LLM's positions).
    A dry run reads ``config.json`` files only and builds on the meta device. ``save=False`` builds the
    real model in memory only (``result.model``; ``out`` may be None), as loading a built-in model does.
    ``pooling`` and ``text_max_length`` default to what a sentence-transformers ``llm`` folder says (its Pooling
    module, its ``max_seq_length``), so ``encode_text`` gives ``SentenceTransformer.encode``'s vectors; else
    ``mean`` and 512 tokens.
    """
    audio_options = {
        "window_seconds": window_seconds, "min_seconds": min_seconds, "projector_max_tokens": projector_max_tokens,
        "tower_layers": tower_layers, "projector_layers": projector_layers,
    }  # fmt: skip
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if not dry_run and save and out is None:
        raise ConfigError("compose needs an output folder (out=...) unless dry_run=True or save=False")
    if out is not None and not dry_run and save and Path(out).exists() and not overwrite:
        raise CheckpointError(f"{out} already exists; choose a new folder or pass overwrite=True")
    audio = detect_audio(audio_encoder)
    text = detect_llm(llm)
    st = text.text_options.get("sentence_transformers", {})
    pooling = pooling or st.get("pooling") or "mean"
    audio_options["text_max_length"] = text_max_length or st.get("max_length") or 512
    backbone_config, kept = _backbone_config(text, llm_layers, layer_strategy)
    if dry_run:
        return _dry_run(audio, text, backbone_config, kept, pooling, projector_downsample, audio_options)
    return _compose(
        audio, text, backbone_config, kept, Path(out) if save else None, dtype, pooling, projector_downsample,
        audio_options, seed, allow_pickle, overwrite,
    )  # fmt: skip


def _backbone_config(
    text: Component, llm_layers: int | Sequence[int] | None, strategy: str
) -> tuple[dict[str, Any], list[int] | None]:
    config = dict(text.config)
    if llm_layers is None:
        return config, None
    num = config.get("num_hidden_layers")
    if not isinstance(num, int):
        raise ConfigError(f"{text.path}: the LLM config has no num_hidden_layers, so it cannot be pruned")
    kept = select_layers(num, llm_layers, "custom" if not isinstance(llm_layers, int) else strategy)
    return pruned_config(config, kept), kept


# ---------------------------------------------------------------------------------------------- building
def _build(audio: Component, backbone_config: dict[str, Any], device: str | None, dtype: torch.dtype) -> Any:
    """Tower + backbone allocated on ``device`` without random init (meta for dry runs)."""

    tower_config = audio.config
    if audio.layout == "ct2_whisper":
        tower_config = _ct2_config(audio)
    ctx = torch.device(device) if device == "meta" else contextlib.nullcontext()
    with ctx, no_init(), default_dtype(dtype):
        try:
            tower = build_tower(audio.kind, tower_config)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"{audio.path}: the audio encoder config cannot build a {audio.kind} tower ({exc})"
            ) from None
        try:
            backbone = build_backbone(backbone_config)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"the LLM config cannot build a {backbone_config.get('model_type')} model ({exc})"
            ) from None
    return tower, backbone


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _ct2_config(audio: Component) -> dict[str, Any]:

    _, config = load_ct2_whisper_encoder(audio.path)
    return config.to_dict()


def _assemble(
    tower: Any, backbone: Any, tokenizer: Any, pooling: str, downsample: int, window: dict[str, float]
) -> Any:

    return AudioTextEmbedder.from_parts(
        tower, backbone, tokenizer, pooling=pooling, projector_downsample=downsample, **window
    )


def _count(model: Any) -> dict[str, int]:
    def n(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    counts = {"audio_tower": n(model.tower), "projector": n(model.projector), "backbone": n(model.backbone)}
    counts["total"] = sum(counts.values())
    return counts


def _dry_run(
    audio: Component, text: Component, backbone_config: dict[str, Any], kept: list[int] | None,
    pooling: str, downsample: int, window: dict[str, float],
) -> ComposeResult:  # fmt: skip
    tower, backbone = _build(audio, backbone_config, "meta", torch.float32)
    model = _assemble(tower, backbone, None, pooling, downsample, window)
    counts = _count(model)
    report = {
        "dry_run": True,
        "audio_encoder": _describe_component(audio),
        "llm": _describe_component(text) | ({"kept_layers": kept} if kept is not None else {}),
        "parameters": counts,
        "projector": _projector_note(model),
    }
    return ComposeResult(counts, report)


def _describe_component(comp: Component) -> dict[str, Any]:
    info = {"path": str(comp.path), "layout": comp.layout, "kind": comp.kind}
    if comp.hub_id:
        info["hub_id"] = comp.hub_id
    if comp.note:
        info["note"] = comp.note
    if comp.text_options:
        info.update(comp.text_options)
    return info


def _projector_note(model: Any) -> str:
    linear = model.projector.linear
    mlp = (
        f", then GELU + Linear({linear.out_features}, {linear.out_features}) (seeded)"
        if model.projector.out is not None
        else ""
    )
    if linear.in_features == linear.out_features:
        return f"new Linear({linear.in_features}, {linear.out_features}), identity init, zero bias{mlp}"
    return f"new Linear({linear.in_features}, {linear.out_features}), Xavier-uniform init (seeded), zero bias{mlp}"


# ---------------------------------------------------------------------------------------------- copying
class _Copier:
    """Copies tensors from one source into a module's parameters and buffers, keeping the tally."""

    def __init__(self, comp: Component, reader: CheckpointReader, dtype: torch.dtype) -> None:
        self.comp, self.reader, self.dtype = comp, reader, dtype
        self.tensors = self.parameters = 0
        self.casts: Counter[str] = Counter()
        self.read_keys: set[str] = set()

    def copy(self, target: nn.Module, prefix: str, rename: dict[str, str] | None = None) -> None:
        """``target``'s state ``name`` ← source ``prefix + rename.get(name, name)``."""
        rename = rename or {}
        state = target.state_dict(keep_vars=True)
        missing = [prefix + rename.get(n, n) for n in state if prefix + rename.get(n, n) not in self.reader]
        if missing:
            raise CheckpointError(
                f"{self.comp.path}: {len(missing)} tensor(s) the {self.comp.role} needs are not in the checkpoint "
                f"(e.g. {', '.join(missing[:4])}); the config and the weights disagree"
            )
        with torch.no_grad():
            for name, dest in state.items():
                key = prefix + rename.get(name, name)
                src = self.reader.get(key)
                if tuple(src.shape) != tuple(dest.shape):
                    raise CheckpointError(
                        f"{self.comp.path}: tensor {key!r} has shape {tuple(src.shape)}, but the "
                        f"{self.comp.role} built from config.json expects {tuple(dest.shape)} for {name!r}"
                    )
                if src.dtype != dest.dtype:
                    self.casts[
                        f"{str(src.dtype).removeprefix('torch.')}->{str(dest.dtype).removeprefix('torch.')}"
                    ] += 1
                dest.copy_(src)
                del src
                self.read_keys.add(key)
                self.tensors += 1
                self.parameters += dest.numel()


def _load_tokenizer(text: Component) -> Any:

    if not any(
        (text.path / n).is_file()
        for n in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
    ):
        raise CheckpointError(
            f"{text.path}: no tokenizer files next to the LLM (tokenizer.json / tokenizer_config.json)"
        )
    return load_tokenizer(text.path)


def _compose(
    audio: Component, text: Component, backbone_config: dict[str, Any], kept: list[int] | None, out: Path | None,
    dtype_name: str | None, pooling: str, downsample: int, window: dict[str, float], seed: int, allow_pickle: bool,
    overwrite: bool,
) -> ComposeResult:  # fmt: skip

    tokenizer = _load_tokenizer(text)
    llm_reader = CheckpointReader.for_component(text, allow_pickle=allow_pickle)
    probe = _backbone_probe(backbone_config)
    llm_prefix = pick_prefix(llm_reader, text, probe)
    dtype = DTYPES[dtype_name] if dtype_name else llm_reader.storage_dtype(llm_prefix + probe[0])

    backbone_config = {k: v for k, v in backbone_config.items() if k != "torch_dtype"}
    backbone_config["dtype"] = str(dtype).removeprefix("torch.")
    tower, backbone = _build(audio, backbone_config, None, dtype)
    tower.to(dtype)
    backbone.to(dtype)  # transformers may follow the config's stored dtype rather than the default
    vocab = getattr(backbone.config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise ConfigError(
            f"{text.path}: the tokenizer has {len(tokenizer)} tokens but the LLM embeds only {vocab}"
        )

    # audio tower
    if audio.layout == "ct2_whisper":
        audio_reader, audio_prefix, audio_copier = None, "", _copy_ct2(audio, tower, dtype)
    else:
        audio_reader = CheckpointReader.for_component(audio, allow_pickle=allow_pickle)
        names = list(tower.encoder.state_dict())
        audio_prefix = pick_prefix(audio_reader, audio, names)
        audio_copier = _Copier(audio, audio_reader, dtype)
        audio_copier.copy(tower.encoder, audio_prefix)

    # backbone (only the kept layers are read)
    llm_copier = _Copier(text, llm_reader, dtype)
    rename: dict[str, str] = {}
    if kept is not None:
        names = list(backbone.state_dict())
        layers = layer_prefix(names, len(kept))
        inverse = dict(enumerate(kept))
        rename = {n: renumber(n, layers, inverse) or n for n in names}
    llm_copier.copy(backbone, llm_prefix, rename)

    model = _assemble(tower, backbone, tokenizer, pooling, downsample, window)
    init_projector(model.projector, seed)
    model.projector.to(dtype)
    model.eval()
    model.config.extra["composed_from"] = {
        "audio_encoder": _describe_component(audio),
        "llm": _describe_component(text) | ({"kept_layers": kept} if kept is not None else {}),
    }
    counts = _count(model)
    prefixes = (audio_prefix, llm_prefix)
    report = _report(
        audio, text, audio_copier, llm_copier, audio_reader, llm_reader, prefixes, model, counts, kept, dtype
    )
    if out is not None:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            model.save_pretrained(tmp)
            report["tokenizer_files"] = copy_tokenizer_files(text.path, tmp)
            (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    opened = {
        "audio_encoder": list(audio_reader.opened) if audio_reader else [],
        "llm": list(llm_reader.opened),
    }
    return ComposeResult(counts, report, model, out, opened)


def _backbone_probe(config: dict[str, Any]) -> list[str]:
    """A few names the base model certainly has, to find the LLM's key prefix without building it."""

    try:
        with torch.device("meta"):
            return list(build_backbone(config).state_dict())
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise ConfigError(f"the LLM config cannot build a {config.get('model_type')} model ({exc})") from None


def _copy_ct2(audio: Component, tower: Any, dtype: torch.dtype) -> _Copier:

    encoder, _ = load_ct2_whisper_encoder(audio.path)
    state = encoder.state_dict()

    reader = CheckpointReader(
        audio.path, _map=dict.fromkeys(state, "model.bin"), _handles={"model.bin": state}
    )
    copier = _Copier(audio, reader, dtype)
    copier.copy(tower.encoder, "")
    return copier


def init_projector(projector: nn.Module, seed: int) -> None:
    """A new projector's start: its first linear layer is the identity when widths match (the backbone
    first sees the tower's tokens as they are) and seeded Xavier-uniform otherwise; an MLP's second layer
    is seeded Xavier-uniform; biases zero. The same seed gives the same projector."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, linear in enumerate(m for m in projector.modules() if isinstance(m, nn.Linear)):
            if i == 0 and linear.in_features == linear.out_features:
                linear.weight.copy_(torch.eye(linear.in_features))
            else:
                bound = (6.0 / (linear.in_features + linear.out_features)) ** 0.5
                weight = (
                    torch.rand(linear.weight.shape, generator=gen, dtype=torch.float32) * 2 * bound - bound
                )
                linear.weight.copy_(weight)
            linear.bias.zero_()


def _source_report(
    comp: Component, copier: _Copier, reader: CheckpointReader | None, prefix: str
) -> dict[str, Any]:
    """One source's line of the report: what was copied, which files were opened, what was left out.

    ``skipped_tensors`` are tensors of this component that were not kept (LM head, pruned layers, pooler);
    tensors of other parts of the checkpoint (visual tower, talker, ...) are only counted as not read.
    """
    entry = _describe_component(comp)
    entry.update(
        tensors_copied=copier.tensors, parameters_copied=copier.parameters, dtype_casts=dict(copier.casts)
    )
    if reader is None:
        return entry
    unread = [k for k in reader.weight_map if k not in copier.read_keys]
    own = [k for k in unread if (prefix and k.startswith(prefix)) or k.startswith(comp.skipped) or not prefix]
    entry.update(
        key_prefix=prefix,
        weight_files_opened=list(reader.opened),
        weight_files_total=len(set(reader.weight_map.values())),
        skipped_tensors=sorted(own),
        tensors_not_read=len(unread),
    )
    return entry


def _report(
    audio: Component, text: Component, audio_copier: _Copier, llm_copier: _Copier,
    audio_reader: CheckpointReader | None, llm_reader: CheckpointReader, prefixes: tuple[str, str], model: Any,
    counts: dict[str, int], kept: list[int] | None, dtype: torch.dtype,
) -> dict[str, Any]:  # fmt: skip
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "sources": {
            "audio_encoder": _source_report(audio, audio_copier, audio_reader, prefixes[0]),
            "llm": _source_report(text, llm_copier, llm_reader, prefixes[1])
            | ({"kept_layers": kept} if kept is not None else {}),
        },
        "new_tensors": {f"projector.{n}": list(p.shape) for n, p in model.projector.named_parameters()},
        "projector": _projector_note(model),
        "tower_output_projection": "kept (part of the source encoder)",
        "parameters": counts,
    }


def format_report(report: dict[str, Any]) -> str:
    """The copy report as a small table."""
    lines = [f"{'source':<14} {'tensors':>8} {'params':>14} {'files opened':>13}  {'skipped':>7}  casts"]
    for role, entry in report.get("sources", {}).items():
        opened = f"{len(entry.get('weight_files_opened', []))}/{entry.get('weight_files_total', '-')}"
        casts = ", ".join(f"{k} x{v}" for k, v in entry.get("dtype_casts", {}).items()) or "-"
        lines.append(
            f"{role:<14} {entry['tensors_copied']:>8} {entry['parameters_copied']:>14,} {opened:>13}  "
            f"{len(entry.get('skipped_tensors', [])):>7}  {casts}"
        )
    new = report.get("new_tensors", {})
    new_params = sum(_prod(s) for s in new.values())
    lines.append(f"{'new':<14} {len(new):>8} {new_params:>14,}  ({report.get('projector', '')})")
    lines.append(format_counts(report["parameters"]))
    return "\n".join(lines)


def format_counts(counts: dict[str, int]) -> str:
    """``audio_tower / projector / backbone / total`` as aligned lines with billions beside."""
    return "\n".join(f"{k:<12} {v:>15,}  ({v / 1e9:.3f}B)" for k, v in counts.items())


def _prod(shape: Sequence[int]) -> int:
    total = 1
    for s in shape:
        total *= int(s)
    return total
