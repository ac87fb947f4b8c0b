"""Module combination on tiny real checkpoints: what is read, what comes out, and how bad input fails."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from audiovec.build.compose import REPORT_NAME, compose
from audiovec.build.reader import CheckpointReader
from audiovec.cli import main
from audiovec.errors import CheckpointError, ConfigError
from audiovec.model import AudioTextEmbedder
from helpers.checkpoints import (
    shards_with,
    truncate,
    weight_map,
)  # tests/ is on sys.path (rootdir conftest)


@pytest.fixture(scope="module")
def m1(ckpts, tmp_path_factory):
    """Qwen3-Omni tower + Qwen2 causal LM: the seed's M1 recipe, tiny."""
    return compose(ckpts["omni3"], ckpts["qwen2"], tmp_path_factory.mktemp("out") / "m1")


def _features(n_mels: int, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), n_mels, max(lengths), generator=gen) * 0.5
    for i, n in enumerate(lengths):
        feats[i, :, n:] = 0
    return feats, torch.tensor(lengths)


def _module_of(model: torch.nn.Module, cls_name: str) -> torch.nn.Module:
    return next(m for m in model.modules() if type(m).__name__ == cls_name)


def _only_unneeded(folder, needed_prefixes: tuple[str, ...]) -> set[str]:
    """Shards holding no tensor under any of ``needed_prefixes``."""
    wm = weight_map(folder)
    needed = {f for k, f in wm.items() if k.startswith(needed_prefixes)}
    return set(wm.values()) - needed


# ---------------------------------------------------------------------------------------------- reading
def test_compose_opens_only_the_shards_it_needs(m1, ckpts):
    tower_shards = shards_with(ckpts["omni3"], "thinker.audio_tower.")
    assert set(m1.opened["audio_encoder"]) == tower_shards
    assert (
        len(_only_unneeded(ckpts["omni3"], ("thinker.audio_tower.",))) >= 10
    )  # visual, LLM, talker, code2wav
    assert set(m1.opened["llm"]) == shards_with(ckpts["qwen2"], "model.")
    head_only = _only_unneeded(ckpts["qwen2"], ("model.",))
    assert head_only and not head_only & set(m1.opened["llm"])  # the LM head's shard stays closed


def test_only_kept_tensors_are_materialised(ckpts, tmp_path, monkeypatch):
    """Every tensor read ends up in the model: nothing unneeded (LM head, visual, talker) is loaded."""
    read: list[int] = []
    original = CheckpointReader.get

    def counting_get(self, key):
        tensor = original(self, key)
        read.append(tensor.numel())
        return tensor

    monkeypatch.setattr(CheckpointReader, "get", counting_get)
    result = compose(ckpts["omni25"], ckpts["qwen2"], tmp_path / "m")
    assert sum(read) == result.counts["audio_tower"] + result.counts["backbone"]
    index = json.loads((ckpts["omni25"] / "model.safetensors.index.json").read_text())
    assert sum(read) * 4 < index["metadata"]["total_size"] / 2  # under half of the source checkpoint


# ---------------------------------------------------------------------------------------------- equivalence
def test_composed_tower_matches_the_source_tower(m1, ckpts):
    from transformers import Qwen3OmniMoeForConditionalGeneration

    source = Qwen3OmniMoeForConditionalGeneration.from_pretrained(ckpts["omni3"]).eval()
    encoder = _module_of(source, "Qwen3OmniMoeAudioEncoder")
    feats, lengths = _features(128, [230, 171])
    with torch.no_grad():
        tokens, mask = m1.model.tower(feats, lengths)
        for i, n in enumerate(lengths.tolist()):
            ref = encoder(input_features=feats[i, :, :n], feature_lens=torch.tensor([n])).last_hidden_state
            assert ref.shape[0] == int(mask[i].sum())
            torch.testing.assert_close(tokens[i, : ref.shape[0]], ref, rtol=1e-5, atol=1e-5)


