"""The demo's settings, apart from the pipeline so that ``audiovec demo --help`` reads its defaults without
importing torch or transformers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class DemoOptions:
    out: Path = Path("runs/demo")
    corpus_size: str = "default"  # small (CI, ~80 MB of packages) | default (all labelled packages) | large
    packages: list[str] | None = None  # only these Debian packages (default: the size's set)
    seed: int = 0
    # a fixed number of steps with the whole warm-up + cosine schedule, as benchmarks/ablation_real.py trains
    # its `default` (held-out real T2A 0.29 ± 0.02): the model no longer depends on the host's speed
    steps: int = 600
    batch_size: int = 64
    # a safety cap on training wall time (stops early and saves); 600 steps take 7-10 min on 2 cores
    minutes: float = 20.0
    lr: float = 5e-4  # audio adapter (backbone LoRA used by audio only)
    new_lr: float = 1e-3  # new projector + temperature
    trainable: str = "audio_adapter"
    adapter_rank: int = 16
    projector_downsample: int = 4  # Whisper's 50 tokens/s → 12.5/s
    projector_max_tokens: int = 8  # a clip reaches the backbone as at most 8 averaged segments
    tower_layers: str = "mean"  # the mean of Whisper's layers keeps more sound-event detail than the last
    projector_layers: int = 2  # an MLP
    window_seconds: float = 30.0
    min_seconds: float = 0.0
    max_seconds: float = 10.0
    augment_variants: int = 0  # versions per training clip, the recorded one included (data.augment); 0: off
    precision: str = "fp32"
    examples: int = 6
    progress: bool = True
    random_audio: bool = False  # ablations: start from random weights instead of the pretrained ones
    random_text: bool = False
