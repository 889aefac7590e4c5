"""Input checks every pipeline of this package makes before any model runs.

Each check raises a `ValueError` (a `TypeError` for a value of the wrong type) that names the argument and repeats
its value, as diffusers' own pipelines do ("`height` and `width` have to be divisible by 8 but are 100 and 64.").
Pipelines call these from their `check_inputs`, so a bad call fails before the text encoder or a UNet is run.

A call whose videos cannot fit in memory is refused the same way ([`check_video_memory`]): the pipeline adds up the
bytes of the tensors it will hold at once (its latents and the decoded video) and compares them with the memory of
the device it runs on ([`device_memory_bytes`]).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..guidance import GuidanceSchedule, as_guidance

__all__ = [
    "OUTPUT_TYPES",
    "check_bool",
    "check_callback_arguments",
    "check_decode_chunk_size",
    "check_finite_tensor",
    "check_generator",
    "check_guidance_scale",
    "check_latents",
    "check_output_type",
    "check_positive_int",
    "check_prompt_arguments",
    "check_video_memory",
    "device_memory_bytes",
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


def check_int_at_least(value: Any, name: str, minimum: int) -> None:
    """Raises a `ValueError` naming `name` and `value` unless `value` is an integer (a Python or NumPy one, not a
    `bool`) >= `minimum`: the one count check of the package (pipelines, the shapes world, training configs)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum} but is {value!r}.")


def check_positive_int(value: Any, name: str) -> None:
    """Raises a `ValueError` unless `value` is an integer >= 1."""
    check_int_at_least(value, name, 1)


def check_bool(value: Any, name: str) -> None:
    """Raises a `TypeError` unless `value` is True or False (a string such as "no" would read as true)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False but is {value!r}.")


def check_finite_tensor(tensor: torch.Tensor, name: str) -> None:
    """Raises a `ValueError` counting the NaN and infinite values of `tensor`, if it has any."""
    if not bool(torch.isfinite(tensor).all()):
        num_nan, num_inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        raise ValueError(f"`{name}` must be finite but has {num_nan} NaN and {num_inf} infinite values.")


def _check_float_tensor(tensor: Any, name: str) -> None:
    """A floating-point `torch.Tensor` with data (not on the meta device), else a `TypeError` or `ValueError`."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor but is a {type(tensor).__name__}.")
    if not tensor.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor but has dtype {tensor.dtype}.")
    if tensor.device.type == "meta":
        raise ValueError(f"`{name}` is on the meta device, which holds no data: pass a tensor with values.")


def check_latents(latents: Any, expected_shape: Sequence[int], dtype: torch.dtype, name: str = "latents") -> None:
    """Raises unless `latents` is a finite tensor of `expected_shape` and `dtype` with data.

    `dtype` is the dtype of the model that reads the latents: other dtypes would fail inside it after the text
    encoder ran. The tensor may be on any device with data; the pipeline moves it to its execution device.

    Raises:
        TypeError: Not a tensor, or of another dtype.
        ValueError: Another shape, on the meta device, or with NaN or infinite values.
    """
    if not isinstance(latents, torch.Tensor):
        raise TypeError(
            f"`{name}` must be a torch.Tensor of shape {tuple(expected_shape)} but is a {type(latents).__name__}."
        )
    if tuple(latents.shape) != tuple(expected_shape):
        raise ValueError(f"`{name}` must have shape {tuple(expected_shape)} but has shape {tuple(latents.shape)}.")
    if latents.dtype != dtype:
        raise TypeError(
            f"`{name}` must have dtype {dtype} (that of the model reading them) but has dtype {latents.dtype}."
        )
    _check_float_tensor(latents, name)
    check_finite_tensor(latents, name)


