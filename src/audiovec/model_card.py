"""What a model folder says about itself: training data (recorded at training time) and a Hub model card.

``save_pretrained`` calls :func:`write_folder_extras`, which writes the sentence-transformers files
(:mod:`audiovec.st_module`) and ``README.md``: a Hugging Face model card whose YAML front matter carries
``library_name: audiovec``, the licence, the base models, the training datasets and, in ``model-index``
form, the metrics of ``audiovec eval`` (kept current by ``audiovec eval --update-card``, which calls
:func:`update_card`). Metrics already in a folder's card survive a new ``save_pretrained`` into it.

The training record lives in ``config.json`` (``extra.training_data``), so every later save (prune,
re-save) keeps it: ``{"manifests": [file names], "datasets": {source: rows}, "date": "YYYY-MM-DD"}``, the
sources being the manifests' ``source`` fields (``clotho``, ``macs``, ``urbansound8k``, Debian package
names, ...). Built-in models keep theirs in ``builtin.json`` (their ``config.json`` extra is emptied).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from audiovec import __version__
from audiovec.builtin_models import SPEC_NAME, builtin_dir, is_builtin
from audiovec.errors import CheckpointError, DataError

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
TRAINING_KEY = "training_data"
CARD_KEY = "card"  # config.json extra / builtin.json: {"license", "license_name", "base_model", ...}
DEFAULT_LICENSE = "other"
TAGS = ["audiovec", "audio", "audio-text", "embeddings", "sentence-transformers", "feature-extraction"]
# audiovec metric name -> the Hub / mteb metric type
METRIC_TYPES = {"hit_rate@": "hit_rate_at_", "recall@": "recall_at_", "ndcg@": "ndcg_at_", "map@": "map_at_"}
CARD_METRICS = ("hit_rate@1", "hit_rate@5", "hit_rate@10", "recall@5", "ndcg@10", "map@10")
DIRECTIONS = {"t2a": "Text-to-audio retrieval", "a2t": "Audio-to-text retrieval"}


# ----------------------------------------------------------------------------------------- sentence-transformers
MODULE_TYPE = "audiovec.st_module.AudiovecModule"
MODULES_NAME = "modules.json"
ST_CONFIG_NAME = "config_sentence_transformers.json"
# the sentence-transformers release line these files are written for (pyproject's `st` extra)
ST_VERSION = "6.2.0"


def write_st_files(folder: str | os.PathLike) -> None:
    """Write ``modules.json`` and ``config_sentence_transformers.json`` into an audiovec model folder.

    Plain JSON: audiovec writes them without sentence-transformers installed.
    """
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": MODULE_TYPE}]
    (folder / MODULES_NAME).write_text(json.dumps(modules, indent=2) + "\n")
    config = {
        "model_type": "SentenceTransformer",
        "__version__": {"sentence_transformers": ST_VERSION, "audiovec": _audiovec_version()},
        "prompts": {"query": "", "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    (folder / ST_CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _audiovec_version() -> str:
    return __version__


# ----------------------------------------------------------------------------------------- training record
def training_record(sources: Iterable[str | os.PathLike | list[Mapping[str, Any]]]) -> dict[str, Any]:
    """``{"manifests", "datasets", "date"}`` for the JSONL files (audio manifests, text pairs) or row lists a
    model was trained on; rows count under their ``source`` field."""
    manifests: list[str] = []
    counts: Counter[str] = Counter()
    for source in sources:
        if isinstance(source, (str, os.PathLike)):
            manifests.append(Path(source).name)
            rows = _jsonl_rows(Path(source))
        else:
            rows = source
        for row in rows:
            counts[str(row.get("source") or "unknown")] += 1
    return {
        "manifests": manifests,
        "datasets": dict(sorted(counts.items())),
        "date": datetime.date.today().isoformat(),
    }


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read it as JSONL to record the training data ({exc})") from None
    return [r for r in rows if isinstance(r, dict)]


def record_training_data(model: Any, record: Mapping[str, Any]) -> None:
    """Store a :func:`training_record` in the model's config (written by the next ``save_pretrained``)."""
    model.config.extra[TRAINING_KEY] = dict(record)


def _builtin_spec(model: Any) -> dict[str, Any]:
    name = model.config.extra.get("builtin")
    if not name:
        return {}
    if not is_builtin(name):
        return {}
    return json.loads((builtin_dir(name) / SPEC_NAME).read_text())


def training_data(model: Any) -> dict[str, Any] | None:
    """The model's training record (config extra, or its built-in spec), None when none was recorded."""
    record = model.config.extra.get(TRAINING_KEY) or _builtin_spec(model).get(TRAINING_KEY)
    return dict(record) if record else None


def card_info(model: Any) -> dict[str, Any]:
    """Licence and base models: what the config (or built-in spec) records, else what compose recorded."""
    info = dict(_builtin_spec(model).get(CARD_KEY) or {})
    info.update(model.config.extra.get(CARD_KEY) or {})
    if "base_model" not in info:
        composed = model.config.extra.get("composed_from") or {}
        hubs = [part.get("hub_id") for part in composed.values() if isinstance(part, dict)]
        if any(hubs):
            info["base_model"] = [h for h in hubs if h]
    info.setdefault("license", DEFAULT_LICENSE)
    return info


