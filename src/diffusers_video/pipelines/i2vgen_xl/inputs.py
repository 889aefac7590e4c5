"""The checks of `I2VGenXLCascadePipeline`: its components (`check_components`) and its call arguments
(`check_call_inputs`), each a `ValueError` (a `TypeError` for a wrong type) naming the argument and its value, raised
before any model runs."""

from __future__ import annotations

from typing import Any

from ...models.i2vgen_xl_content import I2VGenXLContentEncoder
from ...models.unet_3d import UNet3DModel
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
from .images import check_image
from .pipeline_video_refiner import check_size
from .refine import check_guidance_rescale, check_noise_mode, check_strength

__all__ = ["check_call_inputs", "check_components"]


def check_components(vae, content_encoder, unet, refiner_unet, refiner_scheduler) -> None:
    """The base UNet reads the sample and the content encoder's path, predicts the VAE's latents and has an "fps"
    condition; a refiner (UNet and scheduler, both or neither) works on the same latents.

    Raises:
        TypeError: A UNet that is not a `UNet3DModel`, a content encoder that is not an `I2VGenXLContentEncoder`.
        ValueError: Channels or widths that do not fit together, naming both sides.
    """
    if not isinstance(unet, UNet3DModel):
        raise TypeError(f"`unet` must be a UNet3DModel but is a {type(unet).__name__}.")
    if not isinstance(content_encoder, I2VGenXLContentEncoder):
        raise TypeError(
            f"`content_encoder` must be an I2VGenXLContentEncoder but is a {type(content_encoder).__name__}."
        )
    latent = vae.config.latent_channels
    conditioning = content_encoder.config.conditioning_channels
    expected_in = latent + conditioning
    if unet.config.in_channels != expected_in or unet.config.out_channels != latent:
        raise ValueError(
            f"`unet` has `in_channels`={unet.config.in_channels} and `out_channels`={unet.config.out_channels}, but "
            f"the VAE's {latent} latent channels plus the content encoder's {conditioning} conditioning channels need "
            f"{expected_in} and {latent}."
        )
    if content_encoder.config.latent_channels != latent:
        raise ValueError(
            f"`content_encoder` reads {content_encoder.config.latent_channels} latent channels but the VAE has "
            f"{latent}."
        )
    if content_encoder.config.cross_attention_dim != unet.config.cross_attention_dim:
        raise ValueError(
            f"`content_encoder` makes tokens of width {content_encoder.config.cross_attention_dim} but `unet` attends "
            f"to width {unet.config.cross_attention_dim}."
        )
    if "fps" not in unet.config.scalar_conditions:
        raise ValueError(
            f"`unet` must have an 'fps' scalar condition but has `scalar_conditions`={unet.config.scalar_conditions}."
        )
    if (refiner_unet is None) != (refiner_scheduler is None):
        raise ValueError(
            "Give both `refiner_unet` and `refiner_scheduler` or neither, but `refiner_unet` is "
            f"{type(refiner_unet).__name__} and `refiner_scheduler` is {type(refiner_scheduler).__name__}."
        )
    if refiner_unet is not None:
        if not isinstance(refiner_unet, UNet3DModel):
            raise TypeError(f"`refiner_unet` must be a UNet3DModel but is a {type(refiner_unet).__name__}.")
        if refiner_unet.config.in_channels != latent or refiner_unet.config.out_channels != latent:
            raise ValueError(
                f"`refiner_unet` reads {refiner_unet.config.in_channels} and predicts "
                f"{refiner_unet.config.out_channels} latent channels but the base stage's latents (the VAE's) have "
                f"{latent}: the refiner must work on the same latents."
            )
        if refiner_unet.config.cross_attention_dim != unet.config.cross_attention_dim:
            raise ValueError(
                f"`refiner_unet` attends to text of width {refiner_unet.config.cross_attention_dim} but the text "
                f"encoder shared with `unet` gives width {unet.config.cross_attention_dim}."
            )