def test_composed_backbone_matches_the_source_llm(m1, ckpts):
    from transformers import AutoModelForCausalLM

    source = AutoModelForCausalLM.from_pretrained(ckpts["qwen2"]).eval()
    ids = torch.tensor([[5, 17, 200, 3, 9, 42]])
    with torch.no_grad():
        ref = source.model(input_ids=ids).last_hidden_state
        ours = m1.model.backbone(input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_omni_thinker_llm_and_tower_match_and_pruning_keeps_the_first_layers(ckpts, tmp_path):
    from transformers import Qwen2_5OmniForConditionalGeneration

    source = Qwen2_5OmniForConditionalGeneration.from_pretrained(ckpts["omni25"]).eval()
    text_model = _module_of(source, "Qwen2_5OmniThinkerTextModel")
    encoder = _module_of(source, "Qwen2_5OmniAudioEncoder")
    full = compose(ckpts["omni25"], ckpts["omni25"], tmp_path / "full").model
    pruned = compose(ckpts["omni25"], ckpts["omni25"], tmp_path / "pruned", llm_layers=2).model
    ids = torch.tensor([[4, 8, 15, 16, 23, 42]])
    feats, lengths = _features(128, [300])
    with torch.no_grad():
        ref = text_model(input_ids=ids, output_hidden_states=True)
        torch.testing.assert_close(full.backbone(input_ids=ids).last_hidden_state, ref.last_hidden_state)
        after_two = text_model.norm(ref.hidden_states[2])
        torch.testing.assert_close(pruned.backbone(input_ids=ids).last_hidden_state, after_two)
        ref_audio = encoder(input_features=feats[0], feature_lens=lengths).last_hidden_state
        torch.testing.assert_close(full.tower(feats, lengths)[0][0], ref_audio, rtol=1e-5, atol=1e-5)
    assert pruned.backbone.config.num_hidden_layers == 2 and len(pruned.backbone.config.layer_types) == 2
    # identity projector when the widths agree: the LLM first sees exactly the tower's tokens
    assert torch.equal(full.projector.linear.weight, torch.eye(64))


def test_whisper_tower_matches_the_source_encoder(ckpts, tmp_path):
    from transformers import WhisperForConditionalGeneration

    model = compose(ckpts["whisper"], ckpts["qwen3"], tmp_path / "w").model
    source = WhisperForConditionalGeneration.from_pretrained(ckpts["whisper"]).eval()
    feats, lengths = _features(80, [3000])
    with torch.no_grad():
        ref = source.model.encoder(feats).last_hidden_state
        torch.testing.assert_close(model.tower(feats, lengths)[0], ref, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------- output
def test_saved_model_loads_encodes_and_reports(m1, ckpts):
    out = m1.out
    model = AudioTextEmbedder.from_pretrained(out)
    wave = np.sin(np.linspace(0, 800, 16000)).astype(np.float32)
    audio = model.encode_audio([wave], sample_rate=16000)
    text = model.encode_text(["a dog barking"])
    assert audio.shape == text.shape == (1, 48)
    assert np.allclose(np.linalg.norm(audio, axis=1), 1, atol=1e-4)
    report = json.loads((out / REPORT_NAME).read_text())
    audio_src, llm_src = report["sources"]["audio_encoder"], report["sources"]["llm"]
    assert audio_src["tensors_copied"] == len(model.tower.encoder.state_dict())
    assert audio_src["parameters_copied"] == report["parameters"]["audio_tower"]
    assert llm_src["skipped_tensors"] == ["lm_head.weight"]
    assert set(report["new_tensors"]) == {"projector.linear.weight", "projector.linear.bias"}
    assert "tokenizer.json" in report["tokenizer_files"] and (out / "tokenizer.json").is_file()
    assert report["tower_output_projection"].startswith("kept")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]


def test_dtype_bf16_casts_and_is_reported(ckpts, tmp_path):
    result = compose(ckpts["enc25"], ckpts["qwen3"], tmp_path / "bf16", dtype="bf16")
    assert {p.dtype for p in result.model.parameters()} == {torch.bfloat16}
    casts = result.report["sources"]["llm"]["dtype_casts"]
    assert casts == {"float32->bfloat16": result.report["sources"]["llm"]["tensors_copied"]}
    stored = CheckpointReader(tmp_path / "bf16")
    assert {stored.get(k).dtype for k in stored.weight_map} == {torch.bfloat16}


@pytest.mark.parametrize("audio, llm", [("qwen2_audio", "qwen2_audio"), ("enc25", "bert")])
def test_other_layouts_compose_and_encode(ckpts, tmp_path, audio, llm):
    kwargs = {"projector_downsample": 4} if llm == "bert" else {}
    result = compose(ckpts[audio], ckpts[llm], tmp_path / "m", **kwargs)
    vec = result.model.encode_text(["music"])
    assert vec.shape == (1, result.model.embedding_dim)
    if llm == "bert":
        assert result.report["sources"]["llm"]["skipped_tensors"][0].startswith("cls.")


# ---------------------------------------------------------------------------------------------- bad input
def _assert_untouched(out, before: dict[str, bytes] | None) -> None:
    if before is None:
        assert not out.exists()
    else:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]


