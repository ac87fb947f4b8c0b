"""audiovec vs LAION-CLAP's HTSAT audio encoders: encode throughput and peak memory on the same clips.

Paths (same clips, same threads, one run): the default audiovec model (``audiovec-sounds``, PyTorch fp32),
its int8 ONNX export (:mod:`audiovec.onnx_export`), and the ``laion-clap`` package's HTSAT-tiny and
HTSAT-base audio encoders (``HTSAT_Swin_Transformer`` built by the package's ``create_htsat_model`` from its
own ``HTSAT-tiny.json`` / ``HTSAT-base.json`` configs; random weights, no download: speed and memory do not
depend on the values). Each model gets the clips as its own pipeline feeds them: audiovec the 16 kHz
waveforms (log-mel included in the timing, windows of its actual duration); HTSAT 48 kHz waveforms of
10 s, repeat-padded or cropped (CLAP's non-fusion input), its STFT/log-mel inside the timed forward.
Throughput is timed in interleaved rounds in this process; peak memory (RSS growth while encoding, and RSS
after loading) in a fresh interpreter per model.

``laion-clap`` is not a dependency of any extra: its requirements pin numpy 1.x and its module imports
torchvision (whose PyPI wheels need another torch) and h5py. Install it without them
(``pip install --no-deps laion-clap torchlibrosa`` plus ``librosa h5py``, which change nothing else);
torchvision's one name it imports at module level, ``FrozenBatchNorm2d`` (used only to freeze batch norm
for training), is given a stand-in when torchvision is missing. Without laion-clap the HTSAT paths are
skipped with a message and the JSON says so.

    python benchmarks/bench_peers.py [--quick] [--threads 1]
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import shutil
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np

from _common import (
    base_parser,
    interleaved,
    machine,
    make_clips,
    measure_peak,
    realistic_durations,
    rss_mb,
    set_threads,
    summarise,
    table,
    write_json,
)

MODEL = "audiovec-sounds"
CLAP_RATE = 48_000
CLAP_SAMPLES = 480_000  # 10 s, the HTSAT configs' clip_samples
PEERS = ("htsat_tiny", "htsat_base")


def parse_args(argv: list[str] | None = None) -> Any:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=None, help="clips (default 16; quick 3)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model", default=MODEL)
    p.add_argument("--probe", default=None, help=argparse_hidden())
    p.add_argument("--export", type=Path, default=None, help=argparse_hidden())
    return p.parse_args(argv)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


# ---------------------------------------------------------------------------------------------- HTSAT
def laion_clap_missing() -> str | None:
    """Why the HTSAT paths cannot run, or None."""
    for module in ("laion_clap", "torchlibrosa", "librosa", "h5py"):
        if module not in sys.modules and importlib.util.find_spec(module) is None:
            return (
                f"{module} is not installed: pip install --no-deps laion-clap torchlibrosa && pip install "
                "librosa h5py (see this script's docstring); HTSAT paths skipped"
            )
    return None


@functools.cache
def htsat_module() -> types.ModuleType:
    """``laion_clap.clap_module.htsat``, imported without running the package ``__init__`` files (they load
    the text towers, training data code and wget), with a stand-in for torchvision's ``FrozenBatchNorm2d``
    when torchvision is missing (imported by ``clap_module.utils``, used only to freeze batch norm)."""
    root = Path(importlib.util.find_spec("laion_clap").submodule_search_locations[0])  # type: ignore[union-attr]
    for name, path in (("laion_clap", root), ("laion_clap.clap_module", root / "clap_module")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    shims: list[str] = []
    if importlib.util.find_spec("torchvision") is None:
        import torch

        class FrozenBatchNorm2d(torch.nn.Module):  # noqa: D101 - never instantiated by the encoders
            pass

        for name in ("torchvision", "torchvision.ops", "torchvision.ops.misc"):
            sys.modules[name] = types.ModuleType(name)
            shims.append(name)
        sys.modules["torchvision.ops.misc"].FrozenBatchNorm2d = FrozenBatchNorm2d  # type: ignore[attr-defined]
    try:
        return importlib.import_module("laion_clap.clap_module.htsat")
    finally:
        for name in shims:  # leave no fake torchvision behind for transformers' availability checks
            sys.modules.pop(name, None)


def build_htsat(name: str) -> Any:
    """A random-weight HTSAT audio encoder of ``name`` (``tiny`` / ``base``) from the package's own config."""
    import torch

    htsat = htsat_module()
    root = Path(htsat.__file__).parent / "model_configs"
    cfg = json.loads((root / f"HTSAT-{name}.json").read_text())["audio_cfg"]
    torch.manual_seed(0)
    return htsat.create_htsat_model(types.SimpleNamespace(**cfg)).eval()


