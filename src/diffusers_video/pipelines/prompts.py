"""Prompt encoding shared by the pipelines: CLIP (Stable Diffusion's text encoder) and T5 (Imagen Video's).

Both return `(prompt_embeds, negative_prompt_embeds)`, each `(batch * num_videos_per_prompt, tokens, dim)`, the
negative ones None without guidance. The negative prompt follows one policy everywhere (see
`checks.check_prompt_arguments`): the type and batch size of `prompt`, the empty prompt when not given.
"""

from __future__ import annotations

import re

import torch
from diffusers.utils import logging
from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer

logger = logging.get_logger(__name__)

__all__ = ["CLOSED_VOCABULARY_SIZE", "encode_clip_prompt", "encode_t5_prompt", "unknown_words", "warn_unknown_words"]

CLOSED_VOCABULARY_SIZE = 2000
"""A tokenizer with at most this many tokens is a closed vocabulary (e.g. the moving-shapes demos' 94-204 tokens),
built so that every word it knows is one token: a word it splits into pieces is a word it does not know."""


def unknown_words(tokenizer, text: str) -> list[str]:
    """The words of `text` a closed-vocabulary tokenizer does not know (split into several pieces), in order.

    An open-vocabulary tokenizer (CLIP's 49,408 tokens, T5's 32,100) represents any word with sub-word pieces, so it
    knows every word and this returns `[]`.
    """
    if not isinstance(text, str) or len(tokenizer) > CLOSED_VOCABULARY_SIZE:
        return []
    words = dict.fromkeys(re.findall(r"[a-z]+", text.lower()))
    return [word for word in words if len(tokenizer.tokenize(word)) != 1]


def warn_unknown_words(tokenizer, prompts: str | list[str] | None, name: str = "prompt") -> None:
    """Logs a warning naming the words of `prompts` a closed-vocabulary tokenizer does not know: the text encoder
    reads them as unrelated letters, so they steer nothing (a moving-shapes demo knows its world's 39 words)."""
    texts = [prompts] if isinstance(prompts, str) else list(prompts or [])
    unknown = list(dict.fromkeys(word for text in texts for word in unknown_words(tokenizer, text)))
    if unknown:
        logger.warning(
            f"`{name}` has words the tokenizer's {len(tokenizer)}-token vocabulary does not know, which the text"
            f" encoder reads as unrelated pieces: {', '.join(repr(word) for word in unknown)}."
        )


