"""What a Qwen omni model itself does with a waveform, for the end-to-end parity tests and
``benchmarks/long_audio_parity.py``: its processor's feature extractor (the published preprocessor_config.json,
called with the processor's own audio settings), the thinker's audio features and its LLM, then audiovec's
pooling. Not part of the library: it needs the tiny thinker classes only tests build."""

from __future__ import annotations

from typing import Any

import torch

from audiovec.data.fsdd import bundled_files
from audiovec.model import AudioTextEmbedder
from audiovec.tiny import QWEN2_TINY, QWEN3_OMNI_AUDIO_TINY, QWEN25_OMNI_AUDIO_TINY, tiny_tokenizer

OMNI_KINDS = ("qwen2_5_omni", "qwen3_omni")
# preprocessor_config.json of Qwen2.5-Omni-7B/3B and Qwen3-Omni-30B-A3B (audio keys; the same in all three)
OMNI_PREPROCESSOR = dict(
    feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=300, n_samples=4_800_000,
    nb_max_frames=30_000, padding_side="right", padding_value=0.0, return_attention_mask=True,
)  # fmt: skip
# ids inside the tiny vocabulary for the thinker's special tokens (the published ones are ~151k)
TINY_AUDIO_TOKEN_ID = 7
TINY_SPECIAL_IDS = dict(vision_start_token_id=8, audio_start_token_id=9, audio_end_token_id=10)


def tiny_thinker(kind: str, seed: int = 0, max_position_embeddings: int = 8192) -> torch.nn.Module:
    """A tiny ``Qwen2_5OmniThinkerForConditionalGeneration`` / ``Qwen3OmniMoeThinkerForConditionalGeneration``
    (audio tower of :data:`TOWER_CONFIGS`, a 2-layer LLM, a 1-block vision tower), eval mode."""
    text = {k: v for k, v in QWEN2_TINY.items() if k != "model_type"}
    text["max_position_embeddings"] = max_position_embeddings
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
    torch.manual_seed(seed)
    if kind == "qwen2_5_omni":
        from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig
        from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
            Qwen2_5OmniThinkerForConditionalGeneration,
        )

        text["rope_scaling"] = {"type": "mrope", "mrope_section": [2, 3, 3], "rope_type": "default"}
        config = Qwen2_5OmniThinkerConfig(
            audio_config=dict(QWEN25_OMNI_AUDIO_TINY),
            vision_config=dict(vision, fullatt_block_indexes=[0]),
            text_config=text,
            audio_token_index=TINY_AUDIO_TOKEN_ID,
            image_token_index=11,
            video_token_index=12,
            **TINY_SPECIAL_IDS,  # published thinker configs carry vision_start_token_id; get_rope_index reads it
        )
        return Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    if kind == "qwen3_omni":
        from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeThinkerConfig
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
            Qwen3OmniMoeThinkerForConditionalGeneration,
        )

        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, head_dim=16)
        config = Qwen3OmniMoeThinkerConfig(
            audio_config=dict(QWEN3_OMNI_AUDIO_TINY),
            vision_config=dict(vision, deepstack_visual_indexes=[0]),
            text_config=text,
            audio_token_id=TINY_AUDIO_TOKEN_ID,
            image_token_id=11,
            video_token_id=12,
            **TINY_SPECIAL_IDS,
        )
        return Qwen3OmniMoeThinkerForConditionalGeneration(config).eval()
    raise ValueError(f"no omni thinker for tower kind {kind!r}; choose one of {OMNI_KINDS}")


def processor_audio_kwargs(kind: str) -> dict[str, Any]:
    """The keyword arguments the model's transformers processor gives its feature extractor for audio.

    Read from the processor classes (class ``audio_kwargs`` in transformers 5.x, ``_defaults`` in older
    ones), plus what ``_process_audio`` forces: Qwen2.5-Omni pads to ``max_length`` (300 s, truncating
    longer audio); Qwen3-Omni pads to the longest clip without truncation (the whole file)."""
    if kind == "qwen2_5_omni":
        from transformers.models.qwen2_5_omni import processing_qwen2_5_omni as module

        processor = module.Qwen2_5OmniProcessor
    elif kind == "qwen3_omni":
        from transformers.models.qwen3_omni_moe import processing_qwen3_omni_moe as module

        processor = module.Qwen3OmniMoeProcessor
    else:
        raise ValueError(f"no omni processor for tower kind {kind!r}; choose one of {OMNI_KINDS}")
    defaults = getattr(getattr(processor, "valid_processor_kwargs", None), "_defaults", None)
    if defaults is None:  # transformers 4.x: the kwargs class is a module attribute
        kwargs_cls = next(v for k, v in vars(module).items() if k.endswith("ProcessorKwargs"))
        defaults = getattr(kwargs_cls, "_defaults", {})
    kwargs = {**getattr(processor, "audio_kwargs", {}), **defaults.get("audio_kwargs", {})}
    kwargs.pop("n_window", None)  # the processor's own (token counting), not the feature extractor's
    if kind == "qwen2_5_omni":
        kwargs["padding"] = "max_length"  # Qwen2_5OmniProcessor._process_audio: "max_length" padding only
    kwargs.setdefault("sampling_rate", 16000)
    kwargs.setdefault("return_attention_mask", True)
    return kwargs


