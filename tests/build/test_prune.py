"""Layer pruning: which layers are kept, how weights and config follow, and that the result still works."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiovec.build.prune import layer_prefix, prune, pruned_config, renumber, select_layers
from audiovec.cli import main
from audiovec.errors import CheckpointError, ConfigError
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import save_tiny_embedder


@pytest.mark.parametrize(
    "n, keep, strategy, expected",
    [
        (28, 5, "first", [0, 1, 2, 3, 4]),
        (28, 3, "last", [25, 26, 27]),
        (28, 4, "uniform", [0, 9, 18, 27]),
        (10, 1, "uniform", [0]),
        (10, [7, 2, -1, 2], "custom", [2, 7, 9]),
    ],
)
def test_select_layers(n, keep, strategy, expected):
    assert select_layers(n, keep, strategy) == expected


@pytest.mark.parametrize(
    "keep, strategy, message",
    [(0, "first", "cannot keep 0"), (29, "first", "cannot keep 29"), (3, "middle", "unknown layer strategy"),
     ([3, 40], "custom", "not a non-empty subset"), (3, "custom", "explicit list")],
)  # fmt: skip
def test_select_layers_rejects_bad_requests(keep, strategy, message):
    with pytest.raises(ConfigError, match=message):
        select_layers(28, keep, strategy)


def test_pruned_config_fixes_per_layer_fields():
    config = {
        "num_hidden_layers": 6,
        "layer_types": ["full_attention"] * 3 + ["sliding_attention"] * 3,
        "max_window_layers": 3,
        "mlp_only_layers": [1, 4],
        "hidden_size": 8,
    }
    out = pruned_config(config, [0, 2, 4, 5])
    assert out["num_hidden_layers"] == 4
    assert out["layer_types"] == [
        "full_attention",
        "full_attention",
        "sliding_attention",
        "sliding_attention",
    ]
    assert out["max_window_layers"] == 2 and out["mlp_only_layers"] == [2]
    assert config["num_hidden_layers"] == 6  # input untouched


def test_layer_prefix_and_renumber():
    qwen = [f"layers.{i}.mlp.up_proj.weight" for i in range(3)] + ["embed_tokens.weight", "norm.weight"]
    bert = [f"encoder.layer.{i}.output.dense.weight" for i in range(2)] + [
        "embeddings.word_embeddings.weight"
    ]
    assert layer_prefix(qwen, 3) == "layers" and layer_prefix(bert, 2) == "encoder.layer"
    with pytest.raises(CheckpointError, match="cannot tell"):
        layer_prefix(qwen, 5)
    mapping = {2: 0}
    assert renumber("layers.2.mlp.up_proj.weight", "layers", mapping) == "layers.0.mlp.up_proj.weight"
    assert renumber("layers.1.mlp.up_proj.weight", "layers", mapping) is None
    assert renumber("norm.weight", "layers", mapping) == "norm.weight"


@pytest.mark.parametrize("backbone", ["qwen2", "bert"])
def test_pruned_model_loads_and_matches_the_kept_layers(tmp_path, backbone):
    src = save_tiny_embedder(tmp_path / "src", backbone=backbone)
    result = prune(src, tmp_path / "pruned", 1, strategy="last")
    assert result.kept_layers == [1] and result.tensors_dropped > 0
    pruned = AudioTextEmbedder.from_pretrained(tmp_path / "pruned")
    assert pruned.backbone.config.num_hidden_layers == 1
    reference = AudioTextEmbedder.from_pretrained(src)
    stack = reference.backbone.layers if backbone == "qwen2" else reference.backbone.encoder.layer
    del stack[0]  # the same model, by hand: drop layer 0 in memory
    reference.backbone.config.num_hidden_layers = 1
    if backbone == "qwen2":
        reference.backbone.config.layer_types = reference.backbone.config.layer_types[1:]
    texts = ["a dog barking", "piano music"]
    np.testing.assert_allclose(pruned.encode_text(texts), reference.encode_text(texts), atol=1e-5)
    wave = np.sin(np.linspace(0, 500, 8000)).astype(np.float32)
    assert np.isfinite(pruned.encode_audio([wave], sample_rate=16000)).all()
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert config["extra"]["pruned"] == [{"num_layers_before": 2, "kept_layers": [1], "strategy": "last"}]
    assert (tmp_path / "pruned" / "tokenizer.json").is_file()


def test_prune_cli_and_untouched_out(tmp_path, capsys):
    src = save_tiny_embedder(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["prune", str(src), "--keep-layers", "1", "--out", str(out)]) == 0
    assert "kept layers [0] of 2" in capsys.readouterr().out
    assert AudioTextEmbedder.from_pretrained(out).backbone.config.num_hidden_layers == 1
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["prune", str(src), "--keep-layers", "5", "--out", str(out), "--overwrite"]) == 1
    assert "cannot keep 5 layers" in capsys.readouterr().err
    assert main(["prune", str(src), "--keep-layers", "1", "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_prune_refuses_a_non_audiovec_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(ConfigError, match="not an audiovec model"):
        prune(tmp_path, tmp_path / "out", 1)
    assert not (tmp_path / "out").exists()


def test_pruned_weights_are_renumbered(tmp_path):
    from audiovec.build.reader import CheckpointReader

    src = save_tiny_embedder(tmp_path / "src")
    prune(src, tmp_path / "out", [1], strategy="custom")
    before, after = CheckpointReader(src), CheckpointReader(tmp_path / "out")
    assert not [k for k in after.weight_map if k.startswith("backbone.layers.1.")]
    key = "backbone.layers.{}.mlp.up_proj.weight"
    assert torch.equal(after.get(key.format(0)), before.get(key.format(1)))
