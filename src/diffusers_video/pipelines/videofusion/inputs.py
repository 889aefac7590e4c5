"""The checks of a `VideoFusionPipeline` call, all run before any model (`VideoFusionPipeline.check_inputs`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ...guidance import GuidanceSchedule
from ...schedulers.diffusion_math import check_eta, check_num_inference_steps
from ..checks import (
    check_callback_arguments,
    check_decode_chunk_size,
    check_generator,
    check_guidance_scale,
    check_latents,
    check_output_type,
    check_positive_int,
    check_prompt_arguments,
    check_video_memory,
    is_int,
    prompt_batch_size,
)
from .components import check_components

__all__ = ["WINDOW_MODES", "check_call_inputs"]

WINDOW_MODES = ("extend", "blend")
"""How a video longer than a window is made: window after window from the previous frames, or windows side by side."""


def check_call_inputs(
    pipe,
    prompt: str | list[str] | None,
    height: int,
    width: int,
    num_frames: int,
    num_inference_steps: int,
    guidance_scale: float | Sequence[float] | GuidanceSchedule,
    negative_prompt: str | list[str] | None,
    num_videos_per_prompt: int,
    eta: float,
    generator: torch.Generator | list[torch.Generator] | None,
    latents: torch.Tensor | None,
    prompt_embeds: torch.Tensor | None,
    negative_prompt_embeds: torch.Tensor | None,
    output_type: str,
    cross_attention_kwargs: dict[str, Any] | None,
    decode_chunk_size: int | None,
    window_size: int | None,
    window_overlap: int | None,
    window_mode: str,
    window_strength: float,
    callback_on_step_end: Callable | None,
    callback_on_step_end_tensor_inputs: list[str] | None,
) -> None:
    """Raises a `ValueError` (or a `TypeError` for a wrong type) naming the bad argument and its value.

    Every check runs before any model is called. Height, width and the frame count are already defaulted.
    """
    check_components(
        pipe.vae, pipe.text_encoder, pipe.residual_unet, pipe.scheduler, pipe.base_unet,
        pipe.config.base_prediction_type, pipe.key_frame_estimate,
    )  # fmt: skip  # components may have been swapped since construction

    # sizes and counts
    multiple = pipe._size_multiple()
    if not (is_int(height) and is_int(width)) or height < 1 or width < 1 or height % multiple or width % multiple:
        raise ValueError(
            f"`height` and `width` have to be positive multiples of {multiple} (the VAE scale factor"
            f" {pipe.vae_scale_factor} times the UNets' downsampling) but are {height!r} and {width!r}."
        )
    for name, value in (
        ("num_frames", num_frames),
        ("num_inference_steps", num_inference_steps),
        ("num_videos_per_prompt", num_videos_per_prompt),
    ):
        check_positive_int(value, name)
    check_num_inference_steps(num_inference_steps, pipe.scheduler.config.num_train_timesteps)
    check_eta(eta)

    # prompts and embeddings
    check_prompt_arguments(
        prompt,
        prompt_embeds,
        negative_prompt,
        negative_prompt_embeds,
        pipe.residual_unet.config.cross_attention_dim,
    )
    if prompt is not None and negative_prompt_embeds is not None:
        if negative_prompt_embeds.shape[1] != pipe.tokenizer.model_max_length:
            raise ValueError(
                f"`negative_prompt_embeds` must have the tokenizer's {pipe.tokenizer.model_max_length} tokens to"
                f" go with an encoded `prompt` but has shape {tuple(negative_prompt_embeds.shape)}."
            )

    # memory: the latents and the decoded video must fit on the device
    prompts = prompt_batch_size(prompt, prompt_embeds)
    total = prompts * num_videos_per_prompt
    latent_shape = pipe.latent_shape(total, num_frames, height, width)
    video_shape = (total, 3, num_frames, height, width)  # decoded, float32
    check_video_memory(
        [(latent_shape, pipe.residual_unet.dtype.itemsize)] + ([(video_shape, 4)] if output_type != "latent" else []),
        dict(height=height, width=width, num_frames=num_frames, num_videos_per_prompt=num_videos_per_prompt),
        pipe._execution_device, prompts,
    )  # fmt: skip
    pipe.frame_ratios(num_frames)  # a per-frame `base_noise_ratio` must have one value per frame
    check_guidance_scale(guidance_scale, num_inference_steps)

    # noise
    check_generator(generator, total)
    if latents is not None:
        check_latents(latents, latent_shape, pipe.residual_unet.dtype)

    # output, windows, callbacks
    check_output_type(output_type)
    check_decode_chunk_size(decode_chunk_size)
    if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
        raise TypeError(f"`cross_attention_kwargs` must be a dict or None but is {cross_attention_kwargs!r}.")
    if window_size is not None and (not is_int(window_size) or window_size < 1):
        raise ValueError(f"`window_size` must be an integer >= 1 but is {window_size!r}.")
    if window_overlap is not None and (not is_int(window_overlap) or window_overlap < 0):
        raise ValueError(f"`window_overlap` must be an integer >= 0 but is {window_overlap!r}.")
    if window_mode not in WINDOW_MODES:
        raise ValueError(f"`window_mode` must be one of {WINDOW_MODES} but is {window_mode!r}.")
    if (
        not isinstance(window_strength, (int, float))
        or isinstance(window_strength, bool)
        or not 0 < window_strength <= 1
    ):
        raise ValueError(f"`window_strength` must be a number in (0, 1] but is {window_strength!r}.")
    resolved_size, resolved_overlap = pipe._resolve_windows(window_size, window_overlap, window_mode)
    if resolved_size is not None and resolved_overlap >= resolved_size:
        raise ValueError(
            f"`window_overlap` must be smaller than `window_size` but they are {resolved_overlap} and {resolved_size}."
        )
    config = pipe.residual_unet.config
    frames_per_call = num_frames if resolved_size is None else min(resolved_size, num_frames)
    frame_limited = getattr(config, "frame_position_encoding", None) == "learned" or getattr(
        config, "frame_adaptor", False
    )
    if frame_limited and frames_per_call > config.max_frames:
        raise ValueError(
            f"`window_size` must be at most the residual UNet's `max_frames` ({config.max_frames}, for its learned"
            f" frame encodings or frame adaptors) but is {resolved_size}."
        )
    check_callback_arguments(callback_on_step_end, callback_on_step_end_tensor_inputs, pipe._callback_tensor_inputs)
