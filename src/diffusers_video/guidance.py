"""Classifier-free guidance shared by the pipelines: a weight per sampling step, and dynamic thresholding.

A denoising loop asks a guidance object two things: the weight at step `i` of `n`, and the guided prediction
from the unconditional and conditional ones::

    guidance = as_guidance(guidance_scale)  # a float, a list of one weight per step, or a guidance object
    for i, t in enumerate(scheduler.timesteps):
        if guidance.needs_unconditional(i, num_steps):
            pred = guidance.combine(pred_uncond, pred_cond, i, num_steps)
        ...

Weights follow diffusers' convention, `uncond + w * (cond - uncond)`: `w = 1` is the conditional prediction alone.
Imagen Video writes `(1 + w') * cond - w' * uncond`, so its `w'` is `w - 1` here.

Guidance is linear, so it gives the same result on epsilon, v or x0 predictions at a fixed noisy sample. Dynamic
thresholding is not: it acts on x0, so [`DynamicThresholding`] turns a prediction into x0, thresholds it, and turns
it back into the same parameterisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .schedulers.diffusion_math import (
    Scalar,
    check_prediction_type,
    dynamic_threshold,
    prediction_to_x0_eps,
    x0_to_prediction,
)

__all__ = [
    "GUIDANCE_CONDITION",
    "GUIDANCE_CONDITION_SCALE",
    "ConstantGuidance",
    "DynamicThresholding",
    "GuidanceSchedule",
    "OscillatingGuidance",
    "ScheduledGuidance",
    "apply_guidance",
    "as_guidance",
    "guidance_condition",
    "guided_prediction",
    "oscillating_guidance_scales",
    "rescale_noise_cfg",
    "scheduler_alpha_sigma",
    "takes_guidance",
]


# Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.rescale_noise_cfg (type hints added)
def rescale_noise_cfg(
    noise_cfg: torch.Tensor, noise_pred_text: torch.Tensor, guidance_rescale: float = 0.0
) -> torch.Tensor:
    r"""
    Rescales `noise_cfg` tensor based on `guidance_rescale` to improve image quality and fix overexposure. Based on
    Section 3.4 from [Common Diffusion Noise Schedules and Sample Steps are
    Flawed](https://huggingface.co/papers/2305.08891).

    Args:
        noise_cfg (`torch.Tensor`):
            The predicted noise tensor for the guided diffusion process.
        noise_pred_text (`torch.Tensor`):
            The predicted noise tensor for the text-guided diffusion process.
        guidance_rescale (`float`, *optional*, defaults to 0.0):
            A rescale factor applied to the noise predictions.

    Returns:
        noise_cfg (`torch.Tensor`): The rescaled noise prediction tensor.
    """
    std_text = noise_pred_text.std(dim=list(range(1, noise_pred_text.ndim)), keepdim=True)
    std_cfg = noise_cfg.std(dim=list(range(1, noise_cfg.ndim)), keepdim=True)
    # rescale the results from guidance (fixes overexposure)
    noise_pred_rescaled = noise_cfg * (std_text / std_cfg)
    # mix with the original results from guidance by factor guidance_rescale to avoid "plain looking" images
    noise_cfg = guidance_rescale * noise_pred_rescaled + (1 - guidance_rescale) * noise_cfg
    return noise_cfg


def apply_guidance(
    pred_uncond: torch.Tensor,
    pred_cond: torch.Tensor,
    guidance_scale: float | torch.Tensor,
    guidance_rescale: float = 0.0,
) -> torch.Tensor:
    """Classifier-free guidance `uncond + w * (cond - uncond)`, rescaled if `guidance_rescale > 0`.

    Args:
        pred_uncond (`torch.Tensor`): The unconditional model output `(B, ...)`.
        pred_cond (`torch.Tensor`): The conditional model output, same shape.
        guidance_scale (`float` or `torch.Tensor`): The weight `w`, one number or one per sample `(B,)`.
        guidance_rescale (`float`, defaults to 0.0): See [`rescale_noise_cfg`]; 0 leaves the result alone.

    Returns:
        `torch.Tensor`: The guided model output.
    """
    weight = torch.as_tensor(guidance_scale, dtype=pred_cond.dtype, device=pred_cond.device)
    if weight.ndim == 1:
        weight = weight.reshape(-1, *([1] * (pred_cond.ndim - 1)))  # (B, 1, 1, 1, 1)
    guided = pred_uncond + weight * (pred_cond - pred_uncond)
    if guidance_rescale > 0.0:
        guided = rescale_noise_cfg(guided, pred_cond, guidance_rescale=guidance_rescale)
    return guided


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number but is {value!r}.")
    return float(value)


def _check_step(step_index: int, num_steps: int) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"`num_steps` must be a positive integer but is {num_steps!r}.")
    if isinstance(step_index, bool) or not isinstance(step_index, int) or not 0 <= step_index < num_steps:
        raise ValueError(f"`step_index` must be an integer in [0, {num_steps}) but is {step_index!r}.")


class GuidanceSchedule:
    """Classifier-free guidance whose weight may change from step to step. Subclasses define [`scale`].

    Args:
        guidance_rescale (`float`, defaults to 0.0): Guidance rescale factor in [0, 1] (Lin et al. 2023, section
            3.4), for zero-terminal-SNR models; 0 disables it.
    """

    def __init__(self, guidance_rescale: float = 0.0):
        guidance_rescale = _check_number(guidance_rescale, "guidance_rescale")
        if not 0.0 <= guidance_rescale <= 1.0:
            raise ValueError(f"`guidance_rescale` must be in [0, 1] but is {guidance_rescale}.")
        self.guidance_rescale = guidance_rescale

    def scale(self, step_index: int, num_steps: int) -> float:
        """The guidance weight at step `step_index` (0-based) of `num_steps`."""
        raise NotImplementedError

    def scales(self, num_steps: int) -> list[float]:
        """The weights of all `num_steps` steps."""
        return [self.scale(i, num_steps) for i in range(num_steps)]

    def needs_unconditional(self, step_index: int, num_steps: int) -> bool:
        """Whether step `step_index` needs the unconditional prediction (its weight is not 1)."""
        return self.scale(step_index, num_steps) != 1.0

    def combine(
        self, pred_uncond: torch.Tensor, pred_cond: torch.Tensor, step_index: int, num_steps: int
    ) -> torch.Tensor:
        """The guided prediction `uncond + w * (cond - uncond)` at this step, rescaled if `guidance_rescale > 0`.

        Args:
            pred_uncond (`torch.Tensor`): The unconditional model output.
            pred_cond (`torch.Tensor`): The conditional model output, same shape.
            step_index (`int`): Index of the current step, from 0.
            num_steps (`int`): Number of sampling steps.

        Returns:
            `torch.Tensor`: The guided model output.
        """
        if pred_uncond.shape != pred_cond.shape:
            raise ValueError(
                f"`pred_uncond` and `pred_cond` must have the same shape but have {tuple(pred_uncond.shape)} and"
                f" {tuple(pred_cond.shape)}."
            )
        return apply_guidance(pred_uncond, pred_cond, self.scale(step_index, num_steps), self.guidance_rescale)

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class ConstantGuidance(GuidanceSchedule):
    """The same guidance weight at every step.

    Args:
        guidance_scale (`float`, defaults to 7.5): The weight `w`; 1 disables guidance.
        guidance_rescale (`float`, defaults to 0.0): See [`GuidanceSchedule`].
    """

    def __init__(self, guidance_scale: float = 7.5, guidance_rescale: float = 0.0):
        super().__init__(guidance_rescale)
        self.guidance_scale = _check_number(guidance_scale, "guidance_scale")

    def scale(self, step_index: int, num_steps: int) -> float:
        _check_step(step_index, num_steps)
        return self.guidance_scale


class OscillatingGuidance(GuidanceSchedule):
    """Imagen Video's oscillating guidance: a high weight for a warm-up, then alternate high and low, then low.

    The paper (Section 2.6) holds a high weight for some initial steps, then alternates high and low weights, which
    keeps the text alignment of the high weight while limiting its saturation artefacts (oscillate(15, 1) in its
    notation). Exactly, with `k = floor(warmup_fraction * num_steps)` and
    `m = max(k, floor(oscillate_fraction * num_steps))`:

    - steps `i < k` use `high`;
    - steps `k <= i < m` alternate, starting with `high`: `high` when `i - k` is even, `low` when it is odd;
    - steps `i >= m` use `low`.

    With no warm-up and 8 steps: `[high, low, high, low, low, low, low, low]`. This is the one definition of the
    schedule: `ImagenVideoPipeline`'s `guidance="oscillating"` is this class with `warmup_fraction=0.1`.

    Args:
        high (`float`, defaults to 15.0): The high weight.
        low (`float`, defaults to 1.0): The low weight, used on the odd steps of the oscillating part and afterwards.
        oscillate_fraction (`float`, defaults to 0.5): Share of the steps, in [0, 1], before which the weights
            oscillate (warm-up included).
        guidance_rescale (`float`, defaults to 0.0): See [`GuidanceSchedule`].
        warmup_fraction (`float`, defaults to 0.0): Share of the steps, in [0, 1], held at `high` first.
    """

    def __init__(
        self,
        high: float = 15.0,
        low: float = 1.0,
        oscillate_fraction: float = 0.5,
        guidance_rescale: float = 0.0,
        warmup_fraction: float = 0.0,
    ):
        super().__init__(guidance_rescale)
        self.high = _check_number(high, "high")
        self.low = _check_number(low, "low")
        for name, value in (("oscillate_fraction", oscillate_fraction), ("warmup_fraction", warmup_fraction)):
            if not 0.0 <= _check_number(value, name) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1] but is {value}.")
        self.oscillate_fraction = float(oscillate_fraction)
        self.warmup_fraction = float(warmup_fraction)

    def scale(self, step_index: int, num_steps: int) -> float:
        _check_step(step_index, num_steps)
        warmup = math.floor(self.warmup_fraction * num_steps)
        stop = max(warmup, math.floor(self.oscillate_fraction * num_steps))
        if step_index < warmup or (step_index < stop and (step_index - warmup) % 2 == 0):
            return self.high
        return self.low


def oscillating_guidance_scales(
    num_steps: int,
    high: float,
    low: float = 1.0,
    warmup_fraction: float = 0.1,
    oscillate_fraction: float = 0.5,
) -> list[float]:
    """The weights of [`OscillatingGuidance`] for `num_steps` steps, with Imagen Video's default warm-up of 10%.

    For 8 steps: `[high, low, high, low, low, low, low, low]`; for 20 steps: 2 x `high`, then `high, low` four
    times, then `low` from step 10 on.

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
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"`num_steps` must be an integer >= 1 but is {num_steps!r}.")
    guidance = OscillatingGuidance(high, low, oscillate_fraction=oscillate_fraction, warmup_fraction=warmup_fraction)
    return guidance.scales(num_steps)


