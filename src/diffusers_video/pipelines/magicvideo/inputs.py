"""The plan and the checks of a `MagicVideoPipeline` call, all before any model runs.

[`plan_call`] resolves what a call will do (which stages run, the interpolation rounds, the frame counts and sizes of
every stage) and raises a `ValueError` naming the argument and its value when the request does not fit the
pipeline's models; [`check_call_inputs`] checks everything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    is_number,
    prompt_batch_size,
)
from ..imagen_video.cascade import check_augmentation_level
from .components import check_components
from .stages import INTERPOLATION_FACTORS, STAGES, interpolated_frame_count

__all__ = ["DEFAULT_NUM_KEYFRAMES", "CallPlan", "check_call_inputs", "plan_call"]

DEFAULT_NUM_KEYFRAMES = 8
"""Keyframes when neither `num_keyframes` nor `num_frames` is given."""


@dataclass(frozen=True)
class CallPlan:
    """What a call does: the stages that run, in order, and the size of each stage's output."""

    stages: tuple[str, ...]  # those of `STAGES` that run
    factors: tuple[int, ...]  # one per interpolation round
    num_keyframes: int
    num_frames: int  # after interpolation
    keyframe_size: tuple[int, int]  # latents (h, w) of the keyframes and the interpolation
    height: int  # of the output, in pixels
    width: int

    @property
    def super_resolution(self) -> bool:
        return "super_resolution" in self.stages


def _is_frame_limited(unet: Any) -> bool:
    """A UNet with per-frame parameters (learned frame encodings, frame adaptors) runs at most `max_frames` frames."""
    config = unet.config
    return getattr(config, "frame_position_encoding", None) == "learned" or bool(getattr(config, "frame_adaptor", 0))


