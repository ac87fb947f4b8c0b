"""Models the benchmarks run: the tiny test model and M1 (Qwen3-Omni audio tower + Qwen2.5-0.5B), built
from the shipped public ``config.json`` files with random weights, optionally with fewer layers at full
width so a CPU run fits in minutes."""

from __future__ import annotations

from typing import Any

import torch

M1_AUDIO = "public:Qwen3-Omni-30B-A3B"
M1_LLM = "public:Qwen2.5-0.5B"


def m1_configs(tower_layers: int | None = None, llm_layers: int | None = None) -> tuple[dict, dict]:
    """(tower config, backbone config) of M1 from the shipped configs; layer counts optionally cut."""
    from audiovec.build.sources import detect_audio, detect_llm

    tower = dict(detect_audio(M1_AUDIO).config)
    llm = dict(detect_llm(M1_LLM).config)
    llm.pop("torch_dtype", None)
    llm.pop("dtype", None)
    if tower_layers is not None:
        tower["encoder_layers"] = tower_layers
    if llm_layers is not None:
        llm["num_hidden_layers"] = llm_layers
        if llm.get("layer_types"):
            llm["layer_types"] = llm["layer_types"][:llm_layers]
        if llm.get("max_window_layers", 0) > llm_layers:
            llm["max_window_layers"] = llm_layers
    return tower, llm


def build_m1(
    tower_layers: int | None = None,
    llm_layers: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Any:
    """An M1-shaped :class:`AudioTextEmbedder` with random (initialised) weights, in eval mode."""
    from audiovec.build.compose import default_dtype
    from audiovec.model import AudioTextEmbedder, build_backbone
    from audiovec.tiny import tiny_tokenizer
    from audiovec.towers import build_tower

    tower_cfg, llm_cfg = m1_configs(tower_layers, llm_layers)
    torch.manual_seed(seed)
    with torch.device(device), default_dtype(dtype):
        tower = build_tower("qwen3_omni", tower_cfg)
        backbone = build_backbone(llm_cfg)
        model = AudioTextEmbedder.from_parts(tower, backbone, tiny_tokenizer())
    return model.to(device=device, dtype=dtype).eval()


def build_model(name: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Any:
    """``tiny`` (the test model, M1-shaped: Qwen3-Omni tower + Qwen2) or ``m1-T-L`` (M1 with T tower and L
    LLM layers at full width) or ``m1`` (full size)."""
    if name == "tiny":
        from audiovec.tiny import tiny_embedder

        return tiny_embedder("qwen3_omni", "qwen2").to(device=device, dtype=dtype).eval()
    if name == "m1":
        return build_m1(dtype=dtype, device=device)
    if name.startswith("m1-"):
        _, t, layers = name.split("-")
        return build_m1(int(t), int(layers), dtype=dtype, device=device)
    raise ValueError(f"unknown benchmark model {name!r}; use tiny, m1 or m1-<tower layers>-<llm layers>")


def describe(model: Any) -> dict[str, Any]:
    """Layer counts, widths and parameter counts of a model, for the JSON."""
    tower, backbone = model.tower.config, model.backbone.config
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "tower_layers": int(tower.encoder_layers),
        "tower_width": int(tower.d_model),
        "llm_layers": int(backbone.num_hidden_layers),
        "llm_width": int(backbone.hidden_size),
        "params_tower": count(model.tower),
        "params_backbone": count(model.backbone),
        "params_total": count(model),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
