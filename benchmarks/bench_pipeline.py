"""Decode/model overlap: ``encode_audio_detailed`` with prefetch vs the sequential pipeline, real files on disk.

Files: FSDD recordings (8 kHz WAV) read from disk, and the same recordings re-encoded as FLAC, MP3 and OGG
Vorbis in a temporary folder, so decoding (and resampling to 16 kHz) costs something. Paths, per format,
interleaved in one process: the sequential pipeline (``prefetch=False``: decode a block in the decode
threads, then embed it — the baseline), the overlapped one with only the next block's decoding ahead
(``prefetch=True`` with ``encode.blocks.FEATURIZE_AHEAD`` off) and the default one that also computes the
next length batch's log-mel in a helper thread; plus the two components alone, to read the ratios against:
decoding every file serially in the main thread and the model on pre-decoded waveforms (same blocks; the
ceiling of any overlap is sequential / model only). Every section is bracketed by a probe of how many
cores the process gets at that moment (overlap can only gain where that is above 1) and the load average.

Interference (tiny model): the model alone, with a thread decoding the files beside it, and with a process
doing the same — what sharing the GIL with a decoder costs the model. Stream: one long file through
``encode_audio_stream`` without read-ahead (the default), with the next window batch decoded ahead
(``prefetch=True``) and with its log-mel computed ahead too. Memory, each configuration in a fresh
interpreter: peak RSS growth for clips long enough to fill blocks, with and without ``block_seconds`` and
prefetch; and for one long streamed file. ``--quick`` runs small sizes, one round, and only the old and the
default memory configurations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from _common import (
    base_parser,
    interleaved,
    machine,
    measure_peak,
    run_probe,
    set_threads,
    summarise,
    table,
    timed,
    write_json,
)
from _models import build_model, describe

SR = 16_000
FORMATS = {  # name: (soundfile format, subtype)
    "wav": (None, None),
    "flac": ("FLAC", None),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "VORBIS"),
}
STREAM_FORMATS = ("flac", "ogg")  # libsndfile streams these; long MP3 written in chunks decodes with warnings
CAPACITY_SECONDS = 0.3  # per side of the parallel-capacity probe (quick: 0.1)
SEQ, OV, OV_FEAT = "sequential (prefetch=False)", "overlap: decode ahead", "overlap: decode + log-mel ahead"
STREAM_SEQ = "sequential (prefetch=False, the default)"
STREAM_OV = "decode ahead (prefetch=True)"
STREAM_OV_FEAT = "decode + log-mel ahead (prefetch=True + STREAM_FEATURIZE_AHEAD)"
STREAM_KNOB = "STREAM_FEATURIZE_AHEAD"
DECODE, MODEL = "component: decode, 1 thread", "component: model on decoded"


def clip_files(n: int, folder: Path, formats: list[str]) -> dict[str, list[str]]:
    """``n`` FSDD recordings spread over speakers and digits, as the WAVs on disk and re-encoded."""
    from audiovec.data.fsdd import bundled_files as fsdd_files

    files = fsdd_files()
    picked = files[:: max(1, len(files) // n)][:n]
    out: dict[str, list[str]] = {}
    for name in formats:
        fmt, subtype = FORMATS[name]
        if fmt is None:
            out[name] = [str(p) for p in picked]
            continue
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        out[name] = []
        for p in picked:
            data, rate = sf.read(str(p), dtype="float32")
            target = sub / f"{p.stem}.{name}"
            sf.write(str(target), data, rate, format=fmt, subtype=subtype)
            out[name].append(str(target))
    return out


def long_file(path: Path, seconds: float, fmt: str | None, subtype: str | None, offset: int = 0) -> Path:
    """Real speech (FSDD digits tiled, 8 kHz) written a second at a time (one big write crashes
    libsndfile's Vorbis encoder)."""
    from audiovec.data.fsdd import bundled_files as fsdd_files

    clip = np.concatenate([sf.read(str(f), dtype="float32")[0] for f in fsdd_files()[::150][:20]])
    rate = 8000
    data = np.resize(np.roll(clip, offset), int(seconds * rate))
    with sf.SoundFile(str(path), "w", rate, 1, format=fmt or "WAV", subtype=subtype) as out:
        for start in range(0, data.size, rate):
            out.write(data[start : start + rate])
    return path


def parallel_capacity(seconds: float | None = None) -> float:
    """How many cores this process gets right now: a fixed GIL-free job (torch matmuls, 1 intra-op thread)
    timed in one thread, then in two threads at once: 2 x t(one) / t(two). About 2 on two idle cores, about
    1 when other jobs hold the second core — and overlapping decode with the model can only gain above 1."""
    seconds = seconds or CAPACITY_SECONDS
    a = torch.rand(256, 256)

    def job(n: int) -> None:
        for _ in range(n):
            torch.mm(a, a)

    start = time.perf_counter()
    job(20)
    n = max(20, int(20 * seconds / max(time.perf_counter() - start, 1e-6)))
    start = time.perf_counter()
    job(n)
    one = time.perf_counter() - start
    threads = [threading.Thread(target=job, args=(n,)) for _ in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round(2 * one / (time.perf_counter() - start), 2)


def knob_module(knob: str) -> Any:
    """The module of ``audiovec.encode`` that reads ``knob`` (blocks: FEATURIZE_AHEAD; stream: STREAM_...)."""
    import audiovec.encode.blocks
    import audiovec.encode.stream

    return audiovec.encode.stream if knob.startswith("STREAM_") else audiovec.encode.blocks


def with_featurize_ahead(on: bool, fn: Callable[[], Any], knob: str = "FEATURIZE_AHEAD") -> Callable[[], Any]:
    """``fn`` with the encode path's ``<knob>`` (log-mel ahead in a helper thread) set to ``on``."""

    def run() -> Any:
        module = knob_module(knob)
        saved = getattr(module, knob)
        setattr(module, knob, on)
        try:
            return fn()
        finally:
            setattr(module, knob, saved)

    return run


def model_only(model: Any, waves: list[np.ndarray], block: int, batch: int) -> None:
    from audiovec.encode import embed_waves

    with torch.inference_mode():
        for start in range(0, len(waves), block):
            embed_waves(model, dict(enumerate(waves[start : start + block])), batch)


def timed_paths(
    paths: dict[str, Callable[[], Any]], repeats: int, audio_s: float, items: int, baseline: str = SEQ
) -> dict[str, Any]:
    """Interleaved rounds, bracketed by the parallel-capacity probe and the load average."""
    capacity = [parallel_capacity()]
    times = interleaved(paths, repeats)
    capacity.append(parallel_capacity())
    stats = summarise(times, baseline, items)
    for name, s in stats.items():
        s["audio_s_per_s"] = audio_s / s["median_s"]
        s["rounds_s"] = times[name]
    return {
        "paths": stats,
        "parallel_capacity_before_after": capacity,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def bench_format(model: Any, paths: list[str], block: int, batch: int, repeats: int) -> dict[str, Any]:
    from audiovec.audio import load_audio

    def encode(prefetch: bool) -> Any:
        return model.encode_audio_detailed(paths, batch, block_size=block, prefetch=prefetch)

    seq, ov = encode(False), encode(True)
    waves = [load_audio(p) for p in paths]
    audio_s = sum(w.shape[0] for w in waves) / SR
    res = timed_paths(
        {
            SEQ: lambda: encode(False),
            OV: with_featurize_ahead(False, lambda: encode(True)),
            OV_FEAT: with_featurize_ahead(True, lambda: encode(True)),
            DECODE: lambda: [load_audio(p) for p in paths],
            MODEL: lambda: model_only(model, waves, block, batch),
        },
        repeats,
        audio_s,
        len(paths),
    )
    seq_s, model_s, decode_s = (res["paths"][k]["median_s"] for k in (SEQ, MODEL, DECODE))
    return {
        "files": len(paths),
        "audio_seconds": audio_s,
        "blocks": -(-len(paths) // block),
        **res,
        "decode_share_of_sequential": decode_s / seq_s,
        "ceiling_sequential_over_model_only": seq_s / model_s,
        "max_abs_diff_prefetch_vs_sequential": float(np.abs(seq.vectors - ov.vectors).max()),
        "same_errors": seq.errors == ov.errors,
    }


def bench_stream(model: Any, path: str, seconds: float, batch: int, repeats: int) -> dict[str, Any]:
    def encode(prefetch: bool) -> np.ndarray:
        return model.encode_audio_stream(path, batch, prefetch=prefetch)

    seq, ov = encode(False), encode(True)
    res = timed_paths(
        {
            STREAM_SEQ: lambda: encode(False),
            STREAM_OV: with_featurize_ahead(False, lambda: encode(True), STREAM_KNOB),
            STREAM_OV_FEAT: with_featurize_ahead(True, lambda: encode(True), STREAM_KNOB),
        },
        repeats,
        seconds,
        1,
        baseline=STREAM_SEQ,
    )
    return {"seconds": seconds, **res, "max_abs_diff_prefetch_vs_sequential": float(np.abs(seq - ov).max())}


ALONE, THREAD, PROCESS = "model alone", "model + decoder thread (shares the GIL)", "model + decoder process"


def decode_forever(paths: list[str], ready: Any, stop: Any) -> None:
    """Decode ``paths`` round and round until ``stop`` is set (in a thread, or in a spawned process)."""
    from audiovec.audio import load_audio

    ready.set()
    while not stop.is_set():
        for path in paths:
            load_audio(path)
            if stop.is_set():
                break


def bench_interference(model: Any, paths: list[str], block: int, batch: int, repeats: int) -> dict[str, Any]:
    """Why overlap gains less than the idle second core suggests: the model on one block of decoded clips,
    alone, with a thread decoding the files beside it, and with a separate process doing the same. Only the
    model is timed; the decoder starts before and stops after."""
    import multiprocessing as mp

    from audiovec.audio import load_audio

    waves = [load_audio(p) for p in paths[:block]]
    ctx = mp.get_context("spawn")

    def once(kind: str) -> float:
        if kind == ALONE:
            return timed(lambda: model_only(model, waves, block, batch))[0]
        if kind == THREAD:
            ready, stop = threading.Event(), threading.Event()
            worker: Any = threading.Thread(target=decode_forever, args=(paths, ready, stop))
        else:
            ready, stop = ctx.Event(), ctx.Event()
            worker = ctx.Process(target=decode_forever, args=(paths, ready, stop))
        worker.start()
        ready.wait(120)
        try:
            return timed(lambda: model_only(model, waves, block, batch))[0]
        finally:
            stop.set()
            worker.join()

    names = [ALONE, THREAD, PROCESS]
    model_only(model, waves, block, batch)
    capacity = [parallel_capacity()]
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % 3 :] + names[: r % 3]:
            times[name].append(once(name))
    capacity.append(parallel_capacity())
    stats = summarise(times, ALONE, len(waves))
    for name, st in stats.items():
        st["slowdown_vs_alone"] = 1.0 / st.pop("speedup_vs_baseline")
        st["rounds_s"] = times[name]
    return {"clips": len(waves), "paths": stats, "parallel_capacity_before_after": capacity,
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


MEMORY_CONFIGS = {  # name: (duration bound, prefetch)
    "no duration bound, sequential (old)": (False, False),
    "no duration bound, prefetch": (False, True),
    "block_seconds, sequential": (True, False),
    "block_seconds, prefetch (default)": (True, True),
}
STREAM_FACTOR = 15  # the streamed file of the memory section: 15 x the clip length (1 h full, 5 min quick)
STREAM_MEMORY_CONFIGS = {  # name: (prefetch, log-mel ahead)
    "stream, sequential (default)": (False, False),
    "stream, decode ahead (prefetch=True)": (True, False),
    "stream, decode + log-mel ahead": (True, True),
}


def probe(args: Any) -> None:
    """Child process: peak RSS growth of one memory configuration, after a warm-up (blocks: two of the files;
    streams: the short file twice, so the allocator is in its steady state)."""
    set_threads(args.threads)
    model = build_model("tiny")
    if args.probe in STREAM_MEMORY_CONFIGS:
        prefetch, ahead = STREAM_MEMORY_CONFIGS[args.probe]
        setattr(knob_module(STREAM_KNOB), STREAM_KNOB, ahead)
        short, long = (str(Path(args.files) / name) for name in ("short.wav", "long.wav"))
        for _ in range(2):
            model.encode_audio_stream(short, args.mem_batch, prefetch=prefetch)
        print(
            json.dumps(
                measure_peak(lambda: model.encode_audio_stream(long, args.mem_batch, prefetch=prefetch))
            )
        )
        return
    files = [str(p) for p in sorted(Path(args.files).iterdir())]
    bound, prefetch = MEMORY_CONFIGS[args.probe]
    kw = {
        "block_seconds": args.block_seconds if bound else None,
        "prefetch": prefetch,
        "batch_size": args.mem_batch,
    }
    model.encode_audio_detailed(files[:2], **kw)
    print(json.dumps(measure_peak(lambda: model.encode_audio_detailed(files, **kw))))


def bench_memory(args: Any, folder: Path, n: int, seconds: float, block_seconds: float) -> dict[str, Any]:
    """Blocks: ``n`` files of ``seconds`` at batch ``--mem-batch``. Streams: a file of ``STREAM_FACTOR x
    seconds`` after one of ``seconds``, at batch 16. Quick: the old pipeline and the defaults only."""
    script = Path(__file__).resolve()
    blocks, streams = folder / "memory-blocks", folder / "memory-stream"
    blocks.mkdir()
    streams.mkdir()
    for i in range(n):
        long_file(blocks / f"{i:03d}.wav", seconds, None, "PCM_16", offset=997 * i)
    long_file(streams / "short.wav", seconds, None, "PCM_16")
    long_file(streams / "long.wav", STREAM_FACTOR * seconds, None, "PCM_16", offset=1)
    common = ["--threads", str(args.threads), "--block-seconds", str(block_seconds)]
    configs = list(MEMORY_CONFIGS)[:: 3 if args.quick else 1]
    peaks = {
        name: run_probe(script, ["--probe", name, "--files", str(blocks), "--mem-batch", str(args.mem_batch),
                                 *common])["peak_delta_mb"]
        for name in configs
    }  # fmt: skip
    stream_peaks = {
        name: run_probe(script, ["--probe", name, "--files", str(streams), "--mem-batch", "16", *common])[
            "peak_delta_mb"
        ]
        for name in (list(STREAM_MEMORY_CONFIGS)[:1] if args.quick else STREAM_MEMORY_CONFIGS)
    }
    return {
        "files": n,
        "seconds_each": seconds,
        "decoded_mb_total": n * seconds * SR * 4 / 2**20,
        "block_seconds": block_seconds,
        "decoded_mb_per_block": (block_seconds // seconds) * seconds * SR * 4 / 2**20,
        "batch_size": args.mem_batch,
        "peak_delta_mb": peaks,
        "stream": {"seconds": STREAM_FACTOR * seconds, "batch_size": 16, "peak_delta_mb": stream_peaks},
    }


def print_section(title: str, r: dict[str, Any], columns: list[str]) -> None:
    print(f"\n{title}; cores available {r['parallel_capacity_before_after']}, load {r['load_average_after']}, "
          f"max diff prefetch vs sequential {r['max_abs_diff_prefetch_vs_sequential']:.1e}")  # fmt: skip
    print(table([{"path": k, **v} for k, v in r["paths"].items()], ["path", *columns]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=None, help="comma list: tiny, m1-T-L (default tiny,m1-2-2; quick tiny)"
    )
    parser.add_argument(
        "--clips", type=int, default=None, help="FSDD files (default tiny 1024, m1 128; quick 32)"
    )
    parser.add_argument(
        "--block-size", type=int, default=None, help="block_size (default tiny 256, m1 32; quick 8)"
    )
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma list of wav, flac, mp3, ogg")
    parser.add_argument(
        "--stream-seconds", type=float, default=None, help="streamed file, s (default 1800; quick 60)"
    )
    parser.add_argument("--no-stream", action="store_true", help="skip the streaming section")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--files", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--block-seconds", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mem-batch", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(args)
        return {}
    set_threads(args.threads)
    global CAPACITY_SECONDS
    CAPACITY_SECONDS = 0.1 if args.quick else CAPACITY_SECONDS
    models = (args.models or ("tiny" if args.quick else "tiny,m1-2-2")).split(",")
    repeats = args.repeats or (1 if args.quick else 5)
    formats = args.formats.split(",")
    batch = 16
    columns = ["median_s", "audio_s_per_s", "speedup_vs_baseline"]
    results = []
    memory = None
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        folder = Path(tmp)
        for name in models:
            tiny = name == "tiny"
            n = args.clips or (32 if args.quick else (1024 if tiny else 128))
            block = args.block_size or (8 if args.quick else (256 if tiny else 32))
            model = build_model(name)
            files = clip_files(n, folder / f"clips-{name}", formats)
            print(
                f"\n{name}: {n} FSDD files, blocks of {block}, batch {batch}, torch threads {torch.get_num_threads()}"
            )
            res: dict[str, Any] = {"model": name, "shape": describe(model), "clips": n, "block_size": block}
            res["formats"] = {}
            for fmt, paths in files.items():
                r = res["formats"][fmt] = bench_format(model, paths, block, batch, repeats)
                print_section(f"{fmt}: {r['audio_seconds']:.0f} s of audio in {r['blocks']} blocks; decode share "
                              f"{r['decode_share_of_sequential']:.2f}, ceiling "
                              f"{r['ceiling_sequential_over_model_only']:.2f}x", r, columns)  # fmt: skip
            if tiny:
                res["interference"] = {}
                for fmt in ("wav", "ogg"):
                    if fmt in files:
                        r = res["interference"][fmt] = bench_interference(
                            model, files[fmt], block, batch, repeats
                        )
                        print(
                            f"\ninterference, {fmt} decoder; cores available {r['parallel_capacity_before_after']}"
                        )
                        rows = [{"path": k, **v} for k, v in r["paths"].items()]
                        print(table(rows, ["path", "median_s", "slowdown_vs_alone"]))
            if tiny and not args.no_stream:
                seconds = args.stream_seconds or (60.0 if args.quick else 1800.0)
                res["stream"] = {}
                for fmt in STREAM_FORMATS:
                    path = long_file(folder / f"long.{fmt}", seconds, *FORMATS[fmt])
                    r = res["stream"][fmt] = bench_stream(model, str(path), seconds, batch, repeats)
                    print_section(f"stream {fmt}: one {seconds:.0f} s file", r, columns)
            results.append(res)
        if not args.no_memory:
            n_mem, seconds, bound = (3, 20.0, 40.0) if args.quick else (32, 240.0, 1800.0)
            memory = bench_memory(args, folder, n_mem, seconds, bound)
            print(f"\nmemory: {n_mem} files of {seconds:.0f} s ({memory['decoded_mb_total']:.0f} MB decoded), "
                  f"block_seconds {bound:.0f} ({memory['decoded_mb_per_block']:.0f} MB per block), batch {args.mem_batch}")  # fmt: skip
            print(table([{"config": k, "peak_delta_mb": v} for k, v in memory["peak_delta_mb"].items()],
                        ["config", "peak_delta_mb"]))  # fmt: skip
            print(
                f"\nmemory, one {STREAM_FACTOR * seconds:.0f} s file streamed at batch 16 (after one of {seconds:.0f} s):"
            )
            rows = [{"config": k, "peak_delta_mb": v} for k, v in memory["stream"]["peak_delta_mb"].items()]
            print(table(rows, ["config", "peak_delta_mb"]))
    result = {
        "machine": machine(),
        "config": {"batch_size": batch, "repeats": repeats, "threads": args.threads, "decode_workers": 2,
                   "formats": formats, "files": "FSDD recordings, 8 kHz; re-encoded with soundfile"},
        "models": results,
        "memory": memory,
    }  # fmt: skip
    path = write_json("pipeline", result, args.out, args.quick)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
