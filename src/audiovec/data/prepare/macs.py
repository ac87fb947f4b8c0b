"""MACS: ``MACS.yaml`` (captions and tags per annotator) over TAU Urban Acoustic Scenes 2019 audio.

``MACS.yaml`` holds ``files: [{filename, annotations: [{annotator_id, sentence, tags}]}]``; the audio files
(``<scene>-<city>-<location>-<segment>-<device>.wav``) come from the TAU 2019 development set's ``audio/``.
MACS is also an MTEB evaluation set: exclude it where you evaluate on it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from audiovec.data.manifest import Row
from audiovec.data.prepare.common import (
    AudioIndex,
    MissingAudio,
    check_splits,
    find_file,
    maybe_file,
    read_csv,
)
from audiovec.errors import DataError

SPLITS = ("all",)
DEFAULT_SPLITS = ("all",)


def _scenes(src: Path) -> dict[str, str]:
    """File name -> scene label from the TAU ``meta.csv`` (tab-separated), when present."""
    path = maybe_file(src, ["meta.csv"])
    if path is None:
        return {}
    rows = read_csv(path, delimiter="\t")
    return {
        Path(r["filename"]).name: r["scene_label"] for r in rows if r.get("filename") and r.get("scene_label")
    }


def prepare(src: Path, splits: list[str] | None = None, strict: bool = False) -> list[Row]:
    """One row per clip: annotator sentences as captions, the union of their tags as labels."""
    check_splits(splits, SPLITS, DEFAULT_SPLITS)
    yaml_path = find_file(src, ["MACS.yaml"], "MACS.yaml")
    try:
        document = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"{yaml_path}: not valid YAML ({exc})") from None
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, list):
        raise DataError(f"{yaml_path}: expected a top-level 'files' list")
    scenes = _scenes(src)
    index = AudioIndex(src)
    missing = MissingAudio("macs", strict)
    rows: list[Row] = []
    for position, item in enumerate(files):
        where = f"{yaml_path}: files[{position}]"
        if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
            raise DataError(f"{where}: entry has no 'filename'")
        name = item["filename"]
        annotations = item.get("annotations") or []
        captions = [
            a["sentence"].strip()
            for a in annotations
            if isinstance(a, dict) and (a.get("sentence") or "").strip()
        ]
        tags: list[str] = []
        for annotation in annotations:
            for tag in (annotation.get("tags") or []) if isinstance(annotation, dict) else []:
                if isinstance(tag, str) and tag.strip() and tag.strip() not in tags:
                    tags.append(tag.strip())
        if not captions:
            missing(name, f"{where} (no sentences)")
            continue
        audio = index.find(Path(name).name)
        if audio is None:
            missing(name, where)
            continue
        row: Row = {
            "id": f"macs:{Path(name).name}",
            "audio": str(audio),
            "captions": captions,
            "labels": sorted(tags),
            "source": "macs",
            "split": "all",
            "scene": scenes.get(Path(name).name) or Path(name).name.split("-", 1)[0],
        }
        if not row["labels"]:
            del row["labels"]
        rows.append(row)
    missing.report()
    return rows
