"""Tiny instances of the real transformers classes: smoke recipes (``model.tiny``), examples, CI.

Nothing here is a mock: the towers are ``Qwen2_5OmniAudioEncoder`` / ``Qwen3OmniMoeAudioEncoder`` /
``WhisperEncoder`` and the backbones ``Qwen2Model`` / ``Qwen3Model`` / ``BertModel``, only small. The
tokenizer is a real ``PreTrainedTokenizerFast`` (WordPiece over a small English vocabulary, words it does not
know fall back to letters; the words are ``assets/tiny_words.txt``), built offline and deterministically.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import torch

from audiovec.model import AudioTextEmbedder, build_backbone
from audiovec.towers import AudioTower, build_tower

QWEN3_OMNI_AUDIO_TINY = dict(
    num_mel_bins=128,
    encoder_layers=2,
    encoder_attention_heads=4,
    encoder_ffn_dim=128,
    d_model=64,
    output_dim=64,
    downsample_hidden_size=32,
    n_window=50,
    n_window_infer=800,
    conv_chunksize=500,
    max_source_positions=1500,
)
QWEN25_OMNI_AUDIO_TINY = dict(
    num_mel_bins=128,
    encoder_layers=2,
    encoder_attention_heads=4,
    encoder_ffn_dim=128,
    d_model=64,
    output_dim=64,
    n_window=100,
    max_source_positions=1500,
)
WHISPER_TINY = dict(
    num_mel_bins=80,
    encoder_layers=2,
    encoder_attention_heads=4,
    encoder_ffn_dim=128,
    d_model=64,
    decoder_layers=1,
    decoder_attention_heads=4,
    decoder_ffn_dim=128,
    max_source_positions=1500,
    vocab_size=100,
    max_target_positions=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    decoder_start_token_id=3,
)
QWEN2_TINY = dict(
    model_type="qwen2",
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=1000,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)
QWEN3_TINY = dict(QWEN2_TINY, model_type="qwen3", head_dim=16)
BERT_TINY = dict(
    model_type="bert",
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    vocab_size=1000,
    max_position_embeddings=512,
)
TOWER_CONFIGS = {
    "qwen3_omni": QWEN3_OMNI_AUDIO_TINY,
    "qwen2_5_omni": QWEN25_OMNI_AUDIO_TINY,
    "whisper": WHISPER_TINY,
}
BACKBONE_CONFIGS = {"qwen2": QWEN2_TINY, "qwen3": QWEN3_TINY, "bert": BERT_TINY}


@cache
def _words() -> tuple[str, ...]:
    text = (Path(__file__).parent / "assets" / "tiny_words.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def tiny_tokenizer() -> Any:
    """A real fast WordPiece tokenizer (< 1000 tokens): special tokens, letters, digits, common words."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    punct = list(".,!?'\"-:;()")
    vocab_list = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + letters + ["##" + c for c in letters] + punct
    )
    vocab_list += [w for w in dict.fromkeys(_words()) if w not in vocab_list]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()]
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def tiny_tower(kind: str = "qwen3_omni", seed: int = 0) -> AudioTower:
    torch.manual_seed(seed)
    return build_tower(kind, dict(TOWER_CONFIGS[kind])).eval()


def tiny_backbone(kind: str = "qwen2", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone(dict(BACKBONE_CONFIGS[kind])).eval()


def tiny_embedder(
    tower: str = "qwen3_omni", backbone: str = "qwen2", seed: int = 0, **kwargs: Any
) -> AudioTextEmbedder:
    """A complete tiny model with random weights (deterministic for a seed)."""
    t = tiny_tower(tower, seed)
    b = tiny_backbone(backbone, seed + 1)
    torch.manual_seed(seed + 2)
    if backbone == "bert" and "window_seconds" not in kwargs and "projector_downsample" not in kwargs:
        kwargs["projector_downsample"] = 4  # 30 s of Whisper/Qwen tokens must fit BERT's 512 positions
    return AudioTextEmbedder.from_parts(t, b, tiny_tokenizer(), **kwargs).eval()


def save_tiny_embedder(path: str | os.PathLike, **kwargs: Any) -> Path:
    """Build :func:`tiny_embedder` and save it in the real on-disk layout."""
    return tiny_embedder(**kwargs).save_pretrained(path)
