"""What FEVER and SciFact share: claim/evidence pairs labelled with a stance, turned into retrieval pairs or
NLI-style triplets, and FEVER's text clean-up."""

from __future__ import annotations

import logging
import re
import unicodedata

from audiovec.data.text_pairs import PAIR_MODES, Pair

log = logging.getLogger(__name__)


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


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def check_mode(mode: str, require_negative: bool) -> None:
    if mode not in PAIR_MODES:
        raise ValueError(f"mode must be one of {', '.join(PAIR_MODES)}, got {mode!r}")
    if require_negative and mode != "nli":
        raise ValueError("require_negative needs mode='nli' (retrieval rows have no negatives)")


def evidence_text(parts: list[tuple[str | None, list[str]]]) -> str:
    """``Title: s1 s2 Title2: s3`` (no title prefix where the title is None)."""
    return " ".join((f"{title}: " if title else "") + " ".join(sents) for title, sents in parts)


def claim_rows(
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
