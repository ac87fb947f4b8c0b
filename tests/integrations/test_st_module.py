"""audiovec folders inside the real sentence-transformers: ``SentenceTransformer(model_dir)`` encodes audio
(paths, arrays, ``{"array", "sampling_rate"}`` dicts, bytes) and text with audiovec's own vectors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiovec.build.st_layout import read_st_layout
from audiovec.model import AudioTextEmbedder
from audiovec.st_module import MODULE_TYPE, ST_VERSION

st = pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.util.quantization import quantize_embeddings  # noqa: E402

TEXTS = ["a dog barking", "rain on a tin roof", "someone says seven"]


def _load(folder: Path) -> SentenceTransformer:
    return SentenceTransformer(str(folder), device="cpu", trust_remote_code=True, local_files_only=True)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Path, AudioTextEmbedder, SentenceTransformer]:
    return tiny_model_dir, AudioTextEmbedder.from_pretrained(tiny_model_dir), _load(tiny_model_dir)


def test_installed_version_is_the_pinned_one() -> None:
    assert st.__version__ == ST_VERSION


def test_save_pretrained_writes_the_sentence_transformers_files(tiny_model_dir: Path) -> None:
    modules = json.loads((tiny_model_dir / "modules.json").read_text())
    assert modules == [{"idx": 0, "name": "0", "path": "", "type": MODULE_TYPE}]
    config = json.loads((tiny_model_dir / "config_sentence_transformers.json").read_text())
    assert config["similarity_fn_name"] == "cosine"
    assert config["prompts"] == {"query": "", "document": ""}
    assert read_st_layout(tiny_model_dir) is None  # st_layout does not mistake it for a text model


def test_sentence_transformers_6_asks_for_trust_remote_code(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(tiny_model_dir), device="cpu", local_files_only=True)


def test_no_code_from_the_folder_runs(tiny_model_dir: Path, tmp_path: Path, fsdd_clips: list[Path]) -> None:
    """trust_remote_code=True imports audiovec from site-packages: files planted in the folder stay unread."""
    folder = tmp_path / "planted"
    shutil.copytree(tiny_model_dir, folder)
    for name in ("audiovec.py", "st_module.py", "audiovec.st_module.py"):
        (folder / name).write_text("raise RuntimeError('code from the model folder ran')\n")
    model = _load(folder)
    assert type(model[0]).__module__ == "audiovec.st_module"
    assert model.encode([str(fsdd_clips[0])]).shape == (
        1,
        AudioTextEmbedder.from_pretrained(folder).embedding_dim,
    )


def test_audio_and_text_vectors_equal_audiovec(tiny, fsdd_clips: list[Path]) -> None:
    _, model, stm = tiny
    paths = [str(p) for p in fsdd_clips[:4]]
    want = model.encode_audio(paths)
    assert np.abs(stm.encode(paths, batch_size=3) - want).max() <= 1e-5
    assert np.abs(stm.encode(TEXTS) - model.encode_text(TEXTS)).max() <= 1e-5
    # one input → one vector, like sentence-transformers
    assert np.abs(stm.encode(paths[0]) - want[0]).max() <= 1e-5

    wave, rate = sf.read(paths[1], dtype="float32")
    assert rate == 8000  # FSDD: dicts carry their own rate, resampled like audiovec does
    ref = model.encode_audio([wave], sample_rate=rate)[0]
    got = stm.encode(
        [{"array": wave, "sampling_rate": rate}, {"audio": {"array": wave, "sampling_rate": rate}}]
    )
    assert np.abs(got - ref).max() <= 1e-5
    # bare arrays are 16 kHz mono (or channels-first), tensors too; bytes and Path objects are files
    wave16 = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    ref16 = model.encode_audio([wave16], sample_rate=16000)[0]
    for item in (wave16, torch.from_numpy(wave16), np.stack([wave16, wave16]), np.stack([wave16, wave16], 1)):
        assert np.abs(stm.encode([item])[0] - ref16).max() <= 1e-5
    assert np.abs(stm.encode([Path(paths[2]).read_bytes(), Path(paths[3])]) - want[2:]).max() <= 1e-5
    assert (
        np.abs(stm.encode([{"path": paths[0]}, {"bytes": Path(paths[1]).read_bytes()}]) - want[:2]).max()
        <= 1e-5
    )


def test_similarity_truncate_dim_precision_and_query_document(tiny, fsdd_clips: list[Path]) -> None:
    _, model, stm = tiny
    paths = [str(p) for p in fsdd_clips[:4]]
    audio, text = model.encode_audio(paths), model.encode_text(TEXTS)
    sim = stm.similarity(stm.encode(TEXTS), stm.encode(paths)).numpy()
    assert np.abs(sim - model.similarity(text, audio)).max() <= 1e-5
    # truncate_dim: the first k dimensions (not renormalised unless asked), as sentence-transformers documents
    assert np.abs(stm.encode(paths, truncate_dim=16) - audio[:, :16]).max() <= 1e-5
    cut = stm.encode(paths, truncate_dim=16, normalize_embeddings=True)
    assert np.abs(cut - audio[:, :16] / np.linalg.norm(audio[:, :16], axis=1, keepdims=True)).max() <= 1e-5
    assert stm.get_embedding_dimension() == model.embedding_dim
    assert SentenceTransformer(
        str(tiny[0]), device="cpu", trust_remote_code=True, local_files_only=True, truncate_dim=8
    ).encode(paths[:1]).shape == (1, 8)
    for precision in ("binary", "ubinary"):
        got = stm.encode(paths, precision=precision)
        assert np.array_equal(got, quantize_embeddings(audio, precision=precision))
    assert stm.encode(paths, precision="int8").dtype == np.int8
    assert np.abs(stm.encode_query(TEXTS) - text).max() <= 1e-5
    assert np.abs(stm.encode_document(paths) - audio).max() <= 1e-5


def test_sentence_transformers_save_round_trip(tiny, tmp_path: Path, fsdd_clips: list[Path]) -> None:
    _, model, stm = tiny
    out = tmp_path / "st-saved"
    stm.save(str(out))
    paths = [str(p) for p in fsdd_clips[:2]]
    again = _load(out)
    assert np.abs(again.encode(paths) - model.encode_audio(paths)).max() <= 1e-5
    assert (
        np.abs(AudioTextEmbedder.from_pretrained(out).encode_text(TEXTS) - model.encode_text(TEXTS)).max()
        == 0
    )


def test_unknown_inputs_are_refused(tiny) -> None:
    from audiovec.errors import DataError

    with pytest.raises(DataError, match="neither text nor audio"):
        tiny[2].encode([object()])


@pytest.mark.slow
def test_builtin_model_through_sentence_transformers(tmp_path: Path, fsdd_clips: list[Path]) -> None:
    """The shipped model, saved and loaded by sentence-transformers: same vectors, same ranking."""
    model = AudioTextEmbedder.from_pretrained("audiovec-sounds")
    folder = model.save_pretrained(tmp_path / "audiovec-sounds")
    stm = _load(folder)
    paths = [str(p) for p in fsdd_clips[:6]]
    audio, text = model.encode_audio(paths), model.encode_text(TEXTS)
    got_audio, got_text = stm.encode(paths), stm.encode(TEXTS)
    assert np.abs(got_audio - audio).max() <= 1e-5
    assert np.abs(got_text - text).max() <= 1e-5
    ranking = np.argsort(-stm.similarity(got_text, got_audio).numpy(), axis=1)
    assert np.array_equal(ranking, np.argsort(-model.similarity(text, audio), axis=1))
