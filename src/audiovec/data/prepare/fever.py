"""FEVER claims + the ``wiki-pages`` dump → text pairs (docs/data.md gives the rules)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from audiovec.data.manifest import iter_jsonl
from audiovec.data.prepare.claims import (
    FEVER_LABELS,
    check_mode,
    claim_rows,
    evidence_text,
    fever_detokenize,
    fever_title,
    nfd,
)
from audiovec.data.text_pairs import Pair
from audiovec.errors import DataError

log = logging.getLogger(__name__)
_WIKI_ID_PREFIX = '{"id": "'


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
                if page is not None and nfd(page) not in remaining:
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
                key = nfd(obj["id"])
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
    check_mode(mode, require_negative)
    paths = list(claims)
    needed: dict[str, set[int]] = {}
    for _, _, _, sets in _iter_fever_claims(paths):
        for evidence in sets:
            for page, sid in evidence:
                needed.setdefault(nfd(page), set()).add(sid)
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
            absent = [page for page in pages if nfd(page) not in sentences]
            if absent:
                counts["missing_page"] += 1
                missing_pages.update(dict.fromkeys(absent))
                continue
            parts: list[tuple[str | None, list[str]]] = []
            for page, sids in pages.items():
                page_id, on_page = sentences[nfd(page)]
                texts = [fever_detokenize(on_page.get(sid, "")) for sid in sorted(sids)]
                if not all(texts):
                    break
                parts.append((fever_title(page_id) if titles else None, texts))
            else:
                items.append((index, claim, label == "SUPPORTS", evidence_text(parts)))
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
    rows, used = claim_rows(items, mode, require_negative, "fever")
    counts["claims_used"], counts["rows"] = len(used), len(rows)
    return rows, counts
