"""Tiny checkpoints of the real transformers classes, saved in their published layouts and *sharded*.

Each builder instantiates the real class (full Qwen2.5-Omni / Qwen3-Omni with visual tower, talker and
speech decoder; Qwen2/Qwen3 causal LMs; Whisper; Qwen2-Audio; BERT), saves it with ``save_pretrained``
and small shards (so some shards hold only weights compose must never open), and writes a real tokenizer
next to it. Seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from audiovec.tiny import QWEN3_OMNI_AUDIO_TINY, QWEN25_OMNI_AUDIO_TINY, tiny_tokenizer

SHARD = "100KB"
MROPE = {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"}
OMNI25_TEXT = dict(
    hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
    vocab_size=1000, max_position_embeddings=2048, rope_scaling=MROPE,
)  # fmt: skip
LM_TINY = dict(
    hidden_size=48, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
    vocab_size=1000, max_position_embeddings=2048,
)  # fmt: skip


def _save(model: torch.nn.Module, path: Path, shard: str | None = SHARD) -> Path:
    model.save_pretrained(path, max_shard_size=shard) if shard else model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def save_omni25(path: Path, seed: int = 0) -> Path:
    """A full ``Qwen2_5OmniForConditionalGeneration``: thinker (audio, visual, LLM), talker, token2wav."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    talker = dict(
        vocab_size=300, embedding_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, tts_codec_start_token_id=290,
        tts_codec_end_token_id=291, tts_codec_pad_token_id=292, tts_codec_mask_token_id=293, rope_scaling=MROPE,
    )  # fmt: skip
    dit = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, head_dim=16, emb_dim=16, enc_emb_dim=16,
        enc_dim=16, enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8, enc_se_channels=8,
        num_embeds=300, look_ahead_layers=[1], look_backward_layers=[0],
    )  # fmt: skip
    visual = dict(
        depth=1,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        fullatt_block_indexes=[0],
    )
    config = Qwen2_5OmniConfig(
        thinker_config=dict(
            audio_config=QWEN25_OMNI_AUDIO_TINY, vision_config=visual, text_config=OMNI25_TEXT
        ),
        talker_config=talker,
        token2wav_config=dict(dit_config=dit, bigvgan_config=dict(upsample_initial_channel=32)),
    )
    torch.manual_seed(seed)
    _save(Qwen2_5OmniForConditionalGeneration(config).eval(), path)
    # the published folder ships speaker conditioning as a (weights-only) pickle; compose never reads it
    torch.save(
        {"Chelsie": {"cond": torch.zeros(16), "ref_mel": torch.zeros(4, 80), "bos_token": 0}},
        path / "spk_dict.pt",
    )
    return path


def save_omni3(path: Path, seed: int = 0) -> Path:
    """A full ``Qwen3OmniMoeForConditionalGeneration``: thinker (audio, visual, MoE LLM), talker, code2wav."""
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    text = dict(
        vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
        rope_scaling={"mrope_section": [2, 3, 3], "rope_type": "default", "interleaved": True},
    )  # fmt: skip
    visual = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, num_position_embeddings=64,
        deepstack_visual_indexes=[0],
    )  # fmt: skip
    talker_text = dict(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, moe_intermediate_size=16, num_experts=2, num_experts_per_tok=1,
        shared_expert_intermediate_size=32,
    )  # fmt: skip
    predictor = dict(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, num_code_groups=4,
    )  # fmt: skip
    talker = dict(
        text_config=talker_text, code_predictor_config=predictor, num_code_groups=4, thinker_hidden_size=64,
        codec_eos_token_id=290, codec_nothink_id=291, codec_think_bos_id=292, codec_think_eos_id=293,
        codec_pad_id=294, codec_bos_id=295, accept_hidden_layer=1, spatial_merge_size=2,
    )  # fmt: skip
    code2wav = dict(
        codebook_size=64, hidden_size=32, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
        num_hidden_layers=1, num_quantizers=4, decoder_dim=32, sliding_window=8,
    )  # fmt: skip
    config = Qwen3OmniMoeConfig(
        thinker_config=dict(audio_config=QWEN3_OMNI_AUDIO_TINY, vision_config=visual, text_config=text),
        talker_config=talker,
        code2wav_config=code2wav,
    )
    torch.manual_seed(seed)
    return _save(Qwen3OmniMoeForConditionalGeneration(config).eval(), path)


def save_causal_lm(path: Path, kind: str = "qwen2", tie: bool = False, seed: int = 1) -> Path:
    """A ``Qwen2ForCausalLM`` / ``Qwen3ForCausalLM`` (untied: its LM head sits in shards of its own)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    config_cls, model_cls = (
        (Qwen2Config, Qwen2ForCausalLM) if kind == "qwen2" else (Qwen3Config, Qwen3ForCausalLM)
    )
    extra = {"head_dim": 12} if kind == "qwen3" else {}
    config = config_cls(**LM_TINY, **extra, tie_word_embeddings=tie)
    torch.manual_seed(seed)
    return _save(model_cls(config).eval(), path)


def save_whisper(path: Path, seed: int = 2) -> Path:
    """A ``WhisperForConditionalGeneration`` (encoder under ``model.encoder.``)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=500, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, max_source_positions=1500, max_target_positions=64,
    )  # fmt: skip
    torch.manual_seed(seed)
    return _save(WhisperForConditionalGeneration(config).eval(), path)