def check_call_inputs(
    pipe: Any, prompt, image, height, width, target_fps, num_frames, num_inference_steps, guidance_scale,
    negative_prompt, eta, num_videos_per_prompt, decode_chunk_size, generator, latents, prompt_embeds,
    negative_prompt_embeds, output_type, cross_attention_kwargs, clip_skip, replace_first_frame, refine, refiner_prompt,
    refiner_height,
    refiner_width, refiner_strength, refiner_num_inference_steps, refiner_guidance_scale, refiner_guidance_rescale,
    refiner_noise_mode, callback_on_step_end, callback_on_step_end_tensor_inputs,
) -> bool:  # fmt: skip
    """The checks of `I2VGenXLCascadePipeline.__call__` (height and width defaulted); returns whether the refiner
    runs."""
    check_prompt_arguments(
        prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, pipe.unet.config.cross_attention_dim
    )
    batch_size = prompt_batch_size(prompt, prompt_embeds)
    num_images = check_image(image)
    if num_images not in (1, batch_size):
        raise ValueError(
            f"`image` holds {num_images} images but there are {batch_size} prompts: pass one image, or one per prompt."
        )
    check_size(height, width, pipe.size_multiple(pipe.unet))
    if not is_number(target_fps) or target_fps <= 0:
        raise ValueError(f"`target_fps` must be a number > 0 but is {target_fps!r}.")
    check_positive_int(num_frames, "num_frames")
    check_positive_int(num_inference_steps, "num_inference_steps")
    check_positive_int(num_videos_per_prompt, "num_videos_per_prompt")
    check_guidance_scale(guidance_scale, num_inference_steps)
    if not is_number(eta) or not 0 <= eta <= 1:
        raise ValueError(f"`eta` must be a number in [0, 1] but is {eta!r}.")
    if clip_skip is not None and (not is_int(clip_skip) or clip_skip < 0):
        raise ValueError(f"`clip_skip` must be None or an integer >= 0 but is {clip_skip!r}.")
    check_output_type(output_type)
    check_decode_chunk_size(decode_chunk_size)
    if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
        raise TypeError(f"`cross_attention_kwargs` must be a dict or None but is {cross_attention_kwargs!r}.")
    check_callback_arguments(callback_on_step_end, callback_on_step_end_tensor_inputs, pipe._callback_tensor_inputs)
    videos = batch_size * num_videos_per_prompt
    check_generator(generator, videos)
    latent = pipe.vae.config.latent_channels
    shape = (videos, latent, num_frames, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    if latents is not None:
        check_latents(latents, shape, pipe.unet.dtype)
    for name, value in (("replace_first_frame", replace_first_frame), ("refine", refine)):
        if not isinstance(value, bool):
            raise TypeError(f"`{name}` must be True or False but is {value!r}.")
    refining = refine and pipe.refiner_unet is not None
    sizes = [(height, width)]
    if refining:
        if (refiner_height is None) != (refiner_width is None):
            raise ValueError(
                "Give both `refiner_height` and `refiner_width` or neither, but they are "
                f"{refiner_height!r} and {refiner_width!r}."
            )
        refiner_size = pipe.refiner_size(refiner_height, refiner_width, height, width)
        check_size(*refiner_size, pipe.size_multiple(pipe.refiner_unet), ("refiner_height", "refiner_width"))
        if refiner_prompt is not None and not (
            isinstance(refiner_prompt, str)
            or (isinstance(refiner_prompt, list) and all(isinstance(p, str) for p in refiner_prompt))
        ):
            raise TypeError(f"`refiner_prompt` must be None, a string or a list of strings but is {refiner_prompt!r}.")
        if isinstance(refiner_prompt, list) and len(refiner_prompt) != batch_size:
            raise ValueError(
                f"`refiner_prompt` has {len(refiner_prompt)} prompts but there are {batch_size}: give one per prompt."
            )
        check_strength(refiner_strength, "refiner_strength")
        steps = num_inference_steps if refiner_num_inference_steps is None else refiner_num_inference_steps
        check_positive_int(steps, "refiner_num_inference_steps")
        check_guidance_scale(guidance_scale if refiner_guidance_scale is None else refiner_guidance_scale, steps)
        check_guidance_rescale(refiner_guidance_rescale, "refiner_guidance_rescale")
        check_noise_mode(refiner_noise_mode, "refiner_noise_mode")
        sizes.append(refiner_size)
    scale = pipe.vae_scale_factor
    check_video_memory(
        [((videos, latent, num_frames, h // scale, w // scale), 4) for h, w in sizes]
        + [((videos, 3, num_frames, *sizes[-1]), 4)],
        {"num_frames": num_frames, "height": sizes[-1][0], "width": sizes[-1][1]},
        pipe._execution_device,
        batch_size,
    )
    return refining
