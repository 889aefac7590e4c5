"""I2VGen-XL: image-to-video in two stages (Zhang et al. 2023, https://huggingface.co/papers/2311.04145).

1. Base stage: a video UNet animates the image, conditioned on it twice over ("two hierarchical encoders"): a frozen
   CLIP image encoder for its semantics and a learnable content encoder for its details (`I2VGenXLContentEncoder`:
   the image latent concatenated on channels and 64 latent tokens, plus 4 CLIP tokens in the cross-attention
   context), on the text, and on the frame rate (`target_fps`).
2. Refinement: the base video is resized, noised to a fraction of the schedule and denoised by a text-conditioned
   video UNet (SDEdit; see `refine.py` and `VideoRefinerPipeline`). The public release has no refiner of its own;
   ModelScope's `damo/Video-to-Video` or zeroscope-XL, converted with `diffusers-video convert video-refiner`, are
   refiners for it, and any `UNet3DModel` on the same latents is one.

The base stage computes what diffusers' `I2VGenXLPipeline` computes for the same arguments (see
`diffusers-video convert i2vgen-xl`), also where diffusers fails: its `clip_skip` (default 1) reads
`text_encoder.text_model`, which transformers 5 no longer has. Beyond it: any size that is a multiple of the VAE's
and the UNet's downsampling, a batch of images (one per prompt), the refinement stage, callbacks, LoRA, offloading.
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
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection
from transformers.image_processing_utils import BaseImageProcessor

from ...guidance import GuidanceSchedule, apply_guidance
from ...models.i2vgen_xl_content import I2VGenXLContentEncoder
from ...models.unet_3d import UNet3DModel
from ...models.video_vae import AutoencoderKLVideo
from ..checks import check_bool, check_guidance_scale, is_int, prompt_batch_size
from ..denoising import DenoisingPipelineMixin, callback_tensor_inputs, denoise, replace_given_frames
from ..pipeline_utils import VideoDiffusionPipeline, VideoPipelineOutput, decode_latents, postprocess_video
from ..prompts import encode_clip_prompt
from .images import clip_pixel_values, to_pil_images, vae_pixels
from .inputs import check_call_inputs, check_components
from .refine import encode_video, refine_latents, resize_video, step_noise_kwargs

__all__ = ["I2VGenXLCascadePipeline"]


class I2VGenXLCascadePipeline(DenoisingPipelineMixin, VideoDiffusionPipeline):
    r"""Image-to-video generation with I2VGen-XL's base stage and an optional refinement stage.

    Args:
        vae ([`AutoencoderKL`] or [`AutoencoderKLVideo`]): Encodes the image (and the base video for refinement) and
            decodes the frames.
        text_encoder ([`CLIPTextModel`]): Frozen text encoder (shared by both stages).
        tokenizer ([`CLIPTokenizer`]): Its tokenizer.
        image_encoder ([`CLIPVisionModelWithProjection`]): Frozen CLIP image encoder; its `image_embeds` become the
            CLIP image tokens.
        feature_extractor ([`BaseImageProcessor`]): The CLIP image processor (its crop size and normalisation).
        content_encoder ([`I2VGenXLContentEncoder`]): The image conditioning of the base UNet.
        unet ([`UNet3DModel`]): The base UNet: `in_channels` = latent channels + the content encoder's conditioning
            channels, an "fps" scalar condition.
        scheduler ([`SchedulerMixin`]): The base stage's scheduler (the public weights: DDIM, v-prediction, zero
            terminal SNR, "leading" spacing).
        refiner_unet ([`UNet3DModel`], *optional*): The text-conditioned refinement UNet, on the VAE's latents.
        refiner_scheduler ([`SchedulerMixin`], *optional*): Its scheduler (with `refiner_unet`).
        default_height, default_width (`int`, *optional*): The size of a call that gives none (saved in the config;
            the converter writes diffusers' 704 x 1280); else the base UNet's `sample_size` times the VAE's factor.

    Examples:

        ```py
        >>> from diffusers.utils import export_to_video, load_image
        >>> from diffusers_video import I2VGenXLCascadePipeline

        >>> pipe = I2VGenXLCascadePipeline.from_pretrained("path/to/i2vgen-xl")  # `diffusers-video convert i2vgen-xl`
        >>> frames = pipe(image=load_image("still.png"), prompt="a red panda eating bamboo").frames[0]
        >>> export_to_video(frames, "panda.mp4", fps=16)
        ```
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->content_encoder->unet->refiner_unet->vae"
    _optional_components = ["refiner_unet", "refiner_scheduler"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKL | AutoencoderKLVideo,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        image_encoder: CLIPVisionModelWithProjection,
        feature_extractor: BaseImageProcessor,
        content_encoder: I2VGenXLContentEncoder,
        unet: UNet3DModel,
        scheduler: SchedulerMixin,
        refiner_unet: UNet3DModel | None = None,
        refiner_scheduler: SchedulerMixin | None = None,
        default_height: int | None = None,
        default_width: int | None = None,
    ):
        super().__init__()
        check_components(vae, content_encoder, unet, refiner_unet, refiner_scheduler)
        for name, value in (("default_height", default_height), ("default_width", default_width)):
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(f"`{name}` must be None or an integer >= 1 but is {value!r}.")
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
            feature_extractor=feature_extractor, content_encoder=content_encoder, unet=unet, scheduler=scheduler,
            refiner_unet=refiner_unet, refiner_scheduler=refiner_scheduler,
        )  # fmt: skip
        self.register_to_config(default_height=default_height, default_width=default_width)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    # ------------------------------------------------------------------ sizes

    def size_multiple(self, unet: UNet3DModel) -> int:
        """Pixel sizes must be multiples of this for `unet`: the VAE's and the UNet's downsampling."""
        return self.vae_scale_factor * unet.downsample_factor

    def _sample_size(self, unet: UNet3DModel) -> tuple[int, int] | None:
        size = unet.config.sample_size
        if size is None:
            return None
        height, width = (size, size) if is_int(size) else size
        return height * self.vae_scale_factor, width * self.vae_scale_factor

    def default_size(self) -> tuple[int, int, int]:
        """`(num_frames, height, width)` of a call that gives none of them: the call's 16 frames, at the refiner's
        size when the pipeline has a refiner (a call refines by default), else at the base size. What
        `data.quality.infer_video_settings` asks a cascade for, as with the other pipelines. A `ValueError` when no
        size can be read from the components."""
        height, width = self.base_size()
        if self.refiner_unet is not None:
            height, width = self.refiner_size(None, None, height, width)
        return inspect.signature(type(self).__call__).parameters["num_frames"].default, height, width

    def base_size(self, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        """The base stage's `(height, width)`: those given, and for a missing one the saved default, else the UNet's
        `sample_size` times the VAE's factor."""
        fallback = (self.config.get("default_height"), self.config.get("default_width"))
        if None in fallback:
            fallback = self._sample_size(self.unet) or (None, None)
        height = fallback[0] if height is None else height
        width = fallback[1] if width is None else width
        if height is None or width is None:
            raise ValueError(
                f"`height` and `width` must be given because the pipeline has no default size but are {height} and "
                f"{width}."
            )
        return height, width

    def refiner_size(
        self, height: int | None, width: int | None, base_height: int, base_width: int
    ) -> tuple[int, int]:
        """The refinement size: as given, else the refiner UNet's `sample_size` times the VAE's factor, else the
        base size."""
        if height is not None and width is not None:
            return height, width
        return self._sample_size(self.refiner_unet) or (base_height, base_width)

    # ------------------------------------------------------------------ encoders

    def encode_prompt(
        self, prompt, device, num_videos_per_prompt, do_classifier_free_guidance, negative_prompt=None,
        prompt_embeds=None, negative_prompt_embeds=None, clip_skip=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        r"""Encodes the prompt as diffusers' `I2VGenXLPipeline.encode_prompt` does: `clip_skip` applies to the
        negative prompt too (the hidden states of the chosen layer, then the final layer norm).

        Returns:
            `tuple[torch.Tensor, torch.Tensor | None]`: `(prompt_embeds, negative_prompt_embeds)`, each
            `(batch * num_videos_per_prompt, tokens, dim)`; the negative ones are None without guidance.
        """
        batch_size = prompt_batch_size(prompt, prompt_embeds)
        dtype = self.unet.dtype
        prompt_embeds, _ = encode_clip_prompt(
            self.tokenizer, self.text_encoder, prompt, device, num_videos_per_prompt, False,
            prompt_embeds=prompt_embeds, clip_skip=clip_skip, dtype=dtype,
        )  # fmt: skip
        if not do_classifier_free_guidance:
            return prompt_embeds, None
        if negative_prompt_embeds is None:
            negatives = [""] * batch_size if negative_prompt is None else negative_prompt
            negatives = [negatives] * batch_size if isinstance(negatives, str) else negatives
        else:
            negatives = None
        negative_prompt_embeds, _ = encode_clip_prompt(
            self.tokenizer, self.text_encoder, negatives, device, num_videos_per_prompt, False,
            prompt_embeds=negative_prompt_embeds, clip_skip=clip_skip, dtype=dtype,
        )  # fmt: skip
        return prompt_embeds, negative_prompt_embeds

    def encode_image(
        self, image: Any, height: int, width: int, batch_size: int, num_videos_per_prompt: int, generator: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The CLIP image embeddings `(B * n, dim)` and the VAE latent `(B * n, C, h, w)` of the image(s), one per
        video (one image is shared by all prompts). The latent is a posterior sample drawn from `generator` (the first
        one of a list); diffusers draws it from torch's global generator."""
        device = self._execution_device
        images = to_pil_images(image)
        pixel_values = clip_pixel_values(images, width, self.feature_extractor)
        image_embeds = self.image_encoder(pixel_values.to(device=device, dtype=self.image_encoder.dtype)).image_embeds
        pixels = vae_pixels(images, width, height).to(device=device, dtype=self.vae.dtype)
        posterior = self.vae.encode(pixels).latent_dist
        noise = randn_tensor(
            posterior.mean.shape, generator=generator[0] if isinstance(generator, list) else generator,
            device=device, dtype=posterior.mean.dtype,
        )  # fmt: skip
        latent = (posterior.mean + posterior.std * noise) * self.vae.config.scaling_factor  # (N, C, h, w)
        repeats = num_videos_per_prompt * (batch_size if len(images) == 1 else 1)
        dtype = self.unet.dtype
        return image_embeds.to(dtype).repeat_interleave(repeats, 0), latent.to(dtype).repeat_interleave(repeats, 0)

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: Any = None,
        height: int | None = None,
        width: int | None = None,
        target_fps: int = 16,
        num_frames: int = 16,
        num_inference_steps: int = 50,
        guidance_scale: float | Sequence[float] | GuidanceSchedule = 9.0,
        negative_prompt: str | list[str] | None = None,
        eta: float = 0.0,
        num_videos_per_prompt: int = 1,
        decode_chunk_size: int | None = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = 1,
        replace_first_frame: bool = False,
        refine: bool = True,
        refiner_prompt: str | list[str] | None = None,
        refiner_height: int | None = None,
        refiner_width: int | None = None,
        refiner_strength: float = 0.6,
        refiner_num_inference_steps: int | None = None,
        refiner_guidance_scale: float | Sequence[float] | GuidanceSchedule | None = None,
        refiner_guidance_rescale: float = 0.2,
        refiner_noise_mode: str = "fresh",
        callback_on_step_end: Callable[[DiffusionPipeline, int, torch.Tensor, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
    ) -> VideoPipelineOutput | tuple:
        r"""Generates videos from an image and a prompt: the base stage, then the refinement if there is a refiner.

        Args:
            prompt (`str` or `list[str]`, *optional*): The prompt or prompts; or pass `prompt_embeds`.
            image (PIL image, list, `torch.Tensor` or `np.ndarray`): The image to animate (frame 0): a PIL image, a
                list of them, a `(3, H, W)` / `(B, 3, H, W)` tensor or `(H, W, 3)` / `(B, H, W, 3)` array in [0, 1];
                one image, or one per prompt. It is resized to cover `width` x `height` and centre-cropped.
            height, width (`int`, *optional*): The base video's size: multiples of the VAE's and the UNet's
                downsampling; default `pipe.config.default_height` / `default_width`, else the UNet's `sample_size`.
            target_fps (`int`, defaults to 16): The frame rate the UNet is conditioned on, > 0.
            num_frames (`int`, defaults to 16): Frames per video.
            num_inference_steps (`int`, defaults to 50): Base stage steps.
            guidance_scale (`float`, `list[float]` or `GuidanceSchedule`, defaults to 9.0): Classifier-free guidance
                weight (1: none); the unconditional branch has the negative prompt and a zero CLIP image embedding.
            negative_prompt (`str` or `list[str]`, *optional*): What not to generate.
            eta (`float`, defaults to 0.0): DDIM's eta (its step noise drawn frame-major, as diffusers draws it).
            num_videos_per_prompt (`int`, defaults to 1): Videos per prompt.
            decode_chunk_size (`int`, *optional*, defaults to 1): Frames per VAE call (None: all at once).
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): The image's VAE posterior is drawn
                first, then the initial noise (then the refiner's draws).
            latents (`torch.Tensor`, *optional*): Initial noise `(B * n, C, F, h, w)` of the base stage.
            prompt_embeds, negative_prompt_embeds (`torch.Tensor`, *optional*): Text embeddings instead of prompts.
            output_type (`str`, defaults to "pil"): "pil" (diffusers' `I2VGenXLPipeline` default), "np", "pt" or
                "latent".
            return_dict (`bool`, defaults to True): Return a [`VideoPipelineOutput`] instead of a tuple.
            cross_attention_kwargs (`dict`, *optional*): Passed to the attention processors of both UNets.
            clip_skip (`int`, *optional*, defaults to 1): CLIP layers to skip (1: the penultimate layer, VGen's
                choice, then the final layer norm) for the prompt and the negative prompt, in both stages; None for the
                last layer.
            replace_first_frame (`bool`, defaults to False): Keep the image as the base video's first frame: before
                every step frame 0 of the latents is replaced by the image's latent noised to the step's level (with
                frame 0 of the initial noise), and after the last step by the latent itself, so frame 0 decodes to the
                VAE's reconstruction of the image and the other frames are denoised in its context (the replacement
                method of Ho et al. 2022; not in the paper, where the model alone carries the image). The refinement
                stage, if any, then works on that video as on any other.
            refine (`bool`, defaults to True): Run the refinement stage when the pipeline has a refiner.
            refiner_prompt (`str` or `list[str]`, *optional*): The refiner's prompt (the paper's "additional brief
                text"); the base prompt (or `prompt_embeds`) when not given.
            refiner_height, refiner_width (`int`, *optional*): The refined video's size; default the refiner UNet's
                `sample_size`, else the base size. The base video is resized to it (bilinear) before encoding.
            refiner_strength (`float`, defaults to 0.6): Part of the refiner's schedule that is run, in (0, 1]
                (ModelScope's refiner: t = 600 of 1000).
            refiner_num_inference_steps (`int`, *optional*): Steps of the refiner's full schedule (default: the
                base stage's).
            refiner_guidance_scale (`float`, *optional*): The refiner's guidance weight (default: `guidance_scale`).
            refiner_guidance_rescale (`float`, defaults to 0.2): The refiner's guidance rescale, in [0, 1].
            refiner_noise_mode (`str`, defaults to "fresh"): "fresh" or "ddim_inversion" (see `VideoRefinerPipeline`).
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): Called
                after each step of both stages with the tensors named in `callback_on_step_end_tensor_inputs`.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): "latents", "prompt_embeds",
                "negative_prompt_embeds".

        Returns:
            [`VideoPipelineOutput`] or `tuple`: the frames, or `(frames,)` when `return_dict` is False.
        """
        callback_on_step_end_tensor_inputs = callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        check_bool(return_dict, "return_dict")
        height, width = self.base_size(height, width)
        refining = check_call_inputs(
            self, prompt, image, height, width, target_fps, num_frames, num_inference_steps, guidance_scale,
            negative_prompt, eta, num_videos_per_prompt, decode_chunk_size, generator, latents, prompt_embeds,
            negative_prompt_embeds, output_type, cross_attention_kwargs, clip_skip, replace_first_frame, refine,
            refiner_prompt,
            refiner_height, refiner_width, refiner_strength, refiner_num_inference_steps, refiner_guidance_scale,
            refiner_guidance_rescale, refiner_noise_mode, callback_on_step_end, callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        guidance = check_guidance_scale(guidance_scale, num_inference_steps)
        self._interrupt = False
        batch_size = prompt_batch_size(prompt, prompt_embeds)
        videos = batch_size * num_videos_per_prompt
        device = self._execution_device

        # 1. text, then the image: CLIP embedding and VAE latent (posterior drawn from the generator first)
        guided = any(guidance.needs_unconditional(i, num_inference_steps) for i in range(num_inference_steps))
        given_prompt_embeds, given_negative_embeds = prompt_embeds, negative_prompt_embeds
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, guided, negative_prompt, prompt_embeds, negative_prompt_embeds,
            clip_skip,
        )  # fmt: skip
        image_embeds, image_latent = self.encode_image(
            image, height, width, batch_size, num_videos_per_prompt, generator
        )

        # 2. the content encoder, once: the concatenated path and the context [text | latent tokens | CLIP tokens]
        encoded = self.content_encoder(image_latent, image_embeds, num_frames, prompt_embeds)
        cond_latents = encoded.image_latents  # (B*n, c, F, h, w)
        tensors = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        image_context = encoded.context[:, prompt_embeds.shape[1] :]
        # unconditional: the negative prompt and a zero CLIP embedding (VGen's `use_zero_infer`), the same latent
        uncond_image_context = None
        if guided:
            uncond_image_context = torch.cat(
                [image_context[:, : self.content_encoder.num_latent_tokens],
                 self.content_encoder.image_tokens(torch.zeros_like(image_embeds))], dim=1,
            )  # fmt: skip
        fps = torch.full((videos,), target_fps, device=device)

        # 3. base stage
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (videos, self.vae.config.latent_channels, num_frames, *image_latent.shape[-2:])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        latents = latents.to(device)
        before_step = None
        if replace_first_frame:
            given = image_latent[:, :, None].to(latents.dtype)  # (B*n, C, 1, h, w): frame 0 is the image
            before_step = replace_given_frames(given, latents[:, :, :1], self.scheduler.add_noise)
        latents = latents * self.scheduler.init_noise_sigma

        def predict(model_input: torch.Tensor, t: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
            context = torch.cat([tensors["prompt_embeds"], image_context], dim=1)
            conditioning, scalars = cond_latents, fps
            if self.do_classifier_free_guidance:
                uncond = torch.cat([tensors["negative_prompt_embeds"], uncond_image_context], dim=1)
                model_input, context = torch.cat([model_input] * 2), torch.cat([uncond, context])
                conditioning, scalars = torch.cat([cond_latents] * 2), torch.cat([fps] * 2)
            output = self.unet(
                torch.cat([model_input, conditioning], dim=1), t, encoder_hidden_states=context,
                scalar_conds={"fps": scalars}, cross_attention_kwargs=cross_attention_kwargs,
            ).sample  # fmt: skip
            if self.do_classifier_free_guidance:
                output = apply_guidance(*output.chunk(2), self.guidance_scale)
            return output

        refiner_steps = 0
        if refining:
            refiner_steps = num_inference_steps if refiner_num_inference_steps is None else refiner_num_inference_steps
            refiner_steps = min(max(int(refiner_steps * refiner_strength), 1), refiner_steps)
        with self.progress_bar(total=num_inference_steps + refiner_steps) as progress_bar:
            latents = denoise(
                self, self.scheduler, latents, predict, num_inference_steps=num_inference_steps, guidance=guidance,
                progress_bar=progress_bar, generator=generator, eta=eta,
                step_kwargs=step_noise_kwargs(self.scheduler, eta, generator),
                callback_on_step_end=callback_on_step_end,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs, tensors=tensors,
                before_step=before_step,
            )  # fmt: skip
            if replace_first_frame and not self.interrupt:
                latents = torch.cat([given, latents[:, :, 1:]], dim=2)

            # 4. refinement: decode, resize, encode, SDEdit with the refiner
            if refining and not self.interrupt:
                latents = self._refine(
                    latents, given_prompt_embeds, given_negative_embeds, prompt, refiner_prompt, negative_prompt,
                    num_videos_per_prompt, clip_skip, num_inference_steps, guidance_scale, refiner_height,
                    refiner_width, height, width, refiner_strength, refiner_num_inference_steps,
                    refiner_guidance_scale, refiner_guidance_rescale, refiner_noise_mode, decode_chunk_size,
                    generator, eta, cross_attention_kwargs, progress_bar, callback_on_step_end,
                    callback_on_step_end_tensor_inputs,
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

    def _refine(
        self, latents, prompt_embeds, negative_prompt_embeds, prompt, refiner_prompt, negative_prompt,
        num_videos_per_prompt, clip_skip, num_inference_steps, guidance_scale, refiner_height, refiner_width, height,
        width, strength, refiner_num_inference_steps, refiner_guidance_scale, guidance_rescale, noise_mode,
        decode_chunk_size, generator, eta, cross_attention_kwargs, progress_bar, callback_on_step_end,
        callback_on_step_end_tensor_inputs,
    ) -> torch.Tensor:  # fmt: skip
        """The refinement stage on the base stage's latents; returns the refined latents."""
        device = self._execution_device
        steps = num_inference_steps if refiner_num_inference_steps is None else refiner_num_inference_steps
        guidance = check_guidance_scale(
            guidance_scale if refiner_guidance_scale is None else refiner_guidance_scale, steps
        )
        guided = any(guidance.needs_unconditional(i, steps) for i in range(steps))
        if refiner_prompt is not None:
            prompt, prompt_embeds = refiner_prompt, None
        # the base's text layer: I2VGen-XL reads the penultimate layer of OpenCLIP-H (`clip_skip=1`), which ModelScope's
        # video refiners were trained on too (their diffusers folders hold the text encoder cut after that layer)
        text, negative = self.encode_prompt(
            prompt, device, num_videos_per_prompt, guided, negative_prompt, prompt_embeds, negative_prompt_embeds,
            clip_skip,
        )  # fmt: skip
        video = decode_latents(self.vae, latents, decode_chunk_size)  # (B, 3, F, H, W) in [-1, 1]
        height, width = self.refiner_size(refiner_height, refiner_width, height, width)
        video = resize_video(video, height, width).to(self.vae.dtype)
        video_latents = encode_video(self.vae, video, generator, decode_chunk_size).to(self.refiner_unet.dtype)
        return refine_latents(
            self, self.refiner_unet, self.refiner_scheduler, video_latents,
            {"prompt_embeds": text, "negative_prompt_embeds": negative}, strength=strength,
            num_inference_steps=steps, guidance=guidance, guidance_rescale=guidance_rescale, noise_mode=noise_mode,
            generator=generator, eta=eta, cross_attention_kwargs=cross_attention_kwargs, progress_bar=progress_bar,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )  # fmt: skip
