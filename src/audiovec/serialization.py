"""Safe, atomic persistence: safetensors weights (sharded with an index when large) and folders that
appear whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from audiovec.errors import CheckpointError, UnsafeCheckpointError, first_line

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin")

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``target`` in one rename.

    If anything fails (or the process is killed) before the end, ``target`` keeps its previous contents
    and the temporary folder is removed (or left with a ``.tmp-`` name that readers ignore). The temporary
    folder is named ``.tmp-<name>-<pid>-<machine tag>-<random>``; a later save into ``target`` deletes
    such leftovers once it is sure their writer is gone (:func:`remove_stale_temporaries`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} already exists (pass overwrite=True to replace it)")
    remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target.name), dir=target.parent))
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


def _machine_tag() -> str:
    """8 hex digits for this host, boot and pid namespace: the scope within which a pid means one process.

    Writers on another machine of a shared filesystem, in a container with its own pid namespace, or from
    before a reboot get another tag, so their pids are never looked up here.
    """
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    except OSError:
        parts.append("")
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        parts.append("")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def _temp_prefix(name: str, pid: int | None = None, tag: str | None = None) -> str:
    """``.tmp-<name>-<pid>-<tag>-``: ``tempfile.mkdtemp`` appends random ``[a-z0-9_]`` characters."""
    return f".tmp-{name}-{os.getpid() if pid is None else pid}-{tag or _machine_tag()}-"


def _pid_alive(pid: int) -> bool:
    """False only when no process ``pid`` exists; anything uncertain counts as alive."""
    if os.name != "posix" or pid <= 0:  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Delete the temporary folders that killed saves into ``target`` left behind, where that is safe.

    A sibling is removed only if all hold: it is a real folder (not a symlink), its name is exactly
    ``.tmp-<target name>-<pid>-<tag>-<random>`` as :func:`atomic_directory` makes it, the tag is this
    machine's (:func:`_machine_tag`), and no process with that pid exists. Everything else stays: a live
    writer (another process, or another save of this one), a writer on another machine or in another pid
    namespace, folders from before a reboot or from older versions (no pid in the name), other targets'
    temporaries and anything not made by :func:`atomic_directory`. A reused pid only keeps garbage longer.
    Returns the folders removed; errors are ignored (a save never fails because of cleanup).
    """
    target = Path(target)
    prefix = f".tmp-{target.name}-"
    pattern = re.compile(r"(\d+)-([0-9a-f]{8})-[a-z0-9_]+")  # no "-" in the random part: exact parse
    removed: list[Path] = []
    tag = _machine_tag()
    try:
        entries = [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for path in entries:
        match = pattern.fullmatch(path.name[len(prefix) :])
        if not match or match.group(2) != tag or _pid_alive(int(match.group(1))):
            continue
        if path.is_symlink() or not path.is_dir():
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            log.info("removed %s, left by a killed save (process %s is gone)", path, match.group(1))
            removed.append(path)
    return removed


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
                raise CheckpointError(f"{file}: not a plain tensor checkpoint ({first_line(exc)})") from None
    return state


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
