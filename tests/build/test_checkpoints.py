"""Checkpoint detection and selective reading, on tiny real checkpoints saved in their published layouts."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from audiovec.build.reader import CheckpointReader
from audiovec.build.sources import (
    detect_audio,
    detect_llm,
    public_config_dir,
    public_config_names,
    read_config,
    resolve_source,
)
from audiovec.errors import CheckpointError, UnsafeCheckpointError
from helpers.checkpoints import (
    shards_with,
    truncate,
    weight_map,
)  # tests/ is on sys.path (rootdir conftest)


@pytest.mark.parametrize(
    "name, layout, kind, prefix",
    [
        ("omni25", "qwen2_5_omni", "qwen2_5_omni", "thinker.audio_tower."),
        ("omni3", "qwen3_omni_moe", "qwen3_omni", "thinker.audio_tower."),
        ("qwen2_audio", "qwen2_audio", "whisper", "audio_tower."),
        ("whisper", "whisper", "whisper", "model.encoder."),
        ("enc25", "standalone", "qwen2_5_omni", ""),
        ("enc3", "standalone", "qwen3_omni", ""),
    ],
)
def test_detect_audio_tower_in_each_layout(ckpts, name, layout, kind, prefix):
    comp = detect_audio(ckpts[name])
    assert (comp.layout, comp.kind, comp.prefixes[0]) == (layout, kind, prefix)
    assert any(k.startswith(prefix) for k in CheckpointReader(ckpts[name]).weight_map)


@pytest.mark.parametrize(
    "name, kind, prefix",
    [
        ("qwen2", "qwen2", "model."),
        ("qwen3", "qwen3", "model."),
        ("omni25", "qwen2", "thinker.model."),
        ("qwen2_audio", "qwen2", "language_model.model."),
        ("bert", "bert", ""),
    ],
)
def test_detect_llm_in_each_layout(ckpts, name, kind, prefix):
    comp = detect_llm(ckpts[name])
    assert comp.kind == kind and comp.prefixes[0] == prefix
    assert comp.config["model_type"] == kind


def test_omni_thinker_llm_config_becomes_plain_qwen2(ckpts):
    comp = detect_llm(ckpts["omni25"])
    assert "rope_scaling" not in comp.config and comp.config["rope_theta"] == 1_000_000.0
    assert comp.skipped == ("thinker.lm_head.",)


def test_qwen3_omni_moe_llm_is_refused_with_advice(ckpts):
    with pytest.raises(CheckpointError, match="mixture of experts"):
        detect_llm(ckpts["omni3"])


def test_audio_model_as_llm_and_llm_as_audio_are_clear_errors(ckpts):
    with pytest.raises(CheckpointError, match="audio model, not a language model"):
        detect_llm(ckpts["whisper"])
    with pytest.raises(CheckpointError, match=r"cannot find an audio encoder.*model_type='qwen2'"):
        detect_audio(ckpts["qwen2"])


def test_unknown_architecture_lists_what_was_found(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "resnet", "architectures": ["ResNetModel"]})
    )
    with pytest.raises(CheckpointError, match=r"model_type='resnet'; architectures=\['ResNetModel'\]"):
        detect_audio(tmp_path)
    with pytest.raises(CheckpointError, match="cannot find a language model"):
        detect_llm(tmp_path)


def test_missing_folder_no_config_and_bad_json(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        resolve_source(tmp_path / "nope")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no config\.json \(found: model\.safetensors\)"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        read_config(tmp_path)


def test_reader_opens_only_the_shard_of_the_tensor_asked_for(ckpts):
    folder = ckpts["omni25"]
    reader = CheckpointReader(folder)
    key = "thinker.audio_tower.conv1.weight"
    assert len(set(reader.weight_map.values())) > 10 and reader.opened == []
    tensor = reader.get(key)
    assert reader.opened == [weight_map(folder)[key]]
    assert tensor.shape[0] == 64


def test_truncated_shard_is_named(ckpts, tmp_path):
    folder = shutil.copytree(ckpts["omni3"], tmp_path / "omni3")
    shard = sorted(shards_with(folder, "thinker.audio_tower."))[0]
    truncate(folder / shard)
    reader = CheckpointReader(folder)
    key = next(k for k, f in weight_map(folder).items() if f == shard)
    with pytest.raises(CheckpointError, match=rf"{shard}.*truncated or corrupt"):
        reader.get(key)


def test_index_naming_a_missing_shard(ckpts, tmp_path):
    folder = shutil.copytree(ckpts["qwen2"], tmp_path / "lm")
    shard = weight_map(folder)["model.norm.weight"]
    (folder / shard).unlink()
    with pytest.raises(CheckpointError, match=rf"{shard}: weight file is missing"):
        CheckpointReader(folder).get("model.norm.weight")


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no weights"):
        CheckpointReader(tmp_path).get("model.norm.weight")


def test_pickle_weights_need_explicit_permission(tmp_path):
    torch.save({"model.norm.weight": torch.ones(3)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="allow_pickle=True"):
        CheckpointReader(tmp_path).get("model.norm.weight")
    reader = CheckpointReader(tmp_path, allow_pickle=True)
    assert torch.equal(reader.get("model.norm.weight"), torch.ones(3))


def test_public_configs_load_with_transformers_and_have_public_sizes():
    from transformers import AutoConfig, AutoModel, Qwen2_5OmniConfig, Qwen3OmniMoeConfig

    assert public_config_names() == [
        "Qwen2.5-0.5B", "Qwen2.5-3B", "Qwen2.5-Omni-3B", "Qwen2.5-Omni-7B", "Qwen3-Omni-30B-A3B",
    ]  # fmt: skip
    with torch.device("meta"):
        small = AutoModel.from_config(AutoConfig.from_pretrained(public_config_dir("public:Qwen2.5-0.5B")))
    assert round(sum(p.numel() for p in small.parameters()) / 1e9, 3) == 0.494
    omni7 = Qwen2_5OmniConfig.from_pretrained(public_config_dir("Qwen2.5-Omni-7B"))
    assert omni7.thinker_config.audio_config.output_dim == 3584
    assert omni7.thinker_config.text_config.vocab_size == 152064
    omni3 = Qwen3OmniMoeConfig.from_pretrained(public_config_dir("Qwen3-Omni-30B-A3B"))
    assert omni3.thinker_config.audio_config.downsample_hidden_size == 480
    assert detect_audio("public:Qwen3-Omni-30B-A3B").kind == "qwen3_omni"
    with pytest.raises(CheckpointError, match="available: Qwen2.5-0.5B"):
        public_config_dir("public:GPT-5")


@pytest.mark.parametrize(
    ("name", "d_model", "output_dim", "n_window"),
    [
        ("Qwen2.5-Omni-7B", 1280, 3584, 100),
        ("Qwen2.5-Omni-3B", 1280, 2048, 100),
        ("Qwen3-Omni-30B-A3B", 1280, 2048, 50),
    ],
)
def test_shipped_configs_are_the_verbose_published_format_and_parse(name, d_model, output_dim, n_window):
    """The published omni configs carry transformers 4.x's full key set on every sub-config (``bad_words_ids``,
    ``id2label``, ``torch_dtype``, ...): detection must read the published values through them."""
    raw = json.loads((public_config_dir(name) / "config.json").read_text())
    audio_raw = raw["thinker_config"]["audio_config"]
    for key in ("bad_words_ids", "id2label", "label2id", "torch_dtype", "task_specific_params"):
        assert key in audio_raw and key in raw["thinker_config"]
    audio = detect_audio(f"public:{name}")
    assert (audio.config["d_model"], audio.config["output_dim"], audio.config["n_window"]) == (
        d_model, output_dim, n_window,
    )  # fmt: skip
    if name.startswith("Qwen2.5"):
        llm = detect_llm(f"public:{name}")
        assert llm.config["hidden_size"] == output_dim and llm.config["rope_theta"] == 1e6
