"""AudioCaps: ``{train,val,test}.csv`` with ``audiocap_id,youtube_id,start_time,caption`` plus the audio.

AudioCaps ships captions only; the 10 s clips are cut from YouTube by each user, so file names vary. The
first existing of ``<audiocap_id>``, ``<youtube_id>``, ``Y<youtube_id>``, ``<youtube_id>_<start>`` (and the
AudioSet-style ``Y<youtube_id>_<start>.000_<end>.000``) is used. Rows of the same clip are merged (val and
test have five captions per clip). ``test`` is a benchmark split: not prepared unless asked for.
"""

from __future__ import annotations

from pathlib import Path

from audiovec.data.manifest import Row
from audiovec.data.prepare.common import AudioIndex, MissingAudio, check_splits, find_file, read_csv

SPLITS = ("train", "val", "test")
DEFAULT_SPLITS = ("train", "val")
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")


def candidate_names(youtube_id: str, start: str, audiocap_ids: list[str]) -> list[str]:
    """File stems AudioCaps downloaders commonly use for one clip, most specific first."""
    seconds = float(start) if start else 0.0
    whole = int(seconds)
    names = [
        f"{ytid}_{s}" for ytid in (youtube_id, f"Y{youtube_id}") for s in (start, whole, f"{seconds:.3f}")
    ]
    names += [f"{p}{youtube_id}_{seconds:.3f}_{seconds + 10:.3f}" for p in ("Y", "")]
    names += [f"{p}{youtube_id}_{whole * 1000}" for p in ("", "Y")]
    names += [youtube_id, f"Y{youtube_id}", *audiocap_ids]
    return list(dict.fromkeys(names))


def prepare(src: Path, splits: list[str] | None = None, strict: bool = False) -> list[Row]:
    """One row per clip (YouTube id + start), all its captions merged."""
    wanted = check_splits(splits, SPLITS, DEFAULT_SPLITS)
    index = AudioIndex(src)
    missing = MissingAudio("audiocaps", strict)
    rows: list[Row] = []
    for split in wanted:
        csv_path = find_file(src, [f"dataset/{split}.csv", f"{split}.csv"], f"AudioCaps {split}.csv")
        clips: dict[tuple[str, str], dict] = {}
        for number, entry in enumerate(read_csv(csv_path, required=COLUMNS), start=2):
            key = (entry["youtube_id"].strip(), entry["start_time"].strip())
            clip = clips.setdefault(key, {"line": number, "ids": [], "captions": []})
            clip["ids"].append(entry["audiocap_id"].strip())
            caption = entry["caption"].strip()
            if caption and caption not in clip["captions"]:
                clip["captions"].append(caption)
        for (youtube_id, start), clip in clips.items():
            if not clip["captions"]:
                continue
            audio = index.find(*candidate_names(youtube_id, start, clip["ids"]))
            if audio is None:
                missing(youtube_id, f"{csv_path}:{clip['line']}")
                continue
            rows.append(
                {
                    "id": f"audiocaps:{youtube_id}_{start}",
                    "audio": str(audio),
                    "captions": clip["captions"],
                    "source": "audiocaps",
                    "split": split,
                    "youtube_id": youtube_id,
                    "start_time": float(start) if start else 0.0,
                    "audiocap_ids": clip["ids"],
                }
            )
    missing.report()
    return rows
