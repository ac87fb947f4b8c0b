"""SciFact claims + ``corpus.jsonl`` → text pairs (docs/data.md gives the rules)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

from audiovec.data.manifest import iter_jsonl
from audiovec.data.prepare.claims import SCIFACT_LABELS, check_mode, claim_rows, evidence_text
from audiovec.data.text_pairs import Pair
from audiovec.errors import DataError

log = logging.getLogger(__name__)


def _iter_scifact_claims(
    paths: list[str | os.PathLike],
) -> Iterator[tuple[str, str, list[tuple[str, str, list[int]]]]]:
    """``(where, claim, rationales)``; a rationale is ``(doc id, label, sentence indices)``."""
    for path in paths:
        for where, obj in iter_jsonl(path, "SciFact claims file"):
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object")
            claim = obj.get("claim")
            if not isinstance(claim, str) or not claim.strip():
                raise DataError(f"{where}: 'claim' must be a non-empty string, got {claim!r}")
            evidence = obj.get("evidence") or {}  # claims_test.jsonl has none
            if not isinstance(evidence, dict):
                raise DataError(f"{where}: 'evidence' must be an object {{doc_id: [rationales]}}")
            rationales: list[tuple[str, str, list[int]]] = []
            for doc_id, entries in evidence.items():
                if not isinstance(entries, list):
                    raise DataError(f"{where}: evidence for doc {doc_id}: expected a list of rationales")
                for entry in entries:
                    label = entry.get("label") if isinstance(entry, dict) else None
                    sents = entry.get("sentences") if isinstance(entry, dict) else None
                    if label not in SCIFACT_LABELS:
                        raise DataError(
                            f"{where}: evidence for doc {doc_id}: 'label' must be SUPPORT or CONTRADICT, "
                            f"got {label!r}"
                        )
                    if (
                        not isinstance(sents, list)
                        or not sents
                        or not all(isinstance(i, int) and not isinstance(i, bool) for i in sents)
                    ):
                        raise DataError(
                            f"{where}: evidence for doc {doc_id}: 'sentences' must be a non-empty list "
                            f"of sentence indices, got {sents!r}"
                        )
                    rationales.append((str(doc_id), label, sents))
            yield where, claim.strip(), rationales


def load_scifact_corpus(
    path: str | os.PathLike, needed: set[str] | None = None
) -> dict[str, tuple[str, list[str]]]:
    """``{doc id: (title, abstract sentences)}`` from SciFact's ``corpus.jsonl`` (only ``needed`` ids)."""
    docs: dict[str, tuple[str, list[str]]] = {}
    for where, obj in iter_jsonl(path, "SciFact corpus"):
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object")
        doc_id = obj.get("doc_id")
        if isinstance(doc_id, bool) or not isinstance(doc_id, (int, str)):
            raise DataError(f"{where}: 'doc_id' must be an integer, got {doc_id!r}")
        key = str(doc_id)
        if (needed is not None and key not in needed) or key in docs:
            continue
        title, abstract = obj.get("title"), obj.get("abstract")
        if not isinstance(title, str):
            raise DataError(f"{where}: 'title' must be a string, got {title!r}")
        if not isinstance(abstract, list) or not all(isinstance(s, str) for s in abstract):
            raise DataError(f"{where}: 'abstract' must be a list of sentence strings")
        docs[key] = (title.strip(), abstract)
    return docs


def scifact_to_pairs(
    claims: Iterable[str | os.PathLike],
    corpus: str | os.PathLike,
    *,
    mode: str = "retrieval",
    titles: bool = True,
    require_negative: bool = False,
) -> tuple[list[Pair], dict[str, int]]:
    """Text pairs from SciFact claims files and ``corpus.jsonl``; returns ``(rows, counts)``.

    Each rationale (a set of abstract sentences) is one evidence text: its sentences in abstract order,
    prefixed by ``Title: `` (the paper's title) unless ``titles`` is false. ``retrieval``: claim →
    rationale, SUPPORT and CONTRADICT alike. ``nli``: rationale → a claim it supports, with the first
    claim it contradicts as negative. Claims without evidence give no rows; rationales whose document
    is not in the corpus, or whose sentence index is out of range or empty, are skipped and counted.
    """
    check_mode(mode, require_negative)
    paths = list(claims)
    needed = {doc for _, _, rationales in _iter_scifact_claims(paths) for doc, _, _ in rationales}
    docs = load_scifact_corpus(corpus, needed)
    counts = dict.fromkeys(
        (
            "claims",
            "no_evidence",
            "rationales",
            "support",
            "contradict",
            "missing_doc",
            "missing_sentence",
            "claims_used",
            "rows",
        ),
        0,
    )
    missing_docs: dict[str, None] = {}
    items: list[tuple[int, str, bool, str]] = []
    for index, (_, claim, rationales) in enumerate(_iter_scifact_claims(paths)):
        counts["claims"] += 1
        counts["no_evidence"] += not rationales
        for doc_id, label, sents in rationales:
            counts["rationales"] += 1
            counts[label.lower()] += 1
            if doc_id not in docs:
                counts["missing_doc"] += 1
                missing_docs[doc_id] = None
                continue
            title, abstract = docs[doc_id]
            texts = [abstract[i].strip() if 0 <= i < len(abstract) else "" for i in sorted(set(sents))]
            if not all(texts):
                counts["missing_sentence"] += 1
                continue
            parts = [(title if titles and title else None, texts)]
            items.append((index, claim, label == "SUPPORT", evidence_text(parts)))
    if missing_docs:
        examples = ", ".join(list(missing_docs)[:3])
        log.warning(
            "%d SciFact rationales skipped: %d documents not in %s (e.g. %s)",
            counts["missing_doc"],
            len(missing_docs),
            corpus,
            examples,
        )
    if counts["missing_sentence"]:
        log.warning(
            "%d SciFact rationales skipped: a sentence index out of range", counts["missing_sentence"]
        )
    rows, used = claim_rows(items, mode, require_negative, "scifact")
    counts["claims_used"], counts["rows"] = len(used), len(rows)
    return rows, counts
