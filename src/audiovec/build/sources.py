"""Find what a published checkpoint holds, and read only the tensors we need from it.

A *source* is a local folder in Hugging Face layout (``config.json`` plus ``model.safetensors`` or shards
with ``model.safetensors.index.json``), a hub id (downloaded on demand: configs first, then only the shards
that hold needed tensors), ``public:<name>`` (a shipped config, for dry runs), or a CTranslate2 Whisper
folder. :func:`detect_audio` / :func:`detect_llm` read ``config.json`` alone and say where the audio tower
or the language model lives (its config and its key prefix); :class:`CheckpointReader` opens shards lazily
and records which ones it opened, so callers (and tests) can check that the visual tower, the talker or an
unused LLM were never touched.

Key names: the published layouts (``thinker.audio_tower.*``, ``thinker.model.*``, ``audio_tower.*``,
``language_model.model.*``) and transformers 5's in-memory names, which ``save_pretrained(...,
save_original_format=False)``, PEFT-merged models and raw ``state_dict`` dumps (FSDP full state dicts,
DeepSpeed ``zero_to_fp32``) carry (``thinker.model.audio_tower.*``, ``thinker.model.language_model.*``,
``model.audio_tower.*``, ``model.language_model.*``), are all candidates; so are the leading prefixes that
wrappers add to a dumped ``state_dict`` (``module.`` from DDP / DeepSpeed engines / ``DataParallel``,
``_orig_mod.`` from ``torch.compile``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiovec.build.st_layout import read_st_layout
from audiovec.errors import CheckpointError

CONFIG_NAME = "config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "model.bin", "model.pt")
PICKLE_INDEX = "pytorch_model.bin.index.json"
PUBLIC_PREFIX = "public:"
PUBLIC_DIR = Path(__file__).resolve().parents[1] / "public_configs"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "vocab.txt", "tokenizer.model", "sentencepiece.bpe.model", "spm.model", "chat_template.json",
    "chat_template.jinja",
)  # fmt: skip
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# config keys that describe a saved object rather than the architecture; dropped from component configs
# leading prefixes that wrappers add to a dumped state_dict (DDP / DeepSpeed engine / DataParallel, torch.compile)
WRAPPER_PREFIXES = ("", "module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module.")
# parameter names only an unmerged PEFT (LoRA, ...) model has
_BOOKKEEPING = ("architectures", "transformers_version", "auto_map", "_name_or_path", "_commit_hash")


@dataclass(frozen=True)
class Component:
    """Where one part (audio tower or LLM) lives inside a checkpoint.

    ``layout`` names the checkpoint family it came from (e.g. ``qwen2_5_omni``); ``kind`` is the audiovec
    tower kind (audio) or the transformers ``model_type`` of the base model (LLM); ``config`` is the
    component's own transformers config dict; ``prefixes`` are the key prefixes it may have in the weights,
    most likely first; ``skipped`` are prefixes of tensors that belong to this model but are not kept
    (an LM head, a BERT pooler) and are reported as skipped rather than ignored silently; ``text_options``
    is what a sentence-transformers folder says about the text path (see :mod:`audiovec.build.st_layout`).
    """

    role: str
    path: Path
    layout: str
    kind: str
    config: dict[str, Any]
    prefixes: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    note: str = ""
    hub_id: str | None = None
    text_options: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- resolving
def public_config_names() -> list[str]:
    """Names usable as ``public:<name>`` (shipped ``config.json`` files, no weights)."""
    return sorted(p.parent.name for p in PUBLIC_DIR.glob(f"*/{CONFIG_NAME}"))


def public_config_dir(name: str) -> Path:
    """The shipped folder for ``name`` (``Qwen2.5-0.5B`` or ``public:Qwen2.5-0.5B``)."""
    name = name.removeprefix(PUBLIC_PREFIX)
    folder = PUBLIC_DIR / name
    if not (folder / CONFIG_NAME).is_file():
        raise CheckpointError(
            f"public:{name}: no such shipped config; available: {', '.join(public_config_names())}"
        )
    return folder


def resolve_source(src: str | os.PathLike) -> tuple[Path, str | None]:
    """``(local folder, hub id or None)`` for a source. Hub ids fetch only small files here; shards come
    later, one by one, through :class:`CheckpointReader`."""
    text = os.fspath(src)
    if text.startswith(PUBLIC_PREFIX):
        return public_config_dir(text), None
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: expected a checkpoint folder, got a file")
        return path, None
    if _HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            small = ["*.json", "*.txt", "*.model", "*.jinja"]
            return Path(snapshot_download(text, allow_patterns=small)), text
        except Exception as exc:  # noqa: BLE001 - any hub failure means "not available"
            raise CheckpointError(
                f"{text}: not a local folder, and downloading it from the hub failed ({exc})"
            ) from None
    raise CheckpointError(f"{text}: checkpoint folder not found")


def read_config(folder: Path) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict, or a :class:`CheckpointError` saying what is there instead."""
    file = folder / CONFIG_NAME
    if not file.is_file():
        found = sorted(p.name for p in folder.iterdir())[:12] if folder.is_dir() else []
        if (folder / "adapter_config.json").is_file():
            raise CheckpointError(
                f"{folder}: a PEFT adapter (adapter_config.json), not a checkpoint; merge it into its base "
                "model first (PeftModel.from_pretrained(base, folder).merge_and_unload().save_pretrained(out)) "
                "and pass that folder"
            )
        raise CheckpointError(
            f"{folder}: no {CONFIG_NAME} (found: {', '.join(found) or 'nothing'}); a checkpoint folder in "
            "Hugging Face layout is needed"
        )
    try:
        data = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return data


