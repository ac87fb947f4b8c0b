"""mteb ``ModelMeta`` from a model folder: training datasets recorded by the trainer, Matryoshka sizes,
licence, size; the refusal to score tasks on training data; task names as the installed mteb has them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiovec.model import AudioTextEmbedder

mteb = pytest.importorskip("mteb")
from audiovec.evaluation.mteb import (  # noqa: E402
    MAIN_SCORE,
    MTEB_RETRIEVAL_TASKS,
    TrainTestOverlapError,
    check_train_overlap,
    local_retrieval_task,
    model_meta,
    mteb_scores,
    mteb_task_names,
    run_mteb,
)

REPO = Path(__file__).resolve().parents[2]


def test_retrieval_task_names_and_main_scores_are_the_installed_mteb_ones() -> None:
    for tasks in MTEB_RETRIEVAL_TASKS.values():
        for name in tasks.values():
            meta = mteb.get_task(name).metadata
            assert meta.main_score == MAIN_SCORE == "hit_rate_at_5", name
            assert getattr(meta, "superseded_by", None) is None, f"{name} is superseded"
    old = mteb.get_tasks(tasks=["ClothoT2ARetrieval"], exclude_superseded=False)[0].metadata
    assert old.superseded_by == "ClothoT2ARetrieval.v2"


def test_dataset_names_map_to_every_task_on_that_dataset() -> None:
    names = mteb_task_names(["clotho", "urbansound8k", "0ad-data", "synthetic"])
    assert {"ClothoT2ARetrieval", "ClothoT2ARetrieval.v2", "ClothoA2TRetrieval.v2"} <= names
    assert {"UrbanSound8k", "UrbanSound8KT2ARetrieval", "UrbanSound8kZeroshot"} <= names
    assert not any(n.startswith(("MACS", "AudioCaps", "ESC50")) for n in names)
    assert mteb_task_names(["ESC50"]) == {"ESC50"}  # an mteb task name stands for itself


@pytest.mark.slow
def test_builtin_model_meta() -> None:
    model = AudioTextEmbedder.from_pretrained("audiovec-sounds")
    meta = model_meta("audiovec-sounds")
    assert isinstance(meta, mteb.models.ModelMeta)
    assert meta.name == "audiovec/audiovec-sounds"
    assert meta.training_datasets == {"FSDD"}  # 2000 FSDD clips; the Debian packages are no mteb tasks
    assert meta.embed_dim == 384
    assert meta.n_parameters == sum(p.numel() for p in model.parameters())
    assert meta.memory_usage_mb == pytest.approx(meta.n_parameters * 4 / 2**20, abs=0.1)  # fp32
    assert meta.license == "multiple" and meta.open_weights
    assert meta.release_date == "2026-12-01"
    assert meta.modalities == ["audio", "text"] and meta.similarity_fn_name == "cosine"
    assert meta.max_tokens == model.config.text_max_length
    assert meta.is_zero_shot_on(["ClothoT2ARetrieval.v2"]) and not meta.is_zero_shot_on(["FSDD"])
    with pytest.raises(TrainTestOverlapError, match="FSDD"):
        check_train_overlap(meta, ["ClothoT2ARetrieval.v2", "FSDD"])
    assert check_train_overlap(meta, ["FSDD"], allow_train_overlap=True) == {"FSDD"}
    assert check_train_overlap(meta, ["ClothoT2ARetrieval.v2"]) == set()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two steps of a tiny recipe on a manifest whose rows say they come from Clotho and MACS."""
    from audiovec.data.fsdd import bundled_files as fsdd_files
    from audiovec.train.config import load_recipe
    from audiovec.train.trainer import train

    tmp = tmp_path_factory.mktemp("trained")
    rows = [
        {"id": p.stem, "audio": str(p), "captions": [f"digit {p.stem[0]}"], "source": src}
        for p, src in zip(fsdd_files(16), ["clotho", "macs"] * 8, strict=True)
    ]
    manifest = tmp / "mix.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = {
        "output.dir": str(tmp / "run"),
        "data.train": [str(manifest), {"fsdd": {"n": 8}}],
        "data.dev": None,
        "train.steps": 2,
        "train.batch_size": 8,
        "output.eval_every": 0,
        "output.checkpoint_every": 0,
    }
    summary = train(load_recipe(REPO / "configs" / "tiny" / "full.yaml", overrides))
    return Path(summary["model"])


