"""Checkpoints under transformers 5's names, PEFT-merged and dumped ``state_dict`` files compose to the same
model as the published layout; what is not a model checkpoint (an adapter, unmerged LoRA weights, an
optimizer state) is refused with a message saying what it is and what to do."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from audiovec.build.compose import compose
from audiovec.build.reader import CheckpointReader
from audiovec.errors import CheckpointError
from helpers.checkpoints import (
    dump_state_dict,
    peft_wrapped,
    save_new_names,
    save_thinker25,
    weight_map,
)  # tests/ is on sys.path (rootdir conftest)


def _omni25(ckpts: dict[str, Path]) -> torch.nn.Module:
    from transformers import Qwen2_5OmniForConditionalGeneration

    return Qwen2_5OmniForConditionalGeneration.from_pretrained(ckpts["omni25"]).eval()


def _thinker25(ckpts: dict[str, Path]) -> torch.nn.Module:
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(ckpts["thinker25"]).eval()


_OMNI25_MODELING = "transformers.models.qwen2_5_omni.modeling_qwen2_5_omni"
# transformers 5.22 moved the towers and the LLM of the multimodal classes under ``.model`` (the new names);
# older 5.x releases still nest them the old way, so what they save and dump carries the old prefixes
_NEW_NAMES = hasattr(importlib.import_module(_OMNI25_MODELING), "Qwen2_5OmniThinkerModel")


def _prefix(new_name_prefix: str) -> str:
    """The tower's key prefix in what the installed transformers writes."""
    return new_name_prefix if _NEW_NAMES else new_name_prefix.replace("model.audio_tower.", "audio_tower.")


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def sources(ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The published-layout sources plus a Qwen2.5-Omni thinker saved alone."""
    return dict(ckpts, thinker25=save_thinker25(tmp_path_factory.mktemp("thinker") / "thinker25"))


@pytest.fixture(scope="module")
def reference(sources: dict[str, Path]) -> dict[str, tuple[dict, dict]]:
    """(tower state, backbone state) composed from the published layouts, per family."""
    out = {}
    for name, (audio, llm) in {
        "omni25": ("omni25", "omni25"), "omni3": ("omni3", "qwen2"), "thinker25": ("thinker25", "thinker25"),
        "qwen2_audio": ("qwen2_audio", "qwen2_audio"),
    }.items():  # fmt: skip
        model = compose(sources[audio], sources[llm], save=False).model
        out[name] = (_state(model.tower.encoder), _state(model.backbone))
    return out


# name -> (family of the reference, builder(sources, folder) -> folder, expected key prefix of the tower)
LAYOUTS: dict[str, tuple[str, Callable[[dict, Path], Path], str]] = {
    "omni25 save_original_format=False": (
        "omni25",
        lambda s, p: save_new_names(s["omni25"], p, "Qwen2_5OmniForConditionalGeneration"),
        "thinker.model.audio_tower.",
    ),
    "omni3 save_original_format=False": (
        "omni3",
        lambda s, p: save_new_names(s["omni3"], p, "Qwen3OmniMoeForConditionalGeneration"),
        "thinker.model.audio_tower.",
    ),
    "thinker save_original_format=False": (
        "thinker25",
        lambda s, p: save_new_names(s["thinker25"], p, "Qwen2_5OmniThinkerForConditionalGeneration"),
        "model.audio_tower.",
    ),
    "qwen2_audio save_original_format=False": (
        "qwen2_audio",
        lambda s, p: save_new_names(s["qwen2_audio"], p, "Qwen2AudioForConditionalGeneration"),
        "model.audio_tower.",
    ),
    "omni25 raw state_dict (FSDP full / zero_to_fp32)": (
        "omni25",
        lambda s, p: dump_state_dict(_omni25(s), p),
        "thinker.model.audio_tower.",
    ),
    "thinker raw state_dict": (
        "thinker25",
        lambda s, p: dump_state_dict(_thinker25(s), p),
        "model.audio_tower.",
    ),
    "omni25 DataParallel/DDP state_dict, pickle": (
        "omni25",
        lambda s, p: dump_state_dict(torch.nn.DataParallel(_omni25(s)), p, pickle=True),
        "module.thinker.model.audio_tower.",
    ),
    "omni25 DeepSpeed engine file (under 'module')": (
        "omni25",
        lambda s, p: dump_state_dict(_omni25(s), p, pickle=True, nest="module"),
        "thinker.model.audio_tower.",
    ),
    "thinker torch.compile state_dict": (
        "thinker25",
        lambda s, p: dump_state_dict(torch.compile(_thinker25(s)), p),
        "_orig_mod.model.audio_tower.",
    ),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_composes_to_the_published_layouts_model(sources, reference, tmp_path, layout):
    family, build, tower_prefix = LAYOUTS[layout]
    folder = build(sources, tmp_path / "src")
    llm = folder if family != "omni3" else sources["qwen2"]  # Qwen3-Omni's MoE LLM is no backbone
    result = compose(folder, llm, tmp_path / "out", allow_pickle=True)
    assert result.report["sources"]["audio_encoder"]["key_prefix"] == _prefix(tower_prefix)
    tower, backbone = reference[family]
    for got, want in ((_state(result.model.tower.encoder), tower), (_state(result.model.backbone), backbone)):
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), k


@pytest.mark.parametrize("how", ["save_original_format=False", "raw state_dict"])
def test_peft_merged_model_composes_with_the_merged_weights(sources, tmp_path, how):
    merged = peft_wrapped(_omni25(sources)).merge_and_unload().eval()
    if how == "raw state_dict":
        dump_state_dict(merged, tmp_path / "merged")
    else:
        merged.save_pretrained(tmp_path / "merged", save_original_format=False)
        from audiovec.tiny import tiny_tokenizer

        tiny_tokenizer().save_pretrained(tmp_path / "merged")
    llm_prefix = "thinker.model.language_model." if _NEW_NAMES else "thinker.model."
    assert any(k.startswith(llm_prefix) for k in CheckpointReader(tmp_path / "merged").weight_map)
    model = compose(tmp_path / "merged", tmp_path / "merged", save=False).model
    inner = merged.thinker.model if _NEW_NAMES else merged.thinker
    encoder = inner.audio_tower
    text = inner.language_model if _NEW_NAMES else merged.thinker.model
    for ours, theirs in ((model.tower.encoder, encoder), (model.backbone, text)):
        want = _state(theirs)
        got = _state(ours)
        assert all(torch.equal(got[k], want[k]) for k in want)
    original = compose(sources["omni25"], sources["omni25"], save=False).model
    q = "layers.0.self_attn.q_proj.weight"
    assert not torch.equal(model.tower.encoder.state_dict()[q], original.tower.encoder.state_dict()[q])


# ---------------------------------------------------------------------------------------------- refused
def test_unmerged_peft_state_dict_is_refused_with_the_merge_advice(sources, tmp_path):
    folder = dump_state_dict(peft_wrapped(_omni25(sources)), tmp_path / "peft")
    assert any("lora_A" in k for k in weight_map_of(folder))
    with pytest.raises(CheckpointError, match=r"unmerged PEFT adapter weights .*merge_and_unload"):
        compose(folder, sources["qwen2"], tmp_path / "out")


def test_adapter_folder_is_refused_as_an_adapter(sources, tmp_path):
    peft_wrapped(_omni25(sources)).save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    with pytest.raises(CheckpointError, match=r"a PEFT adapter \(adapter_config.json\), not a checkpoint"):
        compose(tmp_path / "adapter", sources["qwen2"], tmp_path / "out")


def test_pickle_without_a_state_dict_is_refused(sources, tmp_path):
    folder = tmp_path / "opt"
    folder.mkdir()
    (folder / "config.json").write_bytes((sources["omni25"] / "config.json").read_bytes())
    torch.save({"optimizer": {"state": {}}, "epoch": 3}, folder / "pytorch_model.bin")
    with pytest.raises(
        CheckpointError, match=r"not a state dict of tensors \(top-level keys: 'optimizer', 'epoch'\)"
    ):
        compose(folder, sources["qwen2"], tmp_path / "out", allow_pickle=True)


def test_weights_of_another_model_are_refused_naming_the_prefixes_tried(sources, tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "config.json").write_bytes((sources["omni25"] / "config.json").read_bytes())
    save_file({"encoder.block.0.weight": torch.zeros(2)}, str(folder / "model.safetensors"))
    with pytest.raises(
        CheckpointError,
        match=r"found no audio weights under 'thinker.audio_tower.' or 'thinker.model.audio_tower.' "
        r"\(also tried behind 'module.'.*first keys: encoder.block.0.weight\)",
    ):
        compose(folder, sources["qwen2"], tmp_path / "out")


def weight_map_of(folder: Path) -> dict[str, str]:
    index = folder / "model.safetensors.index.json"
    return weight_map(folder) if index.is_file() else CheckpointReader(folder).weight_map