def clap_inputs(clips: list[np.ndarray]) -> list[np.ndarray]:
    """16 kHz clips → 48 kHz, 10 s each: shorter ones repeated then zero-padded, longer ones cropped."""
    import soxr

    out = []
    for clip in clips:
        wave = soxr.resample(clip, 16_000, CLAP_RATE).astype(np.float32)
        if wave.shape[0] < CLAP_SAMPLES:
            wave = np.tile(wave, CLAP_SAMPLES // wave.shape[0])
            wave = np.pad(wave, (0, CLAP_SAMPLES - wave.shape[0]))
        out.append(wave[:CLAP_SAMPLES])
    return out


def htsat_encoder(model: Any, batch_size: int) -> Any:
    import torch

    @torch.inference_mode()
    def encode(waves: list[np.ndarray]) -> np.ndarray:
        vecs = []
        for start in range(0, len(waves), batch_size):
            batch = torch.from_numpy(np.stack(waves[start : start + batch_size]))
            vecs.append(model({"waveform": batch})["embedding"].numpy())
        return np.concatenate(vecs)

    return encode


# ---------------------------------------------------------------------------------------------- paths
def build_path(name: str, args: Any, export: Path | None) -> tuple[Any, Any]:
    """``(encode(clips), model)`` for one path, taking the 16 kHz clips."""
    from audiovec.model import AudioTextEmbedder

    if name == "audiovec_fp32":
        model = AudioTextEmbedder.from_pretrained(args.model, device="cpu", dtype="fp32", backend="torch")
        return (lambda c: model.encode_audio(c, batch_size=args.batch_size, sample_rate=16_000)), model
    if name == "audiovec_int8_onnx":
        model = AudioTextEmbedder.from_pretrained(export)  # onnxruntime threads = torch threads
        return (lambda c: model.encode_audio(c, batch_size=args.batch_size, sample_rate=16_000)), model
    model = build_htsat(name.split("_")[1])
    encode = htsat_encoder(model, args.batch_size)
    return (lambda c: encode(clap_inputs(c))), model


def parameters(model: Any) -> int | None:
    if hasattr(model, "parameters"):
        return sum(p.numel() for p in model.parameters())
    return None


def probe(args: Any) -> int:
    """One path in this fresh interpreter: RSS after loading, peak RSS growth while encoding the clips."""
    set_threads(args.threads)
    clips = make_clips(realistic_durations(args.clips))
    before = rss_mb()
    encode, _ = build_path(args.probe, args, args.export)
    loaded = rss_mb()
    encode(clips[:1])  # warm-up: lazy allocations, onnxruntime arenas
    peak = measure_peak(lambda: encode(clips))
    print(json.dumps({"load_rss_mb": loaded - before, "rss_after_load_mb": loaded, **peak}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.clips = args.clips or (3 if args.quick else 16)
    if args.probe:
        return probe(args)
    set_threads(args.threads)
    from _common import run_probe
    from audiovec.model import AudioTextEmbedder
    from audiovec.onnx_export import export_onnx

    repeats = args.repeats or (1 if args.quick else 2)
    missing = laion_clap_missing()
    if missing:
        print(missing, file=sys.stderr)
    names = ["audiovec_fp32", "audiovec_int8_onnx"] + ([] if missing else list(PEERS))
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        export = work / "int8"
        torch_model = AudioTextEmbedder.from_pretrained(
            args.model, device="cpu", dtype="fp32", backend="torch"
        )
        export_onnx(torch_model, export, int8=True)
        del torch_model
        clips = make_clips(realistic_durations(args.clips))
        built = {name: build_path(name, args, export) for name in names}
        times = interleaved({name: (lambda e=enc: e(clips)) for name, (enc, _) in built.items()}, repeats)
        baseline = names[2] if len(names) > 2 else names[0]
        speed = summarise(times, baseline, len(clips))
        dims = {name: int(np.asarray(enc(clips[:1])).shape[-1]) for name, (enc, _) in built.items()}
        params = {name: parameters(model) for name, (_, model) in built.items()}
        del built
        common = [
            "--threads",
            str(args.threads),
            "--clips",
            str(args.clips),
            "--batch-size",
            str(args.batch_size),
        ]
        memory = {
            name: run_probe(
                Path(__file__), ["--probe", name, "--export", str(export), "--model", args.model, *common]
            )
            for name in names
        }
        rows = []
        for name in names:
            row = {"path": name, "params": params[name], "dim": dims[name], **speed[name], **memory[name]}
            for peer in PEERS:
                if peer in speed:
                    row[f"speedup_vs_{peer}"] = float(
                        np.median(np.array(times[peer]) / np.array(times[name]))
                    )
                    row[f"peak_ratio_vs_{peer}"] = (
                        memory[name]["peak_delta_mb"] / memory[peer]["peak_delta_mb"]
                    )
            rows.append(row)
        record = {
            "machine": machine(),
            "threads": args.threads,
            "clips": args.clips,
            "audio_seconds": round(sum(c.shape[0] for c in clips) / 16_000, 1),
            "batch_size": args.batch_size,
            "repeats": repeats,
            "peers_skipped": missing,
            "inputs": "audiovec: 16 kHz clips at their length; HTSAT: 48 kHz, 10 s repeat-padded/cropped",
            "paths": rows,
        }
        columns = ["path", "params", "items_per_s", "peak_delta_mb", "rss_after_load_mb"]
        columns += [f"speedup_vs_{p}" for p in PEERS if p in speed]
        print(table(rows, columns))
        print(f"wrote {write_json('peers', record, args.out, args.quick)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
