"""`VideoRefinerPipeline`: SDEdit-style video-to-video refinement with a text-conditioned video UNet.

I2VGen-XL's second stage (arXiv 2311.04145; ModelScope's `damo/Video-to-Video`, VGen's SR600) and diffusers'
deprecated `VideoToVideoSDPipeline` (zeroscope-XL) are the same procedure: encode a video, noise it to a fraction
`strength` of the schedule, denoise it with a text-conditioned video UNet. This pipeline takes what
`VideoToVideoSDPipeline.__call__` takes and gives the same frames for the same arguments (see
`diffusers-video convert video-refiner`), and adds what the I2VGen-XL refiner uses: `guidance_rescale` (ModelScope
0.2, VGen 0.3), noise by DDIM inversion (`noise_mode="ddim_inversion"`, VGen's SR600), resizing of the input video
(`height`, `width`: the refiner runs at a higher resolution than the video it refines), and the shared callbacks,
progress bar, offloading, LoRA and memory check. v-prediction, zero terminal SNR and trailing timesteps are the
scheduler's own (`DDIMScheduler.from_config(config, timestep_spacing="trailing")`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextModel, CLIPTokenizer

from ...guidance import GuidanceSchedule
from ...models.unet_3d import UNet3DModel
from ...models.video_vae import AutoencoderKLVideo
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
from ..denoising import DenoisingPipelineMixin, callback_tensor_inputs
from ..pipeline_utils import VideoDiffusionPipeline, VideoPipelineOutput, decode_latents, postprocess_video
from ..prompts import encode_clip_prompt
from .refine import (
    check_guidance_rescale,
    check_noise_mode,
    check_strength,
    encode_video,
    preprocess_video,
    refine_latents,
    resize_video,
)

__all__ = ["VideoRefinerPipeline", "check_size", "with_step_callback"]


def check_size(height: Any, width: Any, multiple: int, names: tuple[str, str] = ("height", "width")) -> None:
    """Raises a `ValueError` unless `height` and `width` are positive multiples of `multiple` (the VAE's and the
    UNet's downsampling together); `names` are the arguments named in the message."""
    if (
        not (is_int(height) and is_int(width))
        or min(height, width) < multiple
        or height % multiple
        or width % multiple
    ):
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` have to be positive multiples of {multiple} (the VAE's and the UNet's "
            f"downsampling) but are {height!r} and {width!r}."
        )


def with_step_callback(
    callback: Callable[[int, int, torch.Tensor], None],
    callback_steps: int,
    order: int,
    callback_on_step_end: Callable | None,
    tensor_inputs: list[str],
) -> tuple[Callable, list[str]]:
    """A `callback_on_step_end` that runs `callback_on_step_end` (with the tensors it asked for) and then diffusers'
    older `callback(step, timestep, latents)` at every `callback_steps`-th step, with the latents it left.

    Returns:
        `tuple[Callable, list[str]]`: The combined callback and the tensors it needs ("latents" added).
    """

    def combined(pipe: Any, i: int, t: torch.Tensor, tensors: dict) -> dict:
        outputs = dict(tensors)
        if callback_on_step_end is not None:
            outputs.update(callback_on_step_end(pipe, i, t, {name: tensors[name] for name in tensor_inputs}))
        if i % callback_steps == 0:
            callback(i // order, t, outputs["latents"])
        return outputs

    return combined, sorted({*tensor_inputs, "latents"})


class VideoRefinerPipeline(DenoisingPipelineMixin, VideoDiffusionPipeline):
    r"""Text-guided video-to-video refinement (SDEdit) with a `UNet3DModel`.

    Args:
        vae ([`AutoencoderKL`] or [`AutoencoderKLVideo`]): Encodes the input frames and decodes the result.
        text_encoder ([`CLIPTextModel`]): Frozen text encoder.
        tokenizer ([`CLIPTokenizer`]): Its tokenizer.
        unet ([`UNet3DModel`]): The text-conditioned video UNet (e.g. a converted `UNet3DConditionModel`).
        scheduler ([`SchedulerMixin`]): Any diffusers scheduler with a discrete schedule (DDIM, DPM-Solver++, ...).

    Examples:

        ```py
        >>> from diffusers_video import VideoRefinerPipeline

        >>> pipe = VideoRefinerPipeline.from_pretrained("path/to/refiner")  # `diffusers-video convert video-refiner`
        >>> frames = pipe("a red circle moving right", video=low_res_frames, height=64, width=64, strength=0.6,
        ...               guidance_rescale=0.2).frames[0]
        ```
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKL | AutoencoderKLVideo,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet3DModel,
        scheduler: SchedulerMixin,
    ):
        super().__init__()
        if not isinstance(unet, UNet3DModel):
            raise TypeError(f"`unet` must be a UNet3DModel but is a {type(unet).__name__}.")
        latent_channels = vae.config.latent_channels
        if unet.config.in_channels != latent_channels or unet.config.out_channels != latent_channels:
            raise ValueError(
                f"`unet` reads {unet.config.in_channels} and predicts {unet.config.out_channels} channels but the VAE "
                f"has {latent_channels} latent channels: a refiner's UNet works on the VAE's latents."
            )
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Height and width in pixels must be multiples of this: the VAE's and the UNet's downsampling."""
        return self.vae_scale_factor * self.unet.downsample_factor

    def check_inputs(
        self, prompt, video, strength, num_inference_steps, guidance_scale, negative_prompt, eta, generator, latents,
        prompt_embeds, negative_prompt_embeds, output_type, cross_attention_kwargs, clip_skip, guidance_rescale,
        noise_mode, height, width, decode_chunk_size, callback_on_step_end, callback_on_step_end_tensor_inputs,
    ) -> tuple[torch.Tensor | None, bool]:  # fmt: skip
        """Raises a `ValueError` (a `TypeError` for a wrong type) naming the bad argument, before any model runs;
        returns the preprocessed `video` (None when `latents` are given) and whether it holds latents."""
        check_prompt_arguments(
            prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, self.unet.config.cross_attention_dim
        )
        check_strength(strength)
        check_positive_int(num_inference_steps, "num_inference_steps")
        check_guidance_scale(guidance_scale, num_inference_steps)
        check_guidance_rescale(guidance_rescale)
        check_noise_mode(noise_mode)
        if not is_number(eta) or not 0 <= eta <= 1:
            raise ValueError(f"`eta` must be a number in [0, 1] but is {eta!r}.")
        if clip_skip is not None and (not is_int(clip_skip) or clip_skip < 0):
            raise ValueError(f"`clip_skip` must be None or an integer >= 0 but is {clip_skip!r}.")
        check_output_type(output_type)
        check_decode_chunk_size(decode_chunk_size)
        if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
            raise TypeError(f"`cross_attention_kwargs` must be a dict or None but is {cross_attention_kwargs!r}.")
        check_callback_arguments(
            callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs
        )
        batch_size = prompt_batch_size(prompt, prompt_embeds)
        check_generator(generator, batch_size)
        if (height is None) != (width is None):
            raise ValueError(f"Give both `height` and `width` or neither, but they are {height!r} and {width!r}.")
        latent_channels = self.vae.config.latent_channels
        if latents is not None:
            if video is not None:
                raise ValueError("Pass `video` or the noisy `latents` to start from, not both.")
            if not isinstance(latents, torch.Tensor) or latents.ndim != 5:
                raise ValueError(f"`latents` must be a (batch, channels, frames, h, w) tensor but is {latents!r}.")
            check_latents(latents, (batch_size, latent_channels, *latents.shape[2:]), self.unet.dtype)
            check_size(latents.shape[-2] * self.vae_scale_factor, latents.shape[-1] * self.vae_scale_factor,
                       self.size_multiple)  # fmt: skip
            return None, True
        pixels, is_latents = preprocess_video(video, latent_channels)
        if pixels.shape[0] not in (1, batch_size):
            raise ValueError(
                f"`video` holds {pixels.shape[0]} videos but there are {batch_size} prompts: pass one video, or one "
                "per prompt."
            )
        scale = self.vae_scale_factor
        size = (height, width) if height is not None else tuple(pixels.shape[-2:])
        if is_latents:
            size = (pixels.shape[-2] * scale, pixels.shape[-1] * scale)
            if height is not None and (height, width) != size:
                raise ValueError(
                    f"`video` holds latents of a {size[0]}x{size[1]} video, which cannot be resized to `height` x "
                    f"`width` = {height}x{width}: pass frames, or latents of that size."
                )
        check_size(*size, self.size_multiple)
        num_frames = pixels.shape[2]
        check_video_memory(
            [((batch_size, latent_channels, num_frames, size[0] // scale, size[1] // scale), 4),
             ((batch_size, 3, num_frames, *size), 4)],
            {"video": f"{num_frames} frames", "height": size[0], "width": size[1]}, self._execution_device, batch_size,
        )  # fmt: skip
        return pixels, is_latents

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        video: Any = None,
        strength: float = 0.6,
        num_inference_steps: int = 50,
        guidance_scale: float | Sequence[float] | GuidanceSchedule = 15.0,
        negative_prompt: str | list[str] | None = None,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        callback_steps: int = 1,
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        guidance_rescale: float = 0.0,
        noise_mode: str = "fresh",
        height: int | None = None,
        width: int | None = None,
        decode_chunk_size: int | None = None,
        callback_on_step_end: Callable[[DiffusionPipeline, int, torch.Tensor, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
    ) -> VideoPipelineOutput | tuple:
        r"""Refines videos: SDEdit with the prompt.

        Args:
            prompt (`str` or `list[str]`, *optional*): The prompt or prompts; or pass `prompt_embeds`.
            video (`list`, `np.ndarray` or `torch.Tensor`): The video(s) to refine, as diffusers'
                `VideoToVideoSDPipeline` takes them: frames in [0, 1] (a list of PIL images or arrays, a list of such
                lists, a `(F, H, W, 3)` / `(B, F, H, W, 3)` array, a `(F, 3, H, W)` / `(B, F, 3, H, W)` tensor), or
                latents `(B, latent_channels, F, h, w)`. One video, or one per prompt.
            strength (`float`, defaults to 0.6): How much of the schedule is run, in (0, 1]: the video is noised to
                the first of the last `int(num_inference_steps * strength)` steps (ModelScope's refiner: 0.6).
            num_inference_steps (`int`, defaults to 50): Steps of the full schedule.
            guidance_scale (`float`, `list[float]` or `GuidanceSchedule`, defaults to 15.0): Classifier-free guidance
                weight (1: none); one per step of the full schedule for a list.
            negative_prompt (`str` or `list[str]`, *optional*): What not to generate.
            eta (`float`, defaults to 0.0): DDIM's eta; its step noise is drawn frame-major, as diffusers draws it.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): The VAE posterior is sampled first,
                then the noise; one generator per video for a list.
            latents (`torch.Tensor`, *optional*): Noisy latents to start from at the first SDEdit timestep, instead of
                `video` (diffusers' `VideoToVideoSDPipeline` ignores this argument).
            prompt_embeds, negative_prompt_embeds (`torch.Tensor`, *optional*): Text embeddings instead of prompts.
            output_type (`str`, defaults to "np"): "np", "pt", "pil" or "latent".
            return_dict (`bool`, defaults to True): Return a [`VideoPipelineOutput`] instead of a tuple.
            callback (`Callable`, *optional*): diffusers' older callback, `callback(step, timestep, latents)` every
                `callback_steps` steps (as `VideoToVideoSDPipeline` calls it); prefer `callback_on_step_end`.
            callback_steps (`int`, defaults to 1): How often `callback` is called.
            cross_attention_kwargs (`dict`, *optional*): Passed to the attention processors.
            clip_skip (`int`, *optional*): CLIP layers to skip (1: the penultimate layer, then the final layer norm).
            guidance_rescale (`float`, defaults to 0.0): Rescale of the guided prediction towards the conditional
                one's standard deviation, in [0, 1] (Lin et al. 2023; ModelScope's refiner 0.2, VGen 0.3).
            noise_mode (`str`, defaults to "fresh"): "fresh" (noise from `generator`, as diffusers) or
                "ddim_inversion" (the noise that DDIM sampling maps back onto the video, from the UNet's
                text-conditional prediction; VGen's SR600).
            height, width (`int`, *optional*): Resize the frames (bilinear) to this size before encoding; the video's
                own size when not given. Multiples of the VAE's and the UNet's downsampling.
            decode_chunk_size (`int`, *optional*): Frames per VAE call, encoding and decoding (all at once if None).
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): Called
                after each step with the tensors named in `callback_on_step_end_tensor_inputs`.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): "latents", "prompt_embeds",
                "negative_prompt_embeds".

        Returns:
            [`VideoPipelineOutput`] or `tuple`: the frames, or `(frames,)` when `return_dict` is False.
        """
        callback_on_step_end_tensor_inputs = callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        check_bool(return_dict, "return_dict")
        if callback is not None and not callable(callback):
            raise TypeError(f"`callback` must be callable but is {callback!r}.")
        if not is_int(callback_steps) or callback_steps < 1:
            raise ValueError(f"`callback_steps` has to be a positive integer but is {callback_steps!r}.")
        # 1. check inputs, before any model runs
        pixels, is_latents = self.check_inputs(
            prompt, video, strength, num_inference_steps, guidance_scale, negative_prompt, eta, generator, latents,
            prompt_embeds, negative_prompt_embeds, output_type, cross_attention_kwargs, clip_skip, guidance_rescale,
            noise_mode, height, width, decode_chunk_size, callback_on_step_end, callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        guidance = check_guidance_scale(guidance_scale, num_inference_steps)
        self._interrupt = False
        batch_size = prompt_batch_size(prompt, prompt_embeds)
        device = self._execution_device

        # 2. the prompt (the negative prompt only when some step is guided)
        guided = any(guidance.needs_unconditional(i, num_inference_steps) for i in range(num_inference_steps))
        prompt_embeds, negative_prompt_embeds = encode_clip_prompt(
            self.tokenizer, self.text_encoder, prompt, device, 1, guided, negative_prompt, prompt_embeds,
            negative_prompt_embeds, clip_skip, dtype=self.unet.dtype,
        )  # fmt: skip
        tensors = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}

        # 3. the video's latents
        video_latents = None
        if latents is None:
            dtype = self.vae.dtype
            if is_latents:
                video_latents = pixels.to(device=device, dtype=self.unet.dtype)
            else:
                if height is not None:
                    pixels = resize_video(pixels, height, width)
                # one generator per video; a single video shared by all prompts is encoded with the first
                per_video = isinstance(generator, list) and len(generator) == pixels.shape[0]
                encoder_generator = generator if per_video or not isinstance(generator, list) else generator[0]
                pixels = pixels.to(device=device, dtype=dtype)
                video_latents = encode_video(self.vae, pixels, encoder_generator, decode_chunk_size)
                video_latents = video_latents.to(self.unet.dtype)
            if video_latents.shape[0] != batch_size:
                video_latents = video_latents.repeat(batch_size, 1, 1, 1, 1)
        else:
            latents = latents.to(device)

        # 4. SDEdit (diffusers' older `callback` after `callback_on_step_end`, from the same step)
        if callback is not None:
            callback_on_step_end, callback_on_step_end_tensor_inputs = with_step_callback(
                callback,
                callback_steps,
                self.scheduler.order,
                callback_on_step_end,
                callback_on_step_end_tensor_inputs,
            )
        steps = min(max(int(num_inference_steps * strength), 1), num_inference_steps)
        with self.progress_bar(total=steps) as progress_bar:
            latents = refine_latents(
                self, self.unet, self.scheduler, video_latents, tensors, strength=strength,
                num_inference_steps=num_inference_steps, guidance=guidance, guidance_rescale=guidance_rescale,
                noise_mode=noise_mode, generator=generator, eta=eta, cross_attention_kwargs=cross_attention_kwargs,
                progress_bar=progress_bar, callback_on_step_end=callback_on_step_end,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs, latents=latents,
            )  # fmt: skip

        # 5. decode
        if output_type == "latent":
            frames = latents
        else:
            frames = postprocess_video(decode_latents(self.vae, latents, decode_chunk_size), output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return VideoPipelineOutput(frames=frames)
