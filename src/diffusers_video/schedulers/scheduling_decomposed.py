"""DDIM with VideoFusion's decomposed noise: a base noise shared by all frames plus a residual noise per frame.

VideoFusion (Luo et al. 2023, https://huggingface.co/papers/2303.08320) writes the noise of frame `i` of a clip as

    epsilon_i = sqrt(lambda_i) * b + sqrt(1 - lambda_i) * r_i,

with one base noise `b` shared by every frame and a residual `r_i` per frame, all standard normal. Each
`epsilon_i` is then standard normal too, and two frames correlate with coefficient `sqrt(lambda_i * lambda_j)`
(`lambda` for a constant ratio), so the noisy frames of a clip always share a common part.

The maths is in the module-level functions of `decomposed_noise.py`, which [`DecomposedNoiseScheduler`] calls. Video
tensors are `(batch, channels, frames, height, width)`; a base tensor has one frame, `(batch, channels, 1, height,
width)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers import ConfigMixin, SchedulerMixin
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput

from .decomposed_noise import (
    _as_base,
    _check_shape,
    _check_video,
    check_base_noise_ratio,
    combine_noise,
    frame_ratios,
    remove_base_noise,
    sample_decomposed_noise,
    split_noise,
)
from .diffusion_math import (
    TIMESTEP_SPACINGS,
    _as_number,
    _coef,
    check_betas,
    check_custom_timesteps,
    check_eta,
    check_finite,
    check_generator,
    check_num_inference_steps,
    check_num_train_timesteps,
    check_prediction_type,
    check_same_shape,
    check_training_timesteps,
    check_x0_limits,
    check_x0_predictable,
    discrete_betas,
    discrete_timesteps,
    limit_x0,
    prediction_to_x0_eps,
    velocity,
    x0_to_eps,
)

# ----------------------------------------------------------------------------------------------------------------------
# Scheduler
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class DecomposedNoiseSchedulerOutput(BaseOutput):
    """Output of [`DecomposedNoiseScheduler.step`].

    Args:
        prev_sample (`torch.Tensor` of shape `(batch_size, channels, frames, height, width)`):
            The sample at the previous timestep `x_{t-1}`; the next model input.
        pred_original_sample (`torch.Tensor`, same shape):
            The predicted clean video `x_0`, after clipping or thresholding if enabled.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class DecomposedNoiseScheduler(SchedulerMixin, ConfigMixin):
    """DDIM / DDPM sampling with VideoFusion's decomposed noise (base noise shared by all frames + residual noise).

    `sample_noise` draws the initial and training noise decomposed; `combine` merges a base generator's prediction
    (an image model on one frame) and a residual generator's prediction into the per-frame prediction that `step`
    takes; for `eta > 0`, `step` injects variance noise that is itself decomposed, which keeps frames coherent.
    With `base_noise_ratio=0` every step equals diffusers' `DDIMScheduler.step` for the same configuration.

    This model inherits from [`SchedulerMixin`] and [`ConfigMixin`] (saving, loading, `from_config`).

    Args:
        num_train_timesteps (`int`, defaults to 1000): Number of training timesteps.
        beta_start (`float`, defaults to 0.0001): First beta ("linear", "scaled_linear").
        beta_end (`float`, defaults to 0.02): Last beta ("linear", "scaled_linear").
        beta_schedule (`str`, defaults to "linear"): "linear", "scaled_linear" or "squaredcos_cap_v2".
        trained_betas (`np.ndarray | list[float]`, *optional*): Betas to use as they are.
        clip_sample (`bool`, defaults to `False`): Clip the predicted `x_0` to `[-clip_sample_range,
            clip_sample_range]` (as `DDIMScheduler`; pass `use_clipped_model_output=True` to `step` under strong
            guidance, or colours can invert).
        set_alpha_to_one (`bool`, defaults to `True`): The last step goes to `alpha_bar = 1` rather than to the noise
            level of timestep 0.
        steps_offset (`int`, defaults to 0): Offset of "leading" timesteps.
        prediction_type (`str`, defaults to "epsilon"): "epsilon", "v_prediction" or "sample".
        thresholding (`bool`, defaults to `False`): Dynamic thresholding of the predicted `x_0` (pixel space only).
        dynamic_thresholding_ratio (`float`, defaults to 0.995): Percentile for dynamic thresholding.
        clip_sample_range (`float`, defaults to 1.0): Clipping range for `clip_sample`.
        sample_max_value (`float`, *optional*): Upper bound of the dynamic threshold; `None` leaves it unbounded
            (diffusers' `DDIMScheduler` defaults to 1.0, which reduces thresholding to clipping).
        timestep_spacing (`str`, defaults to "trailing"): "trailing", "leading" or "linspace".
        rescale_betas_zero_snr (`bool`, defaults to `False`): Rescale betas to zero terminal SNR (needs
            v-prediction).
        base_noise_ratio (`float` or `list[float]`, defaults to 0.5): `lambda` in [0, 1], the share of the variance
            of each frame's noise that is the shared base noise; one value for all frames or one per frame. 0 is
            plain independent noise; VideoFusion reports 0.5 working better than smaller or larger values.
        eta (`float`, defaults to 0.0): Default DDIM eta of `step`, in [0, 1]: 0 is deterministic DDIM, 1 is
            DDPM-like.
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        clip_sample: bool = False,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float | None = None,
        timestep_spacing: Literal["leading", "trailing", "linspace"] = "trailing",
        rescale_betas_zero_snr: bool = False,
        base_noise_ratio: float | list[float] = 0.5,
        eta: float = 0.0,
    ):
        check_num_train_timesteps(num_train_timesteps)
        check_prediction_type(prediction_type)
        check_base_noise_ratio(base_noise_ratio)
        if timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"`timestep_spacing` must be one of {TIMESTEP_SPACINGS} but is {timestep_spacing!r}.")
        check_eta(eta)
        check_betas(num_train_timesteps, beta_start, beta_end, trained_betas)
        check_x0_limits(dynamic_thresholding_ratio, clip_sample_range, sample_max_value)

        self.betas = discrete_betas(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr
        )
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        # the last step looks at the alpha_bar "before" timestep 0: 1 (clean data), or that of timestep 0
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]

        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.arange(0, num_train_timesteps)[::-1].copy().astype(np.int64))

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """Returns `sample` unchanged: DDIM needs no input scaling (kept for interchangeability)."""
        return sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # -- noise decomposition -----------------------------------------------------------------------------------------

    def frame_ratios(self, num_frames: int, device: str | torch.device | None = None) -> torch.Tensor:
        """`lambda_i` of each of `num_frames` frames, shape `(num_frames,)`; checks a per-frame list's length."""
        return frame_ratios(self.config.base_noise_ratio, num_frames, device=device)

    def sample_noise(
        self,
        shape: Sequence[int],
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draws decomposed noise for a video of `shape` `(B, C, F, H, W)`.

        Use `noise` as the initial latents of sampling, or with [`add_noise`] for training; `base` and `residual`
        are the targets of a base and a residual generator.

        Args:
            shape (`Sequence[int]`): `(B, C, F, H, W)`.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Random generator(s).
            device (`str` or `torch.device`, *optional*): Device of the result.
            dtype (`torch.dtype`, *optional*): Dtype of the result.

        Returns:
            `tuple[torch.Tensor, torch.Tensor, torch.Tensor]`: `(noise, base, residual)`; `base` is
            `(B, C, 1, H, W)`.
        """
        _check_shape(shape)
        return sample_decomposed_noise(shape, self.frame_ratios(shape[2]), generator, device, dtype)

    def combine(self, base_pred: torch.Tensor, residual_pred: torch.Tensor) -> torch.Tensor:
        """Per-frame prediction `sqrt(lambda_i) * base_pred + sqrt(1 - lambda_i) * residual_pred_i`.

        Args:
            base_pred (`torch.Tensor`): Base prediction, `(B, C, 1, H, W)` or `(B, C, H, W)` (an image model's output).
            residual_pred (`torch.Tensor`): Residual prediction, `(B, C, F, H, W)`.

        Returns:
            `torch.Tensor`: `(B, C, F, H, W)`, the `model_output` to pass to [`step`].
        """
        _check_video(residual_pred, "residual_pred")
        _as_base(base_pred, residual_pred, "base_pred", "residual_pred")
        return combine_noise(base_pred, residual_pred, self.frame_ratios(residual_pred.shape[2]))

    def split(self, noise: torch.Tensor, base: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of [`combine`]: `(base, residual)`, exact when `base` is known (see [`split_noise`])."""
        _check_video(noise, "noise")
        if base is not None:
            _as_base(base, noise, "base", "noise")
        return split_noise(noise, self.frame_ratios(noise.shape[2]), base)

    def remove_base_noise(
        self, sample: torch.Tensor, base_noise: torch.Tensor, timestep: int | torch.Tensor
    ) -> torch.Tensor:
        """`x_t^i - sigma_t * sqrt(lambda_i) * base_noise`: the residual generator's input in VideoFusion.

        Args:
            sample (`torch.Tensor`): The noisy video at `timestep`, `(B, C, F, H, W)`.
            base_noise (`torch.Tensor`): The (predicted) base noise, `(B, C, 1, H, W)` or `(B, C, H, W)`.
            timestep (`int` or `torch.Tensor`): The timestep of `sample`, or one per batch element.
        """
        _check_video(sample, "sample")
        _as_base(base_noise, sample, "base_noise", "sample")
        _, sigma = self.alpha_sigma(torch.as_tensor(timestep, device=sample.device))
        return remove_base_noise(sample, base_noise, sigma, self.frame_ratios(sample.shape[2]))

    # -- noise levels and timesteps ----------------------------------------------------------------------------------

    def _alpha_prod(self, timesteps: int | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(timesteps)
        if t.is_floating_point():
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"`timesteps` must be finite but are {timesteps}.")
            t = t.round().long()
        num_train = self.config.num_train_timesteps
        if bool((t >= num_train).any()):
            raise ValueError(f"`timesteps` must be below `num_train_timesteps` ({num_train}) but are {timesteps}.")
        alphas_cumprod = self.alphas_cumprod.to(t.device)
        return torch.where(t >= 0, alphas_cumprod[t.clamp(min=0)], self.final_alpha_cumprod.to(t.device))

    def alpha_sigma(self, timesteps: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t))` of integer timesteps; a negative one means the end of sampling."""
        alpha_prod = self._alpha_prod(timesteps)
        return alpha_prod**0.5, (1 - alpha_prod) ** 0.5

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """Sets the discrete timesteps of sampling (call before the denoising loop).

        Args:
            num_inference_steps (`int`, *optional*): Number of steps, in [1, `num_train_timesteps`].
            device (`str` or `torch.device`, *optional*): Device of the timesteps.
            timesteps (`list[int]`, *optional*): Custom strictly decreasing timesteps in [0, `num_train_timesteps`)
                instead of `num_inference_steps`.
        """
        num_train = self.config.num_train_timesteps
        grid = check_custom_timesteps(num_inference_steps, timesteps)
        if grid is not None:
            if np.any(grid != np.round(grid)) or grid[0] >= num_train or grid[-1] < 0:
                raise ValueError(f"`timesteps` must be integers in [0, {num_train}) but are {list(grid)}.")
            grid = grid.astype(np.int64)
        else:
            check_num_inference_steps(num_inference_steps, num_train)
            grid = discrete_timesteps(
                num_inference_steps, num_train, self.config.timestep_spacing, self.config.steps_offset
            )
        self.num_inference_steps = len(grid)
        self.timesteps = torch.from_numpy(grid).to(device)

    def previous_timestep(self, timestep: int | torch.Tensor) -> torch.Tensor:
        """The timestep a step from `timestep` lands on: the next of `self.timesteps`, or -1 (the end) after the last.

        `DDIMScheduler` uses `timestep - num_train_timesteps // num_inference_steps` instead, which is the same for
        "leading" spacing and for "trailing" when the step count divides `num_train_timesteps`, and otherwise can
        land between the grid points; this scheduler always lands on the grid.
        """
        t = torch.as_tensor(timestep, device=self.timesteps.device)
        if t.numel() != 1:
            raise ValueError(f"`timestep` must be a single timestep but is {timestep}.")
        matches = (self.timesteps == t.round().long()).nonzero()
        if len(matches) == 0:
            raise ValueError(f"`timestep` must be one of `scheduler.timesteps` but is {_as_number(timestep)}.")
        index = int(matches[0, 0])
        if index == len(self.timesteps) - 1:
            return torch.tensor(-1, device=self.timesteps.device)
        return self.timesteps[index + 1]

    # Adapted from diffusers.schedulers.scheduling_ddim.DDIMScheduler._get_variance (takes the alpha_bars directly)
    def _get_variance(self, alpha_prod_t: torch.Tensor, alpha_prod_t_prev: torch.Tensor) -> torch.Tensor:
        # sigma_t(eta=1)^2 of DDIM eq. 16: (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        return (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)

    # -- sampling ----------------------------------------------------------------------------------------------------

    # Adapted from diffusers.schedulers.scheduling_ddim.DDIMScheduler.step: the same maths, but the previous timestep
    # is the next point of the grid (see `previous_timestep`) and the variance noise is decomposed
    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: float | None = None,
        use_clipped_model_output: bool = False,
        generator: torch.Generator | list[torch.Generator] | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DecomposedNoiseSchedulerOutput | tuple:
        """One DDIM step from `timestep` to the next timestep of the grid, with decomposed variance noise.

        Args:
            model_output (`torch.Tensor`): The combined per-frame prediction (see [`combine`]), `(B, C, F, H, W)`.
            timestep (`int` or `torch.Tensor`): The current timestep, one of `self.timesteps`.
            sample (`torch.Tensor`): The current noisy video `x_t`.
            eta (`float`, *optional*): Weight of the injected noise, in [0, 1]; defaults to `config.eta`. 0 is
                deterministic.
            use_clipped_model_output (`bool`, defaults to `False`): Re-derive the noise estimate from the clipped or
                thresholded `x_0` (as `DDIMScheduler`).
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Generator of the variance noise.
            variance_noise (`torch.Tensor`, *optional*): The variance noise itself, used as given (draw it with
                [`sample_noise`] to keep it decomposed); excludes `generator`.
            return_dict (`bool`, defaults to `True`): Return a [`DecomposedNoiseSchedulerOutput`] instead of a tuple.

        Returns:
            [`DecomposedNoiseSchedulerOutput`] or `tuple`: `(prev_sample, pred_original_sample)` as a tuple.
        """
        if self.num_inference_steps is None:
            raise ValueError("`num_inference_steps` is None: call `set_timesteps` before `step`.")
        eta = self.config.eta if eta is None else eta
        check_eta(eta)
        check_same_shape(model_output, "model_output", sample, "sample")
        check_finite(model_output, "model_output", timestep)
        check_finite(sample, "sample", timestep)
        check_generator(generator)
        if variance_noise is not None:
            check_same_shape(variance_noise, "variance_noise", sample, "sample")

        # See formulas (12) and (16) of DDIM (Song et al. 2021, https://huggingface.co/papers/2010.02502) and the
        # decomposed noise of VideoFusion (https://huggingface.co/papers/2303.08320).
        # Notation (<variable name> -> <name in paper>)
        # - model_output -> combined prediction, e.g. sqrt(lambda_i) b_hat_t + sqrt(1 - lambda_i) r_hat_t^i (VideoFusion)
        # - pred_original_sample -> f_theta(x_t, t) or "predicted x_0"; pred_epsilon -> e_theta(x_t, t)
        # - std_dev_t -> sigma_t(eta); eta -> η
        # - pred_sample_direction -> "direction pointing to x_t"; prev_sample -> x_{t-1}
        # - variance_noise -> sqrt(lambda_i) b + sqrt(1 - lambda_i) r_i: a fresh decomposed noise

        # 1. previous step value: the next timestep of the grid (-1 after the last)
        prev_timestep = self.previous_timestep(timestep)

        # 2. alpha_bar of t and t-1
        alpha_prod_t = self._alpha_prod(timestep)
        alpha_prod_t_prev = self._alpha_prod(prev_timestep)
        alpha_t, sigma_t = alpha_prod_t**0.5, (1 - alpha_prod_t) ** 0.5
        check_x0_predictable(self.config.prediction_type, alpha_prod_t, timestep)

        # 3. "predicted x_0" and "predicted noise" of formula (12) from the model output
        pred_original_sample, pred_epsilon = prediction_to_x0_eps(
            model_output, sample, alpha_t, sigma_t, self.config.prediction_type
        )

        # 4. clip or threshold "predicted x_0"
        pred_original_sample = limit_x0(pred_original_sample, self.config)

        # 5. "sigma_t(eta)" of formula (16)
        variance = self._get_variance(alpha_prod_t, alpha_prod_t_prev)
        std_dev_t = eta * variance ** (0.5)

        if use_clipped_model_output:
            # the noise estimate re-derived from the clipped x_0, as in GLIDE
            pred_epsilon = x0_to_eps(sample, pred_original_sample, alpha_t, sigma_t)

        # 6. "direction pointing to x_t" of formula (12)
        pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** (0.5) * pred_epsilon

        # 7. x_{t-1} without the random noise of formula (12)
        prev_sample = alpha_prod_t_prev ** (0.5) * pred_original_sample + pred_sample_direction

        # 8. add the random noise, decomposed like the diffusion noise so that frames stay correlated
        if eta > 0:
            if variance_noise is not None and generator is not None:
                raise ValueError(
                    "Pass at most one of `generator` and `variance_noise`; keep the other None (both were given)."
                )
            if variance_noise is None:
                _check_video(model_output, "model_output")
                variance_noise, _, _ = self.sample_noise(
                    model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype
                )
            prev_sample = prev_sample + std_dev_t * variance_noise

        if not return_dict:
            return (prev_sample, pred_original_sample)
        return DecomposedNoiseSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    # -- training ----------------------------------------------------------------------------------------------------

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: int | torch.Tensor
    ) -> torch.Tensor:
        """Forward process `sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise`, with `noise` from [`sample_noise`].

        Args:
            original_samples (`torch.Tensor`): Clean videos `x_0`, `(B, C, F, H, W)`.
            noise (`torch.Tensor`): Decomposed noise of the same shape (the first output of [`sample_noise`]).
            timesteps (`int` or `torch.Tensor`): One timestep, or one per batch element.
        """
        alpha, sigma = self._training_levels(timesteps, original_samples, "original_samples", noise, "noise")
        return _coef(alpha, original_samples) * original_samples + _coef(sigma, original_samples) * noise

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: int | torch.Tensor) -> torch.Tensor:
        """The v-prediction target `sqrt(alpha_bar_t) noise - sqrt(1 - alpha_bar_t) sample`."""
        alpha, sigma = self._training_levels(timesteps, sample, "sample", noise, "noise")
        return velocity(sample, noise, alpha, sigma)

    def _training_levels(
        self, timesteps: int | torch.Tensor, sample: torch.Tensor, name: str, noise: torch.Tensor, noise_name: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(alpha, sigma)` of training timesteps in [0, `num_train_timesteps`), one or one per batch element, flat
        and in `sample`'s dtype, once `noise` is checked to have `sample`'s shape."""
        check_same_shape(noise, noise_name, sample, name)
        t = check_training_timesteps(timesteps, sample.shape[0], 0, self.config.num_train_timesteps)
        alpha, sigma = self.alpha_sigma(t.to(sample.device))
        return alpha.flatten().to(sample.dtype), sigma.flatten().to(sample.dtype)
