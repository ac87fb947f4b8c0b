"""train.false_negative_facets: manifest fields reach the batch, and the masking keys know which clip each
caption describes (the loss side is tested in test_train_loss.py)."""

from __future__ import annotations

import torch

from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.tiny import tiny_tokenizer
from audiovec.train.config import Recipe, from_dict
from audiovec.train.data import audio_dataset, collate_audio
from audiovec.train.loss import false_negative_mask

ROWS = [
    ("seven", "a man says the number seven"),
    ("two", "a man says the number two"),
    ("seven", "a man counting"),
]


def _rows() -> list[dict]:
    files = fsdd_files()
    return [
        {"id": f"c{i}", "audio": str(files[i]), "captions": [caption], "labels": ["speech"], "says": says}
        for i, (says, caption) in enumerate(ROWS)
    ]


def _batch(facets: list[str]):
    recipe = from_dict(
        Recipe,
        {"model": {"tiny": {}}, "data": {"train": ["x.jsonl"]}, "train": {"false_negative_facets": facets}},
    ).validate()
    dataset = audio_dataset(recipe, [], seed=0, rows=_rows())
    items = [{**dataset[i], "epoch": 0, "position": i} for i in range(len(ROWS))]
    expected = [{"says": says} for says, _ in ROWS] if facets else [{}] * len(ROWS)
    assert [item["fields"] for item in items] == expected
    return collate_audio(items, tokenizer=tiny_tokenizer(), n_mels=80, facets=tuple(facets))


def test_named_words_keep_other_digits_as_negatives():
    mask = false_negative_mask(_batch(["says"]).keys)
    mask.fill_diagonal_(False)
    # "... seven" fits clip 2 (also a seven), not clip 1; the generic "a man counting" fits both others
    assert mask.tolist() == [[False, False, True], [False, False, True], [True, False, False]]


def test_without_facets_one_label_set_hides_every_other_clip():
    batch = _batch([])
    assert batch.keys[1].dim() == 1
    mask = false_negative_mask(batch.keys)
    assert bool(mask.all())
    assert torch.equal(mask, mask.T)