def test_trainer_records_its_datasets_in_the_saved_folder(trained: Path) -> None:
    record = json.loads((trained / "config.json").read_text())["extra"]["training_data"]
    assert record["manifests"] == ["mix.jsonl"]
    assert record["datasets"] == {"clotho": 8, "fsdd": 8, "macs": 8}
    meta = model_meta(trained)
    assert {"ClothoT2ARetrieval.v2", "ClothoA2TRetrieval.v2", "MACST2ARetrieval.v2", "FSDD"} <= (
        meta.training_datasets
    )
    assert not any(n.startswith("AudioCaps") for n in meta.training_datasets)
    assert meta.release_date == record["date"]
    # the record survives a re-save (prune, copy) and reaches the model card
    again = AudioTextEmbedder.from_pretrained(trained).save_pretrained(trained.parent / "copy")
    assert model_meta(again).training_datasets == meta.training_datasets
    assert "- clotho\n" in (again / "README.md").read_text()


def test_matryoshka_dims_give_a_list(trained: Path, tmp_path: Path) -> None:
    model = AudioTextEmbedder.from_pretrained(trained)
    model.config.extra["matryoshka_dims"] = [32, 16]
    assert model_meta(model).embed_dim == [16, 32, model.embedding_dim]
    assert model_meta(AudioTextEmbedder.from_pretrained(trained)).embed_dim == model.embedding_dim


def test_run_mteb_refuses_tasks_on_training_data(trained: Path, fsdd_clips: list[Path]) -> None:
    from audiovec.evaluation.retrieval_sets import RetrievalSet

    clips = [str(p) for p in fsdd_clips[:4]]
    texts = [f"digit {Path(c).stem[0]}" for c in clips]
    data = RetrievalSet("tiny", clips, [Path(c).stem for c in clips], texts, [(i, i) for i in range(4)])
    model = AudioTextEmbedder.from_pretrained(trained)
    clotho = local_retrieval_task(data, "t2a", name="ClothoT2ARetrieval.v2")
    with pytest.raises(TrainTestOverlapError, match="ClothoT2ARetrieval.v2"):
        run_mteb(model, [clotho])
    result = run_mteb(model, [clotho], allow_train_overlap=True)
    assert 0.0 <= result.task_results[0].scores["test"][0]["hit_rate_at_5"] <= 1.0
    other = local_retrieval_task(data, "t2a", name="AudiovecTinyT2ARetrieval")
    assert run_mteb(model, [other]).task_results[0].task_name == "AudiovecTinyT2ARetrieval"


def test_mteb_scores_from_an_eval_record(trained: Path) -> None:
    meta = model_meta(trained)
    record = {
        "results": {
            "audiocaps": {"t2a": {"hit_rate@5": 0.25}, "a2t": {"hit_rate@5": 0.5}},
            "clotho": {"t2a": {"hit_rate@5": 0.125}, "a2t": {"hit_rate@5": 0.75}},
        }
    }
    with pytest.raises(TrainTestOverlapError, match="ClothoA2TRetrieval.v2"):
        mteb_scores(record, meta)
    only_audiocaps = {"results": {"audiocaps": record["results"]["audiocaps"]}}
    assert mteb_scores(only_audiocaps, meta) == {"AudioCapsT2ARetrieval": 0.25, "AudioCapsA2TRetrieval": 0.5}
    scores = mteb_scores(record, meta, allow_train_overlap=True)
    assert scores["ClothoT2ARetrieval.v2"] == 0.125
