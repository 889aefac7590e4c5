"""VideoGen: reference-guided latent video diffusion (Li et al. 2023, https://huggingface.co/papers/2309.00398).

The paper's steps (its abstract), each a stage of one call here, each optional but the base:

1. a reference image from a text-to-image model (Stable Diffusion): `image_unet` + `image_scheduler`, sharing the
   pipeline's VAE and text encoder as Stable Diffusion 2.1 would; or the user's `reference_image` (e.g. the output of
   any diffusers text-to-image pipeline), encoded by the VAE; or `reference_latents`;
2. latent video diffusion conditioned on the reference and the text: `unet`, a `UNet3DModel` whose input is the noisy
   latents concatenated on channels with the reference latent repeated to every frame (`in_channels = 2 * C`; the
   paper's conditioning was not available, this is the design of `WAVE2-PAPERS.md`), text by cross-attention;
   classifier-free guidance on both conditions with separate weights (`reference_guidance`, ours);
3. the cascade's latent super-resolution stage: `super_resolution_unet` on the bilinearly upsampled base latents with
   noise-conditioning augmentation (Imagen Video's SSR conditioning, `imagen_video.cascade`);
4. flow-based temporal upsampling of the latents, x2 per round up to x8: `flow_upsampler` ([`FlowTemporalUpsampler`]);
5. decoding: `AutoencoderKLVideo` (the enhanced video decoder) or an image `AutoencoderKL` frame by frame.

Every denoising stage drives the shared loop (`pipelines/denoising.py`) with its own small `predict`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from ...guidance import GuidanceSchedule, apply_guidance, rescale_noise_cfg
from ...models.flow_upsampler import FlowTemporalUpsampler
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
from .components import check_components, reads_text, reference_guidance
from .inputs import CallPlan, check_call_inputs, plan_call
from .reference import reference_pixels

__all__ = ["VideoGenPipeline"]


class VideoGenPipeline(DenoisingPipelineMixin, VideoDiffusionPipeline):
    r"""Text-to-video generation with VideoGen: reference image, reference-guided latent video diffusion, latent
    super-resolution, flow-based temporal upsampling, decoding.

    This pipeline inherits from [`VideoDiffusionPipeline`], a [`DiffusionPipeline`] (saving, loading, offloading,
    progress bars) that also pushes to and loads from the Hub by repo id.

    Args:
        vae ([`AutoencoderKL`] or [`AutoencoderKLVideo`]): The VAE; it encodes a given reference image and decodes the
            video (the video VAE is VideoGen's enhanced decoder).
        text_encoder ([`CLIPTextModel`]): Frozen text encoder, shared by every model.
        tokenizer ([`CLIPTokenizer`]): Its tokenizer.
        unet ([`UNet3DModel`]): The reference-conditioned video model: `in_channels = 2 * C` (noisy latents, reference
            latent), `out_channels = C`.
        scheduler: Any diffusers scheduler, for the video (and for the other stages when they have none).
        image_unet ([`UNet2DConditionModel`], *optional*): The text-to-image model that makes the reference when none
            is given (Stable Diffusion's UNet, or the moving-shapes stand-in).
        image_scheduler (*optional*): Its scheduler; a copy of `scheduler`'s config when not given.
        super_resolution_unet ([`UNet3DModel`], *optional*): Latent super-resolution: `in_channels = 2 * C` (noisy
            latents, upsampled base latents), `out_channels = C`; told the augmentation level (times 1000) through a
            "noise_aug_level" scalar condition when it has one.
        super_resolution_scheduler (*optional*): Its scheduler; a copy of `scheduler`'s config when not given.
        flow_upsampler ([`FlowTemporalUpsampler`], *optional*): Flow-based temporal upsampling of the latents.
        super_resolution_factor (`int`, defaults to 2): Height and width factor of the super-resolution stage.

    Examples:

        ```py
        >>> from diffusers.utils import export_to_video
        >>> from diffusers_video import VideoGenPipeline

        >>> pipe = VideoGenPipeline.from_pretrained("path/to/videogen")
        >>> frames = pipe("a red circle moving right", num_frames=8, temporal_upsampling=2).frames[0]  # 15 frames
        >>> export_to_video(frames, "circle.mp4", fps=16)
        ```
    """

    model_cpu_offload_seq = "text_encoder->image_unet->unet->super_resolution_unet->flow_upsampler->vae"
    _optional_components = [
        "image_unet",
        "image_scheduler",
        "super_resolution_unet",
        "super_resolution_scheduler",
        "flow_upsampler",
    ]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "reference_latents"]

    def __init__(
        self,
        vae: AutoencoderKL | AutoencoderKLVideo,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet3DModel,
        scheduler: SchedulerMixin,
        image_unet: UNet2DConditionModel | None = None,
        image_scheduler: SchedulerMixin | None = None,
        super_resolution_unet: UNet3DModel | None = None,
        super_resolution_scheduler: SchedulerMixin | None = None,
        flow_upsampler: FlowTemporalUpsampler | None = None,
        super_resolution_factor: int = 2,
    ):
        super().__init__()
        check_components(
            vae, text_encoder, unet, image_unet, super_resolution_unet, flow_upsampler, super_resolution_factor
        )
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            image_unet=image_unet,
            image_scheduler=image_scheduler,
            super_resolution_unet=super_resolution_unet,
            super_resolution_scheduler=super_resolution_scheduler,
            flow_upsampler=flow_upsampler,
        )
        self.register_to_config(super_resolution_factor=super_resolution_factor)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if getattr(self, "vae", None) else 8
        self._stage: str | None = None

    @property
    def stage(self) -> str | None:
        """The stage being run ("reference", "base", "super_resolution"), for callbacks; None outside a call."""
        return self._stage

    def default_size(self) -> tuple[int, int, int]:
        """The `(num_frames, height, width)` a call makes when none is given: `num_frames` counts the base frames
        (before temporal upsampling), `height` and `width` are the output's (after super-resolution, when the
        pipeline has that stage). What `data.quality.infer_video_settings` asks a cascade for, so that `bench
        quality` does not request the base size as the output size. A `ValueError` when the pipeline cannot say
        (e.g. no `sample_size`, or no `image_unet` to make the reference)."""
        plan = plan_call(self, None, None, None, None, None, None, None)
        return plan.num_frames, plan.height, plan.width

    def stage_scheduler(self, stage: str) -> SchedulerMixin:
        """The scheduler of a denoising stage: its own, or a new one from `scheduler`'s config."""
        own = {"reference": self.image_scheduler, "base": self.scheduler,
               "super_resolution": self.super_resolution_scheduler}[stage]  # fmt: skip
        return own if own is not None else type(self.scheduler).from_config(self.scheduler.config)

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

    def encode_reference(self, pixels: torch.Tensor) -> torch.Tensor:
        """Reference latents `(B, C, h, w)` of images `(B, 3, H, W)` in [-1, 1]: the posterior mode, shifted and
        scaled as the training data's latents are."""
        parameter = next(self.vae.parameters())
        posterior = self.vae.encode(pixels.to(device=self._execution_device, dtype=parameter.dtype)).latent_dist
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (posterior.mode() - shift) * self.vae.config.scaling_factor

    def _loop(self, stage, scheduler, latents, steps, predict, guidance, tensors, loop) -> torch.Tensor:
        """The shared denoising loop for one stage, from unit noise `latents`."""
        self._stage = stage
        scheduler.set_timesteps(steps, device=latents.device)
        latents = latents * scheduler.init_noise_sigma
        with self.progress_bar(total=steps) as progress_bar:
            return denoise(
                self, scheduler, latents, predict, num_inference_steps=steps, guidance=guidance,
                progress_bar=progress_bar, generator=loop["generator"], eta=loop["eta"], tensors=tensors,
                callback_on_step_end=loop["callback_on_step_end"],
                callback_on_step_end_tensor_inputs=loop["callback_on_step_end_tensor_inputs"],
            )  # fmt: skip

    def _text(self, tensors: dict[str, torch.Tensor], guided: bool) -> torch.Tensor:
        """Text embeddings of one model pass: negative then positive for a guided pass (diffusers' order)."""
        if guided:
            return torch.cat([tensors["negative_prompt_embeds"], tensors["prompt_embeds"]])
        return tensors["prompt_embeds"]

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        reference_image: Any = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        temporal_upsampling: int | None = None,
        super_resolution: bool | None = None,
        num_inference_steps: int = 50,
        image_num_inference_steps: int | None = None,
        super_resolution_num_inference_steps: int | None = None,
        guidance_scale: float | Sequence[float] | GuidanceSchedule = 9.0,
        reference_guidance_scale: float = 1.0,
        image_guidance_scale: float | Sequence[float] | GuidanceSchedule = 7.5,
        super_resolution_guidance_scale: float | Sequence[float] | GuidanceSchedule = 1.0,
        noise_aug_level: float = 0.1,
        negative_prompt: str | list[str] | None = None,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        reference_latents: torch.Tensor | None = None,
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
        r"""Generates videos from text, guided by a reference image.

        Args:
            prompt (`str` or `list[str]`, *optional*): The prompt or prompts; or pass `prompt_embeds`.
            reference_image (*optional*): The reference: a PIL image, a list of them, a `(B, 3, H, W)` tensor or
                `(B, H, W, 3)` array in [0, 1], or a diffusers text-to-image pipeline's output; at the base stage's
                pixel size, or at `height` x `width` when super-resolution runs. One for all videos, one per prompt or
                one per video. Made by `image_unet` from the prompt when not given.
            height (`int`, *optional*): Height of the output in pixels; defaults to `unet`'s `sample_size` times the
                VAE scale factor (times the super-resolution factor when that stage runs).
            width (`int`, *optional*): Width of the output in pixels, defaulted as `height`.
            num_frames (`int`, *optional*): Frames of the base stage, 8 by default; the output has
                `(num_frames - 1) * temporal_upsampling + 1`.
            temporal_upsampling (`int`, *optional*): 1, 2, 4 or 8: x2 rounds of `flow_upsampler`; 2 when the pipeline
                has one, else 1.
            super_resolution (`bool`, *optional*): Run the super-resolution stage; when the pipeline has one by default.
            num_inference_steps (`int`, defaults to 50): Denoising steps of the video.
            image_num_inference_steps (`int`, *optional*): Of the reference image; as the video's by default.
            super_resolution_num_inference_steps (`int`, *optional*): Of the super-resolution; as the video's.
            guidance_scale (`float`, `list[float]` or `GuidanceSchedule`, defaults to 9.0): Text guidance weight
                `s_text` of the video (see `reference_guidance` for the formula with the reference's weight).
            reference_guidance_scale (`float`, defaults to 1.0): Reference guidance weight `s_ref`, >= 0; 1 gives the
                reference always and costs no extra model pass. The guided prediction is
                `e(0, 0) + s_ref (e(ref, 0) - e(0, 0)) + s_text (e(ref, text) - e(ref, 0))`.
            image_guidance_scale (defaults to 7.5): Guidance weight of the reference image's text-to-image model.
            super_resolution_guidance_scale (defaults to 1.0): Of the super-resolution stage (a UNet without text
                cross-attention is never guided).
            noise_aug_level (`float`, defaults to 0.1): Noise-conditioning augmentation level in [0, 1] of the
                super-resolution conditioning.
            negative_prompt (`str` or `list[str]`, *optional*): What not to generate; the empty prompt by default.
            num_videos_per_prompt (`int`, defaults to 1): Videos per prompt.
            eta (`float`, defaults to 0.0): DDIM eta, in [0, 1].
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Random generator(s), one per video
                for a list. Noise is drawn stage after stage in order.
            latents (`torch.Tensor`, *optional*): Initial noise of the video `(batch * num_videos_per_prompt, C,
                num_frames, h, w)` at the base size (unit variance; scaled by the scheduler's `init_noise_sigma`).
            reference_latents (`torch.Tensor`, *optional*): Reference latents `(B, C, h, w)` (scaled as the VAE's
                training latents) instead of `reference_image`.
            prompt_embeds (`torch.Tensor`, *optional*): Text embeddings instead of `prompt`.
            negative_prompt_embeds (`torch.Tensor`, *optional*): Negative text embeddings instead of `negative_prompt`.
            output_type (`str`, defaults to "np"): "np", "pt", "pil" or "latent" (the final latents).
            return_dict (`bool`, defaults to True): Return a [`VideoPipelineOutput`] instead of a tuple.
            cross_attention_kwargs (`dict`, *optional*): Passed to the attention processors of every UNet.
            decode_chunk_size (`int`, *optional*): Frames per VAE decode call; all frames at once when not given.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): Called
                after each step of every denoising stage (`pipe.stage` names it) as `callback_on_step_end(pipe,
                step_index, timestep, callback_kwargs)`; the tensors of the dict it returns replace those it was given.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): Names from
                `_callback_tensor_inputs`: "latents" (the stage's), "prompt_embeds", "negative_prompt_embeds",
                "reference_latents" (from the base stage on; the reference stage's are its "latents").

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
            self, height, width, num_frames, temporal_upsampling, super_resolution, reference_image, reference_latents
        )
        steps = {"base": num_inference_steps}
        weights = {"base": guidance_scale}
        if plan.reference == "image_unet":
            steps["reference"] = (
                num_inference_steps if image_num_inference_steps is None else image_num_inference_steps
            )
            weights["reference"] = image_guidance_scale
        if plan.super_resolution:
            steps["super_resolution"] = (
                num_inference_steps if super_resolution_num_inference_steps is None
                else super_resolution_num_inference_steps
            )  # fmt: skip
            weights["super_resolution"] = super_resolution_guidance_scale
        check_call_inputs(
            self, plan, prompt, steps, weights, reference_guidance_scale, noise_aug_level, negative_prompt,
            num_videos_per_prompt, eta, generator, latents, reference_image, reference_latents, prompt_embeds,
            negative_prompt_embeds, output_type, cross_attention_kwargs, decode_chunk_size, callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        guidances = {stage: check_guidance_scale(weights[stage], n) for stage, n in steps.items()}
        self._interrupt = False
        device = self._execution_device
        prompts = prompt_batch_size(prompt, prompt_embeds)
        total = prompts * num_videos_per_prompt

        # 2. encode the prompt (the negative prompt when some step is guided on the text or on the reference)
        text_stages = [s for s in steps if s != "super_resolution" or reads_text(self.super_resolution_unet)]
        guided = reference_guidance_scale != 1.0 or any(
            guidances[s].needs_unconditional(i, steps[s]) for s in text_stages for i in range(steps[s])
        )
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, guided, negative_prompt, prompt_embeds, negative_prompt_embeds
        )
        tensors = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        loop = dict(
            generator=generator, eta=eta, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        dtype = self.unet.dtype
        channels = self.unet.config.out_channels

        # 3. the reference latent: the user's image or latents, or the text-to-image model's
        if plan.reference == "image_unet":
            reference = self._make_reference(total, plan.base_size, steps["reference"], guidances["reference"],
                                             tensors, cross_attention_kwargs, loop)  # fmt: skip
        elif plan.reference == "image":
            size = tuple(side * self.vae_scale_factor for side in plan.base_size)  # pixels of the base stage
            reference = self.encode_reference(reference_pixels(reference_image, size))
        else:
            reference = reference_latents.to(device)
        if reference.shape[0] != total:  # one for all videos, or one per prompt
            reference = reference.repeat_interleave(total // reference.shape[0], dim=0)
        tensors["reference_latents"] = reference.to(device=device, dtype=dtype)  # (B, C, h, w)

        # 4. reference-guided latent video diffusion
        shape = (total, channels, plan.num_frames, *plan.base_size)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype) if latents is None else latents
        video = self._denoise_base(noise.to(device), steps["base"], guidances["base"], float(reference_guidance_scale),
                                   tensors, cross_attention_kwargs, loop)  # fmt: skip

        # 5. latent super-resolution, 6. flow-based temporal upsampling
        if plan.super_resolution:
            video = self._super_resolve(video, steps["super_resolution"], guidances["super_resolution"],
                                        noise_aug_level, tensors, cross_attention_kwargs, loop)  # fmt: skip
        if plan.temporal_upsampling > 1:
            self._stage = "temporal_upsampling"
            video = self.flow_upsampler.upsample(video.to(self.flow_upsampler.dtype), plan.temporal_upsampling)

        # 7. decode
        if output_type == "latent":
            frames = video
        else:
            frames = postprocess_video(decode_latents(self.vae, video.to(self.vae.dtype), decode_chunk_size),
                                       output_type)  # fmt: skip
        self._stage = None
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return VideoPipelineOutput(frames=frames)

    # ------------------------------------------------------------------ stages

    def _make_reference(self, total, size, steps, guidance, tensors, cross_attention_kwargs, loop) -> torch.Tensor:
        """The text-to-image model's latent `(B, C, h, w)` of each prompt: the reference, not decoded (decoding and
        encoding it again would only add the VAE's reconstruction error)."""
        unet = self.image_unet
        shape = (total, unet.config.in_channels, *size)
        noise = randn_tensor(shape, generator=loop["generator"], device=self._execution_device, dtype=unet.dtype)

        def predict(model_input, t, i, sample):
            guided = self.do_classifier_free_guidance
            model_input = torch.cat([model_input] * 2) if guided else model_input
            prediction = unet(model_input, t, encoder_hidden_states=self._text(tensors, guided).to(unet.dtype),
                              cross_attention_kwargs=cross_attention_kwargs, return_dict=False)[0]  # fmt: skip
            if guided:
                prediction = apply_guidance(*prediction.chunk(2), self.guidance_scale, guidance.guidance_rescale)
            return prediction

        # the reference stage's callbacks see its latents; "reference_latents" exists from the base stage on
        names = [name for name in loop["callback_on_step_end_tensor_inputs"] if name != "reference_latents"]
        return self._loop("reference", self.stage_scheduler("reference"), noise, steps, predict, guidance, tensors,
                          {**loop, "callback_on_step_end_tensor_inputs": names})  # fmt: skip

    def _denoise_base(self, noise, steps, guidance, reference_scale, tensors, cross_attention_kwargs, loop):
        """The reference-conditioned video model: `[noisy latents ; reference latent on every frame]` on channels,
        guided on the text and the reference (`reference_guidance`)."""
        unet = self.unet
        frames = noise.shape[2]

        def predict(model_input, t, i, sample):
            reference = tensors["reference_latents"].to(model_input.dtype)[:, :, None].expand(-1, -1, frames, -1, -1)
            text_scale = self.guidance_scale
            # the passes needed: (no reference, negative), (reference, negative), (reference, prompt)
            passes = [(reference, tensors["prompt_embeds"])]
            if reference_scale != 1.0 or text_scale != 1.0:
                passes.insert(0, (reference, tensors["negative_prompt_embeds"]))
            if reference_scale != 1.0:
                passes.insert(0, (torch.zeros_like(reference), tensors["negative_prompt_embeds"]))
            inputs = torch.cat([torch.cat([model_input, ref], dim=1) for ref, _ in passes])  # (P B, 2C, F, h, w)
            text = torch.cat([embeds for _, embeds in passes]).to(unet.dtype)
            predictions = unet(inputs, t, encoder_hidden_states=text, cross_attention_kwargs=cross_attention_kwargs,
                               return_dict=False)[0].chunk(len(passes))  # fmt: skip
            uncond = predictions[0] if len(passes) == 3 else None
            negative = predictions[-2] if len(passes) >= 2 else None
            guided = reference_guidance(uncond, negative, predictions[-1], text_scale, reference_scale)
            if len(passes) > 1 and guidance.guidance_rescale > 0:
                guided = rescale_noise_cfg(guided, predictions[-1], guidance.guidance_rescale)
            return guided

        return self._loop("base", self.stage_scheduler("base"), noise, steps, predict, guidance, tensors, loop)

    def _super_resolve(self, video, steps, guidance, level, tensors, cross_attention_kwargs, loop) -> torch.Tensor:
        """Latent super-resolution `(B, C, F, h, w)` -> `(B, C, F, h s, w s)`, as Imagen Video's SSR stages: the
        latents upsampled bilinearly and diffused to `level` of the cosine schedule (the augmentation noise drawn
        before the initial noise), concatenated to the noisy sample; the UNet is told `1000 * level`."""
        unet = self.super_resolution_unet
        upsampled = upsample_condition(video.to(unet.dtype), StageSpec("ssr", self.config.super_resolution_factor))
        generator, device = loop["generator"], upsampled.device
        condition = augment_condition(
            upsampled, level, randn_tensor(upsampled.shape, generator=generator, device=device, dtype=unet.dtype)
        )
        noise = randn_tensor(upsampled.shape, generator=generator, device=device, dtype=unet.dtype)
        has_level = NOISE_AUG_CONDITION in (getattr(unet.config, "scalar_conditions", ()) or ())
        conds = {NOISE_AUG_CONDITION: noise_aug_condition_value(level)} if has_level else None
        text_stage = reads_text(unet)

        def predict(model_input, t, i, sample):
            model_input = torch.cat([model_input, condition], dim=1)  # (B, 2C, F, h s, w s)
            guided = text_stage and self.do_classifier_free_guidance
            text = self._text(tensors, guided).to(unet.dtype) if text_stage else None
            prediction = unet(torch.cat([model_input] * 2) if guided else model_input, t, encoder_hidden_states=text,
                              scalar_conds=conds, cross_attention_kwargs=cross_attention_kwargs,
                              return_dict=False)[0]  # fmt: skip
            if guided:
                prediction = apply_guidance(*prediction.chunk(2), self.guidance_scale, guidance.guidance_rescale)
            return prediction

        return self._loop("super_resolution", self.stage_scheduler("super_resolution"), noise, steps, predict,
                          guidance if text_stage else None, tensors, loop)  # fmt: skip
