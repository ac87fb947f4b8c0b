"""Intent routing on real FSDD clips: route file parsing, example clips and phrases, thresholds, and the
route chosen being the argmax of similarities computed independently with the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from audiovec.apps.routing import Route, Router, load_routes
from audiovec.cli import main
from audiovec.errors import ConfigError
from audiovec.model import AudioTextEmbedder


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> AudioTextEmbedder:
    return AudioTextEmbedder.from_pretrained(tiny_model_dir)


@pytest.fixture()
def routes_file(tmp_path: Path, fsdd_clips: list[Path]) -> Path:
    examples = tmp_path / "examples"
    examples.mkdir()
    for clip in fsdd_clips[:4]:
        shutil.copy(clip, examples / clip.name)
    data = {
        "threshold": -1.0,
        "routes": [
            {"name": "first", "clips": [f"examples/{fsdd_clips[0].name}", f"examples/{fsdd_clips[1].name}"]},
            {
                "name": "second",
                "clips": [f"examples/{fsdd_clips[2].name}"],
                "phrases": ["turn off the lights"],
            },
            {"name": "third", "phrases": ["hello", "goodbye please"], "threshold": 0.5},
            {"name": "fourth", "clips": [f"examples/{fsdd_clips[3].name}"]},
        ],
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_clips_route_to_their_own_route(pretrained_model_dir, routes_file, fsdd_clips):
    # spread vectors: the tiny random model puts every clip within cosine 1e-4 of every other, so which route
    # wins there follows rounding (it changed with transformers 5.25's initialisation)
    router = Router.from_yaml(AudioTextEmbedder.from_pretrained(pretrained_model_dir), routes_file)
    for clip, name in [(fsdd_clips[0], "first"), (fsdd_clips[2], "second"), (fsdd_clips[3], "fourth")]:
        match = router.route(str(clip))
        assert match.name == name and match.score == pytest.approx(1.0, abs=1e-4)
    assert router.route_text("turn off the lights").name == "second"


def test_route_is_argmax_of_independent_similarities(pretrained_model_dir, routes_file, fsdd_clips):
    model = AudioTextEmbedder.from_pretrained(
        pretrained_model_dir
    )  # spread vectors: the route name is asserted
    router = Router.from_yaml(model, routes_file)
    routes, _ = load_routes(routes_file)
    for clip in fsdd_clips[4:10]:
        query = model.encode_audio(str(clip))
        expected = {}
        for route in routes:
            vecs = [model.encode_text(p) for p in route.phrases] + [
                model.encode_audio(c) for c in route.clips
            ]
            expected[route.name] = float(max(model.similarity(query, np.stack(vecs))[0]))
        match = router.route(str(clip))
        assert match.scores == pytest.approx(expected, abs=1e-4)
        ranked = sorted(expected.values(), reverse=True)
        assert ranked[0] - ranked[1] > 1e-3  # a clear winner, so the name below can be wrong
        winner = max(expected, key=expected.get)
        assert match.name == (None if winner == "third" and ranked[0] < 0.5 else winner)


def test_thresholds_and_centroid_aggregation(model, fsdd_clips):
    clip = str(fsdd_clips[5])
    strict = Router(
        model, [Route("a", clips=[str(fsdd_clips[0])]), Route("b", phrases=["hello"])], threshold=1.01
    )
    match = strict.route(clip)
    assert match.name is None and match.score == max(match.scores.values())
    lenient = Router(
        model, [Route("a", clips=[str(fsdd_clips[0])]), Route("b", phrases=["hello"])], threshold=-1
    )
    assert lenient.route(clip).name == max(match.scores, key=match.scores.get)
    centroid = Router(model, [Route("a", clips=[str(p) for p in fsdd_clips[:3]])], aggregate="mean")
    mean = model.encode_audio([str(p) for p in fsdd_clips[:3]]).mean(0)
    expected = float(model.encode_audio(clip) @ mean / np.linalg.norm(mean))
    assert centroid.route(clip).score == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("routes: []", "non-empty 'routes'"),
        ("routes:\n  - phrases: [hi]", "needs a 'name'"),
        ("routes:\n  - name: a\n    phrases: [hi]\n    colour: red", "unknown keys"),
        ("routes:\n  - name: a\n    clips: [nope.wav]", "not found"),
        ("routes:\n  - name: a\n    phrases: [hi]\n    threshold: high", "must be a number"),
        ("routes: [unclosed", "invalid YAML"),
    ],
)
def test_bad_route_files_are_named_in_errors(tmp_path, content, message):
    path = tmp_path / "routes.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_routes(path)
    assert str(path) in str(info.value)


def test_router_rejects_bad_definitions(model):
    with pytest.raises(ConfigError, match="unique"):
        Router(model, [Route("a", phrases=["x"]), Route("a", phrases=["y"])])
    with pytest.raises(ConfigError, match="neither"):
        Router(model, [Route("a")])


def test_cli_route_json(tiny_model_dir, model, routes_file, fsdd_clips, capsys):
    files = [str(fsdd_clips[0]), str(fsdd_clips[7])]
    assert main(["route", str(tiny_model_dir), "--routes", str(routes_file), *files, "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    router = Router.from_yaml(model, routes_file)
    assert [r["route"] for r in records] == [router.route(f).name for f in files]
    assert records[0]["route"] == "first" and set(records[1]["scores"]) == {
        "first",
        "second",
        "third",
        "fourth",
    }
