"""``audiovec push MODEL REPO_ID``: upload a model folder to the Hugging Face Hub with ``huggingface_hub``.

The upload is one commit of :func:`upload_plan`: every file of the folder (temporary and hidden files left
out) plus, for folders saved before audiovec wrote them, the model card and the sentence-transformers files
generated in memory (the folder itself is not changed). A built-in model name is saved to a temporary
folder first. ``endpoint`` points ``huggingface_hub`` at another Hub (a mirror, or a local test server).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from audiovec.builtin_models import is_builtin
from audiovec.errors import CheckpointError
from audiovec.model import ARCHITECTURE, CONFIG_NAME, AudioTextEmbedder
from audiovec.model_card import CARD_NAME, MODULES_NAME, ST_CONFIG_NAME, write_folder_extras

ALWAYS_SKIPPED = (".tmp-", ".old-", ".")  # atomic-save leftovers and hidden files never leave the machine


def _audiovec_folder(folder: Path) -> None:

    config = folder / CONFIG_NAME
    try:
        architecture = json.loads(config.read_text()).get("architecture")
    except (OSError, ValueError):
        architecture = None
    if architecture != ARCHITECTURE:
        raise CheckpointError(
            f"{folder}: not an audiovec model folder ({CONFIG_NAME} with architecture {ARCHITECTURE!r}); "
            "push the folder written by save_pretrained, `audiovec compose` or `audiovec train`"
        )


def upload_plan(folder: str | os.PathLike) -> list[Any]:
    """The ``CommitOperationAdd`` list that uploads ``folder`` (paths relative to it, sorted)."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder)
    _audiovec_folder(folder)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(ALWAYS_SKIPPED) for part in p.relative_to(folder).parts)
    )
    ops = [
        CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
        for p in files
    ]
    missing = {CARD_NAME, MODULES_NAME, ST_CONFIG_NAME} - {p.relative_to(folder).as_posix() for p in files}
    if missing:  # a folder saved before audiovec wrote these: generate them, leave the folder as it is
        with tempfile.TemporaryDirectory() as tmp:
            extras = Path(tmp) / folder.name
            extras.mkdir()
            write_folder_extras(extras, AudioTextEmbedder.from_pretrained(folder), previous=folder)
            for name in sorted(missing):
                ops.append(
                    CommitOperationAdd(path_in_repo=name, path_or_fileobj=(extras / name).read_bytes())
                )
        ops.sort(key=lambda op: op.path_in_repo)
    return ops


def push(
    model: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> Any:
    """Create ``repo_id`` (if needed) and upload the model folder in one commit; returns the ``CommitInfo``."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(model)
        if is_builtin(model):
            folder = AudioTextEmbedder.from_pretrained(str(model)).save_pretrained(Path(tmp) / str(model))
        elif not folder.is_dir():
            raise CheckpointError(f"{model}: model folder not found (give a folder or a built-in name)")
        operations = upload_plan(folder)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        return api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload {folder.name} with audiovec",
            revision=revision,
            repo_type="model",
        )


def plan_summary(operations: list[Any]) -> str:
    """One line per file: size and path (``audiovec push --dry-run``)."""
    lines = []
    for op in operations:
        content = op.path_or_fileobj
        size = Path(content).stat().st_size if isinstance(content, str) else len(_bytes(content))
        lines.append(f"{size:>12,d}  {op.path_in_repo}")
    return "\n".join(lines)


def _bytes(content: Any) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, io.BytesIO):
        return content.getvalue()
    return b""
