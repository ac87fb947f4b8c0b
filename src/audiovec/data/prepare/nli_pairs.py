"""SNLI / MultiNLI JSONL (``sentence1, sentence2, gold_label``) → text-pair triplets: premise, an entailed
hypothesis, a contradiction (the seed's text-only modality transfer)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from audiovec.data.manifest import iter_jsonl
from audiovec.data.text_pairs import Pair
from audiovec.errors import DataError

log = logging.getLogger(__name__)


def nli_to_pairs(paths: Iterable[str | os.PathLike], *, require_negative: bool = False) -> list[Pair]:
    """Triplets from SNLI/MultiNLI JSONL: one per (premise, entailed hypothesis), plus a contradiction.

    Rows whose ``gold_label`` is ``-`` (no annotator consensus) are ignored. Deterministic: for each
    premise the first contradiction (in file order) is paired with every entailment.
    """
    groups: dict[str, dict[str, list[str]]] = {}
    for path in paths:
        for where, obj in iter_jsonl(path, "NLI file"):
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object")
            premise, hypothesis = obj.get("sentence1"), obj.get("sentence2")
            label = obj.get("gold_label")
            if not isinstance(premise, str) or not isinstance(hypothesis, str):
                raise DataError(f"{where}: expected 'sentence1' and 'sentence2' strings")
            if label not in ("entailment", "contradiction") or not premise.strip() or not hypothesis.strip():
                continue
            group = groups.setdefault(premise.strip(), {"entailment": [], "contradiction": []})
            group[label].append(hypothesis.strip())
    pairs: list[Pair] = []
    for premise, group in groups.items():
        negative = group["contradiction"][0] if group["contradiction"] else None
        if negative is None and require_negative:
            continue
        for positive in dict.fromkeys(group["entailment"]):
            pair: Pair = {"anchor": premise, "positive": positive, "source": "nli"}
            if negative is not None:
                pair["negative"] = negative
            pairs.append(pair)
    return pairs
