"""The names of the built-in models that ship inside the package (``audiovec/builtin/<name>/``), and how
indexes and engines refer to a model. Pure lookups, no torch: the CLI, model cards and indexes resolve names
with it; loading a built-in model is :mod:`audiovec.build.pretrained`'s job."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from audiovec.errors import CheckpointError

DEFAULT_MODEL = "audiovec-sounds"
DELTA_NAME = "delta.safetensors"
SPEC_NAME = "builtin.json"


def builtin_root() -> Path:
    return Path(str(resources.files("audiovec").joinpath("builtin")))


def builtin_names() -> list[str]:
    root = builtin_root()
    return sorted(p.name for p in root.iterdir() if (p / SPEC_NAME).is_file()) if root.is_dir() else []


def is_builtin(name: Any) -> bool:
    return isinstance(name, str) and "/" not in name and name in builtin_names()


def model_ref(model: str | os.PathLike) -> str:
    """How indexes and engines name a model: a built-in model by its name, a folder by its absolute path."""
    return str(model) if is_builtin(model) else os.path.abspath(model)


def builtin_dir(name: str) -> Path:
    if not is_builtin(name):
        raise CheckpointError(
            f"{name!r} is not a built-in model (built in: {', '.join(builtin_names()) or 'none'})"
        )
    return builtin_root() / name