# ----------------------------------------------------------------------------------------- model card
def eval_results(run_record: Mapping[str, Any]) -> list[Any]:
    """An ``audiovec eval`` JSON record → huggingface_hub ``EvalResult`` rows (one per set, direction, metric)."""
    from huggingface_hub import EvalResult

    rows = []
    for set_name, result in run_record.get("results", {}).items():
        for direction, task_name in DIRECTIONS.items():
            for metric in CARD_METRICS:
                value = result.get(direction, {}).get(metric)
                if value is None:
                    continue
                prefix = next(p for p in METRIC_TYPES if metric.startswith(p))
                rows.append(
                    EvalResult(
                        task_type="text-to-audio-retrieval"
                        if direction == "t2a"
                        else "audio-to-text-retrieval",
                        task_name=task_name,
                        dataset_type=set_name,
                        dataset_name=set_name,
                        dataset_split=result.get("split") or "test",
                        metric_type=METRIC_TYPES[prefix] + metric[len(prefix) :],
                        metric_name=f"{direction.upper()} {metric}",
                        metric_value=round(float(value), 4),
                    )
                )
    return rows


def render_card(model: Any, name: str, results: list[Any] | None = None) -> str:
    """The README.md text: YAML metadata (``ModelCardData``) and a short body."""
    from huggingface_hub import ModelCardData

    info = card_info(model)
    record = training_data(model)
    datasets = sorted(record["datasets"]) if record else None
    data = ModelCardData(
        library_name="audiovec",
        license=info.get("license"),
        license_name=info.get("license_name"),
        base_model=info.get("base_model"),
        datasets=datasets,
        tags=TAGS,
        pipeline_tag="feature-extraction",
        model_name=name,
        eval_results=results or None,
    )
    dim = model.embedding_dim
    body = [
        f"# {name}",
        "",
        f"An [audiovec](https://pypi.org/project/audiovec/) audio–text embedding model: {model.config.tower_kind} "
        f"audio tower → projector → {model.config.backbone_config.get('model_type', 'LLM')} backbone → "
        f"{model.config.pooling} pooling → L2-normalised {dim}-d vectors; text and audio share the space.",
        "",
        "```python",
        "from audiovec import AudioTextEmbedder",
        "",
        'model = AudioTextEmbedder.from_pretrained("path/to/this/folder")',
        'audio = model.encode_audio(["dog.wav"])',
        'text = model.encode_text(["a dog barking"])',
        "scores = model.similarity(text, audio)",
        "```",
        "",
        "sentence-transformers (>= 6.2) loads the same folder, `SentenceTransformer(path, trust_remote_code=True)`, "
        'and encodes audio paths, arrays and `{"array", "sampling_rate"}` dicts as well as text (one '
        "modality per call); the module is `audiovec.st_module.AudiovecModule` from the installed package.",
        "",
        "## Training data",
        "",
    ]
    if record:
        body += [f"- `{k}`: {v} rows" for k, v in record["datasets"].items()]
        if record.get("manifests"):
            body += ["", "Manifests: " + ", ".join(f"`{m}`" for m in record["manifests"]) + "."]
    else:
        body.append("Not recorded (a composed or pruned model that was not trained by `audiovec train`).")
    body += ["", "## Evaluation", ""]
    if results:
        body += ["| set | task | metric | value |", "|---|---|---|---|"]
        body += [
            f"| {r.dataset_name} | {r.task_name} | {r.metric_name} | {r.metric_value:.4f} |" for r in results
        ]
    else:
        body.append("Run `audiovec eval MODEL --manifest test.jsonl --update-card` to add metrics here.")
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n"


def read_card_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """The YAML front matter of ``folder/README.md`` ({} when there is none)."""
    path = Path(folder) / CARD_NAME
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(text[4:end])
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path}: its YAML metadata does not parse ({exc}); fix or delete it") from None
    return data if isinstance(data, dict) else {}


def card_results(folder: str | os.PathLike) -> list[Any]:
    """The ``EvalResult`` rows of a folder's card (its ``model-index``)."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    index = read_card_metadata(folder).get("model-index")
    if not index:
        return []
    return model_index_to_eval_results(index)[1]


def _merge(old: list[Any], new: list[Any]) -> list[Any]:
    """New rows replace old rows of the same set, task and metric; the rest are kept, in order."""

    def key(r: Any) -> tuple:
        return (r.dataset_name, r.dataset_split, r.task_type, r.metric_type)

    fresh = {key(r) for r in new}
    return [r for r in old if key(r) not in fresh] + list(new)


def write_card(folder: str | os.PathLike, model: Any, results: list[Any] | None = None) -> Path:
    """(Re)write ``folder/README.md`` for ``model``."""
    folder = Path(folder)
    path = folder / CARD_NAME
    path.write_text(render_card(model, folder.name, results), encoding="utf-8")
    return path


def write_folder_extras(folder: Path, model: Any, previous: Path | None = None) -> None:
    """What ``save_pretrained`` adds to a model folder: the sentence-transformers files and the model card
    (keeping the metrics of ``previous``'s card, the folder being replaced)."""
    write_st_files(folder)
    results: list[Any] = []
    if previous is not None and previous.is_dir():
        try:
            results = card_results(previous)
        except Exception as exc:  # noqa: BLE001 - a broken old card must not block a save
            log.warning("%s: metrics of the old model card not kept (%s)", previous / CARD_NAME, exc)
    (folder / CARD_NAME).write_text(
        render_card(model, (previous or folder).name, results or None), encoding="utf-8"
    )


def update_card(folder: str | os.PathLike, run_record: Mapping[str, Any], model: Any | None = None) -> Path:
    """Merge an ``audiovec eval`` record into ``folder/README.md`` (``audiovec eval --update-card``)."""
    from audiovec.model import AudioTextEmbedder

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: --update-card needs a model folder, not a built-in name or hub id")
    model = model if model is not None else AudioTextEmbedder.from_pretrained(folder)
    return write_card(folder, model, _merge(card_results(folder), eval_results(run_record)))
