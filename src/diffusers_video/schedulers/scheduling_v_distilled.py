"""Deterministic DDIM sampling of v-prediction models on the grid of a progressively distilled student.

Imagen Video (Ho et al. 2022, https://huggingface.co/papers/2210.02303) samples v-prediction models and distils them
with progressive distillation (Salimans & Ho 2022, https://huggingface.co/papers/2202.00512) down to 8 steps. The maths
lives in `diffusion_math.py` as small functions that this scheduler calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers import ConfigMixin, SchedulerMixin
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput

from .diffusion_math import (
    NOISE_SCHEDULES,
    TIMESTEP_SPACINGS,
    _as_number,
    _coef,
    check_betas,
    check_custom_timesteps,
    check_finite,
    check_generator,
    check_num_inference_steps,
    check_num_train_timesteps,
    check_prediction_type,
    check_restart_timestep,
    check_same_shape,
    check_training_timesteps,
    check_x0_limits,
    check_x0_predictable,
    continuous_timesteps,
    cosine_alpha_sigma,
    ddim_update,
    discrete_betas,
    discrete_timesteps,
    distillation_step_counts,
    limit_x0,
    prediction_to_x0_eps,
    velocity,
    x0_to_eps,
)


@dataclass
class VDistilledSchedulerOutput(BaseOutput):
    """Output of [`VDistilledScheduler.step`].

    Args:
        prev_sample (`torch.Tensor` of shape `(batch_size, channels, frames, height, width)` for videos):
            The sample at the next (less noisy) timestep; the next model input.
        pred_original_sample (`torch.Tensor`, same shape):
            The predicted clean sample `x_0`, after clipping or thresholding if enabled.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class VDistilledScheduler(SchedulerMixin, ConfigMixin):
    """Deterministic DDIM sampler in `(alpha, sigma)` form for (progressively distilled) v-prediction models.

    The noise schedule is either diffusers-style discrete betas (`noise_schedule="discrete"`, timesteps are integer
    indices in [0, `num_train_timesteps`)) or Imagen Video's continuous cosine schedule
    (`noise_schedule="continuous_cosine"`, `alpha_t = cos(pi t / 2)`, timesteps are `t * num_train_timesteps`).
    `set_timesteps(n)` returns the grid an `n`-step student is trained on: with "trailing" spacing (discrete) or on
    the continuous schedule, the `n`-step grid is every other point of the `2 n`-step grid, so one student step spans
    exactly two teacher steps. With `distillation_base_steps` set, `n` must be one of the step counts that halving
    from it reaches. Without clipping or thresholding, each step equals diffusers' `DDIMScheduler.step` (eta = 0).

    This model inherits from [`SchedulerMixin`] and [`ConfigMixin`] (saving, loading, `from_config`).

    Args:
        num_train_timesteps (`int`, defaults to 1000): Number of training timesteps `T`.
        noise_schedule (`str`, defaults to "discrete"): "discrete" (betas below) or "continuous_cosine".
        beta_start (`float`, defaults to 0.0001): First beta ("linear", "scaled_linear"); discrete only.
        beta_end (`float`, defaults to 0.02): Last beta ("linear", "scaled_linear"); discrete only.
        beta_schedule (`str`, defaults to "linear"): "linear", "scaled_linear" or "squaredcos_cap_v2"; discrete only.
        trained_betas (`np.ndarray | list[float]`, *optional*): Betas to use as they are; discrete only.
        prediction_type (`str`, defaults to "v_prediction"): What the model predicts: "v_prediction", "epsilon" or
            "sample".
        clip_sample (`bool`, defaults to `False`): Clip the predicted `x_0` to `[-clip_sample_range,
            clip_sample_range]`. The noise estimate is then re-derived from the clipped `x_0` (diffusers'
            `use_clipped_model_output=True`), which keeps colours right under strong guidance.
        clip_sample_range (`float`, defaults to 1.0): Clipping range for `clip_sample`.
        thresholding (`bool`, defaults to `False`): Dynamic thresholding of the predicted `x_0` (Imagen); takes
            precedence over `clip_sample`. For pixel-space models, not latent ones.
        dynamic_thresholding_ratio (`float`, defaults to 0.995): Percentile for dynamic thresholding.
        sample_max_value (`float`, *optional*): Upper bound of the dynamic threshold; `None` leaves it unbounded.
        set_alpha_to_one (`bool`, defaults to `True`): The last step goes to `alpha = 1` (clean data); otherwise to the
            noise level of timestep 0. Discrete only (the continuous schedule always ends at `t = 0`).
        steps_offset (`int`, defaults to 0): Offset of "leading" timesteps; discrete only.
        timestep_spacing (`str`, defaults to "trailing"): "trailing", "leading" or "linspace"; discrete only.
            "linspace" grids do not nest, so they cannot serve progressive distillation.
        rescale_betas_zero_snr (`bool`, defaults to `False`): Rescale betas to zero terminal SNR (needs
            v-prediction); discrete only.
        distillation_base_steps (`int`, *optional*): Step count of the undistilled sampler the progressive
            distillation started from (e.g. 256). When set, `set_timesteps` only accepts its halvings (256, 128, ...,
            8, ...). `None` accepts any step count.
        default_num_inference_steps (`int`, *optional*): The step count the model is sampled with when a pipeline
            is not told one: a distilled student's scheduler records its own (e.g. 8), so
            `ImagenVideoPipeline.from_pretrained(folder)(prompt)` samples it at that count. Must be on the distillation
            grid. `None`: `distillation_base_steps` when set, else the pipeline's own default.
        restart_timestep (`float`, *optional*): Where a pipeline restarts the finished sample once (restart sampling,
            Xu et al. 2023, https://huggingface.co/papers/2306.14878): after the last step it noises the output back
            to this timestep with fresh noise and takes the model's clean prediction there, one more model call (see
            `pipelines.denoising.restart`). A few-step student's last prediction is made at a high noise level (0.19
            at 8 steps) and leaves high-frequency grain; one prediction at a low level (e.g. 31.25, the last point of
            the 32-step grid, `sigma` 0.05) removes most of it. In `[0, num_train_timesteps)` (an integer on the
            discrete schedule); `None` or 0: no restart.
        restart_antithetic (`bool`, defaults to `False`): Make that restart an antithetic pair: the clean predictions
            from the fresh noise and from its negation, averaged (two model calls instead of one; the error odd in
            the noise cancels).
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        noise_schedule: Literal["discrete", "continuous_cosine"] = "discrete",
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        prediction_type: Literal["epsilon", "v_prediction", "sample"] = "v_prediction",
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float | None = None,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        timestep_spacing: Literal["leading", "trailing", "linspace"] = "trailing",
        rescale_betas_zero_snr: bool = False,
        distillation_base_steps: int | None = None,
        default_num_inference_steps: int | None = None,
        restart_timestep: float | None = None,
        restart_antithetic: bool = False,
    ):
        check_num_train_timesteps(num_train_timesteps)
        if noise_schedule not in NOISE_SCHEDULES:
            raise ValueError(f"`noise_schedule` must be one of {NOISE_SCHEDULES} but is {noise_schedule!r}.")
        check_prediction_type(prediction_type)
        if timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"`timestep_spacing` must be one of {TIMESTEP_SPACINGS} but is {timestep_spacing!r}.")
        if noise_schedule == "discrete":
            check_betas(num_train_timesteps, beta_start, beta_end, trained_betas)
        check_x0_limits(dynamic_thresholding_ratio, clip_sample_range, sample_max_value)
        if distillation_base_steps is not None:
            check_num_inference_steps(distillation_base_steps, num_train_timesteps, name="distillation_base_steps")
        if default_num_inference_steps is not None:
            check_num_inference_steps(
                default_num_inference_steps, num_train_timesteps, name="default_num_inference_steps"
            )
            if distillation_base_steps is not None and default_num_inference_steps not in distillation_step_counts(
                distillation_base_steps
            ):
                raise ValueError(
                    f"`default_num_inference_steps` must be on the distillation grid of `distillation_base_steps`="
                    f"{distillation_base_steps}, one of {distillation_step_counts(distillation_base_steps)}, but is"
                    f" {default_num_inference_steps}."
                )

        if restart_timestep is not None:
            check_restart_timestep(restart_timestep, num_train_timesteps, noise_schedule == "discrete")
        if not isinstance(restart_antithetic, bool):
            raise TypeError(f"`restart_antithetic` must be True or False but is {restart_antithetic!r}.")

        if noise_schedule == "discrete":
            self.betas = discrete_betas(
                num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr
            )
            self.alphas = 1.0 - self.betas
            self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
            self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
            timesteps = np.arange(0, num_train_timesteps)[::-1].copy().astype(np.int64)
        else:
            # no beta table: alpha and sigma are functions of continuous time
            self.betas = self.alphas = self.alphas_cumprod = self.final_alpha_cumprod = None
            timesteps = continuous_timesteps(num_train_timesteps, num_train_timesteps).astype(np.float32)

        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(timesteps)

    @property
    def is_continuous(self) -> bool:
        """Whether the noise schedule is the continuous cosine one."""
        return self.config.noise_schedule == "continuous_cosine"

    def scale_model_input(self, sample: torch.Tensor, timestep: int | float | None = None) -> torch.Tensor:
        """Returns `sample` unchanged: DDIM needs no input scaling (kept for interchangeability)."""
        return sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # -- noise levels ------------------------------------------------------------------------------------------------

    def alpha_sigma(self, timesteps: int | float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(alpha_t, sigma_t)` of timesteps in model units.

        Args:
            timesteps (`int`, `float` or `torch.Tensor`): Discrete indices in [0, `num_train_timesteps`) (a negative
                index is the end of sampling: `final_alpha_cumprod`), or continuous times in [0,
                `num_train_timesteps`].

        Returns:
            `tuple[torch.Tensor, torch.Tensor]`: float32 tensors of the shape of `timesteps`.
        """
        t = torch.as_tensor(timesteps)
        num_train = self.config.num_train_timesteps
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"`timesteps` must be finite but are {timesteps}.")
        if self.is_continuous:
            if bool(((t < 0) | (t > num_train)).any()):
                raise ValueError(f"`timesteps` must be in [0, {num_train}] but are {timesteps}.")
            alpha, sigma = cosine_alpha_sigma(t.to(torch.float64) / num_train)
            return alpha.float(), sigma.float()
        if t.is_floating_point():
            if bool((t != t.round()).any()):
                raise ValueError(f"`timesteps` must be integers on the discrete schedule but are {timesteps}.")
            t = t.round().long()
        if bool((t >= num_train).any()):
            raise ValueError(f"`timesteps` must be below `num_train_timesteps` ({num_train}) but are {timesteps}.")
        alphas_cumprod = self.alphas_cumprod.to(t.device)
        alpha_prod = torch.where(t >= 0, alphas_cumprod[t.clamp(min=0)], self.final_alpha_cumprod.to(t.device))
        return alpha_prod.sqrt(), (1 - alpha_prod).sqrt()

    # -- timesteps ---------------------------------------------------------------------------------------------------

    def _grid(self, num_inference_steps: int) -> np.ndarray:
        if self.is_continuous:
            return continuous_timesteps(num_inference_steps, self.config.num_train_timesteps).astype(np.float32)
        return discrete_timesteps(
            num_inference_steps,
            self.config.num_train_timesteps,
            self.config.timestep_spacing,
            self.config.steps_offset,
        )

    @property
    def default_num_inference_steps(self) -> int | None:
        """Steps to sample with when none are given: `default_num_inference_steps` of the config, else
        `distillation_base_steps` (None when neither is set)."""
        steps = self.config.get("default_num_inference_steps")
        return steps if steps is not None else self.config.distillation_base_steps

    def _check_on_distillation_grid(self, num_inference_steps: int, name: str = "num_inference_steps") -> None:
        base = self.config.distillation_base_steps
        if base is not None and num_inference_steps not in distillation_step_counts(base):
            raise ValueError(
                f"`{name}` must be on the distillation grid of `distillation_base_steps`={base}, one of"
                f" {distillation_step_counts(base)}, but is {num_inference_steps}."
            )

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | list[float] | None = None,
    ) -> None:
        """Sets the timesteps of sampling (call before the denoising loop).

        Args:
            num_inference_steps (`int`, *optional*): Number of steps `n`; the grid of an `n`-step student. Must be in
                [1, `num_train_timesteps`] and, with `distillation_base_steps`, one of its halvings.
            device (`str` or `torch.device`, *optional*): Device of the timesteps.
            timesteps (`list`, *optional*): Custom strictly decreasing timesteps instead of `num_inference_steps`
                (integers in [0, T) on the discrete schedule, values in (0, T] on the continuous one). The last one
                steps to clean data.
        """
        num_train = self.config.num_train_timesteps
        grid = check_custom_timesteps(num_inference_steps, timesteps)
        if grid is not None:
            if self.is_continuous:
                if grid[0] > num_train or grid[-1] <= 0:
                    raise ValueError(f"`timesteps` must lie in (0, {num_train}] but are {list(grid)}.")
                grid = grid.astype(np.float32)
            else:
                if np.any(grid != np.round(grid)) or grid[0] >= num_train or grid[-1] < 0:
                    raise ValueError(f"`timesteps` must be integers in [0, {num_train}) but are {list(grid)}.")
                grid = grid.astype(np.int64)
        else:
            check_num_inference_steps(num_inference_steps, num_train)
            self._check_on_distillation_grid(num_inference_steps)
            grid = self._grid(num_inference_steps)
        self.num_inference_steps = len(grid)
        self.timesteps = torch.from_numpy(grid).to(device)

    def _end_timestep(self) -> torch.Tensor:
        # where the last step lands: t = 0 in continuous time, the "final alpha" (index -1) on the discrete schedule
        return torch.tensor(0.0) if self.is_continuous else torch.tensor(-1)

    def previous_timestep(self, timestep: int | float | torch.Tensor) -> torch.Tensor:
        """The timestep that a step from `timestep` lands on: the next one of `self.timesteps`, or the end.

        Raises:
            ValueError: If `timestep` is not one of `self.timesteps`.
        """
        timesteps = self.timesteps
        t = torch.as_tensor(timestep, device=timesteps.device)
        if t.numel() != 1:
            raise ValueError(f"`timestep` must be a single timestep but is {timestep}.")
        tolerance = 1e-4 * self.config.num_train_timesteps if self.is_continuous else 0.5
        matches = ((timesteps.double() - t.double()).abs() <= tolerance).nonzero()
        if len(matches) == 0:
            raise ValueError(f"`timestep` must be one of `scheduler.timesteps` but is {_as_number(timestep)}.")
        index = int(matches[0, 0])
        if index == len(timesteps) - 1:
            return self._end_timestep().to(timesteps.device)
        return timesteps[index + 1]

    def distillation_timesteps(self, num_student_steps: int, device: str | torch.device | None = None) -> torch.Tensor:
        """The `(t, mid, s)` of every student step: the student steps `t -> s`, the teacher `t -> mid -> s`.

        The teacher samples `2 * num_student_steps` steps; its grid must contain the student's grid.

        Args:
            num_student_steps (`int`): Steps of the student being trained.
            device (`str` or `torch.device`, *optional*): Device of the result.

        Returns:
            `torch.Tensor`: Shape `(num_student_steps, 3)`, largest `t` first. The last `s` is the end of sampling
            (-1 on the discrete schedule, 0 on the continuous one); pass any entry to [`alpha_sigma`].
        """
        # the teacher takes twice the steps, at most `num_train_timesteps`
        check_num_inference_steps(num_student_steps, self.config.num_train_timesteps // 2, name="num_student_steps")
        self._check_on_distillation_grid(num_student_steps, name="num_student_steps")
        teacher_steps = 2 * num_student_steps
        student = torch.from_numpy(self._grid(num_student_steps))
        teacher = torch.from_numpy(self._grid(teacher_steps))
        if not torch.equal(teacher[0::2], student):
            raise ValueError(
                f"The {num_student_steps}-step grid is not every other point of the {teacher_steps}-step grid with"
                f" `timestep_spacing`={self.config.timestep_spacing!r}; use 'trailing'."
            )
        end = self._end_timestep().to(student.dtype).reshape(1)
        s = torch.cat([student[1:], end])
        return torch.stack([student, teacher[1::2], s], dim=1).to(device)

    # -- sampling ----------------------------------------------------------------------------------------------------

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> VDistilledSchedulerOutput | tuple:
        """One deterministic DDIM step from `timestep` to the next timestep of the grid.

        Args:
            model_output (`torch.Tensor`): The (guided) model output at `sample`.
            timestep (`int`, `float` or `torch.Tensor`): The current timestep, one of `self.timesteps`.
            sample (`torch.Tensor`): The current noisy sample `x_t`.
            generator (`torch.Generator`, *optional*): Unused: the step is deterministic. Accepted so that pipelines
                can pass the same arguments to every scheduler.
            return_dict (`bool`, defaults to `True`): Return a [`VDistilledSchedulerOutput`] instead of a tuple.

        Returns:
            [`VDistilledSchedulerOutput`] or `tuple`: `(prev_sample, pred_original_sample)` as a tuple.
        """
        if self.num_inference_steps is None:
            raise ValueError("`num_inference_steps` is None: call `set_timesteps` before `step`.")
        check_same_shape(model_output, "model_output", sample, "sample")
        check_finite(model_output, "model_output", timestep)
        check_finite(sample, "sample", timestep)
        check_generator(generator)

        # Notation (<variable name> -> <name in Salimans & Ho 2022 / Imagen Video>)
        # - sample -> z_t; prev_sample -> z_s, with s the next (less noisy) time of the grid
        # - alpha_t, sigma_t -> alpha_t, sigma_t with z_t = alpha_t x + sigma_t eps and alpha_t^2 + sigma_t^2 = 1
        # - model_output -> v_hat = alpha_t eps_hat - sigma_t x_hat (or eps_hat, or x_hat, by `prediction_type`)
        # - pred_original_sample -> x_hat(z_t); pred_epsilon -> eps_hat(z_t)

        # 1. the time s this step lands on
        prev_timestep = self.previous_timestep(timestep)

        # 2. noise levels of t and s
        alpha_t, sigma_t = self.alpha_sigma(timestep)
        alpha_s, sigma_s = self.alpha_sigma(prev_timestep)
        check_x0_predictable(self.config.prediction_type, alpha_t, timestep)

        # 3. x_hat and eps_hat from the model output; for v: x_hat = alpha_t z_t - sigma_t v_hat,
        #    eps_hat = sigma_t z_t + alpha_t v_hat (Imagen Video section 2.4, Salimans & Ho section 4)
        pred_original_sample, pred_epsilon = prediction_to_x0_eps(
            model_output, sample, alpha_t, sigma_t, self.config.prediction_type
        )

        # 4. clip or threshold x_hat, then re-derive eps_hat = (z_t - alpha_t x_hat) / sigma_t so that the step stays
        #    on the line through z_t and the clipped x_hat (diffusers' `use_clipped_model_output=True`)
        if self.config.thresholding or self.config.clip_sample:
            pred_original_sample = limit_x0(pred_original_sample, self.config)
            pred_epsilon = x0_to_eps(sample, pred_original_sample, alpha_t, sigma_t)

        # 5. z_s = alpha_s x_hat + sigma_s eps_hat: DDIM (Song et al. 2021, eq. 12) with eta = 0
        prev_sample = ddim_update(pred_original_sample, pred_epsilon, alpha_s, sigma_s)

        if not return_dict:
            return (prev_sample, pred_original_sample)
        return VDistilledSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    # -- training ----------------------------------------------------------------------------------------------------

    def _levels_like(
        self, timesteps: int | float | torch.Tensor, like: torch.Tensor, name: str, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(alpha, sigma)` of training timesteps (one, or one per batch element; in [0, T) on the discrete
        schedule, [0, T] on the continuous one), flat and in `like`'s dtype, once `noise` has `like`'s shape."""
        check_same_shape(noise, "noise", like, name)
        num_train = self.config.num_train_timesteps
        t = check_training_timesteps(timesteps, like.shape[0], 0, num_train, closed=self.is_continuous)
        alpha, sigma = self.alpha_sigma(t.to(like.device))
        return alpha.flatten().to(like.dtype), sigma.flatten().to(like.dtype)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: int | float | torch.Tensor
    ) -> torch.Tensor:
        """Forward process `x_t = alpha_t * x_0 + sigma_t * noise`.

        Args:
            original_samples (`torch.Tensor`): Clean samples `x_0`, `(B, ...)`.
            noise (`torch.Tensor`): Standard normal noise of the same shape.
            timesteps (`int`, `float` or `torch.Tensor`): One timestep, or one per batch element, in model units.

        Returns:
            `torch.Tensor`: The noisy samples.
        """
        alpha, sigma = self._levels_like(timesteps, original_samples, "original_samples", noise)
        return _coef(alpha, original_samples) * original_samples + _coef(sigma, original_samples) * noise

    def get_velocity(
        self, sample: torch.Tensor, noise: torch.Tensor, timesteps: int | float | torch.Tensor
    ) -> torch.Tensor:
        """The v-prediction target `alpha_t * noise - sigma_t * sample` for clean `sample` noised with `noise`."""
        alpha, sigma = self._levels_like(timesteps, sample, "sample", noise)
        return velocity(sample, noise, alpha, sigma)
