"""Imagen Video: a pixel-space cascade of video diffusion models (Ho et al. 2022, https://huggingface.co/papers/2210.02303).

A frozen T5 encoder reads the prompt; a base `UNet3DModel` samples a small, short video; each following stage, a
temporal (TSR) or spatial (SSR) super-resolution `UNet3DModel`, samples a larger video conditioned on the previous
stage's output, upsampled to its size, noised to a fixed augmentation level and concatenated to its noisy sample
(see `cascade.py`). Every stage has its own scheduler: any diffusers scheduler with `prediction_type="v_prediction"`
for a teacher, or `VDistilledScheduler` for a progressively distilled student (which takes the guidance weight as a
UNet input and runs one pass per step).

The stage components (`unet_<i>`, `scheduler_<i>`) and the cascade's editing live in `stages.py`; sampling drives
the shared denoising loop (`pipelines/denoising.py`) once per stage.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor
from transformers import T5EncoderModel, T5Tokenizer

from ...guidance import (
    DynamicThresholding,
    GuidanceSchedule,
    guided_prediction,
    oscillating_guidance_scales,
    scheduler_alpha_sigma,
    takes_guidance,
)
from ...models.unet_3d import UNet3DModel
from ...schedulers.diffusion_math import check_restart_timestep
from ..checks import (
    check_bool,
    check_callback_arguments,
    check_generator,
    check_output_type,
    check_positive_int,
    check_prompt_arguments,
    check_video_memory,
    is_int,
    is_number,
    prompt_batch_size,
)
from ..denoising import (
    DenoisingPipelineMixin,
    callback_tensor_inputs,
    denoise,
    restart,
    scheduler_restart_antithetic,
    scheduler_restart_timestep,
)
from ..pipeline_utils import VideoDiffusionPipeline, VideoPipelineOutput, postprocess_video
from ..prompts import encode_t5_prompt
from .cascade import (
    GUIDANCE_KINDS,
    NOISE_AUG_CONDITION,
    StageSpec,
    augment_condition,
    check_augmentation_level,
    check_keeps_noise_schedule,
    noise_aug_condition_value,
    stage_guidance,
    stage_guidance_scales,
    stage_model_input,
    upsample_condition,
)
from .stages import DEFAULT_BASE_NUM_FRAMES, CascadeStage, CascadeStagesMixin, stage_component_names

__all__ = [
    "DEFAULT_BASE_NUM_FRAMES",
    "GUIDANCE_KINDS",
    "CascadeStage",
    "ImagenVideoPipeline",
    "ImagenVideoPipelineOutput",
    "oscillating_guidance_scales",
    "stage_guidance",
    "stage_guidance_scales",
]

DEFAULT_NUM_INFERENCE_STEPS = 50
"""Steps of a stage whose scheduler does not know its own count (`default_num_inference_steps`)."""

# ---------------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ImagenVideoPipelineOutput(VideoPipelineOutput):
    """Output of [`ImagenVideoPipeline`].

    Args:
        frames: The final videos, as [`VideoPipelineOutput`] gives them ("latent": the last stage's raw output
            `(B, 3, F, H, W)`, about [-1, 1]).
        intermediate_frames (`list`, *optional*): With `return_intermediate=True`, the output of every stage, first
            stage first (the last one is `frames`), each in the requested `output_type` at that stage's size.
    """

    intermediate_frames: list[np.ndarray | torch.Tensor | list[list[PIL.Image.Image]]] | None = None


# ---------------------------------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------------------------------


class ImagenVideoPipeline(CascadeStagesMixin, DenoisingPipelineMixin, VideoDiffusionPipeline):
    r"""Text-to-video generation with a pixel-space cascade: base, temporal and spatial super-resolution stages.

    Stage `i` is `unet_<i>` and `scheduler_<i>` with the kind and factor `stages[i]` ([`StageSpec`]): stage 0 is a
    "base" stage, every later one a "tsr" (frames x factor) or "ssr" (height and width x factor) stage whose UNet takes
    its noisy sample and the upsampled, noise-augmented previous output concatenated along channels (`in_channels =
    2 * out_channels` for 3-channel pixels). Any order and count of super-resolution stages works, e.g. the paper's
    base -> TSR -> SSR -> SSR -> TSR -> SSR -> TSR.

    Build one from stages with [`from_stages`], load a saved one with `from_pretrained(folder)` (the whole cascade),
    and edit it with [`replace_stage`], [`add_stage`] and [`drop_stage`].

    Loading: `ImagenVideoPipeline.from_pretrained` (and `VideoDiffusionPipeline.from_pretrained`) load any number of
    stages. `diffusers.DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` also returns this class:
    diffusers reads the components from the `__init__` signature, which shows the fixed components only, and the stage
    components come from `model_index.json` (`extract_init_dict`). Components passed as keywords to replace saved
    ones (`unet_1=...`) work with this class's `from_pretrained` only.

    Args:
        text_encoder ([`~transformers.T5EncoderModel`]): Frozen text encoder (T5-XXL in the paper).
        tokenizer ([`~transformers.T5Tokenizer`]): Its tokenizer.
        stages (`list[StageSpec | dict]`): The kind and factor of every stage, base first; saved in
            `model_index.json`.
        unet_0, scheduler_0, unet_1, scheduler_1, ... : The `UNet3DModel` and the scheduler of each stage, one pair
            per entry of `stages` (keyword arguments; other names are refused).

    Examples:

        ```py
        >>> from diffusers.utils import export_to_video
        >>> from diffusers_video import ImagenVideoPipeline

        >>> pipe = ImagenVideoPipeline.from_pretrained("path/to/imagen_video")
        >>> out = pipe("a red circle moving right", num_inference_steps=[64, 32, 32], guidance=["oscillating",
        ...     "constant", "constant"], guidance_scale=6.0, return_intermediate=True)
        >>> export_to_video(out.frames[0], "circle.mp4", fps=8)
        ```
    """

    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        text_encoder: T5EncoderModel,
        tokenizer: T5Tokenizer,
        stages: list | tuple = (),
        **stage_components,
    ):
        super().__init__()
        self.register_modules(text_encoder=text_encoder, tokenizer=tokenizer)
        specs = [StageSpec.from_dict(spec) for spec in stages]
        expected = stage_component_names(len(specs))
        unknown = sorted(set(stage_components) - set(expected))
        missing = [name for name in expected if name not in stage_components]
        if unknown or missing:
            raise ValueError(
                f"{type(self).__name__} takes `unet_<i>` and `scheduler_<i>` for each of its {len(specs)} `stages` "
                f"({expected}); unexpected: {unknown}, missing: {missing}."
            )
        unets = [stage_components[f"unet_{i}"] for i in range(len(specs))]
        schedulers = [stage_components[f"scheduler_{i}"] for i in range(len(specs))]
        self._set_stages(specs, unets, schedulers)

    @classmethod
    def from_stages(
        cls,
        text_encoder: T5EncoderModel,
        tokenizer: T5Tokenizer,
        stages: Sequence[CascadeStage | tuple[StageSpec | dict | str, UNet3DModel, Any]],
    ) -> ImagenVideoPipeline:
        """A pipeline from `(spec, unet, scheduler)` triples, base first (`spec` a `StageSpec`, dict or "base")."""
        specs, components = [], {}
        for i, stage in enumerate(stages):
            if not isinstance(stage, (tuple, list)) or len(stage) != 3:
                raise ValueError(f"Stage {i} must be a (spec, unet, scheduler) triple but is {stage!r}.")
            spec, unet, scheduler = stage
            specs.append(StageSpec(spec) if isinstance(spec, str) else StageSpec.from_dict(spec))
            components[f"unet_{i}"], components[f"scheduler_{i}"] = unet, scheduler
        return cls(text_encoder=text_encoder, tokenizer=tokenizer, stages=specs, **components)

    # ------------------------------------------------------------------ diffusers' component registry

    def default_num_inference_steps(self, index: int) -> int:
        """Steps of stage `index` when the call gives none: its scheduler's `default_num_inference_steps` (a
        distilled student's `VDistilledScheduler` records its own count), else `DEFAULT_NUM_INFERENCE_STEPS`."""
        steps = getattr(self.stages[index].scheduler, "default_num_inference_steps", None)
        return DEFAULT_NUM_INFERENCE_STEPS if steps is None else steps

    def check_inputs(
        self,
        prompt: str | list[str] | None,
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: list[Any],
        guidance_scale: list[Any],
        guidance: list[Any],
        noise_aug_level: list[Any],
        dynamic_thresholding_percentile: list[Any],
        negative_prompt: str | list[str] | None,
        num_videos_per_prompt: int,
        generator: torch.Generator | list[torch.Generator] | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        output_type: str,
        callback_on_step_end: Callable | None,
        callback_on_step_end_tensor_inputs: list[str] | None,
        restart_timestep: list[Any] | None = None,
        restart_antithetic: list[Any] | None = None,
    ) -> list[tuple[int, int, int]]:
        """Raises a `ValueError` (a `TypeError` for a wrong type) naming the bad argument and its value; returns the
        stage sizes. Per-stage arguments are already one value per stage. No model runs before these checks."""
        self.check_stages(*zip(*self.stages))  # stages may have been edited since construction

        for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
            if not is_int(value) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1 but is {value!r}.")
        sizes = self.stage_sizes(num_frames, height, width)
        for i, ((frames, h, w), (spec, unet, scheduler)) in enumerate(zip(sizes, self.stages)):
            factor = unet.downsample_factor if hasattr(unet, "downsample_factor") else 1
            if h % factor or w % factor:
                raise ValueError(
                    f"Stage {i} ({spec}) produces {h}x{w} frames, which its UNet (downsampling {factor}x) cannot "
                    f"take: choose `height` and `width` so that every stage's size is divisible by its UNet's "
                    f"downsampling (stage sizes: {sizes})."
                )
            config = unet.config
            if getattr(config, "frame_position_encoding", None) == "learned" or getattr(
                config, "frame_adaptor", False
            ):
                if frames > config.max_frames:
                    raise ValueError(
                        f"Stage {i} ({spec}) produces {frames} frames but its UNet supports at most `max_frames`="
                        f"{config.max_frames}."
                    )

            check_keeps_noise_schedule(scheduler, i)
            steps = num_inference_steps[i]
            check_positive_int(steps, f"num_inference_steps` of stage `{i}")
            try:
                scheduler.set_timesteps(steps, device="cpu")  # refuses step counts its grid cannot make
            except ValueError as error:
                raise ValueError(
                    f"`num_inference_steps`={steps} does not fit stage {i}'s scheduler: {error}"
                ) from error

            kind = guidance[i]
            if not (isinstance(kind, GuidanceSchedule) or kind in GUIDANCE_KINDS):
                raise ValueError(
                    f"`guidance` of stage {i} must be one of {GUIDANCE_KINDS} or a GuidanceSchedule but is {kind!r}."
                )
            scale = guidance_scale[i]
            if not is_number(scale) or scale < 0:
                raise ValueError(f"`guidance_scale` of stage {i} must be a number >= 0 but is {scale!r}.")
            try:
                weights = stage_guidance_scales(kind, scale, steps)
            except ValueError as error:  # e.g. a schedule of one weight per step for another step count
                raise ValueError(f"`guidance` of stage {i} does not fit its {steps} steps: {error}") from error
            if any(weight < 0 for weight in weights):
                raise ValueError(f"The guidance weights of stage {i} must be >= 0 but are {weights}.")

            restart_at = None if restart_timestep is None else restart_timestep[i]
            if restart_at is not None:
                check_restart_timestep(
                    restart_at, scheduler.config.num_train_timesteps, not scheduler.timesteps.is_floating_point(),
                    name=f"restart_timestep` of stage `{i}",
                )  # fmt: skip
            antithetic = None if restart_antithetic is None else restart_antithetic[i]
            if antithetic is not None:  # None: the stage scheduler's own
                check_bool(antithetic, f"restart_antithetic` of stage `{i}")

            level = noise_aug_level[i]
            if not is_number(level):
                raise ValueError(f"`noise_aug_level` of stage {i} must be a number in [0, 1] but is {level!r}.")
            check_augmentation_level(level, name=f"noise_aug_level` of stage `{i}")
            percentile = dynamic_thresholding_percentile[i]
            if percentile is not None:
                if not is_number(percentile) or not 0.0 < percentile <= 1.0:
                    raise ValueError(
                        f"`dynamic_thresholding_percentile` of stage {i} must be in (0, 1] or None but is "
                        f"{percentile!r}."
                    )
                if getattr(scheduler, "init_noise_sigma", 1.0) != 1.0:
                    raise ValueError(
                        f"Dynamic thresholding needs a variance-preserving scheduler (x_t = alpha x_0 + sigma eps), "
                        f"but stage {i}'s {type(scheduler).__name__} has `init_noise_sigma`="
                        f"{scheduler.init_noise_sigma}: pass `dynamic_thresholding_percentile=None` for it."
                    )

        check_positive_int(num_videos_per_prompt, "num_videos_per_prompt")

        # prompts and embeddings
        text_dim = self.text_encoder.config.d_model if self.text_encoder is not None else None
        check_prompt_arguments(prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, text_dim)
        prompts = prompt_batch_size(prompt, prompt_embeds)
        total = prompts * num_videos_per_prompt
        check_generator(generator, total)
        check_output_type(output_type)

        # memory: every stage's output is kept until the end, and the last one is also returned as float32 frames
        stage_videos = [
            ((total, unet.config.out_channels, *size), unet.dtype.itemsize) for size, unet in zip(sizes, self.unets)
        ]
        final = [((total, self.unets[-1].config.out_channels, *sizes[-1]), 4)] if output_type != "latent" else []
        check_video_memory(
            stage_videos + final,
            dict(num_frames=num_frames, height=height, width=width, num_videos_per_prompt=num_videos_per_prompt),
            self._execution_device, prompts,
        )  # fmt: skip
        check_callback_arguments(
            callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs
        )
        return sizes

    # ------------------------------------------------------------------ prompt encoding

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device,
        num_videos_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """T5 embeddings `(B * num_videos_per_prompt, tokens, d_model)` of the prompts and, for guidance, the negative
        prompts (the empty prompt by default).

        See [`~diffusers_video.pipelines.prompts.encode_t5_prompt`].
        """
        return encode_t5_prompt(
            self.tokenizer, self.text_encoder, prompt, device, num_videos_per_prompt, do_classifier_free_guidance,
            negative_prompt, prompt_embeds, negative_prompt_embeds,
        )  # fmt: skip

    # ------------------------------------------------------------------ sampling

    @property
    def stage_index(self) -> int:
        """Index of the stage being sampled (callbacks may read it)."""
        return self._stage_index

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | list[int] | dict[int, int] | None = None,
        guidance_scale: float | list[float] | dict[int, float] = 6.0,
        guidance: str | GuidanceSchedule | list | dict = "constant",
        noise_aug_level: float | list[float] | dict[int, float] = 0.1,
        dynamic_thresholding_percentile: float | None | list | dict = 0.995,
        restart_timestep: float | None | list | dict = None,
        restart_antithetic: bool | None | list | dict = None,
        negative_prompt: str | list[str] | None = None,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        return_intermediate: bool = False,
        callback_on_step_end: Callable[[DiffusionPipeline, int, torch.Tensor, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
    ) -> ImagenVideoPipelineOutput | tuple:
        r"""Generates videos from text through every stage of the cascade.

        Per-stage arguments (marked *per stage*) take one value for all stages, a list with one value per stage, or
        a dict `{stage index: value}` (other stages keep the default).

        Args:
            prompt (`str` or `list[str]`, *optional*): The prompt or prompts; or pass `prompt_embeds`.
            num_frames (`int`, *optional*): Frames of the final video; each stage's count is derived backwards
                through the TSR factors (which must divide it). Defaults to `DEFAULT_BASE_NUM_FRAMES` (8) times the
                TSR factors.
            height (`int`, *optional*): Height of the final video in pixels, derived backwards through the SSR
                factors; defaults to the base UNet's `sample_size` times the SSR factors.
            width (`int`, *optional*): Width, as `height`.
            num_inference_steps (`int`, *per stage*, *optional*): Sampling steps of each stage; the scheduler must be
                able to make the count. A stage without a value takes its scheduler's `default_num_inference_steps`
                (a distilled student's scheduler records its own step count, e.g. 8), else 50.
            guidance_scale (`float`, *per stage*, defaults to 6.0): Classifier-free guidance weight `w` of
                `uncond + w * (cond - uncond)` (diffusers' convention: 1 is no guidance, and a teacher then makes one
                pass per step); the high weight with "oscillating" guidance. Must be >= 0.
            guidance (`str` or `GuidanceSchedule`, *per stage*, defaults to "constant"): "constant", "oscillating"
                (see [`oscillating_guidance_scales`]), or a guidance object giving the weight of every step. A
                distilled student (a UNet with a "guidance_scale" scalar condition) takes the weight of each step
                as input and makes one pass per step.
            noise_aug_level (`float`, *per stage*, defaults to 0.1): Noise-conditioning augmentation level in [0, 1]
                of each super-resolution stage's conditioning video (`augment_condition`); the stage's UNet is told
                `1000 * level` through its "noise_aug_level" condition. Ignored for the base stage.
            dynamic_thresholding_percentile (`float` or `None`, *per stage*, defaults to 0.995): Imagen's dynamic
                thresholding of the predicted clean video at every step, with this percentile in (0, 1]; None turns
                it off for a stage.
            restart_timestep (`float` or `None`, *per stage*, *optional*): Restart the stage's finished video once at
                this timestep (see [`~pipelines.denoising.restart`]): noise it back there with fresh noise and take the
                model's clean prediction, one more model call at the stage's last guidance weight. None takes the
                stage scheduler's `restart_timestep` (a few-step student's `VDistilledScheduler` may record one: the
                demo cascade's last stage restarts at 31.25, which removes most of its grain); 0 turns it off.
            restart_antithetic (`bool` or `None`, *per stage*, *optional*): Make a stage's restart an antithetic pair
                (see [`~pipelines.denoising.restart`]): the clean predictions from the fresh noise and from its
                negation, averaged; one more model call. None takes the stage scheduler's `restart_antithetic` (the
                demo's last stage records True).
            negative_prompt (`str` or `list[str]`, *optional*): What not to generate; the empty prompt by default.
            num_videos_per_prompt (`int`, defaults to 1): Videos per prompt.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Random generator(s). Per stage, the
                augmentation noise of the conditioning video is drawn first, then the initial noise.
            prompt_embeds (`torch.Tensor`, *optional*): T5 embeddings `(B, tokens, d_model)` instead of `prompt`.
            negative_prompt_embeds (`torch.Tensor`, *optional*): Embeddings instead of `negative_prompt`.
            output_type (`str`, defaults to "np"): "np" (`(B, F, H, W, 3)` in [0, 1]), "pt" (`(B, F, 3, H, W)`), "pil"
                (lists of images) or "latent" (the last stage's raw output `(B, 3, F, H, W)`: pixels, unclipped).
            return_dict (`bool`, defaults to `True`): Return an [`ImagenVideoPipelineOutput`] instead of a tuple.
            return_intermediate (`bool`, defaults to `False`): Also return the output of every stage
                (`intermediate_frames`, in `output_type`).
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): Called
                after each step of each stage as `callback_on_step_end(pipe, step_index, timestep, callback_kwargs)`;
                `step_index` counts the steps of the current stage (`pipe.stage_index`); the tensors of the returned
                dict replace the named ones ("latents" is the stage's current noisy video).
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): Names from
                `_callback_tensor_inputs`.

        Returns:
            [`ImagenVideoPipelineOutput`] or `tuple`: `(frames,)`, or `(frames, intermediate_frames)` with
            `return_intermediate=True`, when `return_dict` is False.

        Raises:
            ValueError, TypeError: Before any model runs, naming the bad argument and its value; a call whose video
                tensors would not fit in the device's memory is refused with the GiB it needs (`check_video_memory`).
        """
        callback_on_step_end_tensor_inputs = callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        check_bool(return_dict, "return_dict")
        check_bool(return_intermediate, "return_intermediate")

        # 0. defaults and per-stage arguments
        default_frames, default_height, default_width = (
            self.default_size() if None in (num_frames, height, width) else (None, None, None)
        )
        num_frames = default_frames if num_frames is None else num_frames
        height = default_height if height is None else height
        width = default_width if width is None else width
        steps = [
            self.default_num_inference_steps(i) if n is None else n
            for i, n in enumerate(self.per_stage(num_inference_steps, "num_inference_steps", None))
        ]
        scales = self.per_stage(guidance_scale, "guidance_scale", 6.0)
        kinds = self.per_stage(guidance, "guidance", "constant")
        levels = self.per_stage(noise_aug_level, "noise_aug_level", 0.1)
        percentiles = self.per_stage(dynamic_thresholding_percentile, "dynamic_thresholding_percentile", 0.995)
        restarts = self.per_stage(restart_timestep, "restart_timestep", None)
        antithetics = self.per_stage(restart_antithetic, "restart_antithetic", None)

        # 1. check inputs, before any model runs
        sizes = self.check_inputs(
            prompt, num_frames, height, width, steps, scales, kinds, levels, percentiles, negative_prompt,
            num_videos_per_prompt, generator, prompt_embeds, negative_prompt_embeds, output_type,
            callback_on_step_end, callback_on_step_end_tensor_inputs, restarts, antithetics,
        )  # fmt: skip
        restarts = [
            scheduler_restart_timestep(scheduler, value) for (_, _, scheduler), value in zip(self.stages, restarts)
        ]
        antithetics = [
            scheduler_restart_antithetic(scheduler, value)
            for (_, _, scheduler), value in zip(self.stages, antithetics)
        ]
        guidances = [stage_guidance(kind, scale) for kind, scale in zip(kinds, scales)]
        needs_uncond = any(
            not takes_guidance(stage.unet) and any(w != 1.0 for w in stage_guidance.scales(n))
            for stage, stage_guidance, n in zip(self.stages, guidances, steps)
        )
        self._interrupt = False
        batch_size = prompt_batch_size(prompt, prompt_embeds)
        device = self._execution_device

        # 2. encode the prompt
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, needs_uncond, negative_prompt, prompt_embeds, negative_prompt_embeds
        )
        tensors = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        total = batch_size * num_videos_per_prompt

        # 3. the cascade
        video = None  # (B, C, F, H, W) output of the previous stage
        outputs = []
        with self.progress_bar(total=sum(steps) + sum(t is not None for t in restarts)) as progress_bar:
            for index, (spec, unet, scheduler) in enumerate(self.stages):
                self._stage_index = index
                frames, h, w = sizes[index]
                dtype = unet.dtype

                # 3.1 conditioning: the previous output, clipped, upsampled and noised to the stage's level
                condition, scalar_conds = None, {}
                if spec.is_super_resolution:
                    upsampled = upsample_condition(video.clamp(-1.0, 1.0), spec).to(dtype)  # (B, C, F, H, W)
                    noise = randn_tensor(upsampled.shape, generator=generator, device=device, dtype=dtype)
                    condition = augment_condition(upsampled, float(levels[index]), noise)
                if NOISE_AUG_CONDITION in (getattr(unet.config, "scalar_conditions", ()) or ()):
                    level = float(levels[index]) if spec.is_super_resolution else 0.0
                    scalar_conds[NOISE_AUG_CONDITION] = torch.full(
                        (total,), noise_aug_condition_value(level), device=device
                    )

                # 3.2 initial noise and timesteps
                scheduler.set_timesteps(steps[index], device=device)
                shape = (total, unet.config.out_channels, frames, h, w)
                sample = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
                sample = sample * scheduler.init_noise_sigma
                thresholding = DynamicThresholding(percentiles[index]) if percentiles[index] is not None else None

                # 3.3 denoising loop
                def predict(model_input, t, i, sample, unet=unet, scheduler=scheduler, condition=condition,
                            scalar_conds=scalar_conds, thresholding=thresholding, dtype=dtype,
                            rescale=guidances[index].guidance_rescale):  # fmt: skip
                    model_input = stage_model_input(model_input, condition)
                    uncond = tensors["negative_prompt_embeds"]
                    # guided v-prediction: two passes for a teacher (one at weight 1), one for a distilled student
                    prediction = guided_prediction(
                        unet, model_input, t, tensors["prompt_embeds"].to(dtype),
                        uncond.to(dtype) if uncond is not None else None, self.guidance_scale, scalar_conds,
                        guidance_rescale=rescale,
                    )  # fmt: skip  # (B, C, F, H, W)
                    if thresholding is not None:
                        alpha, sigma = scheduler_alpha_sigma(scheduler, t)
                        prediction = thresholding(
                            prediction, sample, alpha.to(device), sigma.to(device), scheduler.config.prediction_type
                        )
                    return prediction

                sample = denoise(
                    self, scheduler, sample, predict, num_inference_steps=steps[index], guidance=guidances[index],
                    progress_bar=progress_bar, generator=generator, callback_on_step_end=callback_on_step_end,
                    callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs, tensors=tensors,
                )  # fmt: skip
                if restarts[index] is not None and not self.interrupt:
                    # one clean prediction from a low noise level, at the weight of the last step (see `restart`)
                    noise = randn_tensor(sample.shape, generator=generator, device=device, dtype=dtype)
                    sample = restart(scheduler, sample, predict, restarts[index], noise, antithetics[index])
                    progress_bar.update()
                video = sample
                outputs.append(sample)

        # 4. frames
        def as_output(stage_video: torch.Tensor):
            if output_type == "latent":
                return stage_video
            return postprocess_video(stage_video.float().clamp(-1.0, 1.0), output_type)

        frames = as_output(video)
        intermediates = [as_output(v) for v in outputs[:-1]] + [frames] if return_intermediate else None

        # 5. offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (frames, intermediates) if return_intermediate else (frames,)
        return ImagenVideoPipelineOutput(frames=frames, intermediate_frames=intermediates)


def _visible_init_signature(init: Callable) -> inspect.Signature:
    """`__init__`'s signature without `**stage_components`, which diffusers would take for a required component."""
    signature = inspect.signature(init)
    parameters = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return signature.replace(parameters=parameters)


# diffusers reads a pipeline's components from the `__init__` signature (`DiffusionPipeline._get_signature_keys`, also
# called on the base class by `diffusers.DiffusionPipeline.from_pretrained`): it shows the fixed components only
ImagenVideoPipeline.__init__.__signature__ = _visible_init_signature(ImagenVideoPipeline.__init__)