def save_qwen2_audio(path: Path, seed: int = 3) -> Path:
    """A ``Qwen2AudioForConditionalGeneration`` (``audio_tower.``, ``language_model.model.``)."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    config = Qwen2AudioConfig(
        audio_config=dict(
            num_mel_bins=128, d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
            max_source_positions=1500,
        ),
        text_config=dict(model_type="qwen2", **LM_TINY),
    )  # fmt: skip
    torch.manual_seed(seed)
    return _save(Qwen2AudioForConditionalGeneration(config).eval(), path)


def save_standalone_encoder(path: Path, kind: str = "qwen3_omni", seed: int = 4) -> Path:
    """A bare omni audio encoder saved by itself (``config.json`` of the encoder, unprefixed keys)."""
    from audiovec.towers import encoder_class

    encoder_cls, config_cls = encoder_class(kind)
    tiny = QWEN3_OMNI_AUDIO_TINY if kind == "qwen3_omni" else QWEN25_OMNI_AUDIO_TINY
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    encoder_cls(config_cls(**tiny)).eval().save_pretrained(path)
    return path


def save_bert(path: Path, seed: int = 5) -> Path:
    """A ``BertForMaskedLM`` (keys under ``bert.``, MLM head under ``cls.``)."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96, vocab_size=1000,
        max_position_embeddings=512,
    )  # fmt: skip
    torch.manual_seed(seed)
    return _save(BertForMaskedLM(config).eval(), path, shard=None)


def weight_map(path: Path) -> dict[str, str]:
    """The checkpoint's key → shard file map."""
    return json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]


def shards_with(path: Path, prefix: str) -> set[str]:
    """Shard files holding at least one tensor whose key starts with ``prefix``."""
    return {f for k, f in weight_map(path).items() if k.startswith(prefix)}


def truncate(file: Path, keep_fraction: float = 0.5) -> None:
    """Cut a file short (a download that stopped half way)."""
    size = file.stat().st_size
    with open(file, "r+b") as handle:
        handle.truncate(int(size * keep_fraction))


def save_all_sources(root: Path) -> dict[str, Path]:
    """Every source layout the checkpoint and compose tests read, built once per test session."""
    return {
        "omni25": save_omni25(root / "omni25"),
        "omni3": save_omni3(root / "omni3"),
        "qwen2": save_causal_lm(root / "qwen2", "qwen2"),
        "qwen3": save_causal_lm(root / "qwen3", "qwen3", tie=True),
        "whisper": save_whisper(root / "whisper"),
        "qwen2_audio": save_qwen2_audio(root / "qwen2_audio"),
        "enc25": save_standalone_encoder(root / "enc25", "qwen2_5_omni"),
        "enc3": save_standalone_encoder(root / "enc3", "qwen3_omni"),
        "bert": save_bert(root / "bert"),
    }


# ------------------------------------------------------------------ transformers 5 names and state_dict dumps
def save_new_names(source: Path, path: Path, cls_name: str) -> Path:
    """``source`` loaded as ``cls_name`` and saved with ``save_pretrained(save_original_format=False)``:
    transformers 5's in-memory names (``thinker.model.audio_tower.*``, ``model.language_model.*``, ...)."""
    import transformers

    model = getattr(transformers, cls_name).from_pretrained(source).eval()
    model.save_pretrained(path, max_shard_size=SHARD, save_original_format=False)
    tiny_tokenizer().save_pretrained(path)
    return path


def save_thinker25(path: Path, seed: int = 0) -> Path:
    """A ``Qwen2_5OmniThinkerForConditionalGeneration`` alone (``model_type`` ``qwen2_5_omni_thinker``)."""
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    visual = dict(
        depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[0]
    )  # fmt: skip
    config = Qwen2_5OmniThinkerConfig(
        audio_config=QWEN25_OMNI_AUDIO_TINY, vision_config=visual, text_config=OMNI25_TEXT
    )
    torch.manual_seed(seed)
    return _save(Qwen2_5OmniThinkerForConditionalGeneration(config).eval(), path)


def dump_state_dict(
    model: torch.nn.Module, path: Path, *, pickle: bool = False, nest: str | None = None
) -> Path:
    """``model.state_dict()`` as it is (wrapper prefixes and all), next to the unwrapped model's config,
    as training scripts dump it: ``model.safetensors`` (safetensors' ``save_file``) or, with ``pickle``,
    ``pytorch_model.bin`` (``torch.save``; ``nest`` puts it under that key, as DeepSpeed's
    ``mp_rank_00_model_states.pt`` does under ``module``)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    inner = model
    while hasattr(inner, "module") or hasattr(inner, "_orig_mod"):
        inner = getattr(inner, "module", None) or inner._orig_mod
    inner.config.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if pickle:
        torch.save({nest: state, "optimizer": {}} if nest else state, path / "pytorch_model.bin")
    else:
        save_file(state, str(path / "model.safetensors"))
    return path


def peft_wrapped(model: torch.nn.Module, seed: int = 7) -> torch.nn.Module:
    """``model`` under a LoRA adapter on the audio tower's and the LLM's q/v projections, with non-zero
    adapter weights (so merging changes the weights)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*(audio_tower|language_model).*\.(q_proj|v_proj)"
    )
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return peft_model
