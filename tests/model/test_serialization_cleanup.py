"""Leftover ``.tmp-*`` folders of killed saves: the next save into the same target removes them, but only
those whose writer is known to be gone (same machine tag, no such pid)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from audiovec.serialization import _machine_tag, _temp_prefix, atomic_directory, remove_stale_temporaries


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped (so no process has it, barring reuse)."""
    for _ in range(5):
        child = subprocess.Popen(["true"])
        child.wait()
        try:
            os.kill(child.pid, 0)
        except ProcessLookupError:
            return child.pid
    pytest.skip("could not find a free pid")


def _temp(parent: Path, name: str, pid: int, tag: str | None = None, rand: str = "ab_c9xyz") -> Path:
    folder = parent / f"{_temp_prefix(name, pid=pid, tag=tag)}{rand}"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"half")
    return folder


def _save(target: Path, text: str = "new") -> None:
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text(text)


def test_name_of_the_temporary_folder_carries_pid_and_machine(tmp_path: Path) -> None:
    target = tmp_path / "model-1.v2"  # dashes and dots in the target name
    with atomic_directory(target) as tmp:
        assert tmp.name.startswith(f".tmp-model-1.v2-{os.getpid()}-{_machine_tag()}-")
        assert remove_stale_temporaries(target) == []  # our own live save is never touched
        assert tmp.is_dir()
        (tmp / "weights").write_text("x")
    assert (target / "weights").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["model-1.v2"]


def test_stale_temporary_of_a_dead_writer_is_removed_by_the_next_save(tmp_path: Path) -> None:
    target = tmp_path / "model"
    _save(target, "old")
    stale = _temp(tmp_path, "model", _dead_pid())
    _save(target, "new")
    assert not stale.exists()
    assert (target / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_live_writers_and_unrelated_folders_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "model"
    dead = _dead_pid()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        kept = [
            _temp(tmp_path, "model", os.getpid()),  # another save of this process, in flight
            _temp(tmp_path, "model", sleeper.pid),  # another live process on this machine
            _temp(tmp_path, "model", dead, tag="0badc0de" if _machine_tag() != "0badc0de" else "0badc0df"),
            _temp(tmp_path, "other", dead),  # another target's temporary
            _temp(tmp_path, "model-2", dead),  # a target whose name extends ours
            tmp_path / ".tmp-model-k3j_x9qa",  # older naming, no pid: unknown writer
            tmp_path / f".tmp-model-{dead}-{_machine_tag()}-x-y",  # not a name atomic_directory makes
            tmp_path / "model-notes",
        ]
        for folder in kept[-3:]:
            folder.mkdir()
        plain_file = tmp_path / f"{_temp_prefix('model', pid=dead)}file0001"
        plain_file.write_text("not a folder")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "precious").write_text("keep")
        link = tmp_path / f"{_temp_prefix('model', pid=dead)}link0001"
        link.symlink_to(elsewhere, target_is_directory=True)
        stale = _temp(tmp_path, "model", dead, rand="stale001")

        _save(target)
        # the other target's stale temporary goes when that target is saved, and not before
        assert not stale.exists()
        for folder in kept:
            assert folder.is_dir(), folder.name
        assert plain_file.read_text() == "not a folder"
        assert link.is_symlink() and (elsewhere / "precious").read_text() == "keep"

        _save(tmp_path / "model-2")
        assert not kept[4].exists()
        assert kept[3].is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()
    _save(target)  # the sleeper is gone now: its temporary is stale
    assert not kept[1].exists()
    assert kept[0].is_dir()


KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from audiovec.serialization import atomic_directory

    with atomic_directory(Path(sys.argv[1])) as tmp:
        (tmp / "model.safetensors").write_bytes(b"half of it")
        print(tmp.name, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_folder_of_a_save_killed_mid_write_is_removed_by_the_next_save(tmp_path: Path) -> None:
    target = tmp_path / "model"
    _save(target, "old")
    child = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(target)], capture_output=True, text=True, timeout=300
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    leftover = tmp_path / child.stdout.strip()
    assert leftover.is_dir() and leftover.name.startswith(".tmp-model-")
    assert (target / "weights").read_text() == "old"
    _save(target, "new")
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (target / "weights").read_text() == "new"
