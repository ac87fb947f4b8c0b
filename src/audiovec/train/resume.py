"""Training checkpoints: ``checkpoint-<step>`` folders written atomically, the last K kept.

A checkpoint holds what a resumed run needs to continue exactly: trainable weights (safetensors), the
optimizer and scheduler state, every rank's random state, and the data sampler's position.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from audiovec.errors import CheckpointError
from audiovec.serialization import atomic_directory, remove_stale_temporaries

PATTERN = re.compile(r"^checkpoint-(\d{8})$")
TEMPORARY = re.compile(r"^\.tmp-(checkpoint-\d{8})-")  # a checkpoint write in progress, or a killed one
WEIGHTS, STATE, RNG, META = "trainable.safetensors", "optim.pt", "rng.pt", "trainer_state.json"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out_dir: str | os.PathLike,
    step: int,
    weights: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    rng_states: list[dict[str, Any]],
    meta: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write ``out_dir/checkpoint-<step>`` in one rename, then delete all but the newest ``keep_last`` and
    the half-written checkpoints of killed runs (:func:`remove_killed_writes`)."""
    from safetensors.torch import save_file

    target = Path(out_dir) / f"checkpoint-{step:08d}"
    with atomic_directory(target) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS))
        torch.save(optim_state, tmp / STATE)
        torch.save(rng_states, tmp / RNG)
        (tmp / META).write_text(json.dumps({**meta, "step": step}, indent=2))
    for old in list_checkpoints(out_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    remove_killed_writes(out_dir)
    return target


def remove_killed_writes(out_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary folders of checkpoint writes whose process is gone (a run killed mid-save
    leaves ``.tmp-checkpoint-<step>-…``; the resumed run saves other steps, so the per-target cleanup of
    :func:`~audiovec.serialization.atomic_directory` would never see it). Live writers are left alone."""
    root = Path(out_dir)
    try:
        names = {m.group(1) for p in root.iterdir() if (m := TEMPORARY.match(p.name))}
    except OSError:
        return []
    return [removed for name in sorted(names) for removed in remove_stale_temporaries(root / name)]


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first (temporary ``.tmp-`` folders from killed writes are ignored)."""
    root = Path(out_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and PATTERN.match(p.name) and (p / META).is_file()]
    return sorted(found, key=lambda p: int(PATTERN.match(p.name).group(1)))


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``{"weights", "optim", "rng", "meta"}`` of a checkpoint folder (tensors on CPU, no pickled code)."""
    from safetensors.torch import load_file

    path = Path(path)
    missing = [n for n in (WEIGHTS, STATE, RNG, META) if not (path / n).is_file()]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    try:
        return {
            "weights": load_file(str(path / WEIGHTS)),
            "optim": torch.load(path / STATE, map_location="cpu", weights_only=True),
            "rng": torch.load(path / RNG, map_location="cpu", weights_only=True),
            "meta": json.loads((path / META).read_text()),
        }
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from None


def remap_optimizer_state(
    saved: dict[str, Any], current: dict[str, Any], saved_names: list[list[str]] | None = None
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """A saved optimizer ``state_dict`` re-laid out in the groups of ``current`` (the new optimizer's
    ``state_dict()``, whose groups carry ``param_names``), matching parameters by name.

    Per-parameter state (moments, step counts) comes from ``saved``; group hyper-parameters (``lr``,
    ``initial_lr``, ``weight_decay``, …) stay those of ``current``. ``saved_names`` gives the names per saved
    group when the saved groups lack ``param_names`` (checkpoints written before groups were named).
    Returns the state dict for ``optimizer.load_state_dict`` and ``{name: saved peak lr}`` (``None`` where
    unknown). Raises ``CheckpointError`` when the two optimizers do not train the same parameters.
    """
    groups = saved["param_groups"]
    if saved_names is None:
        saved_names = [g.get("param_names") for g in groups]
    if len(saved_names) != len(groups) or any(
        names is None or len(names) != len(g["params"]) for names, g in zip(saved_names, groups)
    ):
        raise CheckpointError(
            f"optimizer state has {len(groups)} groups of {[len(g['params']) for g in groups]} parameters, "
            "which cannot be matched to this run's parameters"
        )
    index: dict[str, int] = {}
    old_lrs: dict[str, float | None] = {}
    for names, group in zip(saved_names, groups):
        for name, idx in zip(names, group["params"]):
            index[name] = idx
            old_lrs[name] = group.get("initial_lr", group.get("lr"))
    wanted = [n for g in current["param_groups"] for n in g["param_names"]]
    missing, extra = sorted(set(wanted) - set(index)), sorted(set(index) - set(wanted))
    if missing or extra:
        raise CheckpointError(
            f"optimizer state does not match the trainable parameters (missing {missing[:5]}, "
            f"unexpected {extra[:5]})"
        )
    state = {}
    for group in current["param_groups"]:
        for name, idx in zip(group["param_names"], group["params"]):
            if index[name] in saved["state"]:
                state[idx] = saved["state"][index[name]]
    return {"state": state, "param_groups": [dict(g) for g in current["param_groups"]]}, old_lrs
