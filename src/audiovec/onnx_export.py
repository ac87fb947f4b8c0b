"""Export a model's audio and text paths to ONNX (fp32, optionally int8) for :mod:`audiovec.onnx_runtime`.

Two graphs, both with dynamic batch and length axes:

* ``audio.onnx``: log-mel ``features (B, n_mels, T)``, ``lengths (B,)``, ``content_lengths (B,)`` → tower →
  projector (→ audio adapter) → backbone → pooling → unit vectors ``(B, D)``;
* ``text.onnx``: ``input_ids (B, L)``, ``attention_mask (B, L)`` → backbone → pooling → unit vectors.

The log-mel extraction, windowing, batching and tokenizing stay outside the graph: they are audiovec's own
numpy/torch code (:class:`~audiovec.features.LogMelExtractor`), run by the ONNX-backed model exactly as by the
PyTorch one. The graphs are traced by the TorchScript exporter (``torch.onnx.export(dynamo=False)`` with
``dynamic_axes``, no ``onnxscript`` needed); int8 is onnxruntime's dynamic quantisation (8-bit weights of the
MatMul layers, per output channel, activations quantised per batch at run time; the tower's convolutions,
the projector and the first and last layers stay fp32, see :func:`_kept_fp32`).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiovec import __version__
from audiovec.errors import CheckpointError, ConfigError
from audiovec.model import CONFIG_NAME

ONNX_MANIFEST = "onnx.json"
AUDIO_GRAPH = "audio.onnx"
TEXT_GRAPH = "text.onnx"
FORMAT = "audiovec-onnx"
OPSET = 17
# Towers whose forward traces into a graph with dynamic batch and length (the packed Qwen-Omni towers index
# by data-dependent lengths, which tracing would bake in).
EXPORTABLE_TOWERS = ("whisper",)


class _AudioGraph(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, content_lengths: torch.Tensor
    ) -> torch.Tensor:
        return self.model.forward_audio(features, lengths, content_lengths)


class _TextGraph(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.forward_text(input_ids, attention_mask)


def _audio_example(model: Any) -> dict[str, torch.Tensor]:
    """A padded batch of two windows, the longer one a full window: tracing records the masked path and, for
    a projector with ``max_tokens``, its segment means (applied to shorter inputs too, where they keep every
    token: the same vector)."""
    import numpy as np

    rng = np.random.default_rng(0)
    rate = model.feature_extractor.sample_rate
    full = int(model.config.window_seconds * rate)
    waves = [
        rng.standard_normal(full).astype("float32") * 0.1,
        rng.standard_normal(full // 3).astype("float32"),
    ]
    return model.featurize(waves)


def _text_example(model: Any) -> dict[str, torch.Tensor]:
    return model.tokenize(["a dog barks in the distance", "rain"])  # padded: the mask is traced


def _require_exporter(int8: bool) -> None:
    """Fail before any work when the ``onnx`` extra is missing: torch.onnx would raise its own wrapped error
    mid-export instead of the plain ModuleNotFoundError that names the extra."""
    import onnx  # noqa: F401

    if int8:
        import onnxruntime  # noqa: F401


def export_onnx(model: Any, out: str | Path, int8: bool = False, opset: int = OPSET) -> Path:
    """Write ``model``'s audio and text graphs, its config and tokenizer to ``out`` (int8 weights with
    ``int8``); load the folder with ``AudioTextEmbedder.from_pretrained(out)``."""
    _require_exporter(int8)
    out = Path(out)
    kind = model.config.tower_kind
    if kind not in EXPORTABLE_TOWERS:
        raise ConfigError(
            f"ONNX export supports {', '.join(EXPORTABLE_TOWERS)} towers, not {kind!r}: the packed Qwen-Omni "
            "towers index by data-dependent lengths; use the PyTorch model for them"
        )
    if int8:
        with tempfile.TemporaryDirectory(prefix="audiovec-onnx-") as tmp:
            export_onnx(model, tmp, int8=False, opset=opset)
            return quantize_onnx(tmp, out)
    model = model.to("cpu", dtype=torch.float32).eval()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty; choose a new folder for the ONNX export")
    out.mkdir(parents=True, exist_ok=True)
    audio = _audio_example(model)
    text = _text_example(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        torch.onnx.export(
            _AudioGraph(model).eval(),  # the exporter restores the wrapper's mode onto the model
            (audio["features"], audio["lengths"], audio["content_lengths"]),
            str(out / AUDIO_GRAPH),
            input_names=["features", "lengths", "content_lengths"],
            output_names=["vectors"],
            dynamic_axes={
                "features": {0: "batch", 2: "frames"},
                "lengths": {0: "batch"},
                "content_lengths": {0: "batch"},
                "vectors": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
        torch.onnx.export(
            _TextGraph(model).eval(),
            (text["input_ids"], text["attention_mask"]),
            str(out / TEXT_GRAPH),
            input_names=["input_ids", "attention_mask"],
            output_names=["vectors"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "vectors": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )

    (out / CONFIG_NAME).write_text(json.dumps(model.config.to_json(), indent=2, sort_keys=True) + "\n")
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(out)
    if getattr(model, "calibration", None) is not None:  # int8 vector ranges travel with the model
        model.calibration.save(out)
    _write_manifest(out, "fp32", opset)
    return out


def quantize_onnx(src: str | Path, out: str | Path) -> Path:
    """An fp32 export folder → a copy at ``out`` whose graphs have 8-bit weights (dynamic quantisation).

    Weights are unsigned (U8U8 kernels). onnxruntime's signed-weight kernels (U8S8) use ``vpmaddubsw`` on
    x86 CPUs without VNNI (AVX2 only, e.g. many AMD EPYC), whose int16 sums saturate: the built-in model's audio
    vectors fell to a mean cosine of 0.91 (min 0.86) to fp32 there, against 0.9995 with unsigned weights;
    on CPUs with VNNI both are exact. Unsigned weights run at the same speed (docs/benchmarks.md, section 10).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, out = Path(src), Path(out)
    manifest = read_manifest(src)
    if manifest["precision"] != "fp32":
        raise ConfigError(f"{src}: already {manifest['precision']}; quantise an fp32 export")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty; choose a new folder for the int8 export")
    out.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in (AUDIO_GRAPH, TEXT_GRAPH, ONNX_MANIFEST) or item.name.endswith(".onnx.data"):
            continue
        if item.is_file():
            shutil.copy2(item, out / item.name)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice and shape-inference notes at WARNING on root
    try:
        for graph in (AUDIO_GRAPH, TEXT_GRAPH):
            quantize_dynamic(
                str(src / graph),
                str(out / graph),
                weight_type=QuantType.QUInt8,
                per_channel=True,
                nodes_to_exclude=_kept_fp32(src / graph),
            )
    finally:
        root.setLevel(level)
    _write_manifest(out, "int8", int(manifest.get("opset", OPSET)))
    return out


