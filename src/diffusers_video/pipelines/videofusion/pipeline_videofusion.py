"""VideoFusion: text-to-video with decomposed noise (Luo et al. 2023, https://huggingface.co/papers/2303.08320).

The noise of frame `i` is `eps_i = sqrt(lambda_i) b + sqrt(1 - lambda_i) r_i`, with one base noise `b` shared by all
frames. The key frame `k = floor(F / 2)` has `lambda_k = 1`, so `x_t^k = alpha_t x_0^k + sigma_t b` is an ordinary
image diffusion sample and an image model (the base generator, e.g. Stable Diffusion 2.1's UNet) estimates `b` from
it. A denoising step is

1. base generator on the key frame: `b_hat` (guided);
2. base noise out of every frame: `x'_t^i = x_t^i - sigma_t sqrt(lambda_i) b_hat`;
3. residual generator (a video UNet) on `x'_t`: `r_hat_i` (guided);
4. `eps_hat_i = sqrt(lambda_i) b_hat + sqrt(1 - lambda_i) r_hat_i` and a DDIM step.

Without a base generator the video UNet predicts the whole per-frame output, as in diffusers' `TextToVideoSDPipeline`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from transformers import CLIPTextModel, CLIPTokenizer

from ...guidance import GuidanceSchedule, apply_guidance
from ...models.unet_3d import UNet3DModel
from ...models.video_vae import AutoencoderKLVideo
from ...schedulers.decomposed_noise import (
    BaseNoiseRatio,
    check_base_noise_ratio,
    combine_noise,
    combine_velocity,
    frame_ratios,
    key_frame_index,
    remove_base_noise,
    sample_decomposed_noise,
    with_key_frame,
)
from ...schedulers.diffusion_math import prediction_to_x0_eps
from ...schedulers.scheduling_decomposed import DecomposedNoiseScheduler
from ..checks import check_bool, check_guidance_scale, is_int, prompt_batch_size
from ..denoising import DenoisingPipelineMixin, callback_tensor_inputs, denoise, replace_given_frames
from ..pipeline_utils import VideoDiffusionPipeline, VideoPipelineOutput, decode_latents, postprocess_video
from ..prompts import encode_clip_prompt
from .components import BASE_PREDICTION_TYPES, check_components
from .extension import default_extension_overlap, extension_windows, start_from_given_frames
from .inputs import check_call_inputs
from .schedulers import injects_noise, model_input_levels, takes_variance_noise, warn_if_independent_step_noise
from .windows import frame_windows, predict_over_windows, window_blend_weights

__all__ = ["BASE_PREDICTION_TYPES", "VideoFusionPipeline"]


# ---------------------------------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------------------------------


class VideoFusionPipeline(DenoisingPipelineMixin, VideoDiffusionPipeline):
    r"""Text-to-video generation with VideoFusion's decomposed diffusion.

    A base generator (an image UNet, optional) predicts the base noise shared by all frames from the key frame; a
    residual generator (a video UNet) predicts each frame's residual noise once the base noise is taken out. With a
    v-prediction scheduler (needed for zero terminal SNR) the residual generator predicts the velocity of the sample with
    the base noise taken out, `alpha_t sqrt(1 - lambda_i) r_i - sigma_t x_0^i`, and the two estimates are combined into
    each frame's velocity (see `combine_velocity`). Without a base generator, the video UNet predicts the full
    per-frame output in the scheduler's `prediction_type`, and with `base_noise_ratio=0` the pipeline samples as
    diffusers' `TextToVideoSDPipeline` does.

    Long videos: a video longer than a window (by default the clip length the models were trained on) is made window
    by window, each window continuing from the last frames of the one before (`window_mode="extend"`, see
    `extension.py`), so the motion goes on; `window_mode="blend"` denoises the windows side by side and blends their
    predictions. Either way the models never see more frames than a window holds.

    Any diffusers scheduler with a discrete noise schedule and epsilon or v prediction samples it (DDIM, DPM-Solver++,
    UniPC, Euler, ...: `pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)`), with
    decomposed initial noise and, where the scheduler takes its step noise, decomposed step noise;
    [`DecomposedNoiseScheduler`] is the default and the reference.

    This pipeline inherits from [`VideoDiffusionPipeline`], a [`DiffusionPipeline`] (saving, loading, offloading,
    progress bars) that also pushes to and loads from the Hub by repo id.

    Args:
        vae ([`AutoencoderKL`] or [`AutoencoderKLVideo`]): The VAE: an image VAE decodes the video latents frame by
            frame, a video VAE (Stable Diffusion's with temporal decoder layers) decodes whole clips.
        text_encoder ([`CLIPTextModel`]): Frozen text encoder.
        tokenizer ([`CLIPTokenizer`]): Its tokenizer.
        residual_unet ([`UNet3DModel`]): The residual generator, a video UNet on `(B, C, F, H, W)` latents.
        scheduler ([`DecomposedNoiseScheduler`] or a diffusers scheduler): DDIM with decomposed noise, or any
            discrete-time diffusers scheduler (see `schedulers.py`).
        base_unet ([`UNet2DConditionModel`], *optional*): The base generator, an image UNet with the residual UNet's
            latent channels and text width (e.g. Stable Diffusion 2.1's).
        base_prediction_type (`str`, defaults to "epsilon"): What the base generator predicts: "epsilon" or
            "v_prediction" (Stable Diffusion 2.1 at 768 px); saved in `model_index.json`.
        key_frame_estimate (`str`, defaults to "base"): Where the key frame's `x_0` comes from: "base", the base
            generator alone (it sees no other frame), or "residual", the residual generator, for models trained with
            `videofusion.key_frame_residual` (v-prediction); saved in `model_index.json`.
        num_frames (`int`, *optional*): The clip length the models were trained on: the default `num_frames` and
            window size of a call (16 and the residual UNet's `max_frames` when not known); saved.
        base_noise_ratio (`float` or `list[float]`, *optional*): `lambda`, the share of each frame's noise that is
            the base noise; taken from a `DecomposedNoiseScheduler` when not given, and kept when the scheduler is
            swapped for a diffusers one; saved.

    Examples:

        ```py
        >>> from diffusers.utils import export_to_video
        >>> from diffusers_video import VideoFusionPipeline

        >>> pipe = VideoFusionPipeline.from_pretrained("path/to/videofusion")
        >>> frames = pipe("a red circle moving right", num_frames=16, num_inference_steps=25).frames[0]
        >>> export_to_video(frames, "circle.mp4", fps=8)
        ```
    """

    model_cpu_offload_seq = "text_encoder->base_unet->residual_unet->vae"
    _optional_components = ["base_unet"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKL | AutoencoderKLVideo,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        residual_unet: UNet3DModel,
        scheduler: DecomposedNoiseScheduler,
        base_unet: UNet2DConditionModel | None = None,
        base_prediction_type: str = "epsilon",
        key_frame_estimate: str = "base",
        num_frames: int | None = None,
        base_noise_ratio: BaseNoiseRatio | None = None,
    ):
        super().__init__()
        check_components(
            vae, text_encoder, residual_unet, scheduler, base_unet, base_prediction_type, key_frame_estimate
        )
        if num_frames is not None and (not is_int(num_frames) or num_frames < 1):
            raise ValueError(f"`num_frames` must be an integer >= 1 or None but is {num_frames!r}.")
        if isinstance(scheduler, DecomposedNoiseScheduler) and base_noise_ratio is None:
            base_noise_ratio = scheduler.config.base_noise_ratio
        if base_noise_ratio is not None:
            check_base_noise_ratio(base_noise_ratio)
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            residual_unet=residual_unet,
            scheduler=scheduler,
            base_unet=base_unet,
        )
        self.register_to_config(
            base_prediction_type=base_prediction_type,
            key_frame_estimate=key_frame_estimate,
            num_frames=num_frames,
            base_noise_ratio=base_noise_ratio,
        )
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if getattr(self, "vae", None) else 8

    # ------------------------------------------------------------------ checks

    def _size_multiple(self) -> int:
        """Height and width in pixels must be divisible by this: the VAE's and the UNets' downsampling."""
        unets = [self.residual_unet] + ([self.base_unet] if self.base_unet is not None else [])
        return self.vae_scale_factor * max(2 ** (len(unet.config.down_block_types) - 1) for unet in unets)

    def latent_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """`(B, C, F, h, w)` of the latents of `batch_size` videos of `num_frames` frames of `height` x `width` px."""
        scale = self.vae_scale_factor
        return (batch_size, self.residual_unet.config.in_channels, num_frames, height // scale, width // scale)

    def _default_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        """Missing height and width from the residual UNet's `sample_size` (in latents) times the VAE scale factor."""
        if height is not None and width is not None:
            return height, width
        sample_size = self.residual_unet.config.sample_size
        if sample_size is None:
            raise ValueError(
                f"`height` and `width` must be given because `residual_unet` has no `sample_size` but are {height} and"
                f" {width}."
            )
        default_height, default_width = (sample_size, sample_size) if is_int(sample_size) else sample_size
        height = default_height * self.vae_scale_factor if height is None else height
        width = default_width * self.vae_scale_factor if width is None else width
        return height, width

    @property
    def key_frame_estimate(self) -> str:
        """Where the key frame's `x_0` comes from ("base" for folders saved before it was recorded)."""
        return self.config.get("key_frame_estimate", "base")

    @property
    def default_num_frames(self) -> int:
        """The clip length the models were trained on, when the folder records it; else 16, as diffusers'."""
        return self.config.get("num_frames") or 16

    def default_size(self) -> tuple[int, int, int]:
        """`(num_frames, height, width)` of a call that gives none of them."""
        height, width = self._default_size(None, None)
        return self.default_num_frames, height, width

    def _resolve_windows(
        self, window_size: int | None, window_overlap: int | None, window_mode: str = "extend"
    ) -> tuple[int | None, int]:
        """`window_size` defaults to the trained clip length, else the residual UNet's `max_frames` (None for a UNet
        without it: no windows); `window_overlap` to `window_size // 2 + 1` when extending (the key frame among the
        given frames), `window_size // 4` when blending."""
        if window_size is None:
            window_size = self.config.get("num_frames") or getattr(self.residual_unet.config, "max_frames", None)
        if window_overlap is None and is_int(window_size):
            extend = window_mode == "extend"
            window_overlap = default_extension_overlap(window_size) if extend else window_size // 4
        return window_size, window_overlap or 0

    @property
    def base_noise_ratio(self) -> BaseNoiseRatio:
        """`lambda`: a `DecomposedNoiseScheduler`'s own, else the one recorded in the config (0 if none)."""
        if isinstance(self.scheduler, DecomposedNoiseScheduler):
            return self.scheduler.config.base_noise_ratio
        ratio = self.config.get("base_noise_ratio")
        return 0.0 if ratio is None else ratio

    def frame_ratios(self, num_frames: int, device: str | torch.device | None = None) -> torch.Tensor:
        """`lambda_i` of every frame, `(num_frames,)`: `base_noise_ratio`'s, and 1 at the key frame with a base
        generator.

        The base generator reads the key frame as an image diffusion sample, so that frame's noise is the base alone.
        """
        ratios = frame_ratios(self.base_noise_ratio, num_frames, device=device)
        if self.base_unet is not None:
            ratios = with_key_frame(ratios, key_frame_index(num_frames))
        return ratios

    def check_inputs(self, *args, **kwargs) -> None:
        """Raises a `ValueError` (or a `TypeError` for a wrong type) naming the bad argument and its value, before any
        model is called; the arguments are `__call__`'s with height, width and `num_frames` defaulted (see
        [`check_call_inputs`])."""
        check_call_inputs(self, *args, **kwargs)

    # ------------------------------------------------------------------ prompt encoding

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device,
        num_images_per_prompt: int,
        do_classifier_free_guidance: bool,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        clip_skip: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""Encodes the prompt as `TextToVideoSDPipeline.encode_prompt` does: `(prompt_embeds, negative_prompt_embeds)`,
        each `(batch * num_images_per_prompt, tokens, dim)`, the negative ones None without guidance (see
        [`encode_clip_prompt`] for the arguments)."""
        return encode_clip_prompt(
            self.tokenizer,
            self.text_encoder,
            prompt,
            device,
            num_images_per_prompt,
            do_classifier_free_guidance,
            negative_prompt=negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            clip_skip=clip_skip,
            dtype=self.residual_unet.dtype if self.residual_unet is not None else None,
        )

    # ------------------------------------------------------------------ sampling

    def prepare_latents(
        self,
        batch_size: int,
        num_frames: int,
        height: int,
        width: int,
        ratios: torch.Tensor,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Initial latents `(B, C, F, h, w)`: decomposed noise with frame ratios `ratios`, or the given `latents`.

        The residual noise is drawn with the very call `TextToVideoSDPipeline.prepare_latents` makes, so with all
        ratios 0 the latents are the same for the same generator.
        """
        # scale the initial noise by the standard deviation required by the scheduler
        noise = self._initial_noise(batch_size, num_frames, height, width, ratios, dtype, device, generator, latents)
        return noise * self.scheduler.init_noise_sigma

    def _initial_noise(self, batch_size, num_frames, height, width, ratios, dtype, device, generator, latents=None):
        """The unscaled initial noise of `prepare_latents`: `latents` on `device`, or drawn decomposed."""
        if latents is not None:
            return latents.to(device)
        shape = self.latent_shape(batch_size, num_frames, height, width)
        noise, _, _ = sample_decomposed_noise(shape, ratios, generator=generator, device=device, dtype=dtype)
        return noise

    def _predict_base(
        self,
        key_frame: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        cross_attention_kwargs: dict[str, Any] | None,
        levels: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 1 of VideoFusion: the (guided) base noise `b_hat` and the key frame's `x0_hat`, each `(B, C, h, w)`,
        from the key frame `x_t^k` at noise level `levels` `(alpha_t, sigma_t)`, guided with the current step's weight."""
        guided = self.do_classifier_free_guidance
        model_input = torch.cat([key_frame] * 2) if guided else key_frame  # (2B or B, C, h, w)
        prediction = self.base_unet(
            model_input,
            timestep,
            encoder_hidden_states=text,
            cross_attention_kwargs=cross_attention_kwargs,
            return_dict=False,
        )[0]
        if guided:
            prediction = self._guide(*prediction.chunk(2))
        x0, noise = prediction_to_x0_eps(prediction, key_frame, *levels, self.config.base_prediction_type)
        return noise, x0

    def _predict_residual(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        windows: list[tuple[int, int]],
        weights: torch.Tensor,
        cross_attention_kwargs: dict[str, Any] | None,
    ) -> torch.Tensor:
        """Step 3 of VideoFusion (or the whole prediction without a base generator), over blended frame windows."""
        guided = self.do_classifier_free_guidance
        model_input = torch.cat([sample] * 2) if guided else sample  # (2B or B, C, F, h, w)

        def residual_unet(frames: torch.Tensor) -> torch.Tensor:
            return self.residual_unet(
                frames,
                timestep,
                encoder_hidden_states=text,
                cross_attention_kwargs=cross_attention_kwargs,
                return_dict=False,
            )[0]

        prediction = predict_over_windows(residual_unet, model_input, windows, weights)
        if guided:
            prediction = self._guide(*prediction.chunk(2))
        return prediction

    def _guide(self, pred_uncond: torch.Tensor, pred_cond: torch.Tensor) -> torch.Tensor:
        """Guidance with the current step's weight and the call's guidance object's `guidance_rescale`."""
        return apply_guidance(pred_uncond, pred_cond, self.guidance_scale, self._guidance.guidance_rescale)

    @property
    def guidance(self) -> GuidanceSchedule:
        """The guidance object of the current call (callbacks may read it)."""
        return self._guidance

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float | Sequence[float] | GuidanceSchedule = 9.0,
        negative_prompt: str | list[str] | None = None,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        decode_chunk_size: int | None = None,
        window_size: int | None = None,
        window_overlap: int | None = None,
        window_mode: str = "extend",
        window_strength: float = 0.6,
        callback_on_step_end: Callable[[DiffusionPipeline, int, torch.Tensor, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
    ) -> VideoPipelineOutput | tuple:
        r"""Generates videos from text.

        Args:
            prompt (`str` or `list[str]`, *optional*): The prompt or prompts; or pass `prompt_embeds`.
            height (`int`, *optional*): Height in pixels, defaults to the residual UNet's `sample_size` times the VAE
                scale factor; a multiple of the VAE scale factor times the UNets' downsampling.
            width (`int`, *optional*): Width in pixels, defaulted and constrained as `height`.
            num_frames (`int`, *optional*): Number of frames; defaults to the clip length the models were trained on
                (`pipe.config.num_frames`), else 16. A longer video is made in windows (see `window_mode`).
            num_inference_steps (`int`, defaults to 50): Number of denoising steps.
            guidance_scale (`float`, `list[float]` or `GuidanceSchedule`, defaults to 9.0): Classifier-free guidance
                weight `w` of `uncond + w * (cond - uncond)`: a number, one number per step, or a guidance object of
                `diffusers_video.guidance` (e.g. `OscillatingGuidance`). 1 is the conditional prediction alone (no
                unconditional pass); weights must be >= 0. Both generators are guided with the same weight.
            negative_prompt (`str` or `list[str]`, *optional*): What not to generate; the empty prompt by default.
            num_videos_per_prompt (`int`, defaults to 1): Videos per prompt.
            eta (`float`, defaults to 0.0): DDIM eta, in [0, 1]; 0 is deterministic, > 0 injects decomposed noise
                (with the key frame's `lambda = 1` when a base generator is used) drawn from `generator`.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Random generator(s), one per video
                for a list.
            latents (`torch.Tensor`, *optional*): Initial noisy latents `(batch * num_videos_per_prompt, channels,
                frames, height / vae_scale_factor, width / vae_scale_factor)`; drawn as decomposed noise if not given.
            prompt_embeds (`torch.Tensor`, *optional*): Text embeddings instead of `prompt`.
            negative_prompt_embeds (`torch.Tensor`, *optional*): Negative text embeddings instead of `negative_prompt`.
            output_type (`str`, defaults to "np"): "np" (`(B, F, H, W, 3)` floats in [0, 1]), "pt" (`(B, F, 3, H, W)`),
                "pil" (a list of lists of images) or "latent" (the final latents `(B, C, F, h, w)`).
            return_dict (`bool`, defaults to `True`): Return a [`VideoPipelineOutput`] instead of a tuple.
            cross_attention_kwargs (`dict`, *optional*): Passed to the attention processors of both UNets.
            decode_chunk_size (`int`, *optional*): Frames per VAE decode call; all frames at once when not given.
            window_size (`int`, *optional*): Frames per model call for long videos; defaults to the trained clip length
                (`pipe.config.num_frames`), else the residual UNet's `max_frames` (no windows for a UNet without it).
                Videos of at most this many frames run in one call.
            window_overlap (`int`, *optional*): Frames shared by consecutive windows, below `window_size`; defaults to
                `window_size // 2 + 1` for "extend" (the key frame is then a given frame) and `window_size // 4` for
                "blend".
            window_mode (`str`, defaults to "extend"): How a video longer than `window_size` is made. "extend": window
                after window, each continuing from the last `window_overlap` frames already made (given to the model
                at every step, noised to the step's level), so the motion goes on; the progress bar and the callback
                then run once per window. "blend": all windows at every step, their predictions crossfaded in the
                shared frames (VideoFusion's base generator still runs once per step on the video's key frame).
            window_strength (`float`, defaults to 0.6): For "extend", the share of the schedule a later window runs, in
                (0, 1]: below 1 its new frames start as copies of the last given frame noised to that level (SDEdit),
                which carries the background and the shape over; 1 starts them from noise.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): Called
                after each step as `callback_on_step_end(pipe, step_index, timestep, callback_kwargs)` with the tensors
                named in `callback_on_step_end_tensor_inputs`; the tensors of the dict it returns replace them.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): Names from
                `_callback_tensor_inputs`: "latents", "prompt_embeds", "negative_prompt_embeds".

        Returns:
            [`VideoPipelineOutput`] or `tuple`: the frames, or `(frames,)` when `return_dict` is False.

        Raises:
            ValueError, TypeError: From [`check_inputs`], before any model runs, naming the bad argument and its
                value; a video whose latents and frames cannot fit in the device's memory is refused with the GiB it
                needs.
        """
        callback_on_step_end_tensor_inputs = callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        check_bool(return_dict, "return_dict")

        # 0. default height and width from the residual UNet, the frame count from the trained clip length
        height, width = self._default_size(height, width)
        num_frames = self.default_num_frames if num_frames is None else num_frames

        # 1. check inputs, before any model runs
        self.check_inputs(
            prompt, height, width, num_frames, num_inference_steps, guidance_scale, negative_prompt,
            num_videos_per_prompt, eta, generator, latents, prompt_embeds, negative_prompt_embeds, output_type,
            cross_attention_kwargs, decode_chunk_size, window_size, window_overlap, window_mode, window_strength,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        guidance = check_guidance_scale(guidance_scale, num_inference_steps)
        self._guidance = guidance
        self._interrupt = False

        # 2. call parameters: the windows a long video is made of
        batch_size = prompt_batch_size(prompt, prompt_embeds)
        device = self._execution_device
        window_size, window_overlap = self._resolve_windows(window_size, window_overlap, window_mode)
        long_video = window_size is not None and num_frames > window_size
        extend = long_video and window_mode == "extend"
        plan = extension_windows(num_frames, window_size, window_overlap) if extend else [(0, num_frames, 0)]

        # 3. encode the prompt (the negative prompt only when some step is guided)
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            device,
            num_videos_per_prompt,
            any(guidance.needs_unconditional(i, num_inference_steps) for i in range(num_inference_steps)),
            negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
        )
        tensors = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        warn_if_independent_step_noise(self.scheduler, eta)

        # 4-6. each window: timesteps, decomposed initial noise, denoising (given frames replaced at every step)
        made = None  # (B, C, frames so far, h, w): the clean latents of the windows done
        with self.progress_bar(total=num_inference_steps * len(plan)) as progress_bar:
            for start, end, given in plan:
                if self.interrupt:
                    break
                frames = end - start
                self.scheduler.set_timesteps(num_inference_steps, device=device)
                ratios = self.frame_ratios(frames, device=device)
                noise = self._initial_noise(
                    batch_size * num_videos_per_prompt, frames, height, width, ratios, prompt_embeds.dtype, device,
                    generator, None if latents is None else latents[:, :, start:end],
                )  # fmt: skip
                before_step, start_step, window_latents = None, 0, noise * self.scheduler.init_noise_sigma
                if given:
                    known = made[:, :, start : start + given]
                    before_step = replace_given_frames(known, noise[:, :, :given], self.scheduler.add_noise)
                    start_step, window_latents = start_from_given_frames(
                        self.scheduler, known, noise, window_strength, num_inference_steps
                    )
                blend = frame_windows(frames, window_size, window_overlap) if long_video and not extend else None
                window_latents = self._denoise_window(
                    window_latents, ratios, tensors, guidance, num_inference_steps, eta, generator, blend,
                    cross_attention_kwargs, progress_bar, callback_on_step_end, callback_on_step_end_tensor_inputs,
                    before_step, start_step,
                )  # fmt: skip
                if given:
                    window_latents[:, :, :given] = known.to(window_latents.dtype)
                made = window_latents if made is None else torch.cat([made, window_latents[:, :, given:]], dim=2)
        latents = made

        # 7. decode
        if output_type == "latent":
            frames = latents
        else:
            video = decode_latents(self.vae, latents, decode_chunk_size)
            frames = postprocess_video(video, output_type)

        # 8. offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (frames,)
        return VideoPipelineOutput(frames=frames)

    def _denoise_window(
        self, latents, ratios, tensors, guidance, num_inference_steps, eta, generator, blend_windows,
        cross_attention_kwargs, progress_bar, callback_on_step_end, callback_on_step_end_tensor_inputs, before_step,
        start_step=0,
    ) -> torch.Tensor:  # fmt: skip
        """Denoises the latents `(B, C, W, h, w)` of one window (the whole video when it fits in one) with the
        frame ratios `ratios`; `blend_windows` are the blended windows of `window_mode="blend"` (None: one call)."""
        num_frames = latents.shape[2]
        windows = [(0, num_frames)] if blend_windows is None else blend_windows
        residual = dict(windows=windows, weights=window_blend_weights(windows, num_frames))
        residual["cross_attention_kwargs"] = cross_attention_kwargs
        key_frame = key_frame_index(num_frames)
        key_frame_from_residual = self.key_frame_estimate == "residual"

        def predict(latent_model_input: torch.Tensor, t: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
            # unconditional first, as diffusers batches classifier-free guidance
            text = tensors["prompt_embeds"]
            if self.do_classifier_free_guidance:
                text = torch.cat([tensors["negative_prompt_embeds"], text])
            if self.base_unet is None:
                return self._predict_residual(latent_model_input, t, text, **residual)  # (B, C, F, h, w)
            # 6.1 base noise from the key frame x_t^k = alpha_t x_0^k + sigma_t b: an image diffusion sample
            alpha_t, sigma_t = model_input_levels(self.scheduler, t, i)
            base_noise, base_x0 = self._predict_base(
                latent_model_input[:, :, key_frame], t, text, cross_attention_kwargs, (alpha_t, sigma_t)
            )  # (B, C, h, w)
            # 6.2 x'_t^i = x_t^i - sigma_t sqrt(lambda_i) b_hat
            residual_input = remove_base_noise(latent_model_input, base_noise, sigma_t, ratios)
            # 6.3 residual noise r_hat_i of every frame
            residual_pred = self._predict_residual(residual_input, t, text, **residual)  # (B, C, F, h, w)
            if self.scheduler.config.prediction_type == "v_prediction":
                # 6.4 v_hat_i = alpha_t sqrt(lambda_i) b_hat + u_hat_i; at the key frame the base's own v, or the
                # residual generator's x_0 estimate when it was trained on the key frame
                return combine_velocity(
                    base_noise, base_x0, residual_pred, alpha_t, sigma_t, ratios, key_frame_from_residual
                )
            # 6.4 eps_hat_i = sqrt(lambda_i) b_hat + sqrt(1 - lambda_i) r_hat_i
            return combine_noise(base_noise, residual_pred, ratios)

        decomposed_step_noise = injects_noise(self.scheduler, eta) and takes_variance_noise(self.scheduler)

        def step_kwargs(i: int, sample: torch.Tensor) -> dict[str, Any]:
            # 6.5 the noise a step injects (DDIM's eta > 0, DPM-Solver's SDE) is decomposed with the same frame ratios
            if not decomposed_step_noise:
                return {}
            noise, _, _ = sample_decomposed_noise(
                sample.shape, ratios, generator=generator, device=sample.device, dtype=sample.dtype
            )
            return {"variance_noise": noise}

        return denoise(
            self, self.scheduler, latents, predict, num_inference_steps=num_inference_steps, guidance=guidance,
            progress_bar=progress_bar, generator=generator, eta=eta, step_kwargs=step_kwargs,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs, tensors=tensors,
            before_step=before_step, start_step=start_step,
        )  # fmt: skip
