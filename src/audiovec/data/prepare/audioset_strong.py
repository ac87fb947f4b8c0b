"""AudioSet strong labels: ``audioset_{train,eval}_strong.tsv`` + ``mid_to_display_name.tsv`` + audio.

The TSVs list ``segment_id, start_time_seconds, end_time_seconds, label`` (a MID) per event, where
``segment_id`` is ``<youtube_id>_<start in ms>``. The seed trained on GPT-written captions of these clips,
which are not distributed; here captions are built from the timed events (order of onset, "followed by"
when an event starts after the earlier ones ended). The events are kept in the row.
"""

from __future__ import annotations

import csv
from pathlib import Path

from audiovec.data.manifest import Row
from audiovec.data.prepare.common import (
    AudioIndex,
    MissingAudio,
    check_splits,
    find_file,
    humanize_label,
    join_words,
    read_csv,
)
from audiovec.errors import DataError

SPLITS = ("train", "eval")
DEFAULT_SPLITS = ("train",)
COLUMNS = ("segment_id", "start_time_seconds", "end_time_seconds", "label")
MAX_LABELS = 4


def _display_names(src: Path) -> dict[str, str]:
    path = find_file(src, ["mid_to_display_name.tsv"], "mid_to_display_name.tsv")
    with path.open(encoding="utf-8") as handle:
        return {cells[0]: cells[1] for cells in csv.reader(handle, delimiter="\t") if len(cells) >= 2}


def candidate_names(segment_id: str) -> list[str]:
    youtube_id, _, millis = segment_id.rpartition("_")
    names = [segment_id, f"Y{segment_id}"]
    if youtube_id and millis.isdigit():
        start = int(millis) / 1000
        names += [f"{p}{youtube_id}_{start:.3f}_{start + 10:.3f}" for p in ("Y", "")]
        names += [f"{p}{youtube_id}_{int(start)}" for p in ("", "Y")]
        names += [youtube_id, f"Y{youtube_id}"]
    return names


def event_captions(events: list[tuple[float, float, str]]) -> list[str]:
    """Captions from timed events: a plain list, a temporal sentence, and two templated variants."""
    first: dict[str, tuple[float, float]] = {}
    for onset, offset, name in sorted(events):
        if name not in first:
            first[name] = (onset, offset)
    names = [humanize_label(n) for n in first][:MAX_LABELS]
    if not names:
        return []
    plain = join_words(names)
    # Group events into phases: a new phase starts when an event begins after all earlier ones ended.
    phases: list[list[str]] = []
    phase_end = float("-inf")
    for name, (onset, offset) in list(first.items())[:MAX_LABELS]:
        if phases and onset < phase_end:
            phases[-1].append(humanize_label(name))
            phase_end = max(phase_end, offset)
        else:
            phases.append([humanize_label(name)])
            phase_end = offset
    temporal = ", followed by ".join(join_words(p) for p in phases)
    return list(dict.fromkeys([temporal, plain, f"the sound of {plain}", f"{plain} can be heard"]))


def prepare(src: Path, splits: list[str] | None = None, strict: bool = False) -> list[Row]:
    """One row per 10 s segment; captions from its events; ``youtube_id`` kept for exclusion."""
    wanted = check_splits(splits, SPLITS, DEFAULT_SPLITS)
    names = _display_names(src)
    index = AudioIndex(src)
    missing = MissingAudio("audioset_strong", strict)
    rows: list[Row] = []
    for split in wanted:
        tsv = find_file(src, [f"audioset_{split}_strong.tsv"], f"audioset_{split}_strong.tsv")
        segments: dict[str, list[tuple[float, float, str]]] = {}
        first_line: dict[str, int] = {}
        for number, entry in enumerate(read_csv(tsv, delimiter="\t", required=COLUMNS), start=2):
            segment = entry["segment_id"].strip()
            mid = entry["label"].strip()
            try:
                onset, offset = float(entry["start_time_seconds"]), float(entry["end_time_seconds"])
            except ValueError:
                raise DataError(f"{tsv}:{number}: event times are not numbers") from None
            name = names.get(mid)
            if name is None:
                raise DataError(f"{tsv}:{number}: label {mid!r} is not in mid_to_display_name.tsv")
            segments.setdefault(segment, []).append((onset, offset, name))
            first_line.setdefault(segment, number)
        for segment, events in segments.items():
            audio = index.find(*candidate_names(segment))
            if audio is None:
                missing(segment, f"{tsv}:{first_line[segment]}")
                continue
            events.sort()
            rows.append(
                {
                    "id": f"audioset_strong:{segment}",
                    "audio": str(audio),
                    "captions": event_captions(events),
                    "labels": list(dict.fromkeys(name for _, _, name in events)),
                    "source": "audioset_strong",
                    "split": split,
                    "youtube_id": segment.rpartition("_")[0] or segment,
                    "events": [[round(a, 3), round(b, 3), n] for a, b, n in events],
                }
            )
    missing.report()
    return rows
