"""Curated label tables: for each allowed Debian package, which of its sound files become clips, with which
labels from the vocabulary (``vocabulary.yaml``) and which human-written captions.

A table (``labels/<package>.yaml``) is a list of rules matched against a file's path inside the package
(archive members as ``pack.zip/inner/path``); the first matching rule decides. A rule either drops what it
matches (with the reason) or gives labels and captions that are true of every file it matches. Speech rules
may add, per file, what is said (``says``) and in which language. The format is documented in
``labels/README.md``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

import yaml

from audiovec.errors import DataError

KINDS = ("real", "synthetic")
SPEAKERS = ("man", "woman", "child", "person", "robot", "men", "women", "people")


@dataclass(frozen=True)
class Vocabulary:
    """Label → category and caption phrases."""

    entries: dict[str, dict[str, Any]]

    def category(self, label: str) -> str:
        return str(self.entries[label]["category"])

    def phrases(self, label: str) -> list[str]:
        return list(self.entries[label]["say"])

    def __contains__(self, label: object) -> bool:
        return label in self.entries


@cache
def vocabulary() -> Vocabulary:
    """``vocabulary.yaml`` plus the additions in ``vocabulary.d/*.yaml`` (one file per curator)."""
    root = resources.files("audiovec.demo.corpus")
    entries = yaml.safe_load(root.joinpath("vocabulary.yaml").read_text(encoding="utf-8"))
    extra = root.joinpath("vocabulary.d")
    if extra.is_dir():
        for part in sorted((p for p in extra.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name):
            for label, entry in (yaml.safe_load(part.read_text(encoding="utf-8")) or {}).items():
                if label in entries:
                    raise DataError(f"vocabulary.d/{part.name}: {label!r} is already in the vocabulary")
                entries[label] = entry
    for label, entry in entries.items():
        if not isinstance(entry, dict) or "category" not in entry or not entry.get("say"):
            raise DataError(f"vocabulary.yaml: {label!r} needs a category and at least one phrase")
    return Vocabulary(entries)


@dataclass(frozen=True)
class Labelled:
    """What a table says about one file."""

    labels: tuple[str, ...]
    captions: tuple[str, ...]
    kind: str  # real | synthetic
    rule: int  # index of the rule that matched (clips of one rule are one "source group")
    language: str | None = None
    speaker: str | None = None
    says: str | None = None
    crops: int = 1  # how many <= 10 s crops a long file may give

    @property
    def category(self) -> str:
        return vocabulary().category(self.labels[0])


@dataclass
class Rule:
    match: tuple[str, ...]
    drop: str | None = None
    labels: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    kind: str | None = None
    language: str | None = None
    speaker: str | None = None
    says: str | None = None  # "{stem}" etc. are filled from the path
    crops: int = 1
    _regexes: tuple[re.Pattern[str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        self._regexes = tuple(re.compile(fnmatch.translate(p.lower())) for p in self.match)

    def matches(self, path: str) -> bool:
        low = path.lower()
        return any(r.match(low) for r in self._regexes)


@dataclass
class LabelTable:
    package: str
    licence: str
    kind: str
    rules: list[Rule]
    says: dict[str, str]  # path -> words spoken (overrides a rule's says)
    notes: str = ""

    def rule_for(self, path: str) -> tuple[int, Rule] | None:
        for i, rule in enumerate(self.rules):
            if rule.matches(path):
                return i, rule
        return None

    def label(self, path: str) -> Labelled | None:
        """The labels of ``path``; None when no rule matches or the matching rule drops it."""
        found = self.rule_for(path)
        if found is None or found[1].drop is not None:
            return None
        i, rule = found
        says = self.says.get(path, rule.says)
        if says is not None:
            says = _fill(says, path)
        return Labelled(
            labels=rule.labels, captions=rule.captions, kind=rule.kind or self.kind, rule=i,
            language=rule.language, speaker=rule.speaker, says=says or None, crops=rule.crops,
        )  # fmt: skip


def _fill(template: str, path: str) -> str:
    stem = PurePosixPath(path).stem
    words = " ".join(re.findall(r"[A-Za-z]+|\d+", stem))
    parent = PurePosixPath(path).parent.name
    return template.replace("{stem}", stem).replace("{stem_words}", words).replace("{parent}", parent)


def available_tables() -> list[str]:
    folder = resources.files("audiovec.demo.corpus").joinpath("labels")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


@cache
def load_table(package: str) -> LabelTable:
    """The label table of ``package`` (validated against the vocabulary)."""
    where = f"labels/{package}.yaml"
    try:
        text = (
            resources.files("audiovec.demo.corpus")
            .joinpath("labels", f"{package}.yaml")
            .read_text(encoding="utf-8")
        )
    except FileNotFoundError:
        raise DataError(f"no label table for Debian package {package!r} ({where})") from None
    return parse_table(yaml.safe_load(text), where)


def parse_table(data: Any, where: str = "label table") -> LabelTable:
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise DataError(f"{where}: expected a mapping with a list of rules")
    vocab = vocabulary()
    kind = data.get("kind", "real")
    if kind not in KINDS:
        raise DataError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
    rules = []
    for n, raw in enumerate(data["rules"]):
        at = f"{where}: rule {n}"
        if not isinstance(raw, dict) or "match" not in raw:
            raise DataError(f"{at}: each rule needs a 'match' glob (or a list of globs)")
        unknown = set(raw) - {
            "match",
            "drop",
            "labels",
            "captions",
            "kind",
            "language",
            "speaker",
            "says",
            "crops",
            "note",
        }
        if unknown:
            raise DataError(f"{at}: unknown keys {sorted(unknown)}")
        match = (raw["match"],) if isinstance(raw["match"], str) else tuple(raw["match"])
        if raw.get("drop") is not None:
            rules.append(Rule(match=match, drop=str(raw["drop"])))
            continue
        labels = tuple(raw.get("labels") or ())
        captions = tuple(raw.get("captions") or ())
        if not labels:
            raise DataError(f"{at} ({match[0]}): a kept rule needs labels")
        missing = [label for label in labels if label not in vocab]
        if missing:
            raise DataError(f"{at} ({match[0]}): labels not in vocabulary.yaml: {missing}")
        if raw.get("kind") is not None and raw["kind"] not in KINDS:
            raise DataError(f"{at}: kind must be one of {KINDS}")
        if raw.get("speaker") is not None and raw["speaker"] not in SPEAKERS:
            raise DataError(f"{at}: speaker must be one of {SPEAKERS}")
        for caption in captions:
            if not isinstance(caption, str) or len(caption.split()) < 2:
                raise DataError(f"{at}: caption {caption!r} is not a description")
        rules.append(
            Rule(
                match=match, labels=labels, captions=captions, kind=raw.get("kind"),
                language=raw.get("language"), speaker=raw.get("speaker"), says=raw.get("says"),
                crops=int(raw.get("crops", 1)),
            )
        )  # fmt: skip
    says = {str(k): str(v) for k, v in (data.get("says") or {}).items()}
    return LabelTable(
        package=str(data.get("package", where)), licence=str(data.get("licence", "")), kind=kind,
        rules=rules, says=says, notes=str(data.get("notes", "")),
    )  # fmt: skip


def coverage(table: LabelTable, paths: list[str]) -> dict[str, Any]:
    """How a table treats a package's files: per rule the count (and examples), the unmatched ones."""
    per_rule: dict[int, list[str]] = {}
    unmatched: list[str] = []
    for path in paths:
        found = table.rule_for(path)
        if found is None:
            unmatched.append(path)
        else:
            per_rule.setdefault(found[0], []).append(path)
    kept = sum(len(v) for i, v in per_rule.items() if table.rules[i].drop is None)
    unused = [i for i in range(len(table.rules)) if i not in per_rule]
    return {"kept": kept, "unmatched": unmatched, "per_rule": per_rule, "unused_rules": unused}
