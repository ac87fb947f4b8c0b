"""Run an audiovec embedder inside MTEB (2.x), unchanged: the encoder protocol, and local tasks.

``MtebEncoder`` implements mteb's ``EncoderProtocol``: ``encode(inputs: DataLoader, *, task_metadata,
hf_split, hf_subset, prompt_type, **kwargs)`` receives batches with a ``"text"`` list and/or an ``"audio"``
list whose items are ``{"array", "sampling_rate"}`` (also accepted: ``{"bytes"}`` / ``{"path"}`` cells of
undecoded ``datasets.Audio`` columns, and torchcodec decoders). A batch with both gets the normalised sum.

``model_meta`` describes a model as mteb's ``ModelMeta`` from what its folder records (training datasets,
Matryoshka sizes, licence, size); ``check_train_overlap`` / ``run_mteb`` / ``mteb_scores`` refuse to score a
task on data the model was trained on unless ``allow_train_overlap=True``.

``local_retrieval_task`` turns a :class:`~audiovec.evaluation.retrieval_sets.RetrievalSet` into an mteb
``Any2AnyRetrieval`` task without the hub, so mteb's own evaluation can be run on local data (and
checked against ``audiovec eval``).
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiovec.errors import DataError
from audiovec.evaluation.evaluate import encode_audio_refs
from audiovec.evaluation.metrics import trec_doc_ids
from audiovec.evaluation.retrieval_sets import AudioRef, RetrievalSet
from audiovec.model import CONFIG_NAME, AudioTextEmbedder
from audiovec.model_card import card_info, training_data

if TYPE_CHECKING:
    from torch.utils.data import DataLoader


# audiovec benchmark / manifest source → mteb's current retrieval tasks on that dataset (checked against the
# installed mteb in tests: present, not superseded, main score hit_rate_at_5). ClothoT2ARetrieval.v2
# supersedes v1, whose 905 queries were empty.
MTEB_RETRIEVAL_TASKS: dict[str, dict[str, str]] = {
    "clotho": {"t2a": "ClothoT2ARetrieval.v2", "a2t": "ClothoA2TRetrieval.v2"},
    "audiocaps": {"t2a": "AudioCapsT2ARetrieval", "a2t": "AudioCapsA2TRetrieval"},
    "audioset-strong": {"t2a": "AudioSetStrongT2ARetrieval.v2", "a2t": "AudioSetStrongA2TRetrieval.v2"},
    "macs": {"t2a": "MACST2ARetrieval.v2", "a2t": "MACSA2TRetrieval.v2"},
}
MAIN_SCORE = "hit_rate_at_5"
# manifest ``source`` → prefixes of the mteb task names built on that dataset (every task type and version)
MTEB_DATASET_PREFIXES: dict[str, tuple[str, ...]] = {
    "clotho": ("Clotho",),
    "macs": ("MACS",),
    "urbansound8k": ("UrbanSound8K",),
    "audiocaps": ("AudioCaps",),
    "audioset_strong": ("AudioSetStrong",),
    "audioset-strong": ("AudioSetStrong",),
    "fsd50k": ("FSD50K",),
    "fsdd": ("FSDD",),
}


class TrainTestOverlapError(DataError):
    """A score was asked for on a task whose dataset the model was trained on."""


@functools.lru_cache(maxsize=1)
def _all_task_names() -> frozenset[str]:
    """Every task name of the installed mteb (superseded versions too); listing them builds each task."""
    import mteb

    return frozenset(t.metadata.name for t in mteb.get_tasks(exclude_superseded=False))


def mteb_task_names(datasets: Iterable[str]) -> set[str]:
    """The mteb task names (all versions, superseded ones too) built on the given training datasets.

    A dataset is a manifest ``source`` (``clotho``, ``macs``, ``urbansound8k``, ...) or already an mteb task
    name; other sources (Debian packages, synthetic clips) match no task.
    """
    tasks = _all_task_names()
    folded = {name.lower(): name for name in tasks}
    names: set[str] = set()
    for dataset in datasets:
        if dataset in tasks:
            names.add(dataset)
        prefixes = MTEB_DATASET_PREFIXES.get(dataset.lower(), ())
        names |= {name for low, name in folded.items() if low.startswith(tuple(p.lower() for p in prefixes))}
    return names


def _load(model_or_path: Any) -> Any:
    if isinstance(model_or_path, (str, os.PathLike)):
        return AudioTextEmbedder.from_pretrained(model_or_path)
    return model_or_path


def _default_name(model_or_path: Any, model: Any) -> str:
    builtin = getattr(getattr(model, "config", None), "extra", {}).get("builtin")
    if builtin:
        return f"audiovec/{builtin}"
    if isinstance(model_or_path, (str, os.PathLike)):
        return f"audiovec/{Path(model_or_path).resolve().name}"
    return "audiovec/local"


def _mteb_license(info: dict[str, Any]) -> str:
    from typing import get_args

    from mteb.types._metadata import Licenses

    allowed = set(get_args(Licenses))
    for value in (info.get("license"), info.get("license_name")):
        if isinstance(value, str) and value.lower() in allowed:
            return value.lower()
    return "not specified"


def model_meta(
    model_or_path: Any, name: str | None = None, revision: str | None = None, release_date: str | None = None
) -> Any:
    """mteb's ``ModelMeta`` for an audiovec model (a model, a folder or a built-in name), from what the
    folder records: ``training_datasets`` (the mteb tasks on the datasets it was trained on, see
    :func:`mteb_task_names`; None when no training was recorded), ``embed_dim`` (a list when the config
    names ``matryoshka_dims``), licence, parameter count, weights memory and release date."""
    from mteb.models import ModelMeta

    model = _load(model_or_path)
    config = getattr(model, "config", None)
    extra = dict(getattr(config, "extra", {}) or {})
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    n_params = int(sum(p.numel() for p in params)) if params else None
    memory = round(sum(p.numel() * p.element_size() for p in params) / 2**20, 1) if params else None
    dim = getattr(model, "embedding_dim", None)
    matryoshka = extra.get("matryoshka_dims") or getattr(config, "matryoshka_dims", None)
    embed_dim: Any = (
        sorted({int(d) for d in matryoshka} | ({int(dim)} if dim else set())) if matryoshka else dim
    )
    record = training_data(model) if config is not None else None
    info = card_info(model) if config is not None else {}
    if release_date is None and record and record.get("date"):
        release_date = record["date"]
    if release_date is None and isinstance(model_or_path, (str, os.PathLike)):
        config_file = Path(model_or_path) / CONFIG_NAME
        if config_file.is_file():
            release_date = datetime.date.fromtimestamp(config_file.stat().st_mtime).isoformat()
    return ModelMeta(
        loader=None,
        name=name or _default_name(model_or_path, model),
        revision=revision,
        release_date=release_date,
        languages=["eng-Latn"],
        n_parameters=n_params,
        memory_usage_mb=memory,
        max_tokens=float(config.text_max_length) if config is not None else None,
        embed_dim=embed_dim,
        license=_mteb_license(info),
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["PyTorch", "Sentence Transformers"],
        similarity_fn_name="cosine",
        use_instructions=False,
        training_datasets=mteb_task_names(record["datasets"]) if record else None,
        modalities=["audio", "text"],
    )


def check_train_overlap(meta: Any, tasks: Sequence[Any], allow_train_overlap: bool = False) -> set[str]:
    """The tasks (names or mteb tasks) whose dataset ``meta`` was trained on; raises
    :class:`TrainTestOverlapError` for any unless ``allow_train_overlap`` (the score is then not zero-shot)."""
    names = {t if isinstance(t, str) else t.metadata.name for t in tasks}
    trained = meta.get_training_datasets() or set()
    overlap = names & trained
    if overlap and not allow_train_overlap:
        raise TrainTestOverlapError(
            f"{meta.name} was trained on the data of {', '.join(sorted(overlap))}: its score there is not "
            "zero-shot. Leave these tasks out, or pass allow_train_overlap=True to report them marked as such"
        )
    return overlap


def mteb_scores(run_record: dict[str, Any], meta: Any, allow_train_overlap: bool = False) -> dict[str, float]:
    """``audiovec eval`` results on the benchmarks mteb also has → ``{mteb task name: hit_rate_at_5}``,
    refusing tasks the model was trained on (see :func:`check_train_overlap`)."""
    scores: dict[str, float] = {}
    for set_name, result in run_record.get("results", {}).items():
        for direction, task in MTEB_RETRIEVAL_TASKS.get(set_name, {}).items():
            value = result.get(direction, {}).get("hit_rate@5")
            if value is not None:
                scores[task] = float(value)
    check_train_overlap(meta, list(scores), allow_train_overlap)
    return scores


def audio_item_to_ref(item: Any) -> AudioRef:
    """One audio cell of an mteb batch → something ``encode_audio`` reads."""
    if isinstance(item, dict):
        if item.get("array") is not None and item.get("sampling_rate"):
            return (np.asarray(item["array"], dtype=np.float32), int(item["sampling_rate"]))
        if item.get("bytes"):
            return bytes(item["bytes"])
        if item.get("path"):
            return str(item["path"])
    if hasattr(item, "get_all_samples"):  # torchcodec AudioDecoder (datasets >= 4 decoding)
        samples = item.get_all_samples()
        return (samples.data.float().numpy(), int(samples.sample_rate))
    if isinstance(item, (str, bytes)):
        return item
    raise DataError(f"mteb audio item of type {type(item).__name__} is not understood")


class MtebEncoder:
    """An audiovec embedder (``encode_audio`` / ``encode_text``) speaking mteb's encoder protocol."""

    def __init__(
        self,
        model: Any,
        model_name: str = "audiovec/local",
        revision: str | None = None,
        *,
        device: str | None = None,
        audio_batch_size: int = 16,
        text_batch_size: int = 64,
    ) -> None:
        if device is not None and hasattr(model, "to"):
            model.to(device)
        self.model = model
        self.audio_batch_size = audio_batch_size
        self.text_batch_size = text_batch_size
        self.mteb_model_meta = model_meta(model, model_name, revision)

    def _audio(self, items: Sequence[Any]) -> np.ndarray:

        return encode_audio_refs(self.model, [audio_item_to_ref(x) for x in items], self.audio_batch_size)

    def encode(
        self,
        inputs: DataLoader,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed every batch of ``inputs``; returns (N, D) float32 unit vectors in input order."""
        out = []
        for batch in inputs:
            parts = []
            if batch.get("text") is not None:
                parts.append(
                    np.asarray(self.model.encode_text(list(batch["text"]), batch_size=self.text_batch_size))
                )
            if batch.get("audio") is not None:
                parts.append(self._audio(batch["audio"]))
            if not parts:
                raise DataError(f"mteb batch has neither 'text' nor 'audio' (keys: {sorted(batch)})")
            vec = np.sum(parts, axis=0) if len(parts) > 1 else parts[0]
            out.append(vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12))
        if not out:
            return np.zeros((0, int(getattr(self.model, "embedding_dim", 0))), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    @staticmethod
    def similarity(embeddings1: Any, embeddings2: Any) -> Any:
        from mteb.similarity_functions import cos_sim

        return cos_sim(embeddings1, embeddings2)

    @staticmethod
    def similarity_pairwise(embeddings1: Any, embeddings2: Any) -> Any:
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(embeddings1, embeddings2)


def _audio_cell(ref: AudioRef) -> dict[str, Any]:
    """A clip as mteb's ``AudioInputItem`` (decoded at its own rate, like a decoded datasets.Audio)."""
    import soundfile as sf

    if isinstance(ref, tuple):
        wave, rate = ref
        return {"array": np.asarray(wave, dtype=np.float32), "sampling_rate": int(rate)}
    import io

    wave, rate = sf.read(ref if isinstance(ref, str) else io.BytesIO(ref), dtype="float32", always_2d=True)
    return {"array": wave.mean(axis=1), "sampling_rate": int(rate)}


def local_retrieval_task(data: RetrievalSet, direction: str = "t2a", name: str | None = None) -> Any:
    """An mteb ``Any2AnyRetrieval`` task over ``data`` (``t2a``: text queries, audio corpus; ``a2t``: the reverse).

    Corpus ids are named so that mteb's tie rule (id descending) equals audiovec's (index ascending).
    """
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    import datasets

    if direction not in ("t2a", "a2t"):
        raise ValueError(f"direction must be 't2a' or 'a2t', got {direction!r}")
    audio_rows = [{"audio": _audio_cell(ref)} for ref in data.audio]
    text_rows = [{"text": t} for t in data.texts]
    if direction == "t2a":
        corpus_rows, query_rows = audio_rows, text_rows
        pairs = [(t, a) for t, a in data.pairs]
    else:
        corpus_rows, query_rows = text_rows, audio_rows
        pairs = [(a, t) for t, a in data.pairs]
    corpus_ids = trec_doc_ids(len(corpus_rows))
    query_ids = [f"q{i}" for i in range(len(query_rows))]
    qrels: dict[str, dict[str, int]] = {}
    for q, c in pairs:
        qrels.setdefault(query_ids[q], {})[corpus_ids[c]] = 1
    corpus = datasets.Dataset.from_list(
        [{"id": i, **r} for i, r in zip(corpus_ids, corpus_rows, strict=True)]
    )
    queries = datasets.Dataset.from_list([{"id": i, **r} for i, r in zip(query_ids, query_rows, strict=True)])
    task_name = (
        name or f"Audiovec{data.name.title().replace('-', '').replace('_', '')}{direction.upper()}Retrieval"
    )

    class LocalAudioRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=task_name,
            description=f"Local audio-text retrieval set {data.name!r} built by audiovec ({direction}).",
            reference=None,
            dataset={"path": f"local/{data.name}", "revision": "local"},
            type="Any2AnyRetrieval",
            category=direction,
            modalities=["text", "audio"],
            eval_splits=["test"],
            eval_langs=["eng-Latn"],
            main_score="hit_rate_at_5",
            date=None,
            domains=None,
            task_subtypes=None,
            license=None,
            annotations_creators=None,
            dialect=None,
            sample_creation=None,
            bibtex_citation="",
        )

        def load_data(self, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            self.dataset = {
                "default": {
                    "test": {"corpus": corpus, "queries": queries, "relevant_docs": qrels, "top_ranked": None}
                }
            }
            self.data_loaded = True

    return LocalAudioRetrieval()


def run_mteb(
    model: Any,
    tasks: Sequence[Any],
    *,
    batch_size: int = 16,
    model_name: str = "audiovec/local",
    allow_train_overlap: bool = False,
) -> Any:
    """Evaluate with ``mteb.evaluate`` (no result cache, no hub); returns mteb's ``ModelResult``.

    Refuses tasks whose dataset the model was trained on unless ``allow_train_overlap``."""
    import mteb

    encoder = model if isinstance(model, MtebEncoder) else MtebEncoder(model, model_name)
    check_train_overlap(encoder.mteb_model_meta, tasks, allow_train_overlap)
    return mteb.evaluate(
        encoder,
        list(tasks),
        cache=None,
        overwrite_strategy="always",
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        show_progress_bar=False,
    )
