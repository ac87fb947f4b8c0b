"""Zero-shot sound classification: compare a clip's vector with label vectors built from prompt templates.

Each label is written into several templates ("the sound of {}", "a recording of {}", ...); the template
vectors are averaged and normalised (CLIP-style prompt ensembling), so no single phrasing dominates.
Scores are cosine similarities; probabilities are their softmax at ``logit_scale``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiovec.errors import ConfigError

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "the sound of {}",
    "a recording of {}",
    "a sound of {}",
    "this is the sound of {}",
    "{} can be heard",
)
DEFAULT_LOGIT_SCALE = 100.0


@dataclass
class Prediction:
    """One clip's result: the best label, cosine scores and probabilities for every label."""

    label: str
    score: float
    scores: dict[str, float]
    probs: dict[str, float]

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` best ``(label, probability)`` pairs."""
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]

    def to_json(self, top_k: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "score": self.score, "scores": self.scores}
        out["top"] = [{"label": name, "prob": p} for name, p in self.top(top_k or len(self.probs))]
        return out


def parse_labels(text: str | None = None, file: str | os.PathLike | None = None) -> list[str]:
    """Labels from a comma-separated string or a file with one label per line (``#`` starts a comment)."""
    if (text is None) == (file is None):
        raise ConfigError("give labels either as a comma-separated string or as a file, not both")
    if file is not None:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read labels ({exc.strerror or exc})") from None
        items = [line.split("#", 1)[0] for line in lines]
    else:
        items = str(text).split(",")
    labels = list(dict.fromkeys(x.strip() for x in items if x.strip()))
    if len(labels) < 2:
        raise ConfigError(f"{file or repr(text)}: need at least two distinct labels, got {labels}")
    return labels


class ZeroShotClassifier:
    """Label vectors computed once; classify clips or precomputed audio vectors against them."""

    def __init__(
        self,
        model: Any,
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        logit_scale: float = DEFAULT_LOGIT_SCALE,
        vectors: np.ndarray | None = None,
    ) -> None:
        """``vectors``: the labels' vectors when computed elsewhere (the service computes them in its worker
        thread); otherwise they are computed here with ``model.encode_text``."""
        labels = [str(x).strip() for x in labels]
        if len(labels) < 2 or len(set(labels)) != len(labels) or not all(labels):
            raise ConfigError(f"labels must be at least two distinct non-empty strings, got {labels}")
        if not templates or any("{}" not in t for t in templates):
            raise ConfigError("every prompt template needs a '{}' for the label")
        self.model = model
        self.labels = labels
        self.templates = tuple(templates)
        self.logit_scale = float(logit_scale)
        if vectors is None:
            self.label_vectors = label_vectors(model, labels, self.templates)
        elif np.shape(vectors) != (len(labels), model.embedding_dim):
            raise ConfigError(
                f"label vectors of shape {np.shape(vectors)}; {len(labels)} labels need one each"
            )
        else:
            self.label_vectors = np.asarray(vectors, dtype=np.float32)

    def classify_vectors(self, audio_vectors: np.ndarray) -> list[Prediction]:
        vectors = np.atleast_2d(np.asarray(audio_vectors, dtype=np.float32))
        sims = vectors @ self.label_vectors.T
        logits = self.logit_scale * sims
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        out = []
        for row, prow in zip(sims, probs):
            best = int(np.argmax(row))
            out.append(
                Prediction(
                    label=self.labels[best],
                    score=float(row[best]),
                    scores={name: float(s) for name, s in zip(self.labels, row)},
                    probs={name: float(p) for name, p in zip(self.labels, prow)},
                )
            )
        return out

    def classify(self, sources: Sequence[Any], batch_size: int = 16) -> list[Prediction]:
        """Audio sources (paths, bytes, arrays with the model's rate rules) → one prediction each."""
        return self.classify_vectors(self.model.encode_audio(list(sources), batch_size=batch_size))


def label_vectors(
    model: Any, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> np.ndarray:
    """``(len(labels), D)``: each label's template vectors averaged, then normalised."""
    return average_prompts(model.encode_text(prompts(labels, templates)), len(labels))


def prompts(labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[str]:
    """Every label in every template, label-major (the order :func:`average_prompts` expects)."""
    return [t.format(label) for label in labels for t in templates]


def average_prompts(vectors: np.ndarray, n_labels: int) -> np.ndarray:
    """``(n_labels * n_templates, D)`` prompt vectors → ``(n_labels, D)`` normalised label vectors."""
    vecs = np.asarray(vectors, dtype=np.float64).reshape(n_labels, -1, vectors.shape[-1])
    mean = vecs.mean(axis=1)
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)).astype(np.float32)


__all__ = [
    "DEFAULT_TEMPLATES",
    "Prediction",
    "ZeroShotClassifier",
    "average_prompts",
    "label_vectors",
    "parse_labels",
    "prompts",
]
