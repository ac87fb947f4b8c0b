"""Run an audiovec embedder inside MTEB (2.x), unchanged: the encoder protocol, and local tasks.

``MtebEncoder`` implements mteb's ``EncoderProtocol``: ``encode(inputs: DataLoader, *, task_metadata,
hf_split, hf_subset, prompt_type, **kwargs)`` receives batches with a ``"text"`` list and/or an ``"audio"``
list whose items are ``{"array", "sampling_rate"}`` (also accepted: ``{"bytes"}`` / ``{"path"}`` cells of
undecoded ``datasets.Audio`` columns, and torchcodec decoders). A batch with both gets the normalised sum.

``local_retrieval_task`` turns a :class:`~audiovec.evaluation.retrieval_sets.RetrievalSet` into an mteb
``Any2AnyRetrieval`` task without the hub, so mteb's own evaluation can be run on local data (and
checked against ``audiovec eval``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from audiovec.errors import DataError
from audiovec.evaluation.metrics import trec_doc_ids
from audiovec.evaluation.retrieval_sets import AudioRef, RetrievalSet

if TYPE_CHECKING:
    from torch.utils.data import DataLoader


def _model_meta(name: str, model: Any, revision: str | None) -> Any:
    from mteb.models import ModelMeta

    n_params = None
    if hasattr(model, "parameters"):
        n_params = int(sum(p.numel() for p in model.parameters()))
    return ModelMeta(
        loader=None,
        name=name,
        revision=revision,
        release_date=None,
        languages=["eng-Latn"],
        n_parameters=n_params,
        memory_usage_mb=None,
        max_tokens=None,
        embed_dim=getattr(model, "embedding_dim", None),
        license=None,
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["PyTorch"],
        similarity_fn_name="cosine",
        use_instructions=False,
        training_datasets=None,
        modalities=["audio", "text"],
    )


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
        self.mteb_model_meta = _model_meta(model_name, model, revision)

    def _audio(self, items: Sequence[Any]) -> np.ndarray:
        from audiovec.evaluation.evaluate import encode_audio_refs

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
    import datasets
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

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
    model: Any, tasks: Sequence[Any], *, batch_size: int = 16, model_name: str = "audiovec/local"
) -> Any:
    """Evaluate with ``mteb.evaluate`` (no result cache, no hub); returns mteb's ``ModelResult``."""
    import mteb

    encoder = model if isinstance(model, MtebEncoder) else MtebEncoder(model, model_name)
    return mteb.evaluate(
        encoder,
        list(tasks),
        cache=None,
        overwrite_strategy="always",
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        show_progress_bar=False,
    )
