"""The README's main job, shortened: `audiovec demo --quick` (small real-sound corpus, a few minutes), scored
on held-out REAL sources, then the model put to work on them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "audiovec.cli", "demo", "--quick", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Held-out REAL sources" in proc.stdout
    return out


def test_quick_demo_finds_held_out_real_sounds_far_above_chance(demo_run: Path):
    report = json.loads((demo_run / "report.json").read_text())
    chance = report["chance"]["t2a"]["hit_rate@5"]
    after, before = report["after"], report["before"]
    print(
        f"held-out real t2a hit_rate@5: before {before['t2a_hit_rate@5']:.3f}, after {after['t2a_hit_rate@5']:.3f}, chance {chance:.3f}"
    )
    assert report["corpus"]["heldout"]["by_kind"] == {"real": report["corpus"]["heldout"]["total"]}
    assert report["corpus"]["train"]["by_kind"].get("real", 0) > 100  # real Debian sounds reached training
    assert after["t2a_hit_rate@5"] >= chance + 0.1
    assert after["a2t_hit_rate@5"] >= report["chance"]["a2t"]["hit_rate@5"] + 0.1
    assert after["t2a_hit_rate@5"] > before["t2a_hit_rate@5"] + 0.05
    assert report["by_category"] and report["synthetic_test"] is not None
    assert (demo_run / "report.md").read_text().startswith("# audiovec demo report")
    assert len(report["examples"]) >= 3 and all(ex["results"] for ex in report["examples"])
    assert (demo_run / "train" / "curves.png").is_file()


def test_demo_model_routes_and_classifies_held_out_real_clips(demo_run: Path, tmp_path: Path):
    from audiovec.apps.classify import ZeroShotClassifier
    from audiovec.apps.routing import Router
    from audiovec.data.manifest import read_manifest
    from audiovec.model import AudioTextEmbedder

    model = AudioTextEmbedder.from_pretrained(demo_run / "model")
    corpus = demo_run / "corpus"
    kinds = {"speech": "a person speaking", "instruments": "a musical instrument being played"}
    train = [
        r
        for r in read_manifest(corpus / "train.jsonl")
        if r.get("category") in kinds and r.get("kind") == "real"
    ]
    held = [r for r in read_manifest(corpus / "heldout.jsonl") if r.get("category") in kinds]
    assert {r["category"] for r in held} == set(kinds) and len(held) >= 20
    routes = {
        "routes": [{"name": k, "clips": [r["audio"] for r in train if r["category"] == k][:8]} for k in kinds]
    }
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    router = Router.from_yaml(model, tmp_path / "routes.yaml")
    route_acc = np.mean([router.route(r["audio"]).name == r["category"] for r in held])
    classifier = ZeroShotClassifier(model, list(kinds.values()))
    predicted = [p.label for p in classifier.classify([r["audio"] for r in held])]
    class_acc = np.mean([p == kinds[r["category"]] for p, r in zip(predicted, held)])
    print(
        f"routing accuracy {route_acc:.2f}, zero-shot accuracy {class_acc:.2f} over {len(held)} held-out clips (chance 0.5)"
    )
    assert route_acc >= 0.7
    assert class_acc >= 0.7
