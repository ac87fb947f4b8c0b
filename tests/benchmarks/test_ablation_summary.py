"""The ablation's seed summary: mean and sample standard deviation per variant, computed by hand here."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from ablation_real import VARIANTS, markdown, summarise, token_key  # noqa: E402


def _record(variant: str, seed: int, t2a: float, a2t: float, macro: float, cats: dict[str, float]) -> dict:
    return {
        "variant": variant, "seed": seed, "steps": 600, "chance_t2a": 0.03, "t2a_hit_rate@5": t2a,
        "a2t_hit_rate@5": a2t, "t2a_macro_hit_rate@5": macro, "by_category": cats,
    }  # fmt: skip


def test_seeds_of_a_variant_are_averaged_and_their_spread_reported() -> None:
    records = [
        _record("default", 0, 0.30, 0.40, 0.20, {"speech": 0.2, "animals": 0.6}),
        _record("rank8", 0, 0.25, 0.35, 0.30, {"speech": 0.1}),
        _record("default", 1, 0.20, 0.30, 0.40, {"speech": 0.4, "animals": 0.8}),
        _record("default", 2, 0.28, 0.32, 0.30, {"speech": 0.3}),
    ]
    rows = summarise(records)
    assert [r["variant"] for r in rows] == ["default", "rank8"]  # first-seen order
    default, rank8 = rows
    assert default["seeds"] == [0, 1, 2]
    assert default["t2a_hit_rate@5"] == pytest.approx((0.30 + 0.20 + 0.28) / 3)
    assert default["t2a_hit_rate@5_sd"] == pytest.approx(statistics.stdev([0.30, 0.20, 0.28]))
    assert default["a2t_hit_rate@5_sd"] == pytest.approx(statistics.stdev([0.40, 0.30, 0.32]))
    # a category a seed's held-out split lacks is averaged over the seeds that have it
    assert default["by_category"] == pytest.approx({"speech": 0.3, "animals": 0.7})
    assert rank8["t2a_hit_rate@5"] == 0.25 and rank8["t2a_hit_rate@5_sd"] is None  # one seed: no spread
    table = markdown(rows).splitlines()
    assert table[2].startswith("| default | 3 | 0.260 ± 0.053 |")
    assert table[3].startswith("| rank8 | 1 | 0.250 | 0.350 | 0.300 |")


def test_variants_of_one_tower_share_its_token_cache() -> None:
    """Projector and adapter variants reuse the default's tower tokens; a different or random tower does not."""
    from audiovec.demo.options import DemoOptions

    def key(name: str, seed: int = 0) -> str:
        return token_key(DemoOptions(seed=seed, **VARIANTS[name][1]))

    assert (
        key("default")
        == key("default", 1)
        == key("max_tokens_16")
        == key("downsample_2")
        == key("adapter_r32")
    )
    assert key("last_layer") != key("default")
    assert key("random_audio") != key("random_audio", 1) != key("default")