class ScheduledGuidance(GuidanceSchedule):
    """One given guidance weight per step.

    Args:
        scales (`Sequence[float]`): The weight of each step, first step first; sampling must use `len(scales)` steps.
        guidance_rescale (`float`, defaults to 0.0): See [`GuidanceSchedule`].
    """

    def __init__(self, scales: Sequence[float], guidance_rescale: float = 0.0):
        super().__init__(guidance_rescale)
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) == 0:
            raise ValueError(f"`scales` must be a non-empty sequence of numbers but is {scales!r}.")
        self.scales_per_step = [_check_number(value, "scales") for value in scales]

    def scale(self, step_index: int, num_steps: int) -> float:
        _check_step(step_index, num_steps)
        if num_steps != len(self.scales_per_step):
            raise ValueError(
                f"`num_steps` must equal the number of `scales` ({len(self.scales_per_step)}) but is {num_steps}."
            )
        return self.scales_per_step[step_index]


def as_guidance(
    guidance: float | Sequence[float] | GuidanceSchedule, guidance_rescale: float = 0.0
) -> GuidanceSchedule:
    """The guidance object for a pipeline's `guidance_scale` argument.

    Args:
        guidance (`float`, `Sequence[float]` or [`GuidanceSchedule`]): A constant weight, one weight per step, or a
            guidance object (returned as it is).
        guidance_rescale (`float`, defaults to 0.0): Guidance rescale for a number or a sequence.

    Returns:
        [`GuidanceSchedule`]
    """
    if isinstance(guidance, GuidanceSchedule):
        return guidance
    if isinstance(guidance, (int, float)) and not isinstance(guidance, bool):
        return ConstantGuidance(guidance, guidance_rescale)
    if isinstance(guidance, Sequence) and not isinstance(guidance, (str, bytes)):
        return ScheduledGuidance(guidance, guidance_rescale)
    raise TypeError(
        f"`guidance` must be a number, a sequence of numbers or a GuidanceSchedule but is {type(guidance).__name__}:"
        f" {guidance!r}."
    )


