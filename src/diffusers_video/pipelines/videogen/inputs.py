"""The plan and the checks of a `VideoGenPipeline` call, all before any model runs.

[`plan_call`] resolves what a call does (where the reference comes from, whether the super-resolution stage runs, the
temporal upsampling rounds, the frame counts and sizes) and raises a `ValueError` naming the argument and its value
when the request does not fit the pipeline's models; [`check_call_inputs`] checks everything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ...models.flow_upsampler import check_temporal_upsampling, upsampled_frame_count
from ...schedulers.diffusion_math import check_eta, check_num_inference_steps
from ..checks import (
    check_bool,
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
    is_number,
    prompt_batch_size,
)
from ..imagen_video.cascade import check_augmentation_level
from .components import check_components
from .reference import check_reference_image

__all__ = ["DEFAULT_NUM_FRAMES", "CallPlan", "check_call_inputs", "plan_call"]

DEFAULT_NUM_FRAMES = 8
"""Frames of the base stage when `num_frames` is not given."""


@dataclass(frozen=True)
class CallPlan:
    """What a call does."""

    reference: str  # "image" (`reference_image`), "latents" (`reference_latents`) or "image_unet" (generated)
    super_resolution: bool
    temporal_upsampling: int  # 1, 2, 4 or 8
    num_frames: int  # of the base stage
    output_frames: int  # after temporal upsampling
    base_size: tuple[int, int]  # latents (h, w) of the reference and the base stage
    height: int  # of the output, in pixels
    width: int


def plan_call(
    pipe, height, width, num_frames, temporal_upsampling, super_resolution, reference_image, reference_latents
) -> CallPlan:
    """The stages, frame counts and sizes of a call; a `ValueError` naming the argument when they do not fit.

    The components are checked first, as they may have been swapped since the pipeline was built.
    """
    check_components(
        pipe.vae, pipe.text_encoder, pipe.unet, pipe.image_unet, pipe.super_resolution_unet, pipe.flow_upsampler,
        pipe.config.super_resolution_factor,
    )  # fmt: skip
    if reference_image is not None and reference_latents is not None:
        raise ValueError("Pass at most one of `reference_image` and `reference_latents`, not both.")
    if reference_image is not None:
        reference = "image"
    elif reference_latents is not None:
        reference = "latents"
    elif pipe.image_unet is not None:
        reference = "image_unet"
    else:
        raise ValueError(
            "The pipeline has no `image_unet` to make the reference image from the prompt: pass `reference_image` "
            "(e.g. a text-to-image pipeline's output) or `reference_latents`."
        )

    if super_resolution is None:
        super_resolution = pipe.super_resolution_unet is not None
    check_bool(super_resolution, "super_resolution")
    if super_resolution and pipe.super_resolution_unet is None:
        raise ValueError("`super_resolution` is True but the pipeline has no `super_resolution_unet`.")

    if temporal_upsampling is None:
        temporal_upsampling = 2 if pipe.flow_upsampler is not None else 1
    check_temporal_upsampling(temporal_upsampling)
    if temporal_upsampling > 1 and pipe.flow_upsampler is None:
        raise ValueError(
            f"`temporal_upsampling` is {temporal_upsampling} but the pipeline has no `flow_upsampler`: pass 1."
        )

    num_frames = DEFAULT_NUM_FRAMES if num_frames is None else num_frames
    check_positive_int(num_frames, "num_frames")
    if temporal_upsampling > 1 and num_frames < 2:
        raise ValueError(f"`num_frames` must be at least 2 to upsample in time but is {num_frames}.")
    config = pipe.unet.config
    if getattr(config, "frame_position_encoding", None) == "learned" or getattr(config, "frame_adaptor", None):
        if num_frames > config.max_frames:
            raise ValueError(
                f"`num_frames` is {num_frames} but `unet` has per-frame parameters for at most `max_frames`="
                f"{config.max_frames} frames."
            )

    scale = pipe.vae_scale_factor
    factor = pipe.config.super_resolution_factor if super_resolution else 1
    base_multiple = pipe.unet.downsample_factor
    if pipe.image_unet is not None and reference == "image_unet":
        base_multiple = math.lcm(base_multiple, 2 ** (len(pipe.image_unet.config.block_out_channels) - 1))
    latent_multiple = base_multiple * factor
    if super_resolution:
        latent_multiple = math.lcm(latent_multiple, pipe.super_resolution_unet.downsample_factor)
    multiple = latent_multiple * scale
    sample_size = config.sample_size
    sample_size = (sample_size, sample_size) if is_int(sample_size) or sample_size is None else tuple(sample_size)
    if reference == "latents" and isinstance(reference_latents, torch.Tensor) and reference_latents.ndim == 4:
        sample_size = tuple(reference_latents.shape[2:])  # the reference sets the size
    if (height is None and sample_size[0] is None) or (width is None and sample_size[1] is None):
        raise ValueError(
            f"`height` and `width` must be given because `unet` has no `sample_size` but are {height} and {width}."
        )
    height = sample_size[0] * scale * factor if height is None else height
    width = sample_size[1] * scale * factor if width is None else width
    if not (is_int(height) and is_int(width)) or height < 1 or width < 1 or height % multiple or width % multiple:
        what = f" times the super-resolution factor {factor}" if super_resolution else ""
        raise ValueError(
            f"`height` and `width` have to be positive multiples of {multiple} (the VAE scale factor {scale}{what} "
            f"times the UNets' downsampling) but are {height!r} and {width!r}."
        )
    base_size = (height // (scale * factor), width // (scale * factor))
    output_frames = upsampled_frame_count(num_frames, temporal_upsampling)
    return CallPlan(reference, super_resolution, temporal_upsampling, num_frames, output_frames, base_size, height,
                    width)  # fmt: skip


def check_call_inputs(
    pipe,
    plan: CallPlan,
    prompt,
    steps: dict[str, int],
    guidance_scales: dict[str, Any],
    reference_guidance_scale,
    noise_aug_level,
    negative_prompt,
    num_videos_per_prompt,
    eta,
    generator,
    latents,
    reference_image,
    reference_latents,
    prompt_embeds,
    negative_prompt_embeds,
    output_type,
    cross_attention_kwargs,
    decode_chunk_size,
    callback_on_step_end,
    callback_on_step_end_tensor_inputs,
) -> None:
    """Raises a `ValueError` (or a `TypeError` for a wrong type) naming the bad argument and its value.

    `steps` and `guidance_scales` map the denoising stages that run ("reference" when the image model makes the
    reference, "base", "super_resolution") to their argument values.
    """
    check_positive_int(num_videos_per_prompt, "num_videos_per_prompt")
    check_augmentation_level(noise_aug_level)
    check_eta(eta)
    names = {"reference": "image_", "base": "", "super_resolution": "super_resolution_"}
    for stage, value in steps.items():
        check_num_inference_steps(
            value, pipe.stage_scheduler(stage).config.num_train_timesteps, name=f"{names[stage]}num_inference_steps"
        )
        try:
            check_guidance_scale(guidance_scales[stage], value)
        except (TypeError, ValueError) as error:
            raise type(error)(str(error).replace("`guidance_scale`", f"`{names[stage]}guidance_scale`")) from error
    if not is_number(reference_guidance_scale) or reference_guidance_scale < 0:
        raise ValueError(f"`reference_guidance_scale` must be a number >= 0 but is {reference_guidance_scale!r}.")

    check_prompt_arguments(
        prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, pipe.unet.config.cross_attention_dim
    )
    prompts = prompt_batch_size(prompt, prompt_embeds)
    total = prompts * num_videos_per_prompt
    batch_sizes = tuple(sorted({1, prompts, total}))
    channels = pipe.unet.config.out_channels
    h, w = plan.base_size
    if plan.reference == "image":
        scale = pipe.vae_scale_factor
        sizes = [(h * scale, w * scale)] + ([(plan.height, plan.width)] if plan.super_resolution else [])
        check_reference_image(reference_image, sizes, batch_sizes)
    if plan.reference == "latents":
        if not isinstance(reference_latents, torch.Tensor) or reference_latents.ndim != 4:
            raise ValueError(
                f"`reference_latents` must be a (batch, {channels}, {h}, {w}) tensor but is "
                f"{tuple(reference_latents.shape) if isinstance(reference_latents, torch.Tensor) else reference_latents!r}."
            )
        if reference_latents.shape[0] not in batch_sizes:
            raise ValueError(
                f"`reference_latents` has batch size {reference_latents.shape[0]} but must have "
                f"{' or '.join(map(str, batch_sizes))} (one for all videos, one per prompt, or one per video)."
            )
        check_latents(reference_latents, (reference_latents.shape[0], channels, h, w), pipe.unet.dtype,
                      name="reference_latents")  # fmt: skip

    factor = pipe.config.super_resolution_factor if plan.super_resolution else 1
    final_latents = (total, channels, plan.output_frames, h * factor, w * factor)
    video_shape = (total, 3, plan.output_frames, plan.height, plan.width)  # decoded, float32
    check_video_memory(
        [(final_latents, pipe.unet.dtype.itemsize)] + ([(video_shape, 4)] if output_type != "latent" else []),
        dict(height=plan.height, width=plan.width, num_frames=plan.num_frames,
             temporal_upsampling=plan.temporal_upsampling, num_videos_per_prompt=num_videos_per_prompt),
        pipe._execution_device, prompts,
    )  # fmt: skip
    check_generator(generator, total)
    if latents is not None:
        check_latents(latents, (total, channels, plan.num_frames, h, w), pipe.unet.dtype)
    check_output_type(output_type)
    check_decode_chunk_size(decode_chunk_size)
    if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
        raise TypeError(f"`cross_attention_kwargs` must be a dict or None but is {cross_attention_kwargs!r}.")
    check_callback_arguments(callback_on_step_end, callback_on_step_end_tensor_inputs, pipe._callback_tensor_inputs)