def plan_call(pipe, height, width, num_frames, num_keyframes, interpolation_factors, stages, keyframes) -> CallPlan:
    """The stages, frame counts and sizes of a call; a `ValueError` naming the argument when they do not fit.

    The components are checked first, as they may have been swapped since the pipeline was built.
    """
    check_components(
        pipe.vae, pipe.text_encoder, pipe.unet, pipe.interpolation_unet, pipe.super_resolution_unet,
        pipe.config.super_resolution_factor, pipe.config.super_resolution_space,
    )  # fmt: skip
    available = {"keyframes": pipe.unet, "interpolation": pipe.interpolation_unet,
                 "super_resolution": pipe.super_resolution_unet}  # fmt: skip
    if stages is None:
        stages = [
            name for name in STAGES if available[name] is not None and (name != "keyframes" or keyframes is None)
        ]
    if isinstance(stages, str) or not isinstance(stages, (list, tuple)) or any(s not in STAGES for s in stages):
        raise ValueError(f"`stages` must be a list of names from {STAGES} but is {stages!r}.")
    stages = tuple(name for name in STAGES if name in stages)  # in their order, once each
    for name in stages:
        if available[name] is None:
            raise ValueError(f"`stages` has {name!r} but the pipeline has no `{name}_unet`: it cannot run that stage.")
    if keyframes is not None and "keyframes" in stages:
        raise ValueError(
            "`keyframes` were given, so the keyframe stage does not run: leave 'keyframes' out of `stages`."
        )
    if keyframes is None and "keyframes" not in stages:
        raise ValueError(f"`stages` is {list(stages)}: without the keyframe stage, pass the `keyframes` latents.")

    # interpolation rounds
    if interpolation_factors is None:
        factors = (2,) if "interpolation" in stages else ()
    elif is_int(interpolation_factors):
        factors = (interpolation_factors,)
    elif isinstance(interpolation_factors, (list, tuple)) and all(map(is_int, interpolation_factors)):
        factors = tuple(interpolation_factors)
    else:
        raise ValueError(
            f"`interpolation_factors` must be an integer or a list of integers (one per round, each one of "
            f"{INTERPOLATION_FACTORS}) but is {interpolation_factors!r}."
        )
    if any(f not in INTERPOLATION_FACTORS for f in factors):
        raise ValueError(
            f"`interpolation_factors` must each be one of {INTERPOLATION_FACTORS} but are {list(factors)}."
        )
    if factors and "interpolation" not in stages:
        raise ValueError(
            f"`interpolation_factors` is {list(factors)} but the interpolation stage does not run (`stages` is "
            f"{list(stages)})."
        )
    if "interpolation" in stages and not factors:
        raise ValueError("`interpolation_factors` is empty but the interpolation stage runs: give at least one round.")

    # frame counts
    step = math.prod(factors)
    if keyframes is not None:
        if not isinstance(keyframes, torch.Tensor) or keyframes.ndim != 5:
            shape = tuple(keyframes.shape) if isinstance(keyframes, torch.Tensor) else type(keyframes).__name__
            raise ValueError(f"`keyframes` must be latents (batch, channels, frames, height, width) but are {shape}.")
        if num_keyframes is not None and num_keyframes != keyframes.shape[2]:
            raise ValueError(
                f"`num_keyframes` is {num_keyframes!r} but the given `keyframes` have {keyframes.shape[2]} frames."
            )
        num_keyframes = keyframes.shape[2]
    if num_frames is not None:
        check_positive_int(num_frames, "num_frames")
        if (num_frames - 1) % step:
            raise ValueError(
                f"`num_frames`={num_frames} does not fit `interpolation_factors` {list(factors)}: each round makes "
                f"(n - 1) * factor + 1 frames from n, so `num_frames` - 1 must be divisible by {step}."
            )
        derived = (num_frames - 1) // step + 1
        if num_keyframes is not None and num_keyframes != derived:
            raise ValueError(
                f"`num_keyframes`={num_keyframes!r} and `num_frames`={num_frames} do not fit `interpolation_factors` "
                f"{list(factors)}, which make {interpolated_frame_count(num_keyframes, factors)} frames from "
                f"{num_keyframes} keyframes; give one of the two."
            )
        num_keyframes = derived
    if num_keyframes is None:
        num_keyframes = DEFAULT_NUM_KEYFRAMES
    check_positive_int(num_keyframes, "num_keyframes")
    if factors and num_keyframes < 2:
        raise ValueError(
            f"`num_keyframes` must be at least 2 to interpolate between keyframes but is {num_keyframes}."
        )
    if "keyframes" in stages and num_keyframes > pipe.unet.config.max_frames:
        raise ValueError(
            f"`num_keyframes` is {num_keyframes} but the keyframe model `unet` makes at most `max_frames`="
            f"{pipe.unet.config.max_frames} frames."
        )
    if factors and _is_frame_limited(pipe.interpolation_unet):
        limit = pipe.interpolation_unet.config.max_frames
        if max(factors) + 1 > limit:
            raise ValueError(
                f"`interpolation_factors` {list(factors)} need segments of {max(factors) + 1} frames but "
                f"`interpolation_unet` has per-frame parameters for at most `max_frames`={limit} frames."
            )
    num_frames = interpolated_frame_count(num_keyframes, factors)
    if "super_resolution" in stages and _is_frame_limited(pipe.super_resolution_unet):
        limit = pipe.super_resolution_unet.config.max_frames
        if num_frames > limit:
            raise ValueError(
                f"The super-resolution stage would run on {num_frames} frames but `super_resolution_unet` has "
                f"per-frame parameters for at most `max_frames`={limit} frames: ask for fewer frames."
            )

    # sizes
    sr = "super_resolution" in stages
    factor = pipe.config.super_resolution_factor if sr else 1
    scale = pipe.vae_scale_factor
    latent_unets = [u for u in (pipe.unet if "keyframes" in stages else None, pipe.interpolation_unet if factors
                                else None) if u is not None]  # fmt: skip
    latent_multiple = max([u.downsample_factor for u in latent_unets], default=1)
    if sr and pipe.config.super_resolution_space == "latent":
        latent_multiple = math.lcm(latent_multiple * factor, pipe.super_resolution_unet.downsample_factor)
        multiple = latent_multiple * scale
    else:
        multiple = latent_multiple * scale * factor
        if sr:
            multiple = math.lcm(multiple, pipe.super_resolution_unet.downsample_factor)
    if keyframes is not None:
        default = (keyframes.shape[3] * scale * factor, keyframes.shape[4] * scale * factor)
    else:
        sample_size = pipe.unet.config.sample_size
        if sample_size is None and (height is None or width is None):
            raise ValueError(
                f"`height` and `width` must be given because `unet` has no `sample_size` but are {height} and {width}."
            )
        sample_size = (sample_size, sample_size) if is_int(sample_size) or sample_size is None else sample_size
        default = tuple(s * scale * factor if s is not None else None for s in sample_size)
    height = default[0] if height is None else height
    width = default[1] if width is None else width
    if not (is_int(height) and is_int(width)) or height < 1 or width < 1 or height % multiple or width % multiple:
        what = f" times the super-resolution factor {factor}" if sr else ""
        raise ValueError(
            f"`height` and `width` have to be positive multiples of {multiple} (the VAE scale factor {scale}{what} "
            f"times the UNets' downsampling) but are {height!r} and {width!r}."
        )
    keyframe_size = (height // (scale * factor), width // (scale * factor))
    if keyframes is not None and tuple(keyframes.shape[3:]) != keyframe_size:
        raise ValueError(
            f"`keyframes` have latents of {tuple(keyframes.shape[3:])} but an output of {height}x{width} needs "
            f"{keyframe_size}."
        )
    return CallPlan(stages, factors, num_keyframes, num_frames, keyframe_size, height, width)


def check_call_inputs(
    pipe,
    plan: CallPlan,
    prompt: str | list[str] | None,
    fps: float,
    num_inference_steps: Sequence[int],
    guidance_scales: Sequence[float | Sequence[float] | GuidanceSchedule],
    noise_aug_level: float,
    negative_prompt: str | list[str] | None,
    num_videos_per_prompt: int,
    eta: float,
    generator: torch.Generator | list[torch.Generator] | None,
    latents: torch.Tensor | None,
    keyframes: torch.Tensor | None,
    prompt_embeds: torch.Tensor | None,
    negative_prompt_embeds: torch.Tensor | None,
    output_type: str,
    cross_attention_kwargs: dict[str, Any] | None,
    decode_chunk_size: int | None,
    callback_on_step_end: Callable | None,
    callback_on_step_end_tensor_inputs: list[str] | None,
) -> None:
    """Raises a `ValueError` (or a `TypeError` for a wrong type) naming the bad argument and its value.

    `num_inference_steps` and `guidance_scales` hold one value per stage of `STAGES` (None for a stage that does
    not run).
    """
    check_positive_int(num_videos_per_prompt, "num_videos_per_prompt")
    if not is_number(fps) or fps <= 0:
        raise ValueError(f"`fps` (frames per second of the keyframes) must be a number > 0 but is {fps!r}.")
    check_augmentation_level(noise_aug_level)
    check_eta(eta)
    steps_names = ("num_inference_steps", "interpolation_num_inference_steps", "super_resolution_num_inference_steps")
    guidance_names = ("guidance_scale", "interpolation_guidance_scale", "super_resolution_guidance_scale")
    for stage, steps, steps_name, guidance, guidance_name in zip(
        STAGES, num_inference_steps, steps_names, guidance_scales, guidance_names
    ):
        if stage not in plan.stages:
            continue
        scheduler = pipe.stage_scheduler(stage)
        check_num_inference_steps(steps, scheduler.config.num_train_timesteps, name=steps_name)
        try:
            check_guidance_scale(guidance, steps)
        except (TypeError, ValueError) as error:
            raise type(error)(str(error).replace("`guidance_scale`", f"`{guidance_name}`")) from error

    check_prompt_arguments(
        prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, pipe.unet.config.cross_attention_dim
    )
    if prompt is not None and negative_prompt_embeds is not None:
        if negative_prompt_embeds.shape[1] != pipe.tokenizer.model_max_length:
            raise ValueError(
                f"`negative_prompt_embeds` must have the tokenizer's {pipe.tokenizer.model_max_length} tokens to go "
                f"with an encoded `prompt` but has shape {tuple(negative_prompt_embeds.shape)}."
            )

    prompts = prompt_batch_size(prompt, prompt_embeds)
    total = prompts * num_videos_per_prompt
    channels = pipe.unet.config.in_channels
    keyframe_shape = (total, channels, plan.num_keyframes, *plan.keyframe_size)
    final_latents = (total, channels, plan.num_frames, plan.height // pipe.vae_scale_factor,
                     plan.width // pipe.vae_scale_factor)  # fmt: skip
    video_shape = (total, 3, plan.num_frames, plan.height, plan.width)  # decoded, float32
    check_video_memory(
        [(final_latents, pipe.unet.dtype.itemsize)] + ([(video_shape, 4)] if output_type != "latent" else []),
        dict(height=plan.height, width=plan.width, num_frames=plan.num_frames,
             num_videos_per_prompt=num_videos_per_prompt),
        pipe._execution_device, prompts,
    )  # fmt: skip
    check_generator(generator, total)
    if latents is not None:
        if "keyframes" not in plan.stages:
            raise ValueError(
                "`latents` (the keyframe stage's initial noise) were given but the keyframe stage does not run."
            )
        check_latents(latents, keyframe_shape, pipe.unet.dtype)
    if keyframes is not None:
        check_latents(keyframes, keyframe_shape, pipe.unet.dtype, name="keyframes")
    check_output_type(output_type)
    check_decode_chunk_size(decode_chunk_size)
    if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
        raise TypeError(f"`cross_attention_kwargs` must be a dict or None but is {cross_attention_kwargs!r}.")
    check_callback_arguments(callback_on_step_end, callback_on_step_end_tensor_inputs, pipe._callback_tensor_inputs)
    if pipe.config.super_resolution_space == "pixel" and plan.super_resolution and output_type == "latent":
        raise ValueError(
            "`output_type='latent'` returns latents, but the super-resolution stage runs on decoded frames "
            "(`super_resolution_space='pixel'`): ask for 'np', 'pt' or 'pil', or leave 'super_resolution' out of "
            "`stages`."
        )
