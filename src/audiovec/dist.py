"""The process group, in one place: which rank this process is and how many there are (torchrun sets
``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK``); one process without a group is rank 0 of 1."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device() -> torch.device:
    """This process's accelerator (``cuda:LOCAL_RANK``) or the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device("cpu")


def join_from_env(backend: str | None = None) -> tuple[int, int]:
    """Join the group torchrun / accelerate describe in the environment (``WORLD_SIZE`` > 1), once; NCCL on
    GPUs, gloo on CPUs unless ``backend`` says otherwise. Returns :func:`world`."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return world()
