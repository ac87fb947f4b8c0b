"""The README's main job, shortened: `audiovec demo --quick` on real audio, then the model put to work."""

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
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "T2A hit_rate@5" in proc.stdout
    return out


def test_quick_demo_learns_retrieval_far_above_chance(demo_run: Path):
    report = json.loads((demo_run / "report.json").read_text())
    chance = report["chance"]["t2a"]["hit_rate@5"]
    after, before = report["after"], report["before"]
    print(
        f"t2a hit_rate@5: before {before['t2a_hit_rate@5']:.3f}, after {after['t2a_hit_rate@5']:.3f}, chance {chance:.3f}"
    )
    assert after["t2a_hit_rate@5"] >= chance + 0.2
    assert after["a2t_hit_rate@5"] >= report["chance"]["a2t"]["hit_rate@5"] + 0.2
    assert after["t2a_hit_rate@5"] > before["t2a_hit_rate@5"] + 0.1
    assert (demo_run / "report.md").read_text().startswith("# audiovec demo report")
    assert len(report["examples"]) >= 3 and all(ex["results"] for ex in report["examples"])
    assert (demo_run / "train" / "curves.png").is_file()


def test_demo_model_routes_and_classifies_real_clips(demo_run: Path, tmp_path: Path):
    from audiovec.classify import ZeroShotClassifier
    from audiovec.data.manifest import read_manifest
    from audiovec.model import AudioTextEmbedder
    from audiovec.routing import Router

    model = AudioTextEmbedder.from_pretrained(demo_run / "model")
    corpus = demo_run / "corpus"
    kinds = ["speech", "instrument", "fsdd"]
    train = [r for r in read_manifest(corpus / "train.jsonl") if r.get("source") in kinds]
    test = [r for r in read_manifest(corpus / "test.jsonl") if r.get("source") in kinds]
    routes = {
        "routes": [{"name": k, "clips": [r["audio"] for r in train if r["source"] == k][:6]} for k in kinds]
    }
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    router = Router.from_yaml(model, tmp_path / "routes.yaml")
    routed = [router.route(r["audio"]).name for r in test]
    route_acc = np.mean([name == r["source"] for name, r in zip(routed, test)])
    labels = {
        "speech": "a person speaking a sentence",
        "instrument": "a musical instrument playing",
        "fsdd": "a man saying a number",
    }
    classifier = ZeroShotClassifier(model, list(labels.values()))
    predicted = [p.label for p in classifier.classify([r["audio"] for r in test])]
    class_acc = np.mean([p == labels[r["source"]] for p, r in zip(predicted, test)])
    print(
        f"routing accuracy {route_acc:.2f}, zero-shot accuracy {class_acc:.2f} over {len(test)} clips (chance 0.33)"
    )
    assert route_acc >= 0.6
    assert class_acc > 0.4
