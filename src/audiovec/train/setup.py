"""What a run starts from: the process group, the model (a folder or a tiny test model, layers kept), which
parameters train, activation checkpointing, LoRA merging, and the autocast precision."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from audiovec.build.prune import select_layers
from audiovec.dist import join_from_env, local_device
from audiovec.errors import ConfigError
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import tiny_embedder
from audiovec.towers import TokenCache
from audiovec.train.config import ModelSpec, Recipe, TrainSpec

log = logging.getLogger(__name__)
UNUSED_PARAMS = ("audio_bos_eos_token",)  # Qwen2.5-Omni's encoder holds it but no forward uses it


def setup_distributed() -> tuple[int, int, torch.device]:
    """Join the process group when launched by torchrun / accelerate; (rank, world size, device)."""
    device = local_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return (*join_from_env(), device)


def build_model(spec: ModelSpec, recipe: Recipe) -> nn.Module:
    """The starting model: a saved folder, or a tiny test model (optionally with backbone layers dropped)."""
    if spec.path is not None:
        return AudioTextEmbedder.from_pretrained(recipe.resolve(spec.path))

    tiny = dict(spec.tiny or {})
    keep = tiny.pop("keep_layers", None)
    unknown = set(tiny) - {"tower", "backbone", "seed"}
    if unknown:
        raise ConfigError(
            f"model.tiny: unknown keys {sorted(unknown)} (known: tower, backbone, seed, keep_layers)"
        )
    model = tiny_embedder(**tiny)
    if keep is not None:
        keep_layers(model, keep)
    return model


def keep_layers(model: nn.Module, keep: int | list[int]) -> None:
    """Drop backbone layers in memory, choosing them like ``audiovec prune`` does."""
    layers = model.backbone.layers
    chosen = select_layers(len(layers), keep)
    model.backbone.layers = nn.ModuleList([layers[i] for i in chosen])
    model.backbone.config.num_hidden_layers = len(chosen)
    if getattr(model.backbone.config, "layer_types", None):
        model.backbone.config.layer_types = [model.backbone.config.layer_types[i] for i in chosen]
    for new, layer in enumerate(model.backbone.layers):
        if hasattr(getattr(layer, "self_attn", None), "layer_idx"):
            layer.self_attn.layer_idx = new
    model.config.backbone_config = model.backbone.config.to_dict()


def configure_trainable(model: nn.Module, spec: TrainSpec) -> None:
    """Set ``requires_grad`` by ``spec.trainable``; wrap LoRA targets with peft adapters."""
    model.requires_grad_(False)
    audio = spec.mode == "audio"
    if spec.gradient_checkpointing:
        enable_checkpointing(model.backbone)
        if audio and (spec.trainable == "full" or "tower" in spec.lora.targets):
            enable_checkpointing(model.tower.encoder)
    if spec.trainable == "full":
        (model if audio else model.backbone).requires_grad_(True)
    elif spec.trainable == "frozen_tower":
        model.backbone.requires_grad_(True)
        model.projector.requires_grad_(audio)
    elif spec.trainable == "projector":
        model.projector.requires_grad_(True)
    elif spec.trainable == "audio_adapter":  # text keeps the pretrained backbone; audio learns to use it
        adapter = model.audio_adapter
        if adapter is None:
            a = spec.audio_adapter
            adapter = model.add_audio_adapter(a.r, a.alpha, a.targets)
        adapter.requires_grad_(True)
        model.projector.requires_grad_(True)
    elif spec.trainable == "lora":
        from peft import LoraConfig, get_peft_model

        lora = spec.lora
        for target in lora.targets:
            cfg = LoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules
            )
            if target == "backbone":
                model.backbone = get_peft_model(model.backbone, cfg)
            else:
                model.tower.encoder = get_peft_model(model.tower.encoder, cfg)
        model.projector.requires_grad_(audio)
    for name, param in model.named_parameters():
        if any(u in name for u in UNUSED_PARAMS):
            param.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"train.trainable {spec.trainable!r}: nothing to train")
    if audio and spec.cache_tower and not any(p.requires_grad for p in model.tower.parameters()):
        model.tower.token_cache = TokenCache(max_bytes=int(spec.cache_tower_gb * (1 << 30)))


def set_train_mode(model: nn.Module, training: bool) -> None:
    """``model.train(training)``, except that a frozen tower always stays in eval mode (deterministic,
    so its tokens can be cached)."""
    model.train(training)
    tower = getattr(model, "tower", None)
    if tower is not None and not any(p.requires_grad for p in tower.parameters()):
        tower.eval()


def enable_checkpointing(module: nn.Module) -> None:
    if getattr(module, "supports_gradient_checkpointing", False):
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold peft adapters into the base weights so the model saves as a plain audiovec model."""
    from_peft = type(model.backbone).__module__.startswith("peft")
    if from_peft:
        model.backbone = model.backbone.merge_and_unload()
    if type(model.tower.encoder).__module__.startswith("peft"):
        model.tower.encoder = model.tower.encoder.merge_and_unload()
    return model


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the device supports it (``auto``), else full precision."""
    if precision == "fp32":
        return None
    ok = torch.cuda.is_bf16_supported() if device.type == "cuda" else _cpu_has_bf16()
    if precision == "bf16" and not ok:
        log.warning("bf16 requested but %s lacks native bf16; autocast will emulate it (slow)", device)
        return torch.bfloat16
    return torch.bfloat16 if ok else None


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
