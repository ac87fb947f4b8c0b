"""The optimiser: AdamW with one parameter group per module (tower, projector, backbone, new parts) and
decay, a linear warm-up then cosine schedule, and the group layout older checkpoints used."""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from audiovec.train.config import TrainSpec

log = logging.getLogger(__name__)


def lr_lambda(spec: TrainSpec):
    """Linear warm-up to ``lr`` then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""

    def factor(done: int) -> float:
        if done < spec.warmup_steps:
            return (done + 1) / spec.warmup_steps
        progress = min(1.0, (done - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps))
        return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


MODULES = ("backbone", "tower", "new", "other")  # optimizer groups, in this order


def module_of(name: str) -> str:
    """Which learning rate a trainable parameter takes: ``new`` (the projector, new in a composed model,
    and the temperature), ``tower`` or ``backbone`` (LoRA adapters included: peft keeps them under the
    module they wrap), ``other`` for anything else (plain ``lr``)."""
    if "projector." in name or "logit_scale" in name:
        return "new"
    if name.startswith("audio_adapter."):  # backbone LoRA used by audio only
        return "backbone"
    if name.startswith("tower."):
        return "tower"
    if name.startswith("backbone."):
        return "backbone"
    return "other"


def module_lrs(spec: TrainSpec) -> dict[str, float]:
    """Each module's peak learning rate: ``tower_lr`` / ``backbone_lr`` / ``new_lr``, falling back to ``lr``."""
    return {
        "backbone": spec.lr if spec.backbone_lr is None else spec.backbone_lr,
        "tower": spec.lr if spec.tower_lr is None else spec.tower_lr,
        "new": spec.new_lr or spec.lr,
        "other": spec.lr,
    }


def _decays(name: str, param: nn.Parameter) -> bool:
    return param.ndim >= 2 and "logit_scale" not in name


def make_optimizer(named: list[tuple[str, nn.Parameter]], spec: TrainSpec) -> torch.optim.Optimizer:
    """AdamW with one pair of groups per module (see ``module_of``), each at its own learning rate
    (``module_lrs``); in each pair biases, norms and the temperature get no weight decay. Groups are named
    (``group["module"]``) and hold their parameters' names, which a checkpoint keeps so that resume can
    match its state by name. Only ``named`` (the trainable parameters) gets groups; empty groups are dropped."""
    lrs = module_lrs(spec)
    groups = []
    for module in MODULES:
        members = [(n, p) for n, p in named if module_of(n) == module]
        for decay in (True, False):
            params = [(n, p) for n, p in members if _decays(n, p) == decay]
            if params:
                groups.append(
                    {
                        "params": params,
                        "lr": lrs[module],
                        "weight_decay": spec.weight_decay if decay else 0.0,
                        "module": module,
                    }
                )
    present = {g["module"] for g in groups}
    for key, module in (("tower_lr", "tower"), ("backbone_lr", "backbone")):
        if getattr(spec, key) is not None and module not in present:
            log.warning(
                "train.%s is set but the %s does not train (trainable: %s, mode: %s); ignored",
                key,
                module,
                spec.trainable,
                spec.mode,
            )
        elif getattr(spec, key) == 0:
            log.warning(
                "train.%s is 0: the %s keeps its weights but its gradients are still computed "
                "(trainable: frozen_tower / projector skip them)",
                key,
                module,
            )
    return torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps)


def make_scheduler(optimizer: torch.optim.Optimizer, spec: TrainSpec) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine (``lr_lambda``) as one factor that multiplies every group's own peak lr alike."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec))


def group_lrs(optimizer: torch.optim.Optimizer, key: str = "lr") -> dict[str, float]:
    """``{module: lr}`` of the optimizer's groups (``key="initial_lr"``: the peak, before the schedule)."""
    return {g["module"]: g[key] for g in optimizer.param_groups}


def describe_groups(optimizer: torch.optim.Optimizer) -> str:
    """One line: each module's peak learning rate and how many weights it trains."""
    sizes: dict[str, int] = {}
    for group in optimizer.param_groups:
        sizes[group["module"]] = sizes.get(group["module"], 0) + sum(p.numel() for p in group["params"])
    peaks = group_lrs(optimizer, "initial_lr")
    return ", ".join(f"{m} {peaks[m]:.3g} ({n:,} weights)" for m, n in sizes.items())


def legacy_param_names(named: list[tuple[str, nn.Parameter]]) -> list[list[str]]:
    """Parameter names per group as optimizers before per-module learning rates laid them out (old
    checkpoints carry no names): [old decay, old plain, new decay, new plain], empty groups dropped."""
    groups = []
    for fresh in (False, True):
        members = [(n, p) for n, p in named if (module_of(n) == "new") == fresh]
        for decay in (True, False):
            groups.append([n for n, p in members if _decays(n, p) == decay])
    return [g for g in groups if g]
