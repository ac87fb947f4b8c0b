"""What an index answers and reports: search hits and the summary of an indexing run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hit:
    """One search result: a window of a file and its cosine similarity to the query."""

    path: str
    start: float
    end: float
    score: float
    window: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "score": self.score,
            "window": self.window,
        }


@dataclass
class IndexReport:
    """What one indexing run did."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows_added: int = 0
    ann_built: bool = False

    def summary(self) -> str:
        text = (
            f"{len(self.added)} added, {len(self.replaced)} re-indexed, {len(self.skipped)} unchanged, "
            f"{len(self.failed)} failed, {self.rows_added} windows written"
        )
        return text + (" (ANN index rebuilt)" if self.ann_built else "")