def _kept_fp32(graph: Path) -> list[str]:
    """Nodes :func:`quantize_onnx` leaves in fp32: the tower's convolutions, the projector, and the first and
    last layer of the tower and of the backbone (when they have 4 layers or more). Measured on the built-in model (docs/benchmarks.md, ONNX
    section): int8 per-tensor weights everywhere gave held-out audio vectors a mean cosine of 0.90 to fp32;
    per-channel 0.994 (min 0.966); with convolutions and projector kept 0.997 (min 0.986) but held-out
    audio→text hit_rate@5 0.017 lower; with the first and last layers kept too, 0.997 (min 0.986) and
    hit_rate@5 within +0.005 of fp32 both ways."""
    import onnx

    nodes = onnx.load(str(graph), load_external_data=False).graph.node
    layer = re.compile(r"^/(tower|backbone)/(?:[^/]+/)*?layers?\.(\d+)/")
    found: dict[str, set[int]] = {}
    for n in nodes:
        if m := layer.match(n.name):
            found.setdefault(m.group(1), set()).add(int(m.group(2)))
    # stacks of 4+ layers (both built-in stacks); shallower ones would keep most of their weights fp32
    ends = {(part, i) for part, idx in found.items() if len(idx) >= 4 for i in (min(idx), max(idx))}

    def kept(name: str, op: str) -> bool:
        m = layer.match(name)
        return (
            op == "Conv" or "/projector/" in name or (m is not None and (m.group(1), int(m.group(2))) in ends)
        )

    return [n.name for n in nodes if kept(n.name, n.op_type)]


def _write_manifest(out: Path, precision: str, opset: int) -> None:
    manifest = {
        "format": FORMAT,
        "precision": precision,
        "audio": AUDIO_GRAPH,
        "text": TEXT_GRAPH,
        "opset": opset,
        "audiovec_version": __version__,
        "features": "log-mel by audiovec.features.LogMelExtractor, outside the graph",
    }
    (out / ONNX_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def is_onnx_dir(path: Any) -> bool:
    """Whether ``path`` is a folder written by :func:`export_onnx`."""
    try:
        return (Path(path) / ONNX_MANIFEST).is_file()
    except (TypeError, OSError):
        return False


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The export's ``onnx.json``; a :class:`CheckpointError` naming the folder when it is not an export."""
    file = Path(path) / ONNX_MANIFEST
    if not file.is_file():
        raise CheckpointError(
            f"{path}: no {ONNX_MANIFEST}; not an ONNX export (write one with `audiovec export MODEL --onnx DIR`)"
        )
    try:
        data = json.loads(file.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{file}: invalid JSON ({exc})") from None
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{file}: format {data.get('format')!r} is not {FORMAT!r}")
    return data
