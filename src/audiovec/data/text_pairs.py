"""Text-only pairs for modality transfer: JSONL ``{"anchor", "positive", "negative"?}`` (NLI/FEVER style).

The seed's text-only transfer fine-tunes on MultiNLI, SNLI, FEVER and SciFact pairs and relies on the
model's pretrained cross-modal alignment. :func:`nli_to_pairs` converts the official SNLI/MultiNLI JSONL
(``sentence1, sentence2, gold_label``) into triplets: premise, an entailed hypothesis, a contradiction.
:func:`fever_to_pairs` (claims + the ``wiki-pages`` dump) and :func:`scifact_to_pairs` (claims +
``corpus.jsonl``) pair claims with their annotated evidence; docs/data.md gives the exact rules.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from audiovec.data.manifest import iter_jsonl
from audiovec.errors import DataError

Pair = dict[str, Any]

log = logging.getLogger(__name__)

PAIR_MODES = ("retrieval", "nli")


def validate_pair(obj: object, where: str) -> Pair:
    """Check one text-pair row; ``where`` names the file and line in errors."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("anchor", "positive"):
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    negative = obj.get("negative")
    if negative is not None and (not isinstance(negative, str) or not negative.strip()):
        raise DataError(f"{where}: 'negative' must be a non-empty string when given, got {negative!r}")
    return dict(obj)


def read_text_pairs(path: str | os.PathLike) -> list[Pair]:
    """All rows of a text-pair JSONL file (blank lines skipped)."""
    return [validate_pair(obj, where) for where, obj in iter_jsonl(path, "text-pair file")]


