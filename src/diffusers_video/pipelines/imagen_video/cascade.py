"""The stages of an Imagen Video cascade and what passes between them: shared by the pipeline and training.

A cascade is a base stage followed by any sequence of super-resolution stages (Ho et al. 2022,
https://huggingface.co/papers/2210.02303, Section 2.4 and Figure 6):

- "base": generates a video from text alone; its UNet takes the noisy sample.
- "tsr" (temporal super-resolution): multiplies the number of frames by `factor`.
- "ssr" (spatial super-resolution): multiplies height and width by `factor`.

A super-resolution stage is conditioned on the previous stage's output, upsampled to its own size (bilinear resizing
for SSR, frame repetition for TSR, as in the paper) and concatenated to its noisy sample along channels, so its UNet
has `in_channels = 2 * out_channels`. The conditioning is noised first (noise-conditioning augmentation, Section 2.4
of the paper, after Ho et al. 2021's cascaded diffusion models) to a level the stage is told through the UNet's
"noise_aug_level" scalar condition; in training the level is random, at sampling it is fixed per stage.

Training builds the same conditioning from a high-resolution clip with `downsample_for_condition` followed by
`upsample_condition`, so that both sides see the same low-resolution signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...guidance import ConstantGuidance, GuidanceSchedule, OscillatingGuidance
from ...schedulers.diffusion_math import cosine_alpha_sigma
from ...schedulers.scheduling_v_distilled import VDistilledScheduler

__all__ = [
    "GUIDANCE_KINDS",
    "NOISE_AUG_CONDITION",
    "NOISE_AUG_CONDITION_SCALE",
    "STAGE_KINDS",
    "StageSpec",
    "augment_condition",
    "check_augmentation_level",
    "check_keeps_noise_schedule",
    "check_stage_unet",
    "downsample_for_condition",
    "noise_aug_condition_value",
    "stage_guidance",
    "stage_guidance_scales",
    "stage_model_input",
    "upsample_condition",
]

STAGE_KINDS = ("base", "tsr", "ssr")
"""Kinds of cascade stages: the base model, temporal super-resolution, spatial super-resolution."""

NOISE_AUG_CONDITION = "noise_aug_level"
"""Name of the `UNet3DModel` scalar condition through which an SR stage is told the augmentation level."""

NOISE_AUG_CONDITION_SCALE = 1000.0
"""The UNet receives `NOISE_AUG_CONDITION_SCALE * level`: levels in [0, 1] span the timestep range 0-1000."""


@dataclass(frozen=True)
class StageSpec:
    """What one stage of a cascade does to the video size.

    Args:
        kind (`str`): One of `STAGE_KINDS`: "base", "tsr" (frames x `factor`) or "ssr" (height and width x `factor`).
        factor (`int`, defaults to 1): The upsampling factor; 1 for "base", at least 2 for "tsr" and "ssr".

    Raises:
        ValueError: for an unknown kind or a factor that does not fit the kind.
    """

    kind: str
    factor: int = 1

    def __post_init__(self):
        if self.kind not in STAGE_KINDS:
            raise ValueError(f"`kind` must be one of {STAGE_KINDS} but is {self.kind!r}.")
        if isinstance(self.factor, bool) or not isinstance(self.factor, int):
            raise ValueError(f"`factor` must be an integer but is {self.factor!r} (stage kind {self.kind!r}).")
        if self.kind == "base" and self.factor != 1:
            raise ValueError(f"A 'base' stage has `factor` 1 but was given {self.factor}.")
        if self.kind != "base" and self.factor < 2:
            raise ValueError(f"A stage of kind {self.kind!r} needs `factor` >= 2 but was given {self.factor}.")

    @property
    def is_super_resolution(self) -> bool:
        """Whether the stage is conditioned on a previous stage's output ("tsr" or "ssr")."""
        return self.kind != "base"

    def output_size(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The `(frames, height, width)` this stage produces from an input (previous stage's output) of this size."""
        if self.kind == "tsr":
            return num_frames * self.factor, height, width
        if self.kind == "ssr":
            return num_frames, height * self.factor, width * self.factor
        return num_frames, height, width

    def input_size(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The `(frames, height, width)` of the previous stage's output for an output of this size.

        Raises:
            ValueError: when the factor does not divide the frames ("tsr") or the height or width ("ssr").
        """
        if self.kind == "tsr":
            if num_frames % self.factor:
                raise ValueError(
                    f"A 'tsr' stage with factor {self.factor} cannot produce {num_frames} frames: "
                    f"{self.factor} does not divide {num_frames}."
                )
            return num_frames // self.factor, height, width
        if self.kind == "ssr":
            if height % self.factor or width % self.factor:
                raise ValueError(
                    f"An 'ssr' stage with factor {self.factor} cannot produce height {height} and width {width}: "
                    f"{self.factor} must divide both."
                )
            return num_frames, height // self.factor, width // self.factor
        return num_frames, height, width

    def to_dict(self) -> dict[str, Any]:
        """`{"kind": ..., "factor": ...}`, JSON-serialisable."""
        return {"kind": self.kind, "factor": self.factor}

    @classmethod
    def from_dict(cls, value: dict[str, Any] | StageSpec) -> StageSpec:
        """The inverse of `to_dict` (a `StageSpec` is returned as is).

        Raises:
            ValueError: for a value that is not a dict, or one with keys other than "kind" and "factor".
        """
        if isinstance(value, StageSpec):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"A stage spec must be a dict with 'kind' and 'factor' but is {value!r}.")
        unknown = sorted(set(value) - {"kind", "factor"})
        if unknown or "kind" not in value:
            raise ValueError(f"A stage spec has the keys 'kind' and 'factor' (optional) but is {value!r}.")
        return cls(kind=value["kind"], factor=value.get("factor", 1))

    def __str__(self) -> str:
        return self.kind if self.kind == "base" else f"{self.kind}x{self.factor}"


def _check_video(video: torch.Tensor, name: str = "video") -> None:
    if not isinstance(video, torch.Tensor) or video.ndim != 5:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"`{name}` must be a (batch, channels, frames, height, width) tensor but is {shape}.")


def _spatial_resize(video: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool = False) -> torch.Tensor:
    batch, channels, frames, height, width = video.shape
    frames_2d = video.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)  # (B F, C, H, W)
    if mode == "area":
        resized = F.interpolate(frames_2d, size=size, mode="area")
    else:
        resized = F.interpolate(frames_2d, size=size, mode=mode, align_corners=False, antialias=antialias)
    resized = resized.reshape(batch, frames, channels, *size)  # (B, F, C, H', W')
    return resized.permute(0, 2, 1, 3, 4)  # (B, C, F, H', W')


def upsample_condition(video: torch.Tensor, spec: StageSpec) -> torch.Tensor:
    """The previous stage's output, upsampled to the size of `spec`'s output: a super-resolution stage's conditioning.

    As in Imagen Video (Section 2.4): "ssr" resizes every frame bilinearly (`align_corners=False`); "tsr" repeats
    every frame `factor` times (frame `i` of the result is input frame `i // factor`).

    Args:
        video (`torch.Tensor`): `(B, C, F, H, W)` pixels in [-1, 1].
        spec (`StageSpec`): The super-resolution stage.

    Returns:
        `torch.Tensor`: `(B, C, F', H', W')` with `(F', H', W') = spec.output_size(F, H, W)`, same dtype.

    Raises:
        ValueError: for a "base" stage (it takes no conditioning video) or a tensor that is not 5-D.
    """
    _check_video(video)
    if spec.kind == "base":
        raise ValueError(
            "A 'base' stage takes no conditioning video: `upsample_condition` needs a 'tsr' or 'ssr' spec."
        )
    if spec.kind == "tsr":
        return video.repeat_interleave(spec.factor, dim=2)  # (B, C, F factor, H, W)
    _, _, frames, height, width = video.shape
    _, out_height, out_width = spec.output_size(frames, height, width)
    return _spatial_resize(video, (out_height, out_width), mode="bilinear")


def downsample_for_condition(video: torch.Tensor, spec: StageSpec) -> torch.Tensor:
    """What the previous stage would produce for `video`: the low-resolution input of a super-resolution stage.

    The inverse of `upsample_condition` in size, used to make training pairs: "ssr" averages `factor x factor` pixel
    blocks (area resizing, an antialiased downsample); "tsr" keeps every `factor`-th frame, starting with the first.

    Args:
        video (`torch.Tensor`): `(B, C, F, H, W)` at the stage's output size.
        spec (`StageSpec`): The super-resolution stage.

    Returns:
        `torch.Tensor`: `(B, C, F', H', W')` with `(F', H', W') = spec.input_size(F, H, W)`.

    Raises:
        ValueError: for a "base" stage or when the factor does not divide the size (see `StageSpec.input_size`).
    """
    _check_video(video)
    if spec.kind == "base":
        raise ValueError("A 'base' stage takes no conditioning video: `downsample_for_condition` needs an SR spec.")
    _, _, frames, height, width = video.shape
    in_frames, in_height, in_width = spec.input_size(frames, height, width)
    if spec.kind == "tsr":
        return video[:, :, :: spec.factor]  # (B, C, F / factor, H, W)
    return _spatial_resize(video, (in_height, in_width), mode="area")


def check_augmentation_level(level: float | torch.Tensor, name: str = "noise_aug_level") -> None:
    """Raise a ValueError naming the value when an augmentation level is not a number (or tensor) in [0, 1]."""
    if isinstance(level, torch.Tensor):
        if level.ndim > 1:
            raise ValueError(f"`{name}` must be a number or a (batch,) tensor but has shape {tuple(level.shape)}.")
        if level.numel() and (not torch.isfinite(level).all() or level.min() < 0 or level.max() > 1):
            raise ValueError(f"`{name}` must lie in [0, 1] but is {level.tolist()}.")
        return
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level):
        raise ValueError(f"`{name}` must be a number in [0, 1] but is {level!r}.")
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1] but is {level}.")


def augment_condition(condition: torch.Tensor, level: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise-conditioning augmentation: `condition` diffused to continuous time `level` of the cosine schedule.

    `z = cos(pi/2 level) * condition + sin(pi/2 level) * noise`, the variance-preserving forward process of the
    paper's continuous-time cosine schedule; level 0 returns `condition`, level 1 returns `noise`.

    Args:
        condition (`torch.Tensor`): `(B, C, F, H, W)` upsampled previous-stage output.
        level (`float | torch.Tensor`): A number or a `(B,)` tensor, in [0, 1].
        noise (`torch.Tensor`): Standard normal noise shaped like `condition`.

    Raises:
        ValueError: for levels outside [0, 1] or noise of another shape.
    """
    check_augmentation_level(level)
    if noise.shape != condition.shape:
        raise ValueError(
            f"`noise` must have the shape of `condition` {tuple(condition.shape)} but has {tuple(noise.shape)}."
        )
    if isinstance(level, torch.Tensor):
        level = level.to(device=condition.device, dtype=torch.float32)
        if level.ndim == 1:
            if level.shape[0] != condition.shape[0]:
                raise ValueError(
                    f"`level` has {level.shape[0]} values but `condition` has batch size {condition.shape[0]}."
                )
            level = level.reshape(-1, *([1] * (condition.ndim - 1)))  # (B, 1, 1, 1, 1)
        alpha, sigma = cosine_alpha_sigma(level)
        alpha, sigma = alpha.to(condition.dtype), sigma.to(condition.dtype)
    else:
        alpha, sigma = cosine_alpha_sigma(float(level))
    return alpha * condition + sigma * noise


def noise_aug_condition_value(level: float | torch.Tensor) -> float | torch.Tensor:
    """The value of the UNet's "noise_aug_level" scalar condition for an augmentation level: `1000 * level`."""
    return level * NOISE_AUG_CONDITION_SCALE


def stage_model_input(sample: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """The UNet input of a stage: the noisy sample alone (base) or `[sample, condition]` along channels (SR).

    Args:
        sample (`torch.Tensor`): `(B, C, F, H, W)` noisy sample.
        condition (`torch.Tensor | None`): `(B, C', F, H, W)` augmented conditioning, or None for a base stage.

    Returns:
        `torch.Tensor`: `(B, C + C', F, H, W)`, or `sample` when `condition` is None.
    """
    if condition is None:
        return sample
    if condition.shape[0] != sample.shape[0] or condition.shape[2:] != sample.shape[2:]:
        raise ValueError(
            f"The conditioning {tuple(condition.shape)} must match the sample {tuple(sample.shape)} in batch, frames, "
            "height and width."
        )
    return torch.cat([sample, condition.to(sample.dtype)], dim=1)  # (B, C + C', F, H, W)


def check_stage_unet(unet: Any, spec: StageSpec, index: int, condition_channels: int | None = None) -> None:
    """Check that a stage's UNet takes the input the stage gives it.

    A base stage's UNet takes `out_channels` channels; an SR stage's takes `out_channels + condition_channels` (the
    sample and the conditioning video; `condition_channels` defaults to `out_channels`, i.e. `2 * 3` in pixel space).

    Args:
        unet: The stage's model (anything with `config.in_channels` and `config.out_channels`).
        spec (`StageSpec`): The stage.
        index (`int`): The stage's position in the cascade (for the message).
        condition_channels (`int`, *optional*): Channels of the conditioning video (the previous stage's
            `out_channels`).

    Raises:
        ValueError: naming the stage and the channel counts when they do not match.
    """
    in_channels = int(unet.config.in_channels)
    out_channels = int(unet.config.out_channels)
    if spec.kind == "base":
        expected = out_channels
        what = f"its sample ({out_channels} channels)"
    else:
        condition_channels = out_channels if condition_channels is None else int(condition_channels)
        expected = out_channels + condition_channels
        what = f"its sample ({out_channels} channels) and the conditioning video ({condition_channels} channels)"
    if in_channels != expected:
        raise ValueError(
            f"Stage {index} ({spec}) takes {what}, so its UNet needs in_channels={expected}, but it has "
            f"in_channels={in_channels} and out_channels={out_channels}."
        )


def check_keeps_noise_schedule(scheduler, stage: int) -> None:
    """Raises a `ValueError` when a stage's scheduler would sample on another noise schedule than its config names.

    The cascade's models are trained on the continuous cosine schedule, which only [`VDistilledScheduler`] samples;
    a diffusers scheduler made from its config (`DDIMScheduler.from_config(pipe.scheduler_0.config)`) keeps the
    `noise_schedule` entry but ignores it and samples the discrete betas instead: a silent change of schedule.
    """
    schedule = scheduler.config.get("noise_schedule", "discrete")
    if schedule != "discrete" and not isinstance(scheduler, VDistilledScheduler):
        raise ValueError(
            f"Stage {stage}'s scheduler is a {type(scheduler).__name__}, which ignores its config's `noise_schedule`="
            f"{schedule!r} and would sample another schedule than the one the stage was trained on: use a "
            "VDistilledScheduler (its `from_config` keeps the schedule) for this stage."
        )


# ---------------------------------------------------------------------------------------------------------------------
# Guidance weights per step
# ---------------------------------------------------------------------------------------------------------------------

GUIDANCE_KINDS = ("constant", "oscillating")
"""Guidance schedules a stage can be given by name (or pass a `diffusers_video.guidance.GuidanceSchedule`)."""

OSCILLATING_WARMUP_FRACTION = 0.1
"""Share of a stage's steps held at the high weight before `guidance="oscillating"` alternates (the paper's warm-up)."""


def stage_guidance(guidance: str | GuidanceSchedule, guidance_scale: float) -> GuidanceSchedule:
    """The guidance object of one stage: "constant" (`guidance_scale` at every step), "oscillating"
    (`OscillatingGuidance(high=guidance_scale, low=1, warmup_fraction=0.1)`), or a guidance object as it is."""
    if isinstance(guidance, GuidanceSchedule):
        return guidance
    if guidance == "constant":
        return ConstantGuidance(guidance_scale)
    if guidance == "oscillating":
        return OscillatingGuidance(guidance_scale, 1.0, warmup_fraction=OSCILLATING_WARMUP_FRACTION)
    raise ValueError(f"`guidance` must be one of {GUIDANCE_KINDS} or a GuidanceSchedule but is {guidance!r}.")


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
    return [float(w) for w in stage_guidance(guidance, guidance_scale).scales(num_steps)]
