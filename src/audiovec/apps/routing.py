"""Intent routing for voice agents: send an utterance to the route whose examples it sounds closest to.

A route file (YAML) names each route with example phrases (embedded as text) and/or example clips
(embedded as audio, paths relative to the file), and an optional threshold::

    threshold: 0.3            # default for every route
    aggregate: max            # max (nearest example) or mean (centroid) per route
    routes:
      - name: lights
        phrases: ["turn on the lights", "lights off please"]
        clips: [examples/lights-1.wav]
        threshold: 0.35

A query's score for a route is its cosine similarity with the nearest example (or the centroid). The best
route wins if its score reaches that route's threshold; otherwise the match is ``None`` ("no route").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiovec.errors import ConfigError

AGGREGATES = ("max", "mean")


@dataclass
class Route:
    """One destination and the examples that define it."""

    name: str
    phrases: list[str] = field(default_factory=list)
    clips: list[str] = field(default_factory=list)
    threshold: float | None = None


@dataclass
class RouteMatch:
    """The chosen route (``None`` under the threshold), its score, and every route's score."""

    name: str | None
    score: float
    scores: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"route": self.name, "score": self.score, "scores": self.scores}


class Router:
    """Embeds every route's examples once; :meth:`route` then costs one audio (or text) encoding."""

    def __init__(
        self,
        model: Any,
        routes: Sequence[Route],
        threshold: float = 0.0,
        aggregate: str = "max",
    ) -> None:
        if not routes:
            raise ConfigError("a router needs at least one route")
        names = [r.name for r in routes]
        if len(set(names)) != len(names):
            raise ConfigError(f"route names must be unique, got {names}")
        if aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        self.model = model
        self.routes = list(routes)
        self.threshold = float(threshold)
        self.aggregate = aggregate
        self.examples: dict[str, np.ndarray] = {}
        for route in self.routes:
            if not route.phrases and not route.clips:
                raise ConfigError(f"route {route.name!r} has neither phrases nor clips")
            parts = []
            if route.phrases:
                parts.append(np.atleast_2d(model.encode_text(list(route.phrases))))
            if route.clips:
                parts.append(np.atleast_2d(model.encode_audio(list(route.clips))))
            self.examples[route.name] = np.concatenate(parts).astype(np.float32)

    @classmethod
    def from_yaml(cls, model: Any, path: str | os.PathLike) -> Router:
        """Build from a route file; clip paths are resolved relative to it."""
        routes, options = load_routes(path)
        return cls(model, routes, **options)

    def _route_score(self, name: str, query: np.ndarray) -> float:
        sims = self.examples[name] @ query
        if self.aggregate == "max":
            return float(sims.max())
        centroid = self.examples[name].mean(0)
        return float(centroid @ query / max(np.linalg.norm(centroid), 1e-12))

    def route_vector(self, vector: np.ndarray) -> RouteMatch:
        """Route an already computed query vector (audio or text)."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        scores = {r.name: self._route_score(r.name, query) for r in self.routes}
        best = max(self.routes, key=lambda r: scores[r.name])
        limit = self.threshold if best.threshold is None else best.threshold
        chosen = best.name if scores[best.name] >= limit else None
        return RouteMatch(chosen, scores[best.name], scores)

    def route(self, audio: Any, sample_rate: int | None = None) -> RouteMatch:
        """Route one utterance: a path, bytes, file object, or an array with its ``sample_rate``."""
        return self.route_vector(self.model.encode_audio(audio, sample_rate=sample_rate))

    def route_text(self, text: str) -> RouteMatch:
        """Route a transcript or typed request through the same examples."""
        return self.route_vector(self.model.encode_text(text))


def load_routes(path: str | os.PathLike) -> tuple[list[Route], dict[str, Any]]:
    """Parse and check a route file → (routes, router options)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read route file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if isinstance(data, list):
        data = {"routes": data}
    if not isinstance(data, dict) or not isinstance(data.get("routes"), list) or not data["routes"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'routes' list")
    unknown = set(data) - {"routes", "threshold", "aggregate"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}")
    routes = [_parse_route(path, i, item) for i, item in enumerate(data["routes"])]
    options: dict[str, Any] = {}
    if "threshold" in data:
        options["threshold"] = _number(path, "threshold", data["threshold"])
    if "aggregate" in data:
        options["aggregate"] = str(data["aggregate"])
    return routes, options


def _parse_route(path: Path, i: int, item: Any) -> Route:
    where = f"{path}: routes[{i}]"
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
        raise ConfigError(f"{where}: each route needs a 'name' string")
    unknown = set(item) - {"name", "phrases", "clips", "threshold"}
    if unknown:
        raise ConfigError(f"{where} ({item['name']}): unknown keys {sorted(unknown)}")
    phrases = _strings(where, "phrases", item.get("phrases", []))
    clips = [str((path.parent / c).resolve()) for c in _strings(where, "clips", item.get("clips", []))]
    missing = [c for c in clips if not Path(c).is_file()]
    if missing:
        raise ConfigError(f"{where} ({item['name']}): example clips not found: {missing}")
    threshold = item.get("threshold")
    return Route(
        name=item["name"].strip(),
        phrases=phrases,
        clips=clips,
        threshold=None if threshold is None else _number(where, "threshold", threshold),
    )


def _strings(where: str, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of non-empty strings")
    return [v.strip() for v in value]


def _number(where: Any, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
    return float(value)


__all__ = ["Route", "RouteMatch", "Router", "load_routes"]