def scheduler_alpha_sigma(scheduler: Any, timestep: int | float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(alpha_t, sigma_t)` of a timestep for this package's schedulers and diffusers' `alphas_cumprod` schedulers.

    Args:
        scheduler: A scheduler with an `alpha_sigma(timestep)` method, or with an `alphas_cumprod` table (DDIM, DDPM,
            ...).
        timestep (`int`, `float` or `torch.Tensor`): The timestep.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `alpha_t = sqrt(alpha_bar_t)` and `sigma_t = sqrt(1 - alpha_bar_t)`.
    """
    if hasattr(scheduler, "alpha_sigma"):
        return scheduler.alpha_sigma(timestep)
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if alphas_cumprod is None:
        raise TypeError(
            f"`scheduler` must have `alpha_sigma` or `alphas_cumprod` but is a {type(scheduler).__name__}."
        )
    alpha_prod = alphas_cumprod[torch.as_tensor(timestep).long().cpu()]
    return alpha_prod**0.5, (1 - alpha_prod) ** 0.5


class DynamicThresholding:
    """Imagen's dynamic thresholding of the predicted x0, for models of any parameterisation.

    Applied after guidance: `prediction -> x0 -> thresholded x0 -> prediction` of the same parameterisation, given
    the `alpha_t` and `sigma_t` of the noisy sample (see [`scheduler_alpha_sigma`]). A prediction whose x0 lies in
    [-1, 1] comes back unchanged. For pixel-space models: latents are not bounded to [-1, 1].

    Args:
        percentile (`float`, defaults to 0.995): Per sample, the threshold `s` is this quantile of `|x0|`.
        max_value (`float`, *optional*): Upper bound of `s`; `None` leaves it unbounded.
    """

    def __init__(self, percentile: float = 0.995, max_value: float | None = None):
        self.percentile = _check_number(percentile, "percentile")
        if not 0.0 < self.percentile <= 1.0:
            raise ValueError(f"`percentile` must be in (0, 1] but is {percentile}.")
        if max_value is not None and _check_number(max_value, "max_value") < 1.0:
            raise ValueError(f"`max_value` must be at least 1 but is {max_value}.")
        self.max_value = max_value

    def threshold_x0(self, x0: torch.Tensor) -> torch.Tensor:
        """Thresholds a predicted clean sample `(B, ...)`; see `dynamic_threshold`."""
        return dynamic_threshold(x0, self.percentile, self.max_value)

    def __call__(
        self,
        model_output: torch.Tensor,
        sample: torch.Tensor,
        alpha: Scalar,
        sigma: Scalar,
        prediction_type: str,
    ) -> torch.Tensor:
        """Thresholds the x0 that `model_output` predicts and returns the matching model output.

        Args:
            model_output (`torch.Tensor`): The (guided) model output at `sample`.
            sample (`torch.Tensor`): The noisy sample `x_t`.
            alpha (`float` or `torch.Tensor`): `alpha_t` of `sample` (a number or one per batch element).
            sigma (`float` or `torch.Tensor`): `sigma_t` of `sample`, positive.
            prediction_type (`str`): "epsilon", "v_prediction" or "sample".

        Returns:
            `torch.Tensor`: The model output whose x0 is thresholded.
        """
        check_prediction_type(prediction_type)
        x0, _ = prediction_to_x0_eps(model_output, sample, alpha, sigma, prediction_type)
        thresholded = self.threshold_x0(x0)
        guided = x0_to_prediction(thresholded, sample, alpha, sigma, prediction_type)
        # samples whose x0 the threshold left alone keep their output bit for bit (no round-trip rounding)
        changed = (thresholded != x0).reshape(x0.shape[0], -1).any(dim=1)
        changed = changed.reshape(-1, *([1] * (x0.ndim - 1)))  # (B, 1, 1, 1, 1)
        return torch.where(changed, guided, model_output)

    def __repr__(self) -> str:
        return f"DynamicThresholding(percentile={self.percentile!r}, max_value={self.max_value!r})"


# ---------------------------------------------------------------------------------------------------------------------
# The guided prediction of a UNet, shared by the pipelines and by distillation
# ---------------------------------------------------------------------------------------------------------------------


GUIDANCE_CONDITION = "guidance_scale"
"""Name of the scalar condition through which a distilled student takes the guidance weight."""

GUIDANCE_CONDITION_SCALE = 100.0
"""The UNet's `guidance_scale` condition receives `GUIDANCE_CONDITION_SCALE * w`: weights 0-10 span timesteps 0-1000."""


def takes_guidance(unet: torch.nn.Module) -> bool:
    """Whether `unet` takes the guidance weight as a scalar condition (a student distilled with guidance)."""
    return GUIDANCE_CONDITION in tuple(getattr(unet.config, "scalar_conditions", ()) or ())


def guidance_condition(guidance_scale: float | torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
    """The value of the UNet's `guidance_scale` condition for a guidance weight: `GUIDANCE_CONDITION_SCALE * w`.

    Args:
        guidance_scale (`float | torch.Tensor`): The weight `w` (diffusers' convention), one number or one per sample.
        device (`str | torch.device`, *optional*): Device of the result.

    Returns:
        `torch.Tensor`: float32, 0-d for a number, `(batch,)` for a `(batch,)` tensor.
    """
    return torch.as_tensor(guidance_scale, dtype=torch.float32, device=device) * GUIDANCE_CONDITION_SCALE


def guided_prediction(
    unet: torch.nn.Module,
    sample: torch.Tensor,
    timesteps: torch.Tensor | float | int,
    text: torch.Tensor,
    uncond_text: torch.Tensor | None,
    guidance_scale: float | torch.Tensor | None,
    scalar_conds: dict[str, Any] | None = None,
    guidance_rescale: float = 0.0,
) -> torch.Tensor:
    """A UNet's classifier-free-guided prediction at `sample`.

    A UNet with a `guidance_scale` condition (see `takes_guidance`) takes the weight as an input in one pass. Any other
    UNet runs on the captions and the empty captions as one batch of `2 B` and returns `uncond + w * (cond - uncond)`
    (diffusers' convention); `guidance_scale=None` (or 1) returns the conditional prediction alone.

    Args:
        unet (`torch.nn.Module`): A `UNet3DModel` (or any model with its call signature).
        sample (`torch.Tensor`): Noisy videos `(B, C, F, H, W)`.
        timesteps (`torch.Tensor | float | int`): One timestep or one per sample `(B,)`.
        text (`torch.Tensor`): Caption embeddings `(B, tokens, dim)`.
        uncond_text (`torch.Tensor | None`): Embeddings of "" `(B, tokens, dim)`; needed when the UNet is guided by
            two passes.
        guidance_scale (`float | torch.Tensor | None`): The weight `w`, one number or one per sample `(B,)`.
        scalar_conds (`dict | None`): Values of the UNet's other scalar conditions (numbers or `(B,)` tensors).
        guidance_rescale (`float`, defaults to 0.0): Rescales a two-pass guided prediction towards the conditional
            one's standard deviation ([`rescale_noise_cfg`]); 0 leaves it alone. A distilled student was trained on
            the plain guided target and ignores it.

    Returns:
        `torch.Tensor`: The guided prediction, shaped like `sample`.
    """
    conds = dict(scalar_conds or {})
    if takes_guidance(unet):
        if guidance_scale is None:
            raise ValueError(f"The UNet takes a `{GUIDANCE_CONDITION}` condition: `guidance_scale` must be given.")
        conds[GUIDANCE_CONDITION] = guidance_condition(guidance_scale, sample.device)
        return unet(sample, timesteps, encoder_hidden_states=text, scalar_conds=conds or None).sample
    if guidance_scale is None or (not isinstance(guidance_scale, torch.Tensor) and guidance_scale == 1.0):
        return unet(sample, timesteps, encoder_hidden_states=text, scalar_conds=conds or None).sample
    if uncond_text is None:
        raise ValueError("`uncond_text` is required to guide a UNet without a `guidance_scale` condition.")
    batch = sample.shape[0]
    double = lambda value: torch.cat([value, value]) if _per_sample(value, batch) else value  # noqa: E731
    conds = {name: double(value) for name, value in conds.items()}
    out = unet(
        torch.cat([sample, sample]),  # (2B, C, F, H, W): unconditional half first
        double(torch.as_tensor(timesteps, device=sample.device)),
        encoder_hidden_states=torch.cat([uncond_text, text]),
        scalar_conds=conds or None,
    ).sample
    uncond, cond = out.chunk(2)
    return apply_guidance(uncond, cond, guidance_scale, guidance_rescale)


def _per_sample(value: Any, batch: int) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim == 1 and value.shape[0] == batch and batch > 1