def write_text_pairs(rows: Iterable[Pair], path: str | os.PathLike) -> int:
    """Validate and write rows atomically; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                count += 1
                handle.write(
                    json.dumps(validate_pair(row, f"{path} (row {count})"), ensure_ascii=False) + "\n"
                )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


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


# --- claim/evidence sources: FEVER, SciFact --------------------------------------------------------------
#
# Both datasets label (claim, evidence) pairs with a stance. ``mode="retrieval"`` pairs every claim with
# each of its evidence texts whatever the stance (evidence that refutes a claim is still what a search for
# the claim should find); ``mode="nli"`` builds SNLI-style triplets anchored on the evidence: a supported
# claim as positive, a refuted/contradicted claim of the same evidence as negative. Both return
# ``(rows, counts)``; the counts say what was read and what was skipped.

FEVER_LABELS = ("SUPPORTS", "REFUTES", "NOT ENOUGH INFO")
SCIFACT_LABELS = ("SUPPORT", "CONTRADICT")

_PTB_TOKENS = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
    "-COLON-": ":",
}
_PTB_RE = re.compile("|".join(map(re.escape, _PTB_TOKENS)))
_SPACE_BEFORE = re.compile(r"\s+(?=[.,;:!?%)\]}]|'s\b|'re\b|'ve\b|'ll\b|'d\b|'m\b|n't\b)")
_SPACE_AFTER = re.compile(r"(?<=[(\[{$])\s+")
_WIKI_ID_PREFIX = '{"id": "'


def fever_detokenize(text: str) -> str:
    """Undo the FEVER dump's PTB tokenization.

    Bracket tokens become brackets (``-LRB-`` → ``(``), PTB double quotes become ``"``, and the spaces
    before ``. , ; : ! ? % ) ] }`` and clitics (``'s``, ``n't``), and after ``( [ { $``, are removed.
    """
    text = _PTB_RE.sub(lambda m: _PTB_TOKENS[m.group()], text)
    text = re.sub(r"``\s*", '"', text)
    text = re.sub(r"\s*''", '"', text)
    text = _SPACE_BEFORE.sub("", text)
    text = _SPACE_AFTER.sub("", text)
    return " ".join(text.split())


def fever_title(page_id: str) -> str:
    """A wiki-pages id as a title: ``Savages_-LRB-2012_film-RRB-`` → ``Savages (2012 film)``."""
    return fever_detokenize(page_id.replace("_", " "))


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def _check_mode(mode: str, require_negative: bool) -> None:
    if mode not in PAIR_MODES:
        raise ValueError(f"mode must be one of {', '.join(PAIR_MODES)}, got {mode!r}")
    if require_negative and mode != "nli":
        raise ValueError("require_negative needs mode='nli' (retrieval rows have no negatives)")


def _evidence_text(parts: list[tuple[str | None, list[str]]]) -> str:
    """``Title: s1 s2 Title2: s3`` (no title prefix where the title is None)."""
    return " ".join((f"{title}: " if title else "") + " ".join(sents) for title, sents in parts)


def _claim_rows(
    items: list[tuple[int, str, bool, str]], mode: str, require_negative: bool, source: str
) -> tuple[list[Pair], set[int]]:
    """Rows from ``(claim index, claim, supports?, evidence text)`` in input order, and the claims used."""
    used: set[int] = set()
    if mode == "retrieval":
        rows: dict[tuple[str, str], Pair] = {}
        for index, claim, _, evidence in items:
            used.add(index)
            rows.setdefault((claim, evidence), {"anchor": claim, "positive": evidence, "source": source})
        return list(rows.values()), used
    groups: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
    for index, claim, supports, evidence in items:
        group = groups.setdefault(evidence, ({}, {}))[0 if supports else 1]
        group.setdefault(claim, index)
    out: list[Pair] = []
    for evidence, (positives, negatives) in groups.items():
        negative = next((c for c in negatives if c not in positives), None)
        if negative is None and require_negative:
            continue
        if positives and negative is not None:
            used.add(negatives[negative])
        for positive, index in positives.items():
            used.add(index)
            row: Pair = {"anchor": evidence, "positive": positive, "source": source}
            if negative is not None:
                row["negative"] = negative
            out.append(row)
    return out, used


def _iter_fever_claims(
    paths: list[str | os.PathLike],
) -> Iterator[tuple[str, str, str, list[list[tuple[str, int]]]]]:
    """``(where, claim, label, evidence sets)``; a set is ``[(page id, sentence number), ...]``."""
    for path in paths:
        for where, obj in iter_jsonl(path, "FEVER claims file"):
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object")
            claim, label = obj.get("claim"), obj.get("label")
            if not isinstance(claim, str) or not claim.strip():
                raise DataError(f"{where}: 'claim' must be a non-empty string, got {claim!r}")
            if label not in FEVER_LABELS:
                hint = " (the unlabelled test file?)" if label is None else ""
                raise DataError(
                    f"{where}: 'label' must be one of {', '.join(FEVER_LABELS)}, got {label!r}{hint}"
                )
            sets: list[list[tuple[str, int]]] = []
            if label != "NOT ENOUGH INFO":
                evidence = obj.get("evidence")
                if not isinstance(evidence, list):
                    raise DataError(f"{where}: 'evidence' must be a list of evidence sets, got {evidence!r}")
                for number, group in enumerate(evidence):
                    if not isinstance(group, list):
                        raise DataError(f"{where}: evidence set {number} must be a list, got {group!r}")
                    items: list[tuple[str, int]] = []
                    for item in group:
                        if not (
                            isinstance(item, list)
                            and len(item) == 4
                            and isinstance(item[2], str)
                            and isinstance(item[3], int)
                            and not isinstance(item[3], bool)
                        ):
                            raise DataError(
                                f"{where}: evidence set {number}: expected [annotation_id, evidence_id, "
                                f"page, sentence_number] with a page id and an integer, got {item!r}"
                            )
                        if (item[2], item[3]) not in items:
                            items.append((item[2], item[3]))
                    if items:
                        sets.append(items)
            yield where, claim.strip(), label, sets


def fever_wiki_files(wiki_dir: str | os.PathLike) -> list[Path]:
    """The dump's ``wiki-*.jsonl`` files in ``wiki_dir`` (the ``wiki-pages`` folder, or its parent)."""
    root = Path(wiki_dir)
    if not root.is_dir():
        raise DataError(f"{root}: FEVER wiki-pages folder not found")
    files = sorted(root.glob("wiki-*.jsonl")) or sorted((root / "wiki-pages").glob("wiki-*.jsonl"))
    if not files:
        raise DataError(f"{root}: no wiki-*.jsonl files (expected FEVER's wiki-pages folder)")
    return files


def _wiki_page_id(line: str) -> str | None:
    """The page id of a dump line without parsing the whole line (None when the line is not laid out so)."""
    if line.startswith(_WIKI_ID_PREFIX):
        try:
            return json.decoder.scanstring(line, len(_WIKI_ID_PREFIX))[0]
        except ValueError:
            return None
    return None


def load_fever_sentences(
    wiki_dir: str | os.PathLike, needed: dict[str, set[int]]
) -> dict[str, tuple[str, dict[int, str]]]:
    """Stream the wiki dump and keep only the ``needed`` sentences (``{NFD page id: {sentence numbers}}``).

    Lines of pages not needed are not parsed beyond their id; the scan stops once every page was found.
    Returns ``{NFD page id: (page id as in the dump, {number: raw sentence})}`` for the pages found
    (empty sentences left out).
    """
    remaining = set(needed)
    found: dict[str, tuple[str, dict[int, str]]] = {}
    for file in fever_wiki_files(wiki_dir):
        if not remaining:
            break
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                page = _wiki_page_id(line)
                if page is not None and _nfd(page) not in remaining:
                    continue
                if not line.strip():
                    continue
                where = f"{file}:{number}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                    raise DataError(f"{where}: expected a wiki page object with an 'id' string")
                key = _nfd(obj["id"])
                if key not in remaining:
                    continue
                lines = obj.get("lines")
                if not isinstance(lines, str):
                    raise DataError(f"{where}: page {obj['id']!r}: 'lines' must be a string")
                want = needed[key]
                sentences: dict[int, str] = {}
                for entry in lines.split("\n"):
                    if not entry.strip():
                        continue
                    head, _, rest = entry.partition("\t")
                    try:
                        sid = int(head)
                    except ValueError:
                        raise DataError(
                            f"{where}: page {obj['id']!r}: 'lines' entry {entry[:60]!r} does not start "
                            "with a sentence number and a tab"
                        ) from None
                    sentence = rest.split("\t", 1)[0].strip()
                    if sid in want and sentence:
                        sentences[sid] = sentence
                found[key] = (obj["id"], sentences)
                remaining.discard(key)
                if not remaining:
                    break
    return found


def fever_to_pairs(
    claims: Iterable[str | os.PathLike],
    wiki_dir: str | os.PathLike,
    *,
    mode: str = "retrieval",
    titles: bool = True,
    require_negative: bool = False,
) -> tuple[list[Pair], dict[str, int]]:
    """Text pairs from FEVER claims files and the ``wiki-pages`` dump; returns ``(rows, counts)``.

    An evidence set's text is its sentences (detokenized), page by page in the order the set names
    them, sentences in page order, each page prefixed by ``Title: `` unless ``titles`` is false.
    ``retrieval``: claim → evidence text for SUPPORTS and REFUTES claims. ``nli``: evidence text →
    a claim it supports, with the first claim it refutes as negative. NOT ENOUGH INFO claims have no
    evidence and give no rows. Sets naming a page missing from the dump, or a sentence missing or empty
    on its page, are skipped and counted. Two passes: the claims name the needed sentences, then the
    dump is streamed keeping only those (page ids matched after Unicode NFD normalization).
    """
    _check_mode(mode, require_negative)
    paths = list(claims)
    needed: dict[str, set[int]] = {}
    for _, _, _, sets in _iter_fever_claims(paths):
        for evidence in sets:
            for page, sid in evidence:
                needed.setdefault(_nfd(page), set()).add(sid)
    sentences = load_fever_sentences(wiki_dir, needed) if needed else {}
    counts = dict.fromkeys(
        (
            "claims",
            "supports",
            "refutes",
            "not_enough_info",
            "evidence_sets",
            "missing_page",
            "missing_sentence",
            "claims_used",
            "rows",
        ),
        0,
    )
    missing_pages: dict[str, None] = {}
    items: list[tuple[int, str, bool, str]] = []
    for index, (_, claim, label, sets) in enumerate(_iter_fever_claims(paths)):
        counts["claims"] += 1
        counts[label.lower().replace(" ", "_")] += 1
        for evidence in sets:
            counts["evidence_sets"] += 1
            pages: dict[str, list[int]] = {}
            for page, sid in evidence:
                pages.setdefault(page, []).append(sid)
            absent = [page for page in pages if _nfd(page) not in sentences]
            if absent:
                counts["missing_page"] += 1
                missing_pages.update(dict.fromkeys(absent))
                continue
            parts: list[tuple[str | None, list[str]]] = []
            for page, sids in pages.items():
                page_id, on_page = sentences[_nfd(page)]
                texts = [fever_detokenize(on_page.get(sid, "")) for sid in sorted(sids)]
                if not all(texts):
                    break
                parts.append((fever_title(page_id) if titles else None, texts))
            else:
                items.append((index, claim, label == "SUPPORTS", _evidence_text(parts)))
                continue
            counts["missing_sentence"] += 1
    if missing_pages:
        examples = ", ".join(repr(p) for p in list(missing_pages)[:3])
        log.warning(
            "%d FEVER evidence sets skipped: %d pages not in %s (e.g. %s)",
            counts["missing_page"],
            len(missing_pages),
            wiki_dir,
            examples,
        )
    if counts["missing_sentence"]:
        log.warning("%d FEVER evidence sets skipped: a sentence missing or empty", counts["missing_sentence"])
    rows, used = _claim_rows(items, mode, require_negative, "fever")
    counts["claims_used"], counts["rows"] = len(used), len(rows)
    return rows, counts


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
    _check_mode(mode, require_negative)
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
            items.append((index, claim, label == "SUPPORT", _evidence_text(parts)))
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
    rows, used = _claim_rows(items, mode, require_negative, "scifact")
    counts["claims_used"], counts["rows"] = len(used), len(rows)
    return rows, counts


class TextPairDataset(Dataset):
    """Rows of a text-pair file; ``collate_text_pairs`` batches them."""

    def __init__(self, source: str | os.PathLike | list[Pair]) -> None:
        self.rows = (
            [validate_pair(r, f"row {i}") for i, r in enumerate(source)]
            if isinstance(source, list)
            else read_text_pairs(source)
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Pair:
        return self.rows[index]


def collate_text_pairs(rows: list[Pair]) -> dict[str, Any]:
    """``anchors``/``positives`` lists; ``negatives`` (None where absent) with a ``has_negative`` mask."""
    negatives = [row.get("negative") for row in rows]
    return {
        "anchors": [row["anchor"] for row in rows],
        "positives": [row["positive"] for row in rows],
        "negatives": negatives,
        "has_negative": torch.tensor([n is not None for n in negatives], dtype=torch.bool),
    }
