"""Matryoshka: the nested loss (hand computation; one size = plain InfoNCE), the recipe option recorded in
the saved model, ``truncate_dim`` on ``encode_*``, the service's ``dimensions`` field over a real socket,
and an index that stores its vector size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiovec.apps.index import AudioIndex, IndexStoreError
from audiovec.dims import request_dimensions, truncate_embeddings
from audiovec.errors import ConfigError
from audiovec.model import AudioTextEmbedder
from audiovec.train.config import load_recipe
from audiovec.train.loss import ContrastiveLoss, label_keys, text_keys
from audiovec.train.matryoshka import MatryoshkaContrastiveLoss, make_loss, parse_dims, resolve_dims

REPO = Path(__file__).resolve().parents[2]


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


# ------------------------------------------------------------------------------------------------ the loss
def hand_infonce(audio: np.ndarray, text: np.ndarray, temperature: float) -> float:
    """Symmetric InfoNCE written out with numpy: mean over rows of -log softmax of the diagonal, both ways."""
    sim = audio @ text.T / temperature

    def ce(logits: np.ndarray) -> float:
        logits = logits - logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return float(-np.mean(np.diag(logp)))

    return (ce(sim) + ce(sim.T)) / 2


def test_loss_matches_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((5, 8)).astype(np.float32)
    text = audio + 0.7 * rng.standard_normal((5, 8)).astype(np.float32)
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    dims, weights, temperature = [8, 4, 2], [1.0, 2.0, 0.5], 0.1
    expected = 0.0
    for d, w in zip(dims, weights):
        a = audio[:, :d] / np.linalg.norm(audio[:, :d], axis=1, keepdims=True)
        t = text[:, :d] / np.linalg.norm(text[:, :d], axis=1, keepdims=True)
        expected += w * hand_infonce(a, t, temperature)
    expected /= sum(weights)
    loss = MatryoshkaContrastiveLoss(dims, weights, temperature=temperature, learnable=False)
    got = float(loss(torch.from_numpy(audio), torch.from_numpy(text)))
    assert got == pytest.approx(expected, rel=1e-5)
    # and the sizes really matter: the full size alone gives another value
    assert got != pytest.approx(hand_infonce(audio, text, temperature), rel=1e-3)


def test_one_full_size_equals_plain_infonce_with_masks_and_hard_negatives() -> None:
    torch.manual_seed(0)
    audio, text, hard = unit(torch.randn(6, 16)), unit(torch.randn(6, 16)), unit(torch.randn(6, 16))
    keys = [text_keys(["a", "b", "a", "c", "d", "e"]), label_keys([["x"], None, None, ["x"], None, None])]
    neg_keys = [text_keys(["a", "z", "y", "x", "w", "v"])]
    valid = torch.tensor([True, True, False, True, True, True])
    plain = ContrastiveLoss(temperature=0.05)
    nested = MatryoshkaContrastiveLoss([16], temperature=0.05)
    args = (audio, text, keys)
    kwargs = {"hard_negatives": hard, "negative_keys": neg_keys, "negative_valid": valid}
    assert torch.equal(plain(*args, **kwargs), nested(*args, **kwargs))
    assert torch.equal(plain(audio, text), nested(audio, text))


def test_gradients_reach_every_prefix_and_the_shared_temperature() -> None:
    torch.manual_seed(1)
    audio = torch.randn(4, 8, requires_grad=True)
    text = unit(torch.randn(4, 8))
    loss = MatryoshkaContrastiveLoss([8, 2])
    loss(unit(audio), text).backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0
    assert loss.logit_scale.grad is not None and [n for n, _ in loss.named_parameters()] == ["logit_scale"]


def test_dims_and_weights_are_checked() -> None:
    assert parse_dims("384,192, 96,48") == [384, 192, 96, 48]
    assert parse_dims([48, 384]) == [384, 48]
    assert parse_dims("auto") == "auto" and parse_dims([]) == [] and parse_dims(None) == []
    assert resolve_dims("auto", 384) == [384, 192, 96, 48]
    for bad in ([0], [64, 64], "x", [True], [1.5]):
        with pytest.raises(ConfigError, match="matryoshka_dims"):
            parse_dims(bad)
    with pytest.raises(ConfigError, match=r"1\.\.384"):
        resolve_dims([512, 64], 384)
    with pytest.raises(ConfigError, match="matryoshka_weights"):
        MatryoshkaContrastiveLoss([8, 4], [1.0])
    tiny = REPO / "configs" / "tiny" / "m1.yaml"
    with pytest.raises(ConfigError, match="matryoshka_weights"):
        load_recipe(tiny, {"train.matryoshka_dims": [32, 16], "train.matryoshka_weights": [1, 2, 3]})
    recipe = load_recipe(tiny, {"matryoshka_dims": "32,16"})  # a bare key, as --matryoshka-dims 32,16
    assert recipe.train.matryoshka_dims == [32, 16]
    loss, dims = make_loss(recipe.train, 64)
    assert isinstance(loss, MatryoshkaContrastiveLoss) and dims == [32, 16]
    plain, none = make_loss(load_recipe(tiny).train, 64)
    assert type(plain) is ContrastiveLoss and none == []


def test_recipe_option_trains_and_the_saved_model_records_its_sizes(tmp_path: Path) -> None:
    from audiovec.train.trainer import train

    overrides = {
        "output.dir": str(tmp_path), "output.plot": False, "output.checkpoint_every": 0, "train.steps": 3,
        "train.matryoshka_dims": "auto", "data.dev": None, "output.eval_every": 0,
    }  # fmt: skip
    summary = train(load_recipe(REPO / "configs" / "tiny" / "m1.yaml", overrides))
    assert all(math.isfinite(x) for x in summary["losses"])
    saved = json.loads((Path(summary["model"]) / "config.json").read_text())
    model = AudioTextEmbedder.from_pretrained(summary["model"])
    full = model.embedding_dim
    assert saved["matryoshka_dims"] == [d for d in (full, full // 2, full // 4, full // 8) if d >= 8]
    assert model.config.matryoshka_dims == saved["matryoshka_dims"]


# ------------------------------------------------------------------------------------------------ truncate_dim
@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> AudioTextEmbedder:
    return AudioTextEmbedder.from_pretrained(tiny_model_dir)


def test_truncate_embeddings_is_prefix_then_renormalise() -> None:
    x = np.array([[3.0, 4.0, 12.0], [np.nan, np.nan, np.nan], [0.0, 0.0, 1.0]], dtype=np.float32)
    out = truncate_embeddings(x, 2)
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    assert np.isnan(out[1]).all() and (out[2] == 0).all()  # failed rows stay NaN; a zero prefix stays 0
    assert truncate_embeddings(x, None) is x and truncate_embeddings(x, 3) is x


def test_encode_truncate_dim_prefix_renormalised_and_errors(model: AudioTextEmbedder, fsdd_clips) -> None:
    full = model.embedding_dim
    d = full // 4
    texts = ["a dog barks", "rain on a window"]
    whole = model.encode_text(texts)
    cut = model.encode_text(texts, truncate_dim=d)
    assert cut.shape == (2, d)
    expected = whole[:, :d] / np.linalg.norm(whole[:, :d], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, rtol=1e-5)
    assert model.encode_text("a dog barks", truncate_dim=d).shape == (d,)
    clips = [str(p) for p in fsdd_clips[:2]]
    audio = model.encode_audio(clips)
    np.testing.assert_allclose(
        model.encode_audio(clips, truncate_dim=d), truncate_embeddings(audio, d), atol=1e-6
    )
    result = model.encode_audio_detailed(clips + ["/nonexistent.wav"], truncate_dim=d, on_error="skip")
    assert result.vectors.shape == (3, d) and list(result.errors) == [2] and np.isnan(result.vectors[2]).all()
    for bad in (0, full + 1, -3, True, 2.5):
        with pytest.raises(ConfigError, match=rf"1\.\.{full}"):
            model.encode_text(texts, truncate_dim=bad)
    assert model.encode_text(texts, truncate_dim=full).shape == (2, full)


def test_model_level_truncate_dim_default(tiny_model_dir: Path) -> None:
    model = AudioTextEmbedder.from_pretrained(tiny_model_dir, truncate_dim=16)
    assert model.truncate_dim == 16 and model.encode_text(["hello"]).shape == (1, 16)
    assert model.encode_text(["hello"], truncate_dim=8).shape == (1, 8)
    model.truncate_dim = None
    assert model.encode_text(["hello"]).shape == (1, model.embedding_dim)
    with pytest.raises(ConfigError, match="truncate_dim"):
        AudioTextEmbedder.from_pretrained(tiny_model_dir, truncate_dim=10**6)


def test_fingerprint_follows_truncate_dim_and_trained_sizes(model: AudioTextEmbedder) -> None:
    """Evaluation caches and indexes key vectors by the fingerprint: shorter vectors must get another one,
    and a model without Matryoshka sizes keeps the id it had before the field existed."""
    from audiovec.evaluation.evaluate import model_fingerprint

    before = model_fingerprint(model)
    try:
        model.truncate_dim = 8
        assert model_fingerprint(model) != before
        model.truncate_dim = None
        model.config.matryoshka_dims = [model.embedding_dim, 8]
        assert model_fingerprint(model) != before
    finally:
        model.truncate_dim = None
        model.config.matryoshka_dims = None
    assert model_fingerprint(model) == before


def test_request_dimensions_any_size_in_range(model: AudioTextEmbedder) -> None:
    full = model.embedding_dim
    assert request_dimensions(None, model) is None and request_dimensions(full, model) is None
    assert request_dimensions(5, model) == 5
    for bad in (0, full + 1, "8", 8.0, False):
        with pytest.raises(ConfigError, match=rf"1\.\.{full}"):
            request_dimensions(bad, model)


# ------------------------------------------------------------------------------------------------ the service
def test_service_dimensions_field_over_a_real_socket(model: AudioTextEmbedder) -> None:
    from audiovec.serve import ServiceLimits, create_app
    from helpers.servers import running

    full = model.embedding_dim
    texts = ["a dog barks", "rain on a window"]
    expected = model.encode_text(texts)
    limits = ServiceLimits(max_wait_ms=5)
    with running(create_app(model, limits=limits, model_name="tiny")) as url:
        for d in (full, full // 2, 7, 1):
            body = httpx.post(
                url + "/v1/embeddings", json={"input": texts, "dimensions": d}, timeout=60
            ).json()
            got = np.array([item["embedding"] for item in body["data"]], dtype=np.float32)
            assert got.shape == (2, d)
            np.testing.assert_allclose(got, truncate_embeddings(expected, d), rtol=1e-4, atol=1e-5)
        fmt = {"input": texts[0], "dimensions": 4, "encoding_format": "base64"}
        raw = httpx.post(url + "/v1/embeddings", json=fmt, timeout=60).json()["data"][0]["embedding"]
        import base64

        assert np.frombuffer(base64.b64decode(raw), "<f4").shape == (4,)
        too_big = httpx.post(url + "/v1/embeddings", json={"input": "x", "dimensions": full + 1}, timeout=60)
        assert too_big.status_code == 400 and f"1..{full}" in too_big.json()["error"]["message"]


# ------------------------------------------------------------------------------------------------ the index
def test_index_stores_the_chosen_size_and_refuses_other_sizes(
    model: AudioTextEmbedder, fsdd_clips, tmp_path: Path
) -> None:
    d = model.embedding_dim // 2
    index = AudioIndex(tmp_path / "db")
    index.add(model, fsdd_clips[:3], dim=d)
    meta = index.meta()
    assert meta["dim"] == d and meta["truncate_dim"] == d and meta["model_dim"] == model.embedding_dim
    stored = index.rows(["vector"]).column("vector").to_pylist()
    expected = truncate_embeddings(model.encode_audio([str(p) for p in fsdd_clips[:3]]), d)
    np.testing.assert_allclose(np.array(stored), expected, atol=1e-5)
    assert len(index.search(expected[0], k=2)) == 2
    with pytest.raises(IndexStoreError, match=rf"stores {d}-d vectors; encode it with truncate_dim={d}"):
        index.search(np.ones(d // 2, dtype=np.float32))
    full_query = model.encode_text("zero")
    with pytest.raises(IndexStoreError, match=f"truncate_dim={d}"):
        index.search(full_query)
    np.testing.assert_allclose(index.query_vector(full_query), truncate_embeddings(full_query, d), atol=1e-6)
    assert index.search_text(model, "zero", k=1)  # encodes at the index's size
    with pytest.raises(IndexStoreError, match=f"stores {d}-d vectors, asked for {d // 2}"):
        AudioIndex(tmp_path / "db").add(model, fsdd_clips[3:4], dim=d // 2)
    AudioIndex(tmp_path / "db").add(model, fsdd_clips[3:4])  # no --dim: the stored size
    assert AudioIndex(tmp_path / "db").meta()["dim"] == d


def test_index_cli_dim_flag(tiny_model_dir: Path, fsdd_clips, tmp_path: Path, capsys) -> None:
    from audiovec.cli import main

    db = tmp_path / "db"
    assert main(["index", str(tiny_model_dir), *map(str, fsdd_clips[:2]), "--db", str(db), "--dim", "8"]) == 0
    assert AudioIndex(db).meta()["dim"] == 8
    capsys.readouterr()
    assert main(["search", "--db", str(db), "seven", "-k", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


@pytest.mark.slow
def test_matryoshka_real_quick_scores_every_size(tmp_path: Path, small_real_corpus: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "matryoshka.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "matryoshka_real.py"), "--quick", "--out", str(out),
         "--work", str(tmp_path / "work"), "--corpus", str(small_real_corpus)],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    plain, nested = data["variants"]
    assert plain["variant"] == "plain" and plain["matryoshka_dims"] is None
    assert nested["matryoshka_dims"] == [384, 192, 96, 48]
    for record in (plain, nested):
        assert list(record["by_size"]) == ["384", "192", "96", "48"] and record["steps"] == data["steps"]
        assert all(0 <= s["t2a_hit_rate@5"] <= 1 for s in record["by_size"].values())
