"""Safe, atomic persistence: safetensors weights (sharded with an index when large) and folders that
appear whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from audiovec.errors import CheckpointError, UnsafeCheckpointError

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin")


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``target`` in one rename.

    If anything fails (or the process is killed) before the end, ``target`` keeps its previous contents
    and the temporary folder is removed (or left with a ``.tmp-`` name that readers ignore).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} already exists (pass overwrite=True to replace it)")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            if _exchange(tmp, target):  # one atomic step: tmp now holds the previous contents
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # no renameat2: two renames; readers recover from ``.old-*`` (see recover_directory)
                old = target.with_name(f".old-{target.name}-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def recover_directory(target: str | os.PathLike) -> Path:
    """If a save was killed between its two renames (no renameat2), bring the previous folder back."""
    target = Path(target)
    if not target.exists():
        leftovers = sorted(target.parent.glob(f".old-{target.name}-*"), key=lambda p: p.stat().st_mtime)
        if leftovers:
            os.replace(leftovers[-1], target)
    return target


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def save_state_dict(state: dict[str, torch.Tensor], folder: Path, max_shard_size: str = "5GB") -> None:
    """Write ``state`` as ``model.safetensors`` (or shards + ``model.safetensors.index.json``)."""
    from huggingface_hub import save_torch_state_dict

    state = {k: v.detach().contiguous() for k, v in state.items()}
    save_torch_state_dict(state, folder, max_shard_size=max_shard_size, safe_serialization=True)


def load_state_dict(folder: str | os.PathLike, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read all weights of a folder saved by :func:`save_state_dict` (or any HF safetensors layout)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    files = weight_files(folder, allow_pickle=allow_pickle)
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if file.suffix == ".safetensors":
            try:
                state.update(load_file(str(file)))
            except Exception as exc:  # noqa: BLE001
                raise CheckpointError(f"{file}: cannot read safetensors ({exc})") from None
        else:
            try:
                state.update(torch.load(file, map_location="cpu", weights_only=True))
            except Exception as exc:  # noqa: BLE001 - weights_only refuses anything but tensors
                raise CheckpointError(f"{file}: not a plain tensor checkpoint ({_first_line(exc)})") from None
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def weight_files(folder: Path, allow_pickle: bool = False) -> list[Path]:
    """The weight files of a folder, safetensors preferred; pickle only when explicitly allowed."""
    index = folder / SAFE_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{index}: malformed index ({exc})") from None
        files = [folder / name for name in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index} names shards that are missing: {', '.join(missing)}")
        return files
    if (folder / SAFE_WEIGHTS).is_file():
        return [folder / SAFE_WEIGHTS]
    pickles = [folder / name for name in PICKLE_WEIGHTS if (folder / name).is_file()]
    if pickles:
        if not allow_pickle:
            raise UnsafeCheckpointError(
                f"{folder} holds only pickle weights ({pickles[0].name}); loading pickle can run arbitrary "
                "code. Convert it to safetensors, or pass allow_pickle=True if you trust the source."
            )
        return [p for p in pickles if not p.name.endswith(".json")]
    raise CheckpointError(f"{folder}: no weights found (expected {SAFE_WEIGHTS} or {SAFE_INDEX})")
