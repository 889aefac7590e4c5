"""Imagen Video: a pixel-space cascade of video diffusion models (Ho et al. 2022, https://huggingface.co/papers/2210.02303).

A frozen T5 encoder reads the prompt; a base `UNet3DModel` samples a small, short video; each following stage, a
temporal (TSR) or spatial (SSR) super-resolution `UNet3DModel`, samples a larger video conditioned on the previous
stage's output, upsampled to its size, noised to a fixed augmentation level and concatenated to its noisy sample
(see `cascade.py`). Every stage has its own scheduler: any diffusers scheduler with `prediction_type="v_prediction"`
for a teacher, or `VDistilledScheduler` for a progressively distilled student (which takes the guidance weight as a
UNet input and runs one pass per step).

Saving a variable number of stages: diffusers registers a pipeline's components from its `__init__` signature. Here
the stage components are named `unet_<i>` and `scheduler_<i>` (`i` = 0 for the base) and the stage kinds and factors
are the `stages` entry of `model_index.json`; the class tells diffusers those names while a folder is checked and
loaded (`_components_context`, used by `VideoDiffusionPipeline.from_pretrained`) and, for a pipeline instance, from its
config (`_get_signature_keys`), so saving, loading, `.to()`, offloading and `components` see every stage.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.configuration_utils import FrozenDict
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from transformers import T5EncoderModel, T5Tokenizer

from ...guidance import (
    GUIDANCE_CONDITION,
    DynamicThresholding,
    GuidanceSchedule,
    guided_prediction,
    scheduler_alpha_sigma,
    takes_guidance,
)
from ...models.unet_3d import UNet3DModel
from ..checks import check_output_type, check_prompt_arguments
from ..pipeline_utils import VideoDiffusionPipeline, VideoPipelineOutput, postprocess_video
from .cascade import (
    NOISE_AUG_CONDITION,
    StageSpec,
    augment_condition,
    check_augmentation_level,
    check_stage_unet,
    noise_aug_condition_value,
    stage_model_input,
    upsample_condition,
)

__all__ = [
    "DEFAULT_BASE_NUM_FRAMES",
    "GUIDANCE_KINDS",
    "CascadeStage",
    "ImagenVideoPipeline",
    "ImagenVideoPipelineOutput",
    "oscillating_guidance_scales",
    "stage_guidance_scales",
]

GUIDANCE_KINDS = ("constant", "oscillating")
"""Guidance schedules a stage can be given by name (or pass a `diffusers_video.guidance.GuidanceSchedule`)."""

DEFAULT_BASE_NUM_FRAMES = 8
"""Frames of the base stage when `num_frames` is not given (the final count is this times the TSR factors)."""

# Names of the stage components in `model_index.json` and on the pipeline.
_STAGE_COMPONENT = re.compile(r"(unet|scheduler)_(\d+)")
# The stage components a folder being checked and loaded has (see `ImagenVideoPipeline._components_context`).
_LOADING_STAGES: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "imagen_video_loading_stages", default=None
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _stage_names(num_stages: int) -> list[str]:
    return [f"{kind}_{i}" for i in range(num_stages) for kind in ("unet", "scheduler")]


# ---------------------------------------------------------------------------------------------------------------------
# Guidance weights per step
# ---------------------------------------------------------------------------------------------------------------------


def oscillating_guidance_scales(
    num_steps: int,
    high: float,
    low: float = 1.0,
    warmup_fraction: float = 0.1,
    oscillate_fraction: float = 0.5,
) -> list[float]:
    """Imagen Video's oscillating guidance: the weight of each of `num_steps` sampling steps, first step first.

    The paper (Section 2.6) holds a high weight for some initial steps, then alternates high and low weights, which
    keeps the text alignment of the high weight while limiting its saturation artefacts. Exactly, with
    `k = floor(warmup_fraction * num_steps)` and `m = max(k, floor(oscillate_fraction * num_steps))`:

    - steps `i < k` use `high`;
    - steps `k <= i < m` alternate, starting with `high`: `high` when `i - k` is even, `low` when it is odd;
    - steps `i >= m` use `low`.

    For 8 steps (defaults): `[high, low, high, low, low, low, low, low]`; for 20 steps: 3 x `high`, then `low, high`
    four times... up to step 10, then `low`. Weights use diffusers' convention `uncond + w * (cond - uncond)`, so
    `low = 1` is the conditional prediction alone (a teacher then skips its unconditional pass).

    Args:
        num_steps (`int`): Sampling steps, at least 1.
        high (`float`): The high weight.
        low (`float`, defaults to 1.0): The low weight.
        warmup_fraction (`float`, defaults to 0.1): Share of the steps, in [0, 1], held at `high` first.
        oscillate_fraction (`float`, defaults to 0.5): Share of the steps, in [0, 1], before which the weights
            oscillate (warm-up included).

    Returns:
        `list[float]`: `num_steps` weights.
    """
    if not _is_int(num_steps) or num_steps < 1:
        raise ValueError(f"`num_steps` must be an integer >= 1 but is {num_steps!r}.")
    for name, value in (("high", high), ("low", low)):
        if not _is_number(value):
            raise ValueError(f"`{name}` must be a finite number but is {value!r}.")
    for name, value in (("warmup_fraction", warmup_fraction), ("oscillate_fraction", oscillate_fraction)):
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"`{name}` must be a number in [0, 1] but is {value!r}.")
    warmup = math.floor(warmup_fraction * num_steps)
    stop = max(warmup, math.floor(oscillate_fraction * num_steps))
    weights = []
    for i in range(num_steps):
        if i < warmup or (i < stop and (i - warmup) % 2 == 0):
            weights.append(float(high))
        else:
            weights.append(float(low))
    return weights


def stage_guidance_scales(guidance: str | GuidanceSchedule, guidance_scale: float, num_steps: int) -> list[float]:
    """The guidance weight of each sampling step of one stage.

    Args:
        guidance (`str` or `GuidanceSchedule`): "constant" (`guidance_scale` at every step), "oscillating"
            (`oscillating_guidance_scales(num_steps, high=guidance_scale)`), or a guidance object of
            `diffusers_video.guidance` whose `scales(num_steps)` are used as they are (`guidance_scale` is ignored).
        guidance_scale (`float`): The weight (the high weight when oscillating), diffusers' convention.
        num_steps (`int`): The stage's sampling steps.

    Returns:
        `list[float]`: One weight per step.
    """
    if isinstance(guidance, GuidanceSchedule):
        return [float(w) for w in guidance.scales(num_steps)]
    if guidance == "constant":
        return [float(guidance_scale)] * num_steps
    if guidance == "oscillating":
        return oscillating_guidance_scales(num_steps, guidance_scale)
    raise ValueError(f"`guidance` must be one of {GUIDANCE_KINDS} or a GuidanceSchedule but is {guidance!r}.")


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


class CascadeStage(NamedTuple):
    """One stage of the cascade: what it does to the size, its model and its scheduler."""

    spec: StageSpec
    unet: UNet3DModel
    scheduler: Any

    @property
    def reads_text(self) -> bool:
        """Whether the stage's UNet has text cross-attention. A fully convolutional SR stage does not: guidance
        would only repeat its pass, so it is sampled with weight 1."""
        config = self.unet.config
        blocks = [*config.down_block_types, *config.up_block_types, config.mid_block_type or ""]
        return any("CrossAttn" in block for block in blocks)


# ---------------------------------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------------------------------


class _StageTypes(dict):
    """`_get_signature_types` of the pipeline: stage components have the types of `unet_<i>` / `scheduler_<i>`."""

    def __missing__(self, key: str):
        match = _STAGE_COMPONENT.fullmatch(key)
        if match is None:
            raise KeyError(key)
        return (UNet3DModel,) if match.group(1) == "unet" else (SchedulerMixin,)


class ImagenVideoPipeline(VideoDiffusionPipeline):
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
        expected = _stage_names(len(specs))
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

    @classmethod
    def _components_context(cls, index: dict[str, Any]) -> contextlib.AbstractContextManager:
        """While a folder with this `model_index.json` is checked and loaded, its stage components are expected."""
        stages = index.get("stages")
        if isinstance(stages, list):
            count = len(stages)
        else:  # no readable `stages`: expect the stage components the folder has (loading then names the problem)
            indices = [int(m.group(2)) for m in map(_STAGE_COMPONENT.fullmatch, index) if m is not None]
            count = max(indices, default=-1) + 1

        @contextlib.contextmanager
        def context():
            token = _LOADING_STAGES.set(count)
            try:
                yield
            finally:
                _LOADING_STAGES.reset(token)

        return context()

    @classmethod
    def _get_signature_keys(cls, obj):
        expected, optional = super()._get_signature_keys(obj)
        if isinstance(obj, DiffusionPipeline):
            count = len(obj.config.get("stages", ()))
        else:
            count = _LOADING_STAGES.get() or 0
        return sorted({*expected, *_stage_names(count)}), optional

    @classmethod
    def _get_signature_types(cls):
        types = _StageTypes(super()._get_signature_types())
        for name in _stage_names(_LOADING_STAGES.get() or 0):
            types[name] = types[name]  # explicit entries for the folder being loaded (`dict.get` sees them)
        return types

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        # the stage components of `model_index.json` are `__init__` keyword arguments that its signature does not show
        stage_entries = {key: value for key, value in config_dict.items() if _STAGE_COMPONENT.fullmatch(key)}
        rest = {key: value for key, value in config_dict.items() if key not in stage_entries}
        init_dict, unused_kwargs, hidden = super().extract_init_dict(rest, **kwargs)
        return {**init_dict, **stage_entries}, unused_kwargs, hidden

    @property
    def model_cpu_offload_seq(self) -> str:
        return "->".join(["text_encoder", *(f"unet_{i}" for i in range(self.num_stages))])

    # ------------------------------------------------------------------ stages

    @property
    def num_stages(self) -> int:
        return len(self.config.stages)

    @property
    def stage_specs(self) -> tuple[StageSpec, ...]:
        """The kind and factor of every stage, base first."""
        return tuple(StageSpec.from_dict(spec) for spec in self.config.stages)

    @property
    def stages(self) -> tuple[CascadeStage, ...]:
        """Every stage as `(spec, unet, scheduler)`, base first."""
        return tuple(
            CascadeStage(spec, getattr(self, f"unet_{i}"), getattr(self, f"scheduler_{i}"))
            for i, spec in enumerate(self.stage_specs)
        )

    @staticmethod
    def check_stages(specs: Sequence[StageSpec], unets: Sequence[Any], schedulers: Sequence[Any]) -> None:
        """Raises a `ValueError` naming the stage when the stages cannot run as a cascade.

        Checked: one UNet and one scheduler per spec; stage 0 is the only "base" stage; each UNet's `in_channels`
        fits its sample and conditioning (`check_stage_unet`, the conditioning having the previous stage's
        `out_channels`); each UNet's scalar conditions are ones the pipeline gives ("noise_aug_level",
        "guidance_scale"); each scheduler has `set_timesteps` and `step`.
        """
        if not (len(specs) == len(unets) == len(schedulers)):
            raise ValueError(
                f"A cascade needs one UNet and one scheduler per stage, but has {len(specs)} stages, {len(unets)} "
                f"UNets and {len(schedulers)} schedulers."
            )
        if not specs:
            raise ValueError("A cascade needs at least one stage (the base).")
        kinds = [spec.kind for spec in specs]
        if kinds[0] != "base" or "base" in kinds[1:]:
            raise ValueError(
                f"Stage 0, and only stage 0, must be a 'base' stage, but the stages are {[str(s) for s in specs]}."
            )
        for i, (spec, unet, scheduler) in enumerate(zip(specs, unets, schedulers)):
            if unet is None or not hasattr(unet, "config"):
                raise ValueError(f"Stage {i} ({spec}) needs a UNet3DModel but has {unet!r}.")
            previous = unets[i - 1].config.out_channels if i > 0 else None
            check_stage_unet(unet, spec, i, condition_channels=previous)
            extra = set(getattr(unet.config, "scalar_conditions", ()) or ()) - {
                NOISE_AUG_CONDITION,
                GUIDANCE_CONDITION,
            }
            if extra:
                raise ValueError(
                    f"Stage {i} ({spec}) has a UNet with scalar conditions {sorted(extra)} that the pipeline cannot "
                    f"give (it gives {NOISE_AUG_CONDITION!r} and {GUIDANCE_CONDITION!r})."
                )
            if not (hasattr(scheduler, "set_timesteps") and hasattr(scheduler, "step")):
                raise ValueError(f"Stage {i} ({spec}) needs a diffusers scheduler but has {scheduler!r}.")

    def _set_stages(self, specs: Sequence[StageSpec], unets: Sequence[Any], schedulers: Sequence[Any]) -> None:
        """Checks the stages, then registers them as `unet_<i>`, `scheduler_<i>` and the `stages` config entry."""
        self.check_stages(specs, unets, schedulers)
        old = [key for key in self.config if _STAGE_COMPONENT.fullmatch(key)]
        if old:  # forget the previous stage components (the config is frozen: rebuild it without them)
            self._internal_dict = FrozenDict({k: v for k, v in self._internal_dict.items() if k not in old})
            for name in old:
                self.__dict__.pop(name, None)
        components = {}
        for i, (unet, scheduler) in enumerate(zip(unets, schedulers)):
            components[f"unet_{i}"], components[f"scheduler_{i}"] = unet, scheduler
        self.register_modules(**components)
        self.register_to_config(stages=[spec.to_dict() for spec in specs])

    def replace_stage(
        self,
        index: int,
        unet: UNet3DModel | None = None,
        scheduler: Any | None = None,
        spec: StageSpec | dict[str, Any] | None = None,
    ) -> None:
        """Replaces the UNet, the scheduler and/or the spec of stage `index` (what is None stays).

        Raises:
            ValueError: naming the stage, when the result cannot run (see [`check_stages`]); nothing is changed then.
        """
        stages = list(self.stages)
        index = self._check_stage_index(index, len(stages))
        old = stages[index]
        stages[index] = CascadeStage(
            old.spec if spec is None else StageSpec.from_dict(spec),
            old.unet if unet is None else unet,
            old.scheduler if scheduler is None else scheduler,
        )
        self._set_stages(*zip(*stages))

    def add_stage(
        self, spec: StageSpec | dict[str, Any], unet: UNet3DModel, scheduler: Any, index: int | None = None
    ) -> None:
        """Inserts a stage before stage `index` (at the end by default); later stages are renumbered."""
        stages = list(self.stages)
        position = len(stages) if index is None else self._check_stage_index(index, len(stages) + 1)
        stages.insert(position, CascadeStage(StageSpec.from_dict(spec), unet, scheduler))
        self._set_stages(*zip(*stages))

    def drop_stage(self, index: int) -> CascadeStage:
        """Removes stage `index` (later stages are renumbered) and returns it.

        Raises:
            ValueError: when the result cannot run, e.g. the base is dropped or an SR stage would follow a stage
                with other output channels.
        """
        stages = list(self.stages)
        index = self._check_stage_index(index, len(stages))
        dropped = stages.pop(index)
        if not stages:
            raise ValueError("Cannot drop the only stage of the cascade.")
        self._set_stages(*zip(*stages))
        return dropped

    @staticmethod
    def _check_stage_index(index: int, count: int) -> int:
        if not _is_int(index) or not -count <= index < count:
            raise ValueError(f"Stage index must be an integer in [{-count}, {count}) but is {index!r}.")
        return index % count

    def stage_sizes(self, num_frames: int, height: int, width: int) -> list[tuple[int, int, int]]:
        """The `(frames, height, width)` each stage produces for a final output of this size, base first.

        Raises:
            ValueError: naming the stage and sizes when a factor does not divide the size it must produce.
        """
        sizes = [(num_frames, height, width)]
        for i in range(self.num_stages - 1, 0, -1):
            spec = self.stage_specs[i]
            try:
                sizes.append(spec.input_size(*sizes[-1]))
            except ValueError as error:
                raise ValueError(
                    f"Stage {i} ({spec}) cannot produce {sizes[-1][0]} frames of {sizes[-1][1]}x{sizes[-1][2]} for "
                    f"the requested output of {num_frames} frames of {height}x{width}: {error}"
                ) from error
        return sizes[::-1]

    def default_size(self) -> tuple[int, int, int]:
        """The final `(frames, height, width)` when none is given: the base stage's `sample_size` and
        `DEFAULT_BASE_NUM_FRAMES` frames, carried through every stage."""
        sample_size = self.unet_0.config.sample_size
        if sample_size is None:
            raise ValueError("The base UNet has no `sample_size`: pass `num_frames`, `height` and `width`.")
        height, width = (sample_size, sample_size) if _is_int(sample_size) else tuple(sample_size)
        size = (DEFAULT_BASE_NUM_FRAMES, height, width)
        for spec in self.stage_specs:
            size = spec.output_size(*size)
        return size

    # ------------------------------------------------------------------ per-stage arguments

    def per_stage(self, value: Any, name: str, default: Any = None) -> list[Any]:
        """One value per stage from a call argument: a scalar (every stage), a list or tuple (one per stage), or a
        dict `{stage index: value}` (other stages get `default`).

        Raises:
            ValueError: naming the argument and the lengths or indices when they do not fit the stages.
        """
        count = self.num_stages
        if isinstance(value, dict):
            bad = [key for key in value if not _is_int(key) or not 0 <= key < count]
            if bad:
                raise ValueError(
                    f"`{name}` is a dict by stage index, whose keys must be integers in [0, {count}), but has {bad}."
                )
            return [value.get(i, default) for i in range(count)]
        if isinstance(value, (list, tuple)):
            if len(value) != count:
                raise ValueError(
                    f"`{name}` has {len(value)} values but the cascade has {count} stages: pass one value per stage, "
                    "one value for all, or a dict {stage index: value}."
                )
            return list(value)
        return [value] * count

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _batch_size(prompt, embeds: torch.Tensor | None) -> int:
        if prompt is None:
            return embeds.shape[0]
        return 1 if isinstance(prompt, str) else len(prompt)

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
    ) -> list[tuple[int, int, int]]:
        """Raises a `ValueError` (a `TypeError` for a wrong type) naming the bad argument and its value; returns the
        stage sizes. Per-stage arguments are already one value per stage. No model runs before these checks."""
        self.check_stages(*zip(*self.stages))  # stages may have been edited since construction

        for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
            if not _is_int(value) or value < 1:
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

            steps = num_inference_steps[i]
            if not _is_int(steps) or steps < 1:
                raise ValueError(f"`num_inference_steps` of stage {i} must be an integer >= 1 but is {steps!r}.")
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
            if not _is_number(scale) or scale < 0:
                raise ValueError(f"`guidance_scale` of stage {i} must be a number >= 0 but is {scale!r}.")
            try:
                weights = stage_guidance_scales(kind, scale, steps)
            except ValueError as error:  # e.g. a schedule of one weight per step for another step count
                raise ValueError(f"`guidance` of stage {i} does not fit its {steps} steps: {error}") from error
            if any(weight < 0 for weight in weights):
                raise ValueError(f"The guidance weights of stage {i} must be >= 0 but are {weights}.")

            level = noise_aug_level[i]
            if not _is_number(level):
                raise ValueError(f"`noise_aug_level` of stage {i} must be a number in [0, 1] but is {level!r}.")
            check_augmentation_level(level, name=f"noise_aug_level` of stage `{i}")
            percentile = dynamic_thresholding_percentile[i]
            if percentile is not None:
                if not _is_number(percentile) or not 0.0 < percentile <= 1.0:
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

        if not _is_int(num_videos_per_prompt) or num_videos_per_prompt < 1:
            raise ValueError(f"`num_videos_per_prompt` must be an integer >= 1 but is {num_videos_per_prompt!r}.")

        # prompts and embeddings
        text_dim = self.text_encoder.config.d_model if self.text_encoder is not None else None
        check_prompt_arguments(prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, text_dim)
        batch_size = self._batch_size(prompt, prompt_embeds)
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            if len(negative_prompt) != batch_size:
                raise ValueError(
                    f"`negative_prompt` has {len(negative_prompt)} prompts but `prompt` has batch size {batch_size}."
                )
        if negative_prompt_embeds is not None:
            reference = prompt_embeds.shape if prompt_embeds is not None else (batch_size,)
            if negative_prompt_embeds.shape[: len(reference)] != reference:
                raise ValueError(
                    f"`negative_prompt_embeds` of shape {tuple(negative_prompt_embeds.shape)} must match the prompt "
                    f"embeddings {tuple(reference)}."
                )

        total = batch_size * num_videos_per_prompt
        if isinstance(generator, list) and len(generator) != total:
            raise ValueError(
                f"`generator` is a list of {len(generator)} generators but the effective batch size (prompts x"
                f" `num_videos_per_prompt`) is {total}."
            )
        check_output_type(output_type)
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise TypeError(f"`callback_on_step_end` must be callable but is {callback_on_step_end!r}.")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"`callback_on_step_end_tensor_inputs` must be in {self._callback_tensor_inputs} but has"
                    f" {unknown}."
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

        Prompts are padded to the tokenizer's `model_max_length` and encoded with their attention mask (padding does
        not change the embeddings of the real tokens); the UNets read all positions, as Stable Diffusion's do.
        """

        def encode(texts: list[str]) -> torch.Tensor:
            tokens = self.tokenizer(
                texts,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            return self.text_encoder(
                tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device)
            ).last_hidden_state

        if prompt_embeds is None:
            prompt_embeds = encode([prompt] if isinstance(prompt, str) else list(prompt))
        batch_size = prompt_embeds.shape[0]
        dtype = self.text_encoder.dtype if self.text_encoder is not None else prompt_embeds.dtype
        prompt_embeds = prompt_embeds.to(device=device, dtype=dtype).repeat_interleave(num_videos_per_prompt, dim=0)
        if not do_classifier_free_guidance:
            return prompt_embeds, None
        if negative_prompt_embeds is None:
            if negative_prompt is None:
                negative_prompt = [""] * batch_size
            elif isinstance(negative_prompt, str):
                negative_prompt = [negative_prompt] * batch_size
            negative_prompt_embeds = encode(list(negative_prompt))
        negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=dtype)
        negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        return prompt_embeds, negative_prompt_embeds

    # ------------------------------------------------------------------ sampling

    @property
    def num_timesteps(self) -> int:
        """Sampling steps of the stage being sampled."""
        return self._num_timesteps

    @property
    def stage_index(self) -> int:
        """Index of the stage being sampled (callbacks may read it)."""
        return self._stage_index

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @staticmethod
    def _extra_step_kwargs(scheduler, generator) -> dict[str, Any]:
        # not all schedulers take a generator (DDIM with eta = 0 draws nothing; DDPM does)
        accepts_generator = "generator" in inspect.signature(scheduler.step).parameters
        return {"generator": generator} if accepts_generator else {}

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | list[int] | dict[int, int] = 50,
        guidance_scale: float | list[float] | dict[int, float] = 6.0,
        guidance: str | GuidanceSchedule | list | dict = "constant",
        noise_aug_level: float | list[float] | dict[int, float] = 0.1,
        dynamic_thresholding_percentile: float | None | list | dict = 0.995,
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
            num_inference_steps (`int`, *per stage*, defaults to 50): Sampling steps of each stage (8 for an 8-step
                distilled student; the scheduler must be able to make the count).
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
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 0. defaults and per-stage arguments
        default_frames, default_height, default_width = (
            self.default_size() if None in (num_frames, height, width) else (None, None, None)
        )
        num_frames = default_frames if num_frames is None else num_frames
        height = default_height if height is None else height
        width = default_width if width is None else width
        steps = self.per_stage(num_inference_steps, "num_inference_steps", 50)
        scales = self.per_stage(guidance_scale, "guidance_scale", 6.0)
        kinds = self.per_stage(guidance, "guidance", "constant")
        levels = self.per_stage(noise_aug_level, "noise_aug_level", 0.1)
        percentiles = self.per_stage(dynamic_thresholding_percentile, "dynamic_thresholding_percentile", 0.995)

        # 1. check inputs, before any model runs
        sizes = self.check_inputs(
            prompt, num_frames, height, width, steps, scales, kinds, levels, percentiles, negative_prompt,
            num_videos_per_prompt, generator, prompt_embeds, negative_prompt_embeds, output_type,
            callback_on_step_end, callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        weights = [stage_guidance_scales(k, s, n) for k, s, n in zip(kinds, scales, steps)]
        needs_uncond = any(
            not takes_guidance(stage.unet) and any(w != 1.0 for w in stage_weights)
            for stage, stage_weights in zip(self.stages, weights)
        )
        self._interrupt = False
        batch_size = self._batch_size(prompt, prompt_embeds)
        device = self._execution_device

        # 2. encode the prompt
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, needs_uncond, negative_prompt, prompt_embeds, negative_prompt_embeds
        )
        total = batch_size * num_videos_per_prompt

        # 3. the cascade
        video = None  # (B, C, F, H, W) output of the previous stage
        outputs = []
        with self.progress_bar(total=sum(steps)) as progress_bar:
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
                timesteps = scheduler.timesteps
                self._num_timesteps = len(timesteps)
                shape = (total, unet.config.out_channels, frames, h, w)
                sample = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
                sample = sample * scheduler.init_noise_sigma
                thresholding = DynamicThresholding(percentiles[index]) if percentiles[index] is not None else None
                extra_step_kwargs = self._extra_step_kwargs(scheduler, generator)
                text = prompt_embeds.to(dtype)
                uncond_text = negative_prompt_embeds.to(dtype) if negative_prompt_embeds is not None else None

                # 3.3 denoising loop
                for i, t in enumerate(timesteps):
                    if self.interrupt:
                        continue
                    model_input = stage_model_input(scheduler.scale_model_input(sample, t), condition)
                    # guided v-prediction: two passes for a teacher (one at weight 1), one for a distilled student
                    prediction = guided_prediction(
                        unet, model_input, t, text, uncond_text, weights[index][i], scalar_conds
                    )  # (B, C, F, H, W)
                    if thresholding is not None:
                        alpha, sigma = scheduler_alpha_sigma(scheduler, t)
                        prediction = thresholding(
                            prediction, sample, alpha.to(device), sigma.to(device), scheduler.config.prediction_type
                        )
                    sample = scheduler.step(prediction, t, sample, **extra_step_kwargs, return_dict=False)[0]

                    if callback_on_step_end is not None:
                        tensors = {
                            "latents": sample,
                            "prompt_embeds": prompt_embeds,
                            "negative_prompt_embeds": negative_prompt_embeds,
                        }
                        callback_kwargs = {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                        callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                        sample = callback_outputs.pop("latents", sample)
                        prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                        negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)
                        text = prompt_embeds.to(dtype)
                        uncond_text = negative_prompt_embeds.to(dtype) if negative_prompt_embeds is not None else None
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