def test_missing_source(ckpts, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        compose(tmp_path / "nowhere", ckpts["qwen2"], tmp_path / "out")
    _assert_untouched(tmp_path / "out", None)


def test_folder_without_config(ckpts, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        compose(ckpts["omni3"], tmp_path / "empty", tmp_path / "out")
    _assert_untouched(tmp_path / "out", None)


def test_unknown_architecture(ckpts, tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(CheckpointError, match="cannot find an audio encoder.*'vit'"):
        compose(tmp_path / "odd", ckpts["qwen2"], tmp_path / "out")


def test_truncated_shard_leaves_existing_out_untouched(ckpts, tmp_path):
    src = shutil.copytree(ckpts["omni3"], tmp_path / "omni3")
    shard = sorted(shards_with(src, "thinker.audio_tower."))[-1]
    truncate(src / shard)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous model")
    with pytest.raises(CheckpointError, match=shard):
        compose(src, ckpts["qwen2"], out, overwrite=True)
    _assert_untouched(out, {"keep.txt": b"previous model"})


def test_existing_out_is_refused_without_overwrite(ckpts, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("x")
    with pytest.raises(CheckpointError, match="already exists"):
        compose(ckpts["omni3"], ckpts["qwen2"], out)
    _assert_untouched(out, {"a": b"x"})


def test_shape_mismatch_names_the_tensor(ckpts, tmp_path):
    src = shutil.copytree(ckpts["qwen2"], tmp_path / "lm")
    config = json.loads((src / "config.json").read_text())
    config["intermediate_size"] = 80
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError, match=r"'model\.layers\.0\.mlp\.gate_proj\.weight' has shape \(96, 48\)"
    ):
        compose(ckpts["omni3"], src, tmp_path / "out")
    _assert_untouched(tmp_path / "out", None)


def test_incompatible_parts(ckpts, tmp_path):
    # a Qwen2.5-Omni tower gives 750 tokens per 30 s window; the BERT backbone has 512 positions
    with pytest.raises(ConfigError, match="positions"):
        compose(ckpts["omni25"], ckpts["bert"], tmp_path / "out")
    _assert_untouched(tmp_path / "out", None)
    with pytest.raises(ConfigError, match="cannot keep 9 layers"):
        compose(ckpts["omni3"], ckpts["qwen2"], tmp_path / "out", llm_layers=9)


# ---------------------------------------------------------------------------------------------- CLI
def _dry(capsys, audio: str, llm: str, *extra: str) -> dict[str, int]:
    code = main(["compose", "--audio-encoder", audio, "--llm", llm, "--dry-run", "--json", *extra])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def test_dry_run_json_on_shipped_configs_matches_the_public_sizes(capsys):
    m1 = _dry(capsys, "public:Qwen3-Omni-30B-A3B", "public:Qwen2.5-0.5B")
    assert list(m1) == ["audio_tower", "projector", "backbone", "total"]
    assert all(isinstance(v, int) for v in m1.values())
    assert m1["projector"] == 2048 * 896 + 896 and m1["backbone"] == 494_032_768
    assert round(m1["total"] / 1e9, 2) == 1.14 and round(m1["audio_tower"] / 1e9, 2) == 0.65
    for layers, expected in [(20, 5.85), (10, 3.52), (5, 2.35)]:
        counts = _dry(capsys, "public:Qwen2.5-Omni-7B", "public:Qwen2.5-Omni-7B", "--llm-layers", str(layers))
        assert abs(counts["total"] / 1e9 - expected) < 0.015, (layers, counts)


def test_dry_run_needs_only_config_json(ckpts, tmp_path, capsys):
    for name in ("omni3", "qwen2"):
        (tmp_path / name).mkdir()
        shutil.copy(ckpts[name] / "config.json", tmp_path / name / "config.json")
    counts = _dry(capsys, str(tmp_path / "omni3"), str(tmp_path / "qwen2"))
    real = compose(ckpts["omni3"], ckpts["qwen2"], dry_run=True).counts
    assert counts == real and counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_cli_compose_writes_and_reports(ckpts, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["compose", "--audio-encoder", str(ckpts["enc25"]), "--llm", str(ckpts["qwen2"]), "--out", str(out),
                 "--llm-layers", "1,3", "--dtype", "fp32"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "audio_encoder" in printed and "wrote" in printed
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["sources"]["llm"]["kept_layers"] == [1, 3]
    assert AudioTextEmbedder.from_pretrained(out).backbone.config.num_hidden_layers == 2


def test_cli_error_is_one_line_and_exit_code_1(tmp_path, capsys):
    code = main(
        ["compose", "--audio-encoder", str(tmp_path / "x"), "--llm", "public:Qwen2.5-0.5B", "--dry-run"]
    )
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("audiovec compose: error:") and "not found" in err and "\n" not in err
