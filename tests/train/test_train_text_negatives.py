"""Text-pair batches where only some rows have a hard negative: every batch carries the same parts (DDP
gathers them on every rank), placeholders are marked invalid, and training uses the real negatives."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from audiovec.data.text_pairs import TextPairDataset
from audiovec.tiny import tiny_tokenizer
from audiovec.train.config import load_recipe
from audiovec.train.data import collate_pairs
from audiovec.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]

ROWS = [
    {"anchor": "a dog barks", "positive": "barking", "negative": "a cat purrs"},
    {"anchor": "rain falls", "positive": "rainfall"},
    {"anchor": "a bell rings", "positive": "ringing bell", "negative": "a drum"},
    {"anchor": "wind blows", "positive": "gusts of wind"},
]


def items(rows):
    dataset = TextPairDataset(rows)
    return [{**dataset[i], "epoch": 0, "position": i} for i in range(len(rows))]


def test_partial_negatives_get_placeholders_and_a_validity_mask():
    batch = collate_pairs(items(ROWS), tokenizer=tiny_tokenizer())
    assert batch.negative_valid.tolist() == [True, False, True, False]
    assert batch.negative.input_ids.shape[0] == 4
    # a placeholder repeats its row's positive, so it is also a false negative by text
    assert torch.equal(batch.negative_keys[0][1], batch.keys[0][1])
    # the dataset-wide answer wins: a batch with no negatives still has the part when the dataset has some
    none = collate_pairs(items([ROWS[1], ROWS[3]]), tokenizer=tiny_tokenizer(), with_negatives=True)
    assert none.negative_valid.tolist() == [False, False]
    assert collate_pairs(items([ROWS[1], ROWS[3]]), tokenizer=tiny_tokenizer()).negative is None


def test_text_training_with_partial_negatives_runs(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    lines = [json.dumps(ROWS[i % 4] | {"anchor": f"{ROWS[i % 4]['anchor']} {i}"}) for i in range(16)]
    pairs.write_text("\n".join(lines) + "\n")
    recipe = load_recipe(
        REPO / "configs" / "tiny" / "text_transfer.yaml",
        {
            "output.dir": str(tmp_path / "run"),
            "data.text_pairs": [str(pairs)],
            "data.dev": None,
            "train.batch_size": 8,
            "train.chunk_size": 4,  # GradCache path
            "train.steps": 2,
            "train.warmup_steps": 0,
            "output.checkpoint_every": 0,
            "output.plot": False,
            "output.save_final": False,
            "output.progress": False,
        },
    )
    trainer = Trainer(recipe)
    assert trainer.loader.dataset.has_negatives
    batch = next(iter(trainer.loader))
    assert batch.negative_valid is not None and not bool(batch.negative_valid.all())
    loss = trainer.train_step(batch)
    assert loss == loss and loss > 0  # finite, not NaN
