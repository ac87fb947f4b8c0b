"""Model cards: save_pretrained writes README.md with Hub metadata, `audiovec eval --update-card` keeps its
model-index current, `audiovec push` uploads with the real huggingface_hub client to a local Hub endpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from audiovec.cli import main
from audiovec.errors import CheckpointError
from audiovec.hub import upload_plan
from audiovec.model import AudioTextEmbedder
from audiovec.model_card import card_results, read_card_metadata
from helpers.hub_server import local_hub


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture()
def model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny-model"))


@pytest.fixture()
def manifest(tmp_path: Path, fsdd_clips: list[Path]) -> Path:
    path = tmp_path / "heldout.jsonl"
    rows = [
        {"id": p.stem, "audio": str(p), "captions": [f"spoken digit {p.stem[0]}"]} for p in fsdd_clips[:6]
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_save_pretrained_writes_a_hub_model_card(model_dir: Path) -> None:
    card = ModelCard.load(model_dir / "README.md")  # huggingface_hub's own parser
    assert card.data.library_name == "audiovec"
    assert card.data.license == "other"
    assert "audio" in card.data.tags and card.data.pipeline_tag == "feature-extraction"
    assert card.data.eval_results is None and card.data.datasets is None
    assert "# tiny-model" not in card.text  # named after the folder it was saved to
    assert card.text.startswith("\n# tiny-qwen3omni-qwen2")


def test_builtin_model_card_names_bases_licence_and_datasets(tmp_path: Path) -> None:
    folder = AudioTextEmbedder.from_pretrained("audiovec-sounds").save_pretrained(tmp_path / "sounds")
    meta = read_card_metadata(folder)
    assert meta["library_name"] == "audiovec"
    assert meta["base_model"] == ["openai/whisper-tiny.en", "sentence-transformers/all-MiniLM-L6-v2"]
    assert meta["license"] == "other" and meta["license_name"] == "multiple"
    assert {"fsdd", "0ad-data", "megaglest-data", "synthetic"} <= set(meta["datasets"])
    assert "supertuxkart-data" not in meta["datasets"]  # a held-out package
    assert "- `fsdd`: 2000 rows" in (folder / "README.md").read_text()


def test_eval_update_card_writes_and_merges_the_model_index(
    model_dir: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "eval.json"
    args = ["eval", str(model_dir), "--manifest", str(manifest), "--no-cache", "--json", str(out)]
    assert main([*args, "--update-card"]) == 0
    record = json.loads(out.read_text())
    t2a = record["results"]["heldout"]["t2a"]["hit_rate@5"]
    rows = {(r.dataset_name, r.task_name, r.metric_type): r.metric_value for r in card_results(model_dir)}
    assert rows[("heldout", "Text-to-audio retrieval", "hit_rate_at_5")] == round(t2a, 4)
    assert ("heldout", "Audio-to-text retrieval", "ndcg_at_10") in rows
    card = ModelCard.load(model_dir / "README.md")
    assert card.data.eval_results and card.data.model_name == "tiny-model"
    assert "| heldout | Text-to-audio retrieval | T2A hit_rate@5 |" in card.text

    # a second set is added, the first kept; without the flag the card is left alone
    second = manifest.with_name("other.jsonl")
    second.write_text("".join(manifest.read_text().splitlines(keepends=True)[:4]))
    assert main(["eval", str(model_dir), "--manifest", str(second), "--no-cache", "--update-card"]) == 0
    names = {r.dataset_name for r in card_results(model_dir)}
    assert names == {"heldout", "other"}
    before = (model_dir / "README.md").read_bytes()
    assert main(["eval", str(model_dir), "--manifest", str(second), "--no-cache"]) == 0
    assert (model_dir / "README.md").read_bytes() == before
    # saving the model into its folder again keeps the metrics
    AudioTextEmbedder.from_pretrained(model_dir).save_pretrained(model_dir)
    assert {r.dataset_name for r in card_results(model_dir)} == names
    # a broken card does not block a save (its metrics are dropped, with a warning)
    (model_dir / "README.md").write_text("---\nmodel-index: [unclosed\n---\n")
    AudioTextEmbedder.from_pretrained(model_dir).save_pretrained(model_dir)
    assert card_results(model_dir) == [] and read_card_metadata(model_dir)["library_name"] == "audiovec"
    # a built-in name has no folder to write to
    assert main(["eval", "audiovec-sounds", "--manifest", str(second), "--no-cache", "--update-card"]) == 1
    assert "--update-card needs a model folder" in capsys.readouterr().err


def test_push_uploads_the_folder_to_a_local_hub(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / ".tmp-leftover").mkdir()  # atomic-save leftovers never leave the machine
    (model_dir / ".tmp-leftover" / "x.bin").write_bytes(b"junk")
    with local_hub(tmp_path / "hub") as (endpoint, hub):
        argv = ["push", str(model_dir), "me/tiny-audio", "--token", "hf_test", "--endpoint", endpoint]
        assert main([*argv, "--private", "--message", "first upload"]) == 0
        repo = tmp_path / "hub" / "me" / "tiny-audio"
        shutil.rmtree(model_dir / ".tmp-leftover")
        assert _files(repo) == _files(model_dir)
        assert {"README.md", "modules.json", "config_sentence_transformers.json", "model.safetensors"} <= set(
            _files(repo)
        )
        create = next(r for r in hub.requests if r["path"] == "/api/repos/create")
        assert create["json"]["name"] == "tiny-audio" and create["json"]["organization"] == "me"
        assert create["json"]["visibility"] == "private"
        assert all(r["authorization"] == "Bearer hf_test" for r in hub.requests)
        validated = next(r for r in hub.requests if r["path"] == "/api/validate-yaml")
        assert validated["metadata"]["library_name"] == "audiovec"
        assert hub.commits[0]["header"]["summary"] == "first upload"
        assert hub.commits[0]["revision"] == "main"
        # the repository exists now: a second push commits again (create_repo's exist_ok path)
        assert main(argv) == 0
        assert (
            len(hub.commits) == 2 and hub.commits[1]["header"]["summary"] == "Upload tiny-model with audiovec"
        )
    # the downloaded layout loads as the same model
    assert _files(repo)["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    AudioTextEmbedder.from_pretrained(repo)


def test_push_sends_weights_through_git_lfs(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The Hub asks for weights through Git LFS: the real client posts the LFS batch, PUTs each object, has it
    verified and commits pointers (``lfsFile``); the repository then holds the same bytes. A second push
    uploads no object again (the server already has them). Xet storage is off: this server speaks LFS only."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)
    weights = sorted(p.name for p in model_dir.glob("*.safetensors"))
    assert weights
    with local_hub(tmp_path / "hub", lfs_suffixes=(".safetensors",)) as (endpoint, hub):
        argv = ["push", str(model_dir), "me/tiny-lfs", "--token", "hf_test", "--endpoint", endpoint]
        assert main(argv) == 0
        (commit,) = hub.commits
        assert sorted(commit["lfs_paths"]) == weights and not set(weights) & set(commit["paths"])
        puts = [r for r in hub.requests if r["method"] == "PUT"]
        assert len(puts) == len(weights) and sorted(hub.lfs_verified) == sorted(hub.lfs_objects)
        batch = next(r for r in hub.requests if r["path"] == "/me/tiny-lfs.git/info/lfs/objects/batch")
        assert batch["authorization"] == "Bearer hf_test" and batch["json"]["operation"] == "upload"
        assert _files(tmp_path / "hub" / "me" / "tiny-lfs") == _files(model_dir)
        assert main(argv) == 0
        assert len(hub.commits) == 2 and len([r for r in hub.requests if r["method"] == "PUT"]) == len(puts)
    AudioTextEmbedder.from_pretrained(tmp_path / "hub" / "me" / "tiny-lfs")


def test_upload_plan_completes_old_folders_without_changing_them(model_dir: Path, capsys) -> None:
    for name in ("README.md", "modules.json", "config_sentence_transformers.json"):
        (model_dir / name).unlink()
    before = _files(model_dir)
    plan = upload_plan(model_dir)
    assert [op.path_in_repo for op in plan] == sorted(
        [*before, "README.md", "modules.json", "config_sentence_transformers.json"]
    )
    readme = next(op for op in plan if op.path_in_repo == "README.md").path_or_fileobj
    assert b"library_name: audiovec" in readme
    assert _files(model_dir) == before
    assert main(["push", str(model_dir), "me/x", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "model.safetensors" in printed and "README.md" in printed


def test_push_refuses_what_is_not_an_audiovec_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="not an audiovec model folder"):
        upload_plan(tmp_path)
    assert main(["push", str(tmp_path / "missing"), "me/x", "--endpoint", "http://127.0.0.1:9"]) == 1