def _clean(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _BOOKKEEPING}


def _describe(config: dict[str, Any]) -> str:
    nested = [
        k for k in ("thinker_config", "audio_config", "text_config", "encoder", "decoder") if k in config
    ]
    parts = [f"model_type={config.get('model_type')!r}", f"architectures={config.get('architectures')!r}"]
    if nested:
        parts.append("nested: " + ", ".join(f"{k}({config[k].get('model_type')!r})" for k in nested))
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- detection
def _ct2(folder: Path) -> bool:
    """A CTranslate2 Whisper folder; one of another CTranslate2 binary version is refused by its version."""
    try:
        from audiovec.build.ct2_whisper import is_ct2_whisper_dir, require_supported_ct2
    except ImportError:  # pragma: no cover - optional module
        return False
    require_supported_ct2(folder)
    return is_ct2_whisper_dir(folder)


def _sub(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        config = config.get(key) or {}
    return config


# Where each layout keeps its audio tower: the published (original) names first, then transformers 5's
# in-memory names (save_original_format=False, PEFT-merged, FSDP / DeepSpeed and raw state_dict dumps).
OMNI_AUDIO = ("thinker.audio_tower.", "thinker.model.audio_tower.")
THINKER_AUDIO = ("audio_tower.", "model.audio_tower.", *OMNI_AUDIO)
STANDALONE_AUDIO = ("", "audio_tower.", "model.audio_tower.")
# ... and its language model
OMNI_LLM = ("thinker.model.", "thinker.model.language_model.")
THINKER_LLM = ("model.", "model.language_model.", *OMNI_LLM)
# Qwen2-Audio: published, transformers 5 in-memory, and what save_pretrained of transformers 5.10-5.22 writes
QWEN2_AUDIO_LLM = ("language_model.model.", "model.language_model.", "language_model.model.model.")


def detect_audio(src: str | os.PathLike) -> Component:
    """Locate the audio encoder of a source from its ``config.json`` (or CTranslate2 header)."""
    folder, hub = resolve_source(src)
    if _ct2(folder):
        return Component("audio", folder, "ct2_whisper", "whisper", {}, ("",), hub_id=hub)
    config = read_config(folder)
    mt = config.get("model_type")
    make = lambda layout, kind, cfg, prefixes, skipped=(), note="": Component(  # noqa: E731
        "audio", folder, layout, kind, _clean(cfg), prefixes, skipped, note, hub
    )
    if mt == "qwen2_5_omni":
        return make(mt, "qwen2_5_omni", _sub(config, "thinker_config", "audio_config"), OMNI_AUDIO)
    if mt == "qwen2_5_omni_thinker":
        return make(mt, "qwen2_5_omni", _sub(config, "audio_config"), THINKER_AUDIO)
    if mt == "qwen3_omni_moe":
        return make(mt, "qwen3_omni", _sub(config, "thinker_config", "audio_config"), OMNI_AUDIO)
    if mt == "qwen3_omni_moe_thinker":
        return make(mt, "qwen3_omni", _sub(config, "audio_config"), THINKER_AUDIO)
    if mt == "qwen2_5_omni_audio_encoder":
        return make("standalone", "qwen2_5_omni", config, STANDALONE_AUDIO)
    if mt == "qwen3_omni_moe_audio_encoder":
        return make("standalone", "qwen3_omni", config, STANDALONE_AUDIO)
    if mt in ("qwen2_audio", "qwen2_audio_encoder"):
        enc = _sub(config, "audio_config") if mt == "qwen2_audio" else config
        prefixes = ("audio_tower.", "model.audio_tower.") if mt == "qwen2_audio" else STANDALONE_AUDIO
        return make(mt, "whisper", _qwen2_audio_as_whisper(enc), prefixes, note=QWEN2_AUDIO_NOTE)
    if mt == "whisper":
        return make(mt, "whisper", config, ("model.encoder.", "encoder."))
    raise CheckpointError(
        f"{folder}: cannot find an audio encoder ({_describe(config)}); known: Qwen2.5-Omni / Qwen3-Omni "
        "(full or thinker), Qwen2-Audio, Whisper, standalone qwen2_5_omni_audio_encoder / "
        "qwen3_omni_moe_audio_encoder folders, CTranslate2 Whisper folders"
    )


QWEN2_AUDIO_NOTE = (
    "Qwen2-Audio's encoder has Whisper's weights and layout; it is loaded as a Whisper tower, which skips "
    "the encoder's final 2x average pooling (50 tokens/s instead of 25; projector_downsample=2 restores the rate)"
)


def _qwen2_audio_as_whisper(enc: dict[str, Any]) -> dict[str, Any]:
    """A ``WhisperConfig`` dict with the shape of a Qwen2-Audio encoder (same parameter names and shapes)."""
    keep = (
        "num_mel_bins", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "d_model", "dropout",
        "attention_dropout", "activation_function", "activation_dropout", "scale_embedding", "init_std",
        "max_source_positions",
    )  # fmt: skip
    out = {k: enc[k] for k in keep if k in enc}
    out.update(model_type="whisper", decoder_layers=0)
    return out


LLM_TYPES = {
    # model_type: (candidate prefixes, skipped prefixes)
    "qwen2": (("model.", ""), ("lm_head.",)),
    "qwen3": (("model.", ""), ("lm_head.",)),
    "llama": (("model.", ""), ("lm_head.",)),
    "mistral": (("model.", ""), ("lm_head.",)),
    "bert": (("", "bert."), ("cls.", "pooler.", "bert.pooler.")),
    "roberta": (("", "roberta."), ("lm_head.", "pooler.", "roberta.pooler.")),
    "xlm-roberta": (("", "roberta."), ("lm_head.", "pooler.", "roberta.pooler.")),
}


def detect_llm(src: str | os.PathLike) -> Component:
    """Locate the language model of a source (a causal LM, an omni thinker's LLM, a BERT-family encoder).

    In a sentence-transformers folder the transformer may sit in a subfolder (``0_Transformer/``); its
    pooling mode and ``max_seq_length`` come back in ``text_options``.
    """

    folder, hub = resolve_source(src)
    st = read_st_layout(folder)
    if st is None:
        return _llm_component(folder, hub)
    comp = _llm_component(st.transformer, hub)
    return dataclasses.replace(comp, text_options={"sentence_transformers": st.to_json()})


def _llm_component(folder: Path, hub: str | None) -> Component:
    if _ct2(folder):
        raise CheckpointError(
            f"{folder}: a CTranslate2 Whisper folder holds no language model usable as a backbone"
        )
    config = read_config(folder)
    mt = config.get("model_type")
    if mt in LLM_TYPES:
        prefixes, skipped = LLM_TYPES[mt]
        return Component("llm", folder, mt, mt, _clean(config), prefixes, skipped, hub_id=hub)
    if mt in ("qwen2_5_omni", "qwen2_5_omni_thinker"):
        text = (
            _sub(config, "thinker_config", "text_config")
            if mt == "qwen2_5_omni"
            else _sub(config, "text_config")
        )
        prefixes = OMNI_LLM if mt == "qwen2_5_omni" else THINKER_LLM
        skipped = ("thinker.lm_head.",) if mt == "qwen2_5_omni" else ("lm_head.", "thinker.lm_head.")
        note = "the thinker's LLM is a Qwen2 decoder with multimodal RoPE; with text-only (1-D) positions it is a plain Qwen2Model"
        return Component("llm", folder, mt, "qwen2", omni_text_as_qwen2(text), prefixes, skipped, note, hub)
    if mt == "qwen2_audio":
        text = dict(_sub(config, "text_config"))
        text.setdefault("model_type", "qwen2")
        if text["model_type"] not in LLM_TYPES:
            raise CheckpointError(f"{folder}: Qwen2-Audio text model {text['model_type']!r} is not supported")
        return Component(
            "llm", folder, mt, text["model_type"], _clean(text), QWEN2_AUDIO_LLM,
            ("language_model.lm_head.", "lm_head."), hub_id=hub,
        )  # fmt: skip
    if mt in ("qwen3_omni_moe", "qwen3_omni_moe_thinker"):
        raise CheckpointError(
            f"{folder}: the Qwen3-Omni thinker LLM is a 30B mixture of experts and is not supported as a backbone; "
            "use this folder as --audio-encoder and pair it with a dense LLM (e.g. Qwen2.5-0.5B)"
        )
    if mt in ("whisper", "qwen2_5_omni_audio_encoder", "qwen3_omni_moe_audio_encoder", "qwen2_audio_encoder"):
        raise CheckpointError(
            f"{folder}: {mt!r} is an audio model, not a language model ({_describe(config)})"
        )
    raise CheckpointError(
        f"{folder}: cannot find a language model ({_describe(config)}); known: {', '.join(LLM_TYPES)}, "
        "qwen2_5_omni / qwen2_5_omni_thinker (thinker LLM), qwen2_audio"
    )


def omni_text_as_qwen2(text: dict[str, Any]) -> dict[str, Any]:
    """A Qwen2 config dict with the shape of a Qwen2.5-Omni thinker text config (same weights)."""
    out = {k: v for k, v in _clean(text).items() if k not in ("rope_scaling", "rope_parameters")}
    rope = dict(text.get("rope_parameters") or text.get("rope_scaling") or {})
    theta = rope.get("rope_theta", text.get("rope_theta", 1_000_000.0))
    out.update(model_type="qwen2", rope_theta=theta)
    return out


_READER_NAMES = {"CheckpointReader", "candidate_prefixes", "copy_tokenizer_files", "pick_prefix"}


def __getattr__(name: str) -> Any:  # the reading half moved to build/reader.py; re-exported one release
    if name in _READER_NAMES:
        from audiovec.build import reader

        return getattr(reader, name)
    raise AttributeError(name)
