"""Each pooling mode against a hand computation on right- and left-padded rows (which row, which token)."""

from __future__ import annotations

import pytest
import torch

from audiovec.pooling import pool

# two rows of three tokens, hidden size 2; row 0 right-padded (2 valid), row 1 left-padded (2 valid)
HIDDEN = torch.tensor(
    [
        [[1.0, 10.0], [3.0, -2.0], [100.0, 100.0]],
        [[-50.0, -50.0], [2.0, 4.0], [6.0, 0.0]],
    ]
)
MASK = torch.tensor([[1, 1, 0], [0, 1, 1]])
EXPECTED = {
    "mean": [[2.0, 4.0], [4.0, 2.0]],  # (1+3)/2, (10-2)/2 | (2+6)/2, (4+0)/2 — padding never counted
    "last": [[3.0, -2.0], [6.0, 0.0]],  # the last valid token, wherever the padding sits
    "cls": [[1.0, 10.0], [2.0, 4.0]],  # the first valid token
    "max": [[3.0, 10.0], [6.0, 4.0]],  # per dimension over valid tokens only
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_pool_equals_hand_computation(mode: str) -> None:
    assert pool(HIDDEN, MASK, mode).tolist() == EXPECTED[mode]


def test_last_is_not_the_last_position_of_a_right_padded_row() -> None:
    # the wrong answer a plain hidden[:, -1] gives: the padding token of row 0
    assert pool(HIDDEN, MASK, "last")[0].tolist() != HIDDEN[0, -1].tolist()


def test_empty_row_pools_to_zero_for_max_and_unknown_mode_is_refused() -> None:
    assert pool(HIDDEN[:1], torch.zeros(1, 3, dtype=torch.long), "max").tolist() == [[0.0, 0.0]]
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(HIDDEN, MASK, "median")
