"""Input checks every pipeline of this package makes before any model runs.

Each check raises a `ValueError` (a `TypeError` for a value of the wrong type) that names the argument and repeats
its value, as diffusers' own pipelines do ("`height` and `width` have to be divisible by 8 but are 100 and 64.").
Pipelines call these from their `check_inputs`, so a bad call fails before the text encoder or a UNet is run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "OUTPUT_TYPES",
    "check_callback_arguments",
    "check_decode_chunk_size",
    "check_generator",
    "check_output_type",
    "check_positive_int",
    "check_prompt_arguments",
    "is_int",
    "is_number",
    "prompt_batch_size",
]

OUTPUT_TYPES = ("np", "pt", "pil", "latent")


def is_int(value: Any) -> bool:
    """Whether `value` is an `int` (a `bool` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether `value` is a finite `int` or `float` (a `bool` is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive_int(value: Any, name: str) -> None:
    """Raises a `ValueError` unless `value` is an integer >= 1."""
    if not is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1 but is {value!r}.")


def check_output_type(output_type: str, allowed: Sequence[str] = OUTPUT_TYPES) -> None:
    """Raises a `ValueError` unless `output_type` is one of `allowed` (default "np", "pt", "pil", "latent").

    diffusers' image processor silently falls back to "np" for an unknown type; a typo should fail instead.
    """
    if not isinstance(output_type, str) or output_type not in allowed:
        raise ValueError(f"`output_type` must be one of {tuple(allowed)} but is {output_type!r}.")


def check_decode_chunk_size(decode_chunk_size: int | None) -> None:
    """Raises a `ValueError` unless `decode_chunk_size` is None or a positive integer."""
    if decode_chunk_size is None:
        return
    if not is_int(decode_chunk_size) or decode_chunk_size < 1:
        raise ValueError(f"`decode_chunk_size` must be a positive integer or None but is {decode_chunk_size!r}.")


def prompt_batch_size(prompt: str | list[str] | None, embeds: torch.Tensor | None) -> int:
    """Prompts in a call: 1 for a string, the list's length, or the embeddings' batch when `prompt` is None."""
    if prompt is None:
        return embeds.shape[0]
    return 1 if isinstance(prompt, str) else len(prompt)


def _describe(prompt: Any, embeds: torch.Tensor | None) -> str:
    return repr(prompt) if prompt is not None else f"embeddings of shape {tuple(embeds.shape)}"


def check_prompt_arguments(
    prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, text_dim: int | None
) -> None:
    """The prompt checks every text-conditioned pipeline here makes before any model runs.

    Exactly one of `prompt` and `prompt_embeds`, at most one of `negative_prompt` and `negative_prompt_embeds`;
    prompts are strings or non-empty lists of strings; embeddings are `(batch, tokens, text_dim)` tensors (`text_dim`
    None: any width) with at least one token.

    The negative-prompt policy of every pipeline is diffusers' (Stable Diffusion's `encode_prompt`): a negative prompt
    has the type of `prompt` (a string goes with a string, a list with a list) and as many entries; negative
    embeddings have the batch size of the prompt (and the shape of `prompt_embeds` when both are given).

    Raises:
        ValueError: A pair given both or neither, an empty list, embeddings of the wrong shape, batch sizes that
            differ.
        TypeError: A prompt that is not a string or a list of strings, or a negative prompt of another type.
    """
    if prompt is not None and prompt_embeds is not None:
        raise ValueError(
            f"Pass either `prompt` or `prompt_embeds`, not both, but got `prompt`={prompt!r} and"
            f" `prompt_embeds` of shape {tuple(prompt_embeds.shape)}."
        )
    if prompt is None and prompt_embeds is None:
        raise ValueError("Pass either `prompt` or `prompt_embeds`; both are None.")
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise ValueError(
            f"Pass at most one of `negative_prompt` and `negative_prompt_embeds` but got `negative_prompt`="
            f"{negative_prompt!r} and `negative_prompt_embeds` of shape {tuple(negative_prompt_embeds.shape)}."
        )
    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(p, str) for p in value))
        ):
            raise TypeError(f"`{name}` must be a string or a list of strings but is {value!r}.")
        if isinstance(value, list) and not value:
            raise ValueError(f"`{name}` must hold at least one prompt but is {value!r}.")
    for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
        if embeds is None:
            continue
        if (
            not isinstance(embeds, torch.Tensor)
            or embeds.ndim != 3
            or (text_dim and embeds.shape[-1] != text_dim)
            or 0 in embeds.shape
        ):
            shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
            raise ValueError(
                f"`{name}` must have shape (batch, tokens, {text_dim}) with batch and tokens >= 1 but has shape"
                f" {shape}."
            )

    # the negative prompt goes with the prompt: as many entries, then the same type
    batch_size = prompt_batch_size(prompt, prompt_embeds)
    if isinstance(negative_prompt, list) or negative_prompt_embeds is not None:
        negative_batch_size = prompt_batch_size(negative_prompt, negative_prompt_embeds)
        if negative_batch_size != batch_size:
            raise ValueError(
                f"`negative_prompt` has {negative_batch_size} prompts but `prompt` has batch size {batch_size}: the"
                f" batch sizes of the negative prompt ({negative_batch_size}) and of the prompt ({batch_size}) must be"
                f" equal (`negative_prompt`={_describe(negative_prompt, negative_prompt_embeds)},"
                f" `prompt`={_describe(prompt, prompt_embeds)})."
            )
    if negative_prompt is not None and prompt is not None and type(prompt) is not type(negative_prompt):
        raise TypeError(
            f"`negative_prompt` must have the type of `prompt` but they are {negative_prompt!r} and {prompt!r}."
        )
    if prompt_embeds is not None and negative_prompt_embeds is not None:
        if prompt_embeds.shape != negative_prompt_embeds.shape:
            raise ValueError(
                "`prompt_embeds` and `negative_prompt_embeds` must have the same shape but have shapes"
                f" {tuple(prompt_embeds.shape)} and {tuple(negative_prompt_embeds.shape)}."
            )


def check_generator(generator: Any, batch_size: int) -> None:
    """Raises unless `generator` is None, a `torch.Generator`, or a list of exactly `batch_size` of them.

    Args:
        generator: The `generator` argument of a pipeline call.
        batch_size (`int`): The effective batch size (prompts times videos per prompt).
    """
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, list) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) != batch_size:
            raise ValueError(
                f"`generator` is a list of {len(generator)} generators but the effective batch size (prompts x"
                f" `num_videos_per_prompt`) is {batch_size}."
            )
        return
    raise TypeError(f"`generator` must be a torch.Generator, a list of them or None but is {generator!r}.")


def check_callback_arguments(
    callback_on_step_end: Callable | None,
    callback_on_step_end_tensor_inputs: Sequence[str] | None,
    allowed: Sequence[str],
) -> None:
    """Raises unless the callback is callable (or None) and asks only for tensors in `allowed`
    (the pipeline's `_callback_tensor_inputs`)."""
    if callback_on_step_end is not None and not callable(callback_on_step_end):
        raise TypeError(f"`callback_on_step_end` must be callable but is {callback_on_step_end!r}.")
    if callback_on_step_end_tensor_inputs is not None:
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in allowed]
        if unknown:
            raise ValueError(f"`callback_on_step_end_tensor_inputs` must be in {list(allowed)} but has {unknown}.")