@torch.no_grad()
def thinker_reference(thinker: torch.nn.Module, kind: str, wave: Any) -> tuple[Any, torch.Tensor]:
    """``(unit vector, tower tokens)`` of one 16 kHz waveform the way the omni model itself sees it.

    The processor's features, then the thinker's own forward on a prompt that is only the audio
    placeholders (its ``get_audio_features`` fills them, its ``get_rope_index`` places them), the LLM's
    last hidden state averaged over the audio tokens and L2-normalised (audiovec's mean pooling)."""
    import numpy as np
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(**OMNI_PREPROCESSOR)
    batch = extractor(
        [np.asarray(wave, dtype=np.float32)], return_tensors="pt", **processor_audio_kwargs(kind)
    )
    features, mask = batch["input_features"], batch["attention_mask"]
    tokens = thinker.get_audio_features(features, feature_attention_mask=mask)
    tokens = tokens.last_hidden_state if hasattr(tokens, "last_hidden_state") else tokens
    ids = torch.full((1, tokens.shape[0]), int(thinker.config.audio_token_id))
    out = thinker.model(
        input_ids=ids,
        input_features=features,
        feature_attention_mask=mask,
        attention_mask=torch.ones_like(ids),
        use_cache=False,
    )
    hidden = out.last_hidden_state[0]
    vector = torch.nn.functional.normalize(hidden.float().mean(0), dim=-1)
    return vector.numpy(), tokens


@torch.no_grad()
def tower_tokens(model: AudioTextEmbedder, wave: Any) -> torch.Tensor:
    """The tower tokens ``encode_audio`` computes for one 16 kHz waveform: each window's valid tokens (the
    model's windows and log-mel floor), in order: comparable token for token with the reference's."""
    from audiovec.audio import window_spans

    spans = window_spans(len(wave), model.config.window_seconds)
    peak = model.file_peak(wave, spans)
    parts = []
    for start, end in spans:
        features = model.featurize([wave[start:end]], [peak])
        tokens, mask = model.tower(features["features"], features["lengths"])
        parts.append(tokens[mask])
    return torch.cat(parts)


def embedder_from_thinker(thinker: torch.nn.Module, kind: str, **kwargs: Any) -> AudioTextEmbedder:
    """An :class:`AudioTextEmbedder` sharing the thinker's audio tower and LLM, with the identity projector
    compose gives when the widths agree: what composing the omni checkpoint with itself builds."""
    from audiovec.towers import wrap_encoder

    inner = thinker.model
    model = AudioTextEmbedder.from_parts(
        wrap_encoder(kind, inner.audio_tower), inner.language_model, tiny_tokenizer(), **kwargs
    )
    with torch.no_grad():
        model.projector.linear.weight.copy_(torch.eye(model.projector.linear.weight.shape[0]))
        model.projector.linear.bias.zero_()
    return model.eval()


def varying_speech(seconds: float, seed: int = 0) -> Any:
    """``seconds`` of real speech at 16 kHz (FSDD digits, 8 kHz recordings: nothing above 4 kHz) whose level
    changes every 25 s over 30 dB (full, -30 dB, -10 dB, -20 dB, ...) over a faint noise floor: a recording
    with loud and quiet passages, so 30 s windows of it have different log-mel peaks."""
    import numpy as np

    from audiovec.audio import SAMPLE_RATE, load_audio

    rng = np.random.default_rng(seed)
    files = bundled_files()
    speech = np.concatenate([load_audio(files[i]) for i in rng.choice(len(files), 40, replace=False)])
    n = int(round(seconds * SAMPLE_RATE))
    wave = np.resize(np.roll(speech, int(rng.integers(speech.size))), n).astype(np.float64)
    gains = np.array([1.0, 0.03, 0.3, 0.1])[(np.arange(n) // (25 * SAMPLE_RATE) + seed) % 4]
    return (0.5 * gains * wave + rng.normal(0.0, 1e-4, n)).astype(np.float32)