def check_guidance_scale(guidance_scale: Any, num_inference_steps: int) -> GuidanceSchedule:
    """The guidance object of `guidance_scale` (see `diffusers_video.guidance.as_guidance`), checked to give a
    finite weight >= 0 at each of `num_inference_steps` steps.

    Raises:
        TypeError: Not a number, a sequence of numbers or a `GuidanceSchedule`.
        ValueError: A weight that is not finite or below 0, or one weight per step for another number of steps.
    """
    try:
        guidance = as_guidance(guidance_scale)
    except TypeError as error:
        raise TypeError(
            f"`guidance_scale` must be a number, one number per step or a GuidanceSchedule but is {guidance_scale!r}."
        ) from error
    except ValueError as error:  # e.g. NaN among the weights per step
        if "`guidance_scale`" in str(error):
            raise
        raise ValueError(f"`guidance_scale` {guidance_scale!r} is not a valid guidance weight: {error}") from error
    try:
        weights = guidance.scales(num_inference_steps)
    except ValueError as error:  # e.g. one weight per step for another number of steps
        raise ValueError(
            f"`guidance_scale` {guidance_scale!r} does not fit `num_inference_steps`={num_inference_steps}: {error}"
        ) from error
    if any(not math.isfinite(weight) or weight < 0 for weight in weights):
        raise ValueError(
            f"`guidance_scale` must be >= 0 at every step but is {guidance_scale!r} (weights per step: {weights})."
        )
    return guidance


def device_memory_bytes(device: str | torch.device | None = None) -> int:
    """The memory a pipeline running on `device` can hold at most: the total memory of a CUDA device, else the host's
    physical memory (`os.sysconf`: page size x physical pages; on CPU and MPS the tensors live there)."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): no limit known
        return 2**63


def check_video_memory(
    tensors: Sequence[tuple[Sequence[int], int]],
    arguments: Mapping[str, Any],
    device: str | torch.device | None = None,
    batch_size: int | None = None,
) -> None:
    """Refuses, before anything is allocated, a call whose tensors cannot fit in the memory of `device`.

    The pipeline passes the tensors it holds at once (e.g. the latents and the decoded video): their bytes are a lower
    bound of what the call needs (the models' activations, the guidance batch and copies come on top), so a call
    refused here could never run, while one let through may still run out of memory. The limit is
    [`device_memory_bytes`].

    Args:
        tensors (`Sequence[tuple[Sequence[int], int]]`): `(shape, bytes per element)` of each tensor.
        arguments (`Mapping[str, Any]`): The call arguments that set the sizes, named with their values in the error.
        device (`str` or `torch.device`, *optional*): Where the tensors would live; the CPU by default.
        batch_size (`int`, *optional*): The number of prompts, also named in the error.

    Raises:
        ValueError: Naming the arguments, the GiB needed and the GiB the device has.
    """
    needed = sum(math.prod(int(size) for size in shape) * itemsize for shape, itemsize in tensors)
    limit = device_memory_bytes(device)
    if needed > limit:
        named = ", ".join(f"`{name}`={value!r}" for name, value in arguments.items())
        prompts = f" for {batch_size} prompt{'s' if batch_size != 1 else ''}" if batch_size is not None else ""
        raise ValueError(
            f"{named}{prompts} would need at least {needed / 2**30:,.1f} GiB for the video tensors alone, more than the"
            f" {limit / 2**30:,.1f} GiB of memory of {torch.device(device or 'cpu')}: ask for fewer or smaller frames."
        )


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
    prompts are strings or non-empty lists of strings; embeddings are finite floating-point `(batch, tokens, text_dim)`
    tensors (`text_dim` None: any width) with at least one token.

    The negative-prompt policy of every pipeline is diffusers' (Stable Diffusion's `encode_prompt`): a negative prompt
    has the type of `prompt` (a string goes with a string, a list with a list) and as many entries; negative
    embeddings have the batch size of the prompt (and the shape of `prompt_embeds` when both are given).

    Raises:
        ValueError: A pair given both or neither, an empty list, embeddings of the wrong shape or with NaN or infinite
            values, batch sizes that differ.
        TypeError: A prompt that is not a string or a list of strings, a negative prompt of another type, embeddings
            that are not a floating-point tensor.
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
        _check_float_tensor(embeds, name)
        if embeds.ndim != 3 or (text_dim and embeds.shape[-1] != text_dim) or 0 in embeds.shape:
            raise ValueError(
                f"`{name}` must have shape (batch, tokens, {text_dim}) with batch and tokens >= 1 but has shape"
                f" {tuple(embeds.shape)}."
            )
        check_finite_tensor(embeds, name)

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
        names = callback_on_step_end_tensor_inputs
        if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
            raise TypeError(f"`callback_on_step_end_tensor_inputs` must be a list of names but is {names!r}.")
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in allowed]
        if unknown:
            raise ValueError(f"`callback_on_step_end_tensor_inputs` must be in {list(allowed)} but has {unknown}.")
