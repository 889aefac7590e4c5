"""Tiny real components built in memory, for the tests and the benchmarks (no vocabulary files, no network)."""

from __future__ import annotations

import string

import torch


def tiny_clip_text_models(text_dim: int = 16, max_length: int = 32):
    """A character-level CLIP tokenizer and a one-layer CLIP text encoder, built in memory (no vocabulary files)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in string.ascii_lowercase:
            vocab[c + suffix] = len(vocab)  # one id per character (and per word-final character)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=text_dim, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=max_length, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    return tokenizer, CLIPTextModel(config).eval()
