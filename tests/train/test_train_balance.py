"""data.balance: sqrt — groups of rows are drawn in proportion to the square root of their size."""

from __future__ import annotations

from collections import Counter

import pytest

from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.errors import ConfigError
from audiovec.train.config import Recipe, from_dict
from audiovec.train.data import audio_dataset


def _rows(n: int, group: str) -> list[dict]:
    files = fsdd_files()
    return [
        {"id": f"{group}{i}", "audio": str(files[i]), "captions": ["a man speaking"], "group": group}
        for i in range(n)
    ]


def _recipe(balance: str) -> Recipe:
    return from_dict(
        Recipe, {"model": {"tiny": {}}, "data": {"train": ["x.jsonl"], "balance": balance}}
    ).validate()


def test_sqrt_balance_draws_groups_by_the_square_root_of_their_size() -> None:
    rows = _rows(90, "big") + _rows(10, "small")
    dataset = audio_dataset(_recipe("sqrt"), [], seed=0, balance="sqrt", rows=rows)
    drawn = Counter()
    for epoch in range(5):
        for index in dataset.epoch_order(epoch):
            drawn[dataset.locate(int(index))[0]] += 1
    share_small = drawn[1] / sum(drawn.values())  # parts are sorted by name: big, small
    assert len(dataset) == 100 and sum(drawn.values()) == 500
    assert share_small == pytest.approx(10**0.5 / (90**0.5 + 10**0.5), abs=0.01)  # 0.25, not 0.10
    plain = audio_dataset(_recipe("none"), [], seed=0, rows=rows)
    assert len(plain) == 100


def test_unknown_balance_is_refused() -> None:
    with pytest.raises(ConfigError, match="data.balance"):
        _recipe("equal")