# Adapted from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_synth
# .TextToVideoSDPipeline.encode_prompt (itself StableDiffusionPipeline.encode_prompt), as a function of the tokenizer
# and text encoder, without the LoRA and textual-inversion branches (these pipelines have no such loaders), and with
# `dtype` in place of the UNet's dtype as the fallback when there is no text encoder; `clip_skip` also works with
# transformers 5's CLIPTextModel
def encode_clip_prompt(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel | None,
    prompt: str | list[str] | None,
    device: torch.device,
    num_images_per_prompt: int,
    do_classifier_free_guidance: bool,
    negative_prompt: str | list[str] | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    clip_skip: int | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Encodes a prompt with a CLIP text encoder exactly as diffusers' Stable Diffusion and text-to-video pipelines do.

    Args:
        tokenizer (`CLIPTokenizer`): The tokenizer.
        text_encoder (`CLIPTextModel`): The text encoder (may be None when both embeddings are given).
        prompt (`str` or `list[str]`, *optional*): The prompt or prompts to encode.
        device (`torch.device`): Device of the embeddings.
        num_images_per_prompt (`int`): Images or videos per prompt; the embeddings are repeated this many times.
        do_classifier_free_guidance (`bool`): Whether to also return unconditional embeddings.
        negative_prompt (`str` or `list[str]`, *optional*): What not to generate; the empty prompt when not given.
        prompt_embeds (`torch.Tensor`, *optional*): Pre-computed text embeddings instead of `prompt`.
        negative_prompt_embeds (`torch.Tensor`, *optional*): Pre-computed negative embeddings.
        clip_skip (`int`, *optional*): Number of final CLIP layers to skip (1 uses the pre-final layer).
        dtype (`torch.dtype`, *optional*): dtype of the embeddings when there is no text encoder (a pipeline passes
            its denoiser's dtype, as diffusers does); the text encoder's dtype otherwise.

    Returns:
        `tuple[torch.Tensor, torch.Tensor | None]`: `(prompt_embeds, negative_prompt_embeds)`, each
        `(batch * num_images_per_prompt, tokens, dim)`; the negative ones are None without guidance.
    """
    if prompt is not None and isinstance(prompt, str):
        batch_size = 1
    elif prompt is not None and isinstance(prompt, list):
        batch_size = len(prompt)
    else:
        batch_size = prompt_embeds.shape[0]

    if prompt_embeds is None:
        warn_unknown_words(tokenizer, prompt)
        text_inputs = tokenizer(
            prompt,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        text_input_ids = text_inputs.input_ids
        untruncated_ids = tokenizer(prompt, padding="longest", return_tensors="pt").input_ids

        if untruncated_ids.shape[-1] >= text_input_ids.shape[-1] and not torch.equal(text_input_ids, untruncated_ids):
            removed_text = tokenizer.batch_decode(untruncated_ids[:, tokenizer.model_max_length - 1 : -1])
            logger.warning(
                "The following part of your input was truncated because CLIP can only handle sequences up to"
                f" {tokenizer.model_max_length} tokens: {removed_text}"
            )

        if hasattr(text_encoder.config, "use_attention_mask") and text_encoder.config.use_attention_mask:
            attention_mask = text_inputs.attention_mask.to(device)
        else:
            attention_mask = None

        if clip_skip is None:
            prompt_embeds = text_encoder(text_input_ids.to(device), attention_mask=attention_mask)
            prompt_embeds = prompt_embeds[0]
        else:
            prompt_embeds = text_encoder(
                text_input_ids.to(device), attention_mask=attention_mask, output_hidden_states=True
            )
            # the hidden states of the chosen layer, through the final layer norm as the last layer's are
            prompt_embeds = prompt_embeds[-1][-(clip_skip + 1)]
            # transformers 5 flattened CLIPTextModel (no `.text_model`), which diffusers 0.42.1 still expects
            text_model = getattr(text_encoder, "text_model", text_encoder)
            prompt_embeds = text_model.final_layer_norm(prompt_embeds)

    if text_encoder is not None:
        prompt_embeds_dtype = text_encoder.dtype
    elif dtype is not None:
        prompt_embeds_dtype = dtype
    else:
        prompt_embeds_dtype = prompt_embeds.dtype

    prompt_embeds = prompt_embeds.to(dtype=prompt_embeds_dtype, device=device)

    bs_embed, seq_len, _ = prompt_embeds.shape
    # duplicate text embeddings for each generation per prompt, using mps friendly method
    prompt_embeds = prompt_embeds.repeat(1, num_images_per_prompt, 1)
    prompt_embeds = prompt_embeds.view(bs_embed * num_images_per_prompt, seq_len, -1)

    # get unconditional embeddings for classifier free guidance
    if do_classifier_free_guidance and negative_prompt_embeds is None:
        uncond_tokens: list[str]
        if negative_prompt is None:
            uncond_tokens = [""] * batch_size
        elif prompt is not None and type(prompt) is not type(negative_prompt):
            raise TypeError(
                f"`negative_prompt` should be the same type to `prompt`, but got {type(negative_prompt)} !="
                f" {type(prompt)}."
            )
        elif isinstance(negative_prompt, str):
            uncond_tokens = [negative_prompt]
        elif batch_size != len(negative_prompt):
            raise ValueError(
                f"`negative_prompt`: {negative_prompt} has batch size {len(negative_prompt)}, but `prompt`:"
                f" {prompt} has batch size {batch_size}. Please make sure that passed `negative_prompt` matches"
                " the batch size of `prompt`."
            )
        else:
            uncond_tokens = negative_prompt

        warn_unknown_words(tokenizer, uncond_tokens, "negative_prompt")
        max_length = prompt_embeds.shape[1]
        uncond_input = tokenizer(
            uncond_tokens,
            padding="max_length",
            max_length=max_length,
            truncation=True,
            return_tensors="pt",
        )

        if hasattr(text_encoder.config, "use_attention_mask") and text_encoder.config.use_attention_mask:
            attention_mask = uncond_input.attention_mask.to(device)
        else:
            attention_mask = None

        negative_prompt_embeds = text_encoder(
            uncond_input.input_ids.to(device),
            attention_mask=attention_mask,
        )
        negative_prompt_embeds = negative_prompt_embeds[0]

    if do_classifier_free_guidance:
        # duplicate unconditional embeddings for each generation per prompt, using mps friendly method
        seq_len = negative_prompt_embeds.shape[1]

        negative_prompt_embeds = negative_prompt_embeds.to(dtype=prompt_embeds_dtype, device=device)

        negative_prompt_embeds = negative_prompt_embeds.repeat(1, num_images_per_prompt, 1)
        negative_prompt_embeds = negative_prompt_embeds.view(batch_size * num_images_per_prompt, seq_len, -1)

    return prompt_embeds, negative_prompt_embeds


def encode_t5_prompt(
    tokenizer: T5Tokenizer,
    text_encoder: T5EncoderModel | None,
    prompt: str | list[str] | None,
    device: torch.device,
    num_videos_per_prompt: int = 1,
    do_classifier_free_guidance: bool = True,
    negative_prompt: str | list[str] | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """T5 embeddings `(B * num_videos_per_prompt, tokens, d_model)` of the prompts and, for guidance, the negative
    prompts (the empty prompt by default).

    Prompts are padded to the tokenizer's `model_max_length` and encoded with their attention mask (padding does
    not change the embeddings of the real tokens); the UNets read all positions, as Stable Diffusion's do.
    """

    def encode(texts: list[str]) -> torch.Tensor:
        tokens = tokenizer(
            texts,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return text_encoder(
            tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device)
        ).last_hidden_state

    if prompt_embeds is None:
        warn_unknown_words(tokenizer, prompt)
        prompt_embeds = encode([prompt] if isinstance(prompt, str) else list(prompt))
    batch_size = prompt_embeds.shape[0]
    dtype = text_encoder.dtype if text_encoder is not None else prompt_embeds.dtype
    prompt_embeds = prompt_embeds.to(device=device, dtype=dtype).repeat_interleave(num_videos_per_prompt, dim=0)
    if not do_classifier_free_guidance:
        return prompt_embeds, None
    if negative_prompt_embeds is None:
        if negative_prompt is None:
            negative_prompt = [""] * batch_size
        elif isinstance(negative_prompt, str):
            negative_prompt = [negative_prompt] * batch_size
        warn_unknown_words(tokenizer, negative_prompt, "negative_prompt")
        negative_prompt_embeds = encode(list(negative_prompt))
    negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=dtype)
    negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
    return prompt_embeds, negative_prompt_embeds
