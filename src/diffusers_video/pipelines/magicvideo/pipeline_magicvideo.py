"""MagicVideo: latent video diffusion with frame adaptors and directed temporal attention (Zhou et al. 2022,
https://huggingface.co/papers/2211.11018).

The paper's pipeline has three steps: keyframes in the latent space of Stable Diffusion's VAE, a separate frame
interpolation network, and diffusion super-resolution; a VideoVAE decoder reduces the frame-to-frame dithering of the
image decoder. Here each is a stage of one call, each optional:

1. keyframes: `unet`, a `UNet3DModel` (e.g. inflated from Stable Diffusion 2.1 with `frame_adaptor="conv"`,
   `temporal_attention="directed"`, `temporal_conv_padding="causal"` and an "fps" scalar condition);
2. interpolation: `interpolation_unet` inserts frames between neighbouring keyframes, x2 or x4 per round, conditioned
   on the two neighbours placed at their indices and a mask of given frames (our design, see `stages.py`);
3. super-resolution x `super_resolution_factor`: `super_resolution_unet` on the latents or on the decoded frames,
   conditioned on the upsampled video with noise-conditioning augmentation (Imagen Video's SSR conditioning);
4. decoding with the VAE: `AutoencoderKLVideo` (temporal decoder) or an image `AutoencoderKL` frame by frame.

Every stage drives the shared denoising loop (`pipelines/denoising.py`) with its own small `predict`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from ...guidance import GuidanceSchedule, apply_guidance
from ...models.unet_3d import UNet3DModel
from ...models.video_vae import AutoencoderKLVideo
from ..checks import check_bool, check_guidance_scale, prompt_batch_size
from ..denoising import DenoisingPipelineMixin, callback_tensor_inputs, denoise
from ..imagen_video.cascade import (
    NOISE_AUG_CONDITION,
    StageSpec,
    augment_condition,
    noise_aug_condition_value,
    upsample_condition,
)
from ..pipeline_utils import VideoDiffusionPipeline, VideoPipelineOutput, decode_latents, postprocess_video
from ..prompts import encode_clip_prompt
from .components import FPS_CONDITION, check_components, reads_text
from .inputs import CallPlan, check_call_inputs, plan_call
from .stages import STAGES, interpolation_context, join_segments

__all__ = ["MagicVideoPipeline"]


class MagicVideoPipeline(DenoisingPipelineMixin, VideoDiffusionPipeline):
    r"""Text-to-video generation with MagicVideo: latent keyframes, latent interpolation, super-resolution, decoding.

    This pipeline inherits from [`VideoDiffusionPipeline`], a [`DiffusionPipeline`] (saving, loading, offloading,
    progress bars) that also pushes to and loads from the Hub by repo id.

    Args:
        vae ([`AutoencoderKL`] or [`AutoencoderKLVideo`]): The VAE; the video VAE decodes whole clips (MagicVideo's
            VideoVAE against dithering), an image VAE decodes frame by frame.
        text_encoder ([`CLIPTextModel`]): Frozen text encoder.
        tokenizer ([`CLIPTokenizer`]): Its tokenizer.
        unet ([`UNet3DModel`]): The keyframe model, on `(B, C, F, h, w)` latents. It may have an "fps" scalar
            condition: it is then given `fps`.
        scheduler: Any diffusers scheduler, for the keyframes (and for the other stages when they have none).
        interpolation_unet ([`UNet3DModel`], *optional*): The interpolation model, `in_channels = 2 * C + 1` (noisy
            frames, neighbouring keyframes at their indices, mask), `out_channels = C`. With an "fps" scalar condition
            it is given the frame rate of the frames it makes.
        interpolation_scheduler (*optional*): Its scheduler; a copy of `scheduler`'s config when not given.
        super_resolution_unet ([`UNet3DModel`], *optional*): The super-resolution model: `in_channels = 2 * C`,
            `out_channels = C` in latent space, 6 and 3 in pixel space. Scalar conditions "noise_aug_level" (the
            augmentation level, times 1000) and "fps" are given when it has them.
        super_resolution_scheduler (*optional*): Its scheduler; a copy of `scheduler`'s config when not given.
        super_resolution_factor (`int`, defaults to 2): Height and width factor of the super-resolution stage.
        super_resolution_space (`str`, defaults to "latent"): "latent" (before decoding) or "pixel" (the paper's: on
            the decoded frames).

    Examples:

        ```py
        >>> from diffusers.utils import export_to_video
        >>> from diffusers_video import MagicVideoPipeline

        >>> pipe = MagicVideoPipeline.from_pretrained("path/to/magicvideo")
        >>> frames = pipe("a red circle moving right", num_keyframes=8, interpolation_factors=2).frames[0]
        >>> export_to_video(frames, "circle.mp4", fps=16)
        ```
    """

    model_cpu_offload_seq = "text_encoder->unet->interpolation_unet->super_resolution_unet->vae"
    _optional_components = [
        "interpolation_unet",
        "interpolation_scheduler",
        "super_resolution_unet",
        "super_resolution_scheduler",
    ]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKL | AutoencoderKLVideo,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet3DModel,
        scheduler: SchedulerMixin,
        interpolation_unet: UNet3DModel | None = None,
        interpolation_scheduler: SchedulerMixin | None = None,
        super_resolution_unet: UNet3DModel | None = None,
        super_resolution_scheduler: SchedulerMixin | None = None,
        super_resolution_factor: int = 2,
        super_resolution_space: str = "latent",
    ):
        super().__init__()
        check_components(
            vae, text_encoder, unet, interpolation_unet, super_resolution_unet, super_resolution_factor,
            super_resolution_space,
        )  # fmt: skip
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            interpolation_unet=interpolation_unet,
            interpolation_scheduler=interpolation_scheduler,
            super_resolution_unet=super_resolution_unet,
            super_resolution_scheduler=super_resolution_scheduler,
        )
        self.register_to_config(
            super_resolution_factor=super_resolution_factor, super_resolution_space=super_resolution_space
        )
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if getattr(self, "vae", None) else 8
        self._stage: str | None = None

    # ------------------------------------------------------------------ stages

    @property
    def stage(self) -> str | None:
        """The stage being run ("keyframes", "interpolation", "super_resolution"), for callbacks; None outside a call."""
        return self._stage

    def default_size(self) -> tuple[int, int, int]:
        """The `(num_frames, height, width)` a call makes when none is given: the output's frames (the default
        keyframes after the default interpolation rounds) and size (after super-resolution, when the pipeline has
        that stage). What `data.quality.infer_video_settings` asks a cascade for, so that `bench quality` does not
        request the keyframe size as the output size. A `ValueError` when the components do not fit."""
        plan = plan_call(self, None, None, None, None, None, None, None)
        return plan.num_frames, plan.height, plan.width

    def _stage_component(self, stage: str, kind: str) -> Any:
        if stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES} but is {stage!r}.")
        name = kind if stage == "keyframes" else f"{stage}_{kind}"
        return getattr(self, name, None)

    def stage_unet(self, stage: str) -> UNet3DModel | None:
        """The model of a stage of `STAGES` ("keyframes": `unet`, else `<stage>_unet`), or None."""
        return self._stage_component(stage, "unet")

    def stage_scheduler(self, stage: str) -> SchedulerMixin:
        """The scheduler of a stage: its own, or a new one from `scheduler`'s config (schedulers hold a call's state)."""
        own = self._stage_component(stage, "scheduler")
        if own is None:
            own = type(self.scheduler).from_config(self.scheduler.config)
        return own

    @property
    def guidance(self) -> GuidanceSchedule:
        """The guidance object of the stage being run (callbacks may read it)."""
        return self._guidance

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device,
        num_videos_per_prompt: int,
        do_classifier_free_guidance: bool,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        clip_skip: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """CLIP embeddings of the prompts and, for guidance, of the negative prompts (see `encode_clip_prompt`)."""
        return encode_clip_prompt(
            self.tokenizer, self.text_encoder, prompt, device, num_videos_per_prompt, do_classifier_free_guidance,
            negative_prompt=negative_prompt, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds, clip_skip=clip_skip, dtype=self.unet.dtype,
        )  # fmt: skip

    def _noise(self, shape, generator, device, dtype, segments: int = 1) -> torch.Tensor:
        """Standard normal noise of `shape` `(N, C, F, h, w)`, drawn per video: for `segments > 1`, `N = videos *
        segments` and each video's segments are drawn together (so that one generator per video works)."""
        batch, channels, frames, height, width = shape
        videos = batch // segments
        noise = randn_tensor((videos, channels, segments * frames, height, width), generator=generator,
                             device=device, dtype=dtype)  # fmt: skip
        noise = noise.reshape(videos, channels, segments, frames, height, width).transpose(1, 2)
        return noise.reshape(batch, channels, frames, height, width)  # (B * S, C, F, h, w)

    def _denoise_stage(
        self,
        stage: str,
        latents: torch.Tensor,
        num_inference_steps: int,
        guidance: GuidanceSchedule,
        tensors: dict[str, torch.Tensor],
        *,
        condition: torch.Tensor | None = None,
        scalars: dict[str, float] | None = None,
        segments: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        eta: float = 0.0,
        cross_attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> torch.Tensor:
        """One stage's denoising loop from the unit noise `latents` `(N, C, F, h, w)`.

        `condition` `(N, C', F, h, w)` is concatenated to the model input along channels at every step; the UNet is
        given the scalar conditions of `scalars` it has; `segments` is the number of rows of `latents` per video
        (the text of video `b` is repeated for its rows).
        """
        unet, scheduler = self.stage_unet(stage), self.stage_scheduler(stage)
        self._stage, self._guidance = stage, guidance
        device = latents.device
        text_stage = reads_text(unet)
        conds = {name: value for name, value in (scalars or {}).items() if name in unet.config.scalar_conditions}

        def predict(model_input: torch.Tensor, t: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
            if condition is not None:
                model_input = torch.cat([model_input, condition.to(model_input.dtype)], dim=1)  # (N, C + C', F, h, w)
            guided = text_stage and self.do_classifier_free_guidance
            text = None
            if text_stage:
                # unconditional first, as diffusers batches classifier-free guidance
                text = tensors["prompt_embeds"]
                if guided:
                    text = torch.cat([tensors["negative_prompt_embeds"], text])
                text = text.repeat_interleave(segments, dim=0)  # one per row
            prediction = unet(
                torch.cat([model_input] * 2) if guided else model_input,
                t,
                encoder_hidden_states=text,
                scalar_conds=conds or None,
                cross_attention_kwargs=cross_attention_kwargs,
                return_dict=False,
            )[0]
            if guided:
                prediction = apply_guidance(*prediction.chunk(2), self.guidance_scale, guidance.guidance_rescale)
            return prediction

        def step_kwargs(i: int, sample: torch.Tensor) -> dict[str, Any]:
            # DDIM's step noise (eta > 0) drawn per video, so that one generator per video works for segments too
            if eta == 0 or segments == 1 or "variance_noise" not in inspect.signature(scheduler.step).parameters:
                return {}
            return {"variance_noise": self._noise(sample.shape, generator, device, sample.dtype, segments)}

        # A scheduler that draws its own step noise (DDPM) is given one generator per row: video b's for each of its
        # segments, so that a list of one generator per video fits a batch of videos x segments.
        step_generator = generator
        if isinstance(generator, list) and segments > 1:
            step_generator = [g for g in generator for _ in range(segments)]
        scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents * scheduler.init_noise_sigma
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            return denoise(
                self, scheduler, latents, predict, num_inference_steps=num_inference_steps,
                guidance=guidance if text_stage else None, progress_bar=progress_bar, generator=step_generator, eta=eta,
                step_kwargs=step_kwargs, callback_on_step_end=callback_on_step_end,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs, tensors=tensors,
            )  # fmt: skip

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_keyframes: int | None = None,
        interpolation_factors: int | Sequence[int] | None = None,
        fps: float = 8.0,
        num_inference_steps: int = 50,
        interpolation_num_inference_steps: int | None = None,
        super_resolution_num_inference_steps: int | None = None,
        guidance_scale: float | Sequence[float] | GuidanceSchedule = 9.0,
        interpolation_guidance_scale: float | Sequence[float] | GuidanceSchedule = 1.0,
        super_resolution_guidance_scale: float | Sequence[float] | GuidanceSchedule = 1.0,
        noise_aug_level: float = 0.1,
        stages: Sequence[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        keyframes: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        decode_chunk_size: int | None = None,
        callback_on_step_end: Callable[[DiffusionPipeline, int, torch.Tensor, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
    ) -> VideoPipelineOutput | tuple:
        r"""Generates videos from text: keyframes, then interpolation, super-resolution and decoding.

        Args:
            prompt (`str` or `list[str]`, *optional*): The prompt or prompts; or pass `prompt_embeds`.
            height (`int`, *optional*): Height of the output in pixels; defaults to the keyframe UNet's `sample_size`
                times the VAE scale factor (times the super-resolution factor when that stage runs).
            width (`int`, *optional*): Width of the output in pixels, defaulted as `height`.
            num_frames (`int`, *optional*): Frames of the output; `num_frames - 1` must be divisible by the product of
                `interpolation_factors`. Gives the keyframe count when `num_keyframes` is not given.
            num_keyframes (`int`, *optional*): Keyframes, at most the keyframe UNet's `max_frames`; 8 by default.
            interpolation_factors (`int` or `list[int]`, *optional*): One factor (2 or 4) per interpolation round;
                each round makes `(n - 1) * factor + 1` frames from `n`. Defaults to one x2 round when the pipeline
                has an interpolation UNet.
            fps (`float`, defaults to 8.0): Frame rate of the keyframes; each interpolation round multiplies it by
                its factor. UNets with an "fps" scalar condition are given the rate of the frames they make.
            num_inference_steps (`int`, defaults to 50): Denoising steps of the keyframes.
            interpolation_num_inference_steps (`int`, *optional*): Of each interpolation round; as the keyframes'
                by default.
            super_resolution_num_inference_steps (`int`, *optional*): Of the super-resolution; as the keyframes'.
            guidance_scale (`float`, `list[float]` or `GuidanceSchedule`, defaults to 9.0): Classifier-free guidance
                weight of the keyframe stage (1 is the conditional prediction alone).
            interpolation_guidance_scale (defaults to 1.0): Guidance weight of the interpolation stage.
            super_resolution_guidance_scale (defaults to 1.0): Guidance weight of the super-resolution stage (a UNet
                without text cross-attention is never guided).
            noise_aug_level (`float`, defaults to 0.1): Noise-conditioning augmentation level in [0, 1] of the
                super-resolution conditioning.
            stages (`list[str]`, *optional*): The stages to run, from "keyframes", "interpolation",
                "super_resolution"; by default every stage the pipeline has a UNet for (without "keyframes" when
                `keyframes` are given).
            negative_prompt (`str` or `list[str]`, *optional*): What not to generate; the empty prompt by default.
            num_videos_per_prompt (`int`, defaults to 1): Videos per prompt.
            eta (`float`, defaults to 0.0): DDIM eta, in [0, 1].
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Random generator(s), one per video
                for a list. Noise is drawn stage after stage in order.
            latents (`torch.Tensor`, *optional*): Initial noise of the keyframes `(batch * num_videos_per_prompt, C,
                num_keyframes, h, w)` (unit variance; scaled by the scheduler's `init_noise_sigma`).
            keyframes (`torch.Tensor`, *optional*): Keyframe latents of the same shape to start from instead of the
                keyframe stage (e.g. to interpolate or upsample latents made earlier).
            prompt_embeds (`torch.Tensor`, *optional*): Text embeddings instead of `prompt`.
            negative_prompt_embeds (`torch.Tensor`, *optional*): Negative text embeddings instead of `negative_prompt`.
            output_type (`str`, defaults to "np"): "np", "pt", "pil" or "latent" (the final latents).
            return_dict (`bool`, defaults to True): Return a [`VideoPipelineOutput`] instead of a tuple.
            cross_attention_kwargs (`dict`, *optional*): Passed to the attention processors of every UNet.
            decode_chunk_size (`int`, *optional*): Frames per VAE decode call; all frames at once when not given.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): Called
                after each step of every stage (`pipe.stage` names it) as `callback_on_step_end(pipe, step_index,
                timestep, callback_kwargs)`; the tensors of the dict it returns replace those it was given.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): Names from
                `_callback_tensor_inputs`: "latents" (the stage's), "prompt_embeds", "negative_prompt_embeds".

        Returns:
            [`VideoPipelineOutput`] or `tuple`: the frames, or `(frames,)` when `return_dict` is False.

        Raises:
            ValueError, TypeError: Before any model runs, naming the bad argument and its value.
        """
        callback_on_step_end_tensor_inputs = callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        check_bool(return_dict, "return_dict")

        # 1. plan and check, before any model runs
        plan: CallPlan = plan_call(
            self, height, width, num_frames, num_keyframes, interpolation_factors, stages, keyframes
        )
        steps = [num_inference_steps, interpolation_num_inference_steps, super_resolution_num_inference_steps]
        steps = [num_inference_steps if value is None else value for value in steps]
        weights = [guidance_scale, interpolation_guidance_scale, super_resolution_guidance_scale]
        check_call_inputs(
            self, plan, prompt, fps, steps, weights, noise_aug_level, negative_prompt, num_videos_per_prompt, eta,
            generator, latents, keyframes, prompt_embeds, negative_prompt_embeds, output_type, cross_attention_kwargs,
            decode_chunk_size, callback_on_step_end, callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        guidances = {stage: check_guidance_scale(w, n) for stage, w, n in zip(STAGES, weights, steps)}
        self._interrupt = False
        device = self._execution_device
        total = prompt_batch_size(prompt, prompt_embeds) * num_videos_per_prompt

        # 2. encode the prompt (the negative prompt only when some step of a text-reading stage is guided)
        guided = any(
            reads_text(self.stage_unet(stage)) and any(guidances[stage].needs_unconditional(i, n) for i in range(n))
            for stage, n in zip(STAGES, steps)
            if stage in plan.stages
        )
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, guided, negative_prompt, prompt_embeds, negative_prompt_embeds
        )
        tensors = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        loop = dict(
            generator=generator, eta=eta, cross_attention_kwargs=cross_attention_kwargs,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        dtype = self.unet.dtype
        rate = float(fps)

        # 3. keyframes in the latent space
        if "keyframes" in plan.stages:
            shape = (total, self.unet.config.in_channels, plan.num_keyframes, *plan.keyframe_size)
            noise = self._noise(shape, generator, device, dtype) if latents is None else latents.to(device)
            video = self._denoise_stage(
                "keyframes", noise, steps[0], guidances["keyframes"], tensors, scalars={FPS_CONDITION: rate}, **loop
            )  # (B, C, n, h, w)
        else:
            video = keyframes.to(device=device, dtype=dtype)

        # 4. interpolation rounds: the neighbouring frames at their indices, and their mask, beside the noisy frames
        for factor in plan.factors:
            rate *= factor
            context, mask = interpolation_context(video, factor)  # (B * (n - 1), C, f + 1, h, w), (.., 1, ..)
            segments = video.shape[2] - 1
            unet = self.interpolation_unet
            noise = self._noise(context.shape, generator, device, unet.dtype, segments)
            # [noisy, context, mask] along channels, as `interpolation_model_input` lays it out
            condition = torch.cat([context, mask], dim=1).to(unet.dtype)  # (B * (n - 1), C + 1, f + 1, h, w)
            denoised = self._denoise_stage(
                "interpolation", noise, steps[1], guidances["interpolation"], tensors, condition=condition,
                scalars={FPS_CONDITION: rate}, segments=segments, **loop,
            )  # fmt: skip
            video = join_segments(denoised, video, factor)  # (B, C, (n - 1) f + 1, h, w)

        # 5. super-resolution on the latents (latent space), or after decoding (pixel space)
        latent_sr = plan.super_resolution and self.config.super_resolution_space == "latent"
        if latent_sr:
            video = self._super_resolve(video, steps[2], guidances["super_resolution"], noise_aug_level, rate,
                                        tensors, loop)  # fmt: skip

        # 6. decode
        if output_type == "latent":
            frames = video
        else:
            video = decode_latents(self.vae, video.to(self.vae.dtype), decode_chunk_size)  # (B, 3, F, H, W)
            if plan.super_resolution and not latent_sr:
                video = self._super_resolve(video, steps[2], guidances["super_resolution"], noise_aug_level, rate,
                                            tensors, loop).float()  # fmt: skip
            frames = postprocess_video(video, output_type)

        self._stage = None
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return VideoPipelineOutput(frames=frames)

    def _super_resolve(
        self,
        video: torch.Tensor,
        num_inference_steps: int,
        guidance: GuidanceSchedule,
        level: float,
        rate: float,
        tensors: dict[str, torch.Tensor],
        loop: dict[str, Any],
    ) -> torch.Tensor:
        """The super-resolution stage: `(B, C, F, h, w)` latents or pixels -> `(B, C, F, h * s, w * s)`.

        As Imagen Video's SSR stages: the video upsampled bilinearly, diffused to `level` of the cosine schedule
        (noise-conditioning augmentation; the augmentation noise is drawn before the initial noise), concatenated to
        the noisy sample; the UNet is told `1000 * level` through its "noise_aug_level" scalar condition.
        """
        unet = self.super_resolution_unet
        spec = StageSpec("ssr", self.config.super_resolution_factor)
        upsampled = upsample_condition(video.to(unet.dtype), spec)  # (B, C, F, h s, w s)
        generator, device = loop["generator"], upsampled.device
        condition = augment_condition(upsampled, level, self._noise(upsampled.shape, generator, device, unet.dtype))
        noise = self._noise(upsampled.shape, generator, device, unet.dtype)
        scalars = {FPS_CONDITION: rate, NOISE_AUG_CONDITION: noise_aug_condition_value(level)}
        return self._denoise_stage(
            "super_resolution", noise, num_inference_steps, guidance, tensors, condition=condition, scalars=scalars,
            **loop,
        )  # fmt: skip
