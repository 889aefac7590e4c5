"""VideoFusion with any diffusers scheduler: the noise levels of the model input, and decomposed injected noise.

VideoFusion needs two things of a scheduler beyond diffusers' pipelines: the noise level `(alpha_t, sigma_t)` of the
model input at every step (to take `sigma_t sqrt(lambda_i) b_hat` out of each frame and to combine velocities), and,
for a scheduler that injects fresh noise at a step, that noise decomposed like the initial noise. Its own
[`DecomposedNoiseScheduler`] (DDIM with decomposed noise) is the reference; diffusers' DDIM, DPM-Solver++ (2M, and the
SDE variants), UniPC, Euler and the other discrete-time schedulers with epsilon or v prediction also work:

- Schedulers that keep a variance-preserving sample (DDIM, DPM-Solver, UniPC) feed it to the model as it is; those that
  keep `x_0 + sigma eps` (Euler, Heun) scale it to `x_t / sqrt(sigma^2 + 1)` in `scale_model_input`. Either way the
  model input is `alpha x_0 + sigma eps` with `alpha = 1 / sqrt(1 + s^2)`, `sigma = s / sqrt(1 + s^2)` for the
  scheduler's `sigmas[step]` `s = sqrt((1 - alpha_bar) / alpha_bar)`, or `alpha_bar` of the timestep for a scheduler
  without `sigmas`.
- DDIM (`eta > 0`) and the SDE variants of DPM-Solver take the step's noise as `variance_noise`: it is drawn decomposed,
  with the frame ratios of the initial noise. A scheduler that draws its own noise inside `step` and cannot be given it
  (Euler ancestral, DDPM) runs with per-frame independent step noise, and a warning says so.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from diffusers.utils import logging

from ...schedulers.scheduling_decomposed import DecomposedNoiseScheduler

__all__ = [
    "PREDICTION_TYPES",
    "check_scheduler",
    "injects_noise",
    "model_input_levels",
    "takes_variance_noise",
    "warn_if_independent_step_noise",
]

logger = logging.get_logger(__name__)

PREDICTION_TYPES = ("epsilon", "v_prediction")
"""What the combined VideoFusion estimate may be: the scheduler's `prediction_type` must be one of these."""

# schedulers that draw fresh noise inside `step` without a `variance_noise` argument to give it to them
_SELF_NOISING = ("EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DDPMScheduler", "LCMScheduler")


def check_scheduler(scheduler: Any) -> None:
    """Raises a `TypeError` unless `scheduler` is a discrete-time diffusers scheduler VideoFusion can sample with.

    It needs `set_timesteps`, `step`, `scale_model_input`, `add_noise` (for the frames a long video carries over from
    window to window) and a discrete noise schedule (`alphas_cumprod`) of the models' training.
    """
    missing = [
        name for name in ("set_timesteps", "step", "scale_model_input", "add_noise") if not hasattr(scheduler, name)
    ]
    if missing or getattr(scheduler, "alphas_cumprod", None) is None or not hasattr(scheduler, "config"):
        raise TypeError(
            "`scheduler` must be a discrete-time diffusers scheduler with `alphas_cumprod` (DDIM, DPM-Solver, UniPC,"
            f" Euler, ... or the DecomposedNoiseScheduler) but is a {type(scheduler).__name__}"
            + (f" without {', '.join(missing)}." if missing else " without a discrete noise schedule.")
        )


def model_input_levels(scheduler: Any, timestep: torch.Tensor, step_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(alpha_t, sigma_t)` of the model input `scheduler.scale_model_input(x, timestep)` at loop step `step_index`.

    Args:
        scheduler: A scheduler whose `set_timesteps` was called.
        timestep (`torch.Tensor`): The step's timestep.
        step_index (`int`): Its index in `scheduler.timesteps`.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: Two float32 scalars on the timestep's device.
    """
    if isinstance(scheduler, DecomposedNoiseScheduler):
        return scheduler.alpha_sigma(timestep)
    sigmas = getattr(scheduler, "sigmas", None)
    if isinstance(sigmas, torch.Tensor) and sigmas.ndim == 1 and len(sigmas) == len(scheduler.timesteps) + 1:
        # Euler-type (x_0 + s eps, scaled to unit variance for the model) and DPM-Solver/UniPC (their `sigmas` are
        # the same s of a variance-preserving sample): the model input is x_0 / sqrt(1 + s^2) + eps s / sqrt(1 + s^2)
        s = sigmas[step_index].to(torch.float64)
        alpha, sigma = 1 / torch.sqrt(1 + s**2), s / torch.sqrt(1 + s**2)
    else:
        alpha_bar = scheduler.alphas_cumprod.to(torch.float64)[int(round(float(timestep)))]
        alpha, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    device = timestep.device if isinstance(timestep, torch.Tensor) else None
    return alpha.to(device, torch.float32), sigma.to(device, torch.float32)


def takes_variance_noise(scheduler: Any) -> bool:
    """Whether `scheduler.step` takes the noise it injects as `variance_noise` (DDIM, DPM-Solver, ours)."""
    return "variance_noise" in inspect.signature(scheduler.step).parameters


def injects_noise(scheduler: Any, eta: float) -> bool:
    """Whether `scheduler.step` adds fresh noise: DDIM-type with `eta > 0`, DPM-Solver's SDE variants, the ancestral
    and DDPM samplers, Euler with `s_churn > 0` (given as a step keyword, which the pipeline does not pass)."""
    if "eta" in inspect.signature(scheduler.step).parameters and eta > 0:
        return True
    if str(scheduler.config.get("algorithm_type", "")).startswith("sde"):
        return True
    return type(scheduler).__name__ in _SELF_NOISING


def warn_if_independent_step_noise(scheduler: Any, eta: float) -> None:
    """Logs a warning when `scheduler` injects noise VideoFusion cannot give it decomposed."""
    if injects_noise(scheduler, eta) and not takes_variance_noise(scheduler):
        logger.warning(
            f"{type(scheduler).__name__} draws the noise it adds at each step itself, so that noise is independent per"
            " frame rather than decomposed into base and residual; DDIM (with eta), DPM-Solver's SDE variants and the"
            " DecomposedNoiseScheduler take decomposed step noise."
        )
