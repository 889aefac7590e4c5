"""Diffusion maths shared by the schedulers and the guidance objects of this package.

Imagen Video (Ho et al. 2022, https://huggingface.co/papers/2210.02303) samples v-prediction models and distils them
with progressive distillation (Salimans & Ho 2022, https://huggingface.co/papers/2202.00512) down to 8 steps.

The maths is kept in small module-level functions that the scheduler calls, so that training loops, pipelines and
tests use the very code the scheduler runs. They all assume a variance-preserving process

    x_t = alpha_t * x_0 + sigma_t * epsilon,    alpha_t**2 + sigma_t**2 = 1,    v_t = alpha_t * epsilon - sigma_t * x_0,

and take the noise level of a timestep as explicit `alpha` and `sigma` values (floats, 0-d tensors or one value per
batch element), so they do not depend on any particular noise schedule.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
from diffusers.schedulers.scheduling_ddim import betas_for_alpha_bar, rescale_zero_terminal_snr

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
NOISE_SCHEDULES = ("discrete", "continuous_cosine")

Scalar = float | torch.Tensor
NoiseLevel = tuple[Scalar, Scalar]
"""The noise level of a timestep as `(alpha, sigma)`."""


# ----------------------------------------------------------------------------------------------------------------------
# Input checks shared by the schedulers of this package
# ----------------------------------------------------------------------------------------------------------------------


def check_prediction_type(prediction_type: str) -> None:
    """Raises a `ValueError` unless `prediction_type` is "epsilon", "v_prediction" or "sample"."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES} but is {prediction_type!r}.")


def check_num_train_timesteps(num_train_timesteps: int) -> None:
    """Raises a `ValueError` unless `num_train_timesteps` is a positive integer."""
    if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
        raise ValueError(f"`num_train_timesteps` must be a positive integer but is {num_train_timesteps!r}.")


def check_num_inference_steps(
    num_inference_steps: int, num_train_timesteps: int, name: str = "num_inference_steps"
) -> None:
    """Raises unless `num_inference_steps` is an integer in [1, `num_train_timesteps`]; `name` names it."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer but is {num_inference_steps!r}.")
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(f"`{name}` must be in [1, {num_train_timesteps}] but is {num_inference_steps}.")


def check_custom_timesteps(num_inference_steps: int | None, timesteps) -> np.ndarray | None:
    """`set_timesteps` takes exactly one of a step count and custom timesteps; returns the custom ones as an array.

    Custom timesteps must be a non-empty, strictly decreasing 1-D sequence (list, array or tensor); the range they
    must lie in depends on the schedule and is checked by the scheduler.
    """
    if (num_inference_steps is None) == (timesteps is None):
        raise ValueError(
            "Pass exactly one of `num_inference_steps` and `timesteps` but got"
            f" `num_inference_steps`={num_inference_steps} and `timesteps`={timesteps}."
        )
    if timesteps is None:
        return None
    grid = np.asarray(timesteps.cpu() if isinstance(timesteps, torch.Tensor) else timesteps)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"`timesteps` must be a non-empty 1-D sequence but is {timesteps}.")
    if grid.dtype.kind not in "iuf":
        raise TypeError(f"`timesteps` must be numbers but are {timesteps!r}.")
    if not np.all(np.isfinite(grid)):
        raise ValueError(f"`timesteps` must be finite but are {grid.tolist()}.")
    if np.any(np.diff(grid) >= 0):
        raise ValueError(f"`timesteps` must be strictly decreasing but are {list(grid)}.")
    return grid


def check_eta(eta: float) -> None:
    """Raises a `ValueError` unless `eta` (DDIM's η, the weight of the injected noise) is a number in [0, 1].

    0 is deterministic DDIM and 1 the DDPM-like variance of DDIM's eq. 16; above 1 the "direction pointing to x_t"
    takes the square root of a negative number at the last steps, which gives NaN.
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating)) or not eta >= 0:
        raise ValueError(f"`eta` must be a number >= 0 but is {eta!r}.")
    if not eta <= 1:
        raise ValueError(f"`eta` must be at most 1 (DDIM's η lies in [0, 1]) but is {eta!r}.")


def _is_real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def check_betas(
    num_train_timesteps: int,
    beta_start: float,
    beta_end: float,
    trained_betas: np.ndarray | list[float] | None = None,
) -> None:
    """Raises unless the betas of a discrete schedule are numbers in [0, 1): `beta_start` and `beta_end`, or the
    `num_train_timesteps` values of `trained_betas` when given (a beta of 1 or more makes `alpha_bar` zero or negative
    and every later step NaN).

    Raises:
        TypeError: A beta that is not a number.
        ValueError: A beta outside [0, 1), or `trained_betas` of another length.
    """
    if trained_betas is not None:
        values = np.asarray(trained_betas)
        if values.ndim != 1 or values.dtype.kind not in "iuf":
            raise TypeError(f"`trained_betas` must be a 1-D sequence of numbers but is {trained_betas!r}.")
        if len(values) != num_train_timesteps:
            raise ValueError(
                f"`trained_betas` must have `num_train_timesteps`={num_train_timesteps} values but has {len(values)}."
            )
        if not np.all((values >= 0) & (values < 1)):
            bad = values[~((values >= 0) & (values < 1))][:5].tolist()
            raise ValueError(f"`trained_betas` must lie in [0, 1) but has {bad}.")
        return
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not _is_real(value):
            raise TypeError(f"`{name}` must be a number but is {value!r}.")
        if not 0 <= value < 1:
            raise ValueError(f"`{name}` must be in [0, 1) but is {value!r}.")


def check_restart_timestep(
    value: object, num_train_timesteps: int, discrete: bool, name: str = "restart_timestep"
) -> float:
    """Returns a restart timestep (see `VDistilledScheduler`'s `restart_timestep`) as a float, or raises a
    `ValueError` naming `name` and the value: a finite number in `[0, num_train_timesteps)`, an integer on a discrete
    schedule (0 is no restart)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"`{name}` must be a number in [0, {num_train_timesteps}) but is {value!r}.")
    number = float(value)
    if not 0.0 <= number < num_train_timesteps:  # also rejects NaN
        raise ValueError(f"`{name}` must be in [0, {num_train_timesteps}) but is {value!r}.")
    if discrete and number != round(number):
        raise ValueError(f"`{name}` must be an integer on a discrete noise schedule but is {value!r}.")
    return number


def check_x0_limits(
    dynamic_thresholding_ratio: float, clip_sample_range: float, sample_max_value: float | None
) -> None:
    """Raises a `ValueError` naming the config key when a clipping or thresholding option is out of range:
    `dynamic_thresholding_ratio` in (0, 1], `clip_sample_range` > 0, `sample_max_value` None or at least 1."""
    if not _is_real(dynamic_thresholding_ratio) or not 0 < dynamic_thresholding_ratio <= 1:
        raise ValueError(f"`dynamic_thresholding_ratio` must be in (0, 1] but is {dynamic_thresholding_ratio!r}.")
    if not _is_real(clip_sample_range) or not clip_sample_range > 0 or not math.isfinite(clip_sample_range):
        raise ValueError(f"`clip_sample_range` must be a finite number > 0 but is {clip_sample_range!r}.")
    if sample_max_value is not None and (not _is_real(sample_max_value) or not sample_max_value >= 1):
        raise ValueError(f"`sample_max_value` must be None or a number >= 1 but is {sample_max_value!r}.")


def check_same_shape(tensor: torch.Tensor, name: str, reference: torch.Tensor, reference_name: str) -> None:
    """Raises a `ValueError` naming both tensors when `tensor` does not have the shape of `reference` (no silent
    broadcasting of, e.g., a model output of one frame against a video)."""
    for value, value_name in ((tensor, name), (reference, reference_name)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{value_name}` must be a torch.Tensor but is {type(value).__name__}.")
    if tensor.shape != reference.shape:
        raise ValueError(
            f"`{name}` and `{reference_name}` must have the same shape but have shapes {tuple(tensor.shape)} and"
            f" {tuple(reference.shape)}."
        )


def check_generator(generator) -> None:
    """Raises a `TypeError` unless `generator` is None, a `torch.Generator` or a list of them."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, list) and all(isinstance(g, torch.Generator) for g in generator):
        return
    raise TypeError(f"`generator` must be a torch.Generator, a list of them or None but is {generator!r}.")


def check_training_timesteps(timesteps, batch: int, low: float, high: float, closed: bool = False) -> torch.Tensor:
    """`timesteps` of `add_noise` / `get_velocity` as a tensor, checked: one number, or one per batch element, finite,
    in `[low, high)` (`[low, high]` with `closed`).

    Raises:
        TypeError: Not a number or a tensor of numbers.
        ValueError: Another count than 1 or `batch`, a NaN or infinite value, or a value out of range.
    """
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, float, np.integer, np.floating, torch.Tensor)):
        raise TypeError(f"`timesteps` must be a number or a tensor of numbers but is {timesteps!r}.")
    t = torch.as_tensor(timesteps)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"`timesteps` must be a number or a tensor of numbers but has dtype {t.dtype}.")
    if t.ndim > 1 or t.numel() not in (1, batch):
        raise ValueError(
            f"`timesteps` must be one number or one per batch element ({batch}) but has shape {tuple(t.shape)}."
        )
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"`timesteps` must be finite but are {t.tolist()}.")
    inside = (t >= low) & ((t <= high) if closed else (t < high))
    if not bool(inside.all()):
        interval = f"[{low}, {high}]" if closed else f"[{low}, {high})"
        raise ValueError(f"`timesteps` must lie in {interval} but are {t.tolist()}.")
    return t


def check_x0_predictable(prediction_type: str, alpha: Scalar, timestep: Scalar) -> None:
    """An epsilon prediction cannot give x_0 where alpha is 0 (zero terminal SNR): say so instead of dividing by 0."""
    if prediction_type == "epsilon" and float(alpha) == 0.0:
        raise ValueError(
            f"`prediction_type`='epsilon' cannot predict x_0 at timestep {_as_number(timestep)}, where alpha is 0"
            " (zero terminal SNR); use 'v_prediction'."
        )


def limit_x0(x0: torch.Tensor, config) -> torch.Tensor:
    """Dynamic thresholding or clipping of a predicted x_0, as a DDIM-style scheduler `config` asks.

    `config` has DDIM's keys `thresholding`, `dynamic_thresholding_ratio`, `sample_max_value`, `clip_sample` and
    `clip_sample_range`; thresholding wins when both are on, and `x0` comes back unchanged when neither is.
    """
    if config.thresholding:
        return dynamic_threshold(x0, config.dynamic_thresholding_ratio, config.sample_max_value)
    if config.clip_sample:
        return x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    return x0


def check_finite(tensor: torch.Tensor, name: str, timestep: Scalar) -> None:
    """Raises a `ValueError` if `tensor` holds a NaN or an infinite value."""
    if not torch.isfinite(tensor).all():
        num_nan = int(torch.isnan(tensor).sum())
        num_inf = int(torch.isinf(tensor).sum())
        raise ValueError(
            f"`{name}` must be finite but has {num_nan} NaN and {num_inf} infinite values at timestep"
            f" {_as_number(timestep)}."
        )


def _as_number(value: Scalar) -> float | int:
    return value.item() if isinstance(value, torch.Tensor) else value


# ----------------------------------------------------------------------------------------------------------------------
# Noise schedules
# ----------------------------------------------------------------------------------------------------------------------


# Adapted from diffusers.schedulers.scheduling_ddim.DDIMScheduler.__init__ (the choice of betas), as a function
def discrete_betas(
    num_train_timesteps: int,
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
    beta_schedule: str = "linear",
    trained_betas: np.ndarray | list[float] | None = None,
    rescale_betas_zero_snr: bool = False,
) -> torch.Tensor:
    """The betas of diffusers' `DDIMScheduler` / `DDPMScheduler` for the same options.

    Args:
        num_train_timesteps (`int`): Number of training timesteps.
        beta_start (`float`, defaults to 0.0001): First beta of the "linear" and "scaled_linear" schedules.
        beta_end (`float`, defaults to 0.02): Last beta of the "linear" and "scaled_linear" schedules.
        beta_schedule (`str`, defaults to "linear"): "linear", "scaled_linear" or "squaredcos_cap_v2".
        trained_betas (`np.ndarray | list[float]`, *optional*): Betas to use as they are.
        rescale_betas_zero_snr (`bool`, defaults to `False`): Rescale to zero terminal SNR (Lin et al. 2023).

    Returns:
        `torch.Tensor`: float32 betas of shape `(num_train_timesteps,)`.
    """
    if trained_betas is not None:
        betas = torch.tensor(trained_betas, dtype=torch.float32)
    elif beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        # linear in sqrt(beta), the Latent Diffusion / Stable Diffusion schedule
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        betas = betas_for_alpha_bar(num_train_timesteps)
    else:
        raise ValueError(f"`beta_schedule` must be one of {BETA_SCHEDULES} but is {beta_schedule!r}.")
    if rescale_betas_zero_snr:
        betas = rescale_zero_terminal_snr(betas)
    return betas


def cosine_alpha_sigma(t: Scalar) -> NoiseLevel:
    """The continuous cosine schedule of Imagen Video: `alpha_t = cos(pi t / 2)`, `sigma_t = sin(pi t / 2)`.

    Args:
        t (`float` or `torch.Tensor`): Continuous time in [0, 1]; 0 is clean data, 1 is pure noise.

    Returns:
        `tuple`: `(alpha_t, sigma_t)`, floats for a float `t`, tensors of the same shape and dtype otherwise.
    """
    # cos(pi t / 2) written as sin(pi (1 - t) / 2), so that both ends are exact: alpha_1 = 0 (zero SNR) and alpha_0 = 1
    if isinstance(t, torch.Tensor):
        return torch.sin((1 - t) * (math.pi / 2)), torch.sin(t * (math.pi / 2))
    return math.sin((1 - t) * math.pi / 2), math.sin(t * math.pi / 2)


# Adapted from diffusers.schedulers.scheduling_ddim.DDIMScheduler.set_timesteps; "trailing" computed exactly
def discrete_timesteps(
    num_inference_steps: int,
    num_train_timesteps: int,
    timestep_spacing: str = "trailing",
    steps_offset: int = 0,
) -> np.ndarray:
    """The descending integer timesteps of `DDIMScheduler.set_timesteps` for a spacing.

    "trailing" is computed with exact rational arithmetic, `round(T * i / n) - 1` for `i = n, ..., 1`, so the grid of
    `n` steps is exactly every other point of the grid of `2 n` steps: the property progressive distillation needs.
    It equals diffusers' floating-point version whenever that one is exact (for example when `n` divides `T`).

    Args:
        num_inference_steps (`int`): Number of sampling steps `n`.
        num_train_timesteps (`int`): Number of training timesteps `T`.
        timestep_spacing (`str`, defaults to "trailing"): "leading", "trailing" or "linspace" (Table 2 of Lin et
            al. 2023, https://huggingface.co/papers/2305.08891).
        steps_offset (`int`, defaults to 0): Offset added to the "leading" timesteps.

    Returns:
        `np.ndarray`: int64 timesteps, largest first.
    """
    n, num_train = int(num_inference_steps), int(num_train_timesteps)
    if timestep_spacing == "linspace":
        timesteps = np.linspace(0, num_train - 1, n).round()[::-1].copy().astype(np.int64)
    elif timestep_spacing == "leading":
        timesteps = (np.arange(0, n) * (num_train // n))[::-1].copy().astype(np.int64) + steps_offset
    elif timestep_spacing == "trailing":
        # Python's round() on a Fraction rounds half to even, like np.round
        timesteps = np.array([round(Fraction(num_train * i, n)) - 1 for i in range(n, 0, -1)], dtype=np.int64)
    else:
        raise ValueError(f"`timestep_spacing` must be one of {TIMESTEP_SPACINGS} but is {timestep_spacing!r}.")
    return timesteps


def continuous_timesteps(num_inference_steps: int, num_train_timesteps: int) -> np.ndarray:
    """The grid `t_i = i / n`, `i = n, ..., 1`, of an `n`-step sampler in continuous time, in model units.

    Model units are `t * num_train_timesteps`, so a model sees timesteps in the usual `(0, num_train_timesteps]`.

    Returns:
        `np.ndarray`: float64 timesteps, largest first (the last step goes to `t = 0`).
    """
    n = int(num_inference_steps)
    return np.array([num_train_timesteps * i / n for i in range(n, 0, -1)], dtype=np.float64)


def distillation_step_counts(distillation_base_steps: int) -> list[int]:
    """Step counts of the students of a progressive distillation that starts from `distillation_base_steps` steps.

    Each round halves the number of steps while it stays an integer: 256 -> [256, 128, 64, 32, 16, 8, 4, 2, 1].
    """
    counts = [int(distillation_base_steps)]
    while counts[-1] % 2 == 0:
        counts.append(counts[-1] // 2)
    return counts


# ----------------------------------------------------------------------------------------------------------------------
# Parameterisations: v <-> epsilon <-> x0
# ----------------------------------------------------------------------------------------------------------------------


def _coef(coefficient: Scalar, like: torch.Tensor) -> Scalar:
    """Broadcast a float, a 0-d tensor or a per-sample `(batch,)` tensor against `like`."""
    if not isinstance(coefficient, torch.Tensor):
        return coefficient
    coefficient = coefficient.to(device=like.device, dtype=like.dtype)
    if coefficient.ndim == 1 and like.ndim > 1:
        coefficient = coefficient.reshape(-1, *([1] * (like.ndim - 1)))  # (B, 1, 1, 1, 1)
    return coefficient


def v_to_x0(x_t: torch.Tensor, v: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """`x_0 = alpha * x_t - sigma * v`."""
    return _coef(alpha, x_t) * x_t - _coef(sigma, x_t) * v


def v_to_eps(x_t: torch.Tensor, v: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """`epsilon = sigma * x_t + alpha * v`."""
    return _coef(sigma, x_t) * x_t + _coef(alpha, x_t) * v


def x0_to_v(x_t: torch.Tensor, x0: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """`v = (alpha * x_t - x_0) / sigma`; undefined where `sigma` is 0."""
    return (_coef(alpha, x_t) * x_t - x0) / _coef(sigma, x_t)


def eps_to_v(x_t: torch.Tensor, eps: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """`v = (epsilon - sigma * x_t) / alpha`; undefined where `alpha` is 0."""
    return (eps - _coef(sigma, x_t) * x_t) / _coef(alpha, x_t)


def eps_to_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """`x_0 = (x_t - sigma * epsilon) / alpha`; undefined where `alpha` is 0 (zero SNR)."""
    return (x_t - _coef(sigma, x_t) * eps) / _coef(alpha, x_t)


def x0_to_eps(x_t: torch.Tensor, x0: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """`epsilon = (x_t - alpha * x_0) / sigma`; undefined where `sigma` is 0."""
    return (x_t - _coef(alpha, x_t) * x0) / _coef(sigma, x_t)


def velocity(x0: torch.Tensor, eps: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
    """The v-prediction target `v = alpha * epsilon - sigma * x_0` (Imagen Video, section 2.4)."""
    return _coef(alpha, x0) * eps - _coef(sigma, x0) * x0


def prediction_to_x0_eps(
    model_output: torch.Tensor, x_t: torch.Tensor, alpha: Scalar, sigma: Scalar, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turns a model output of any parameterisation into the predicted `(x_0, epsilon)`.

    Args:
        model_output (`torch.Tensor`): The (guided) model output.
        x_t (`torch.Tensor`): The noisy sample the model saw.
        alpha (`float` or `torch.Tensor`): `alpha_t` of that sample.
        sigma (`float` or `torch.Tensor`): `sigma_t` of that sample.
        prediction_type (`str`): "epsilon", "v_prediction" or "sample".

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `(x_0, epsilon)`.
    """
    check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return eps_to_x0(x_t, model_output, alpha, sigma), model_output
    if prediction_type == "sample":
        return model_output, x0_to_eps(x_t, model_output, alpha, sigma)
    return v_to_x0(x_t, model_output, alpha, sigma), v_to_eps(x_t, model_output, alpha, sigma)


def x0_to_prediction(
    x0: torch.Tensor, x_t: torch.Tensor, alpha: Scalar, sigma: Scalar, prediction_type: str
) -> torch.Tensor:
    """The model output of the given parameterisation that predicts `x0` from `x_t`.

    Inverse of [`prediction_to_x0_eps`] for a fixed `x_t` (where `sigma > 0`).

    Args:
        x0 (`torch.Tensor`): A prediction of the clean sample.
        x_t (`torch.Tensor`): The noisy sample.
        alpha (`float` or `torch.Tensor`): `alpha_t` of `x_t`.
        sigma (`float` or `torch.Tensor`): `sigma_t` of `x_t`.
        prediction_type (`str`): "epsilon", "v_prediction" or "sample".

    Returns:
        `torch.Tensor`: The model output.
    """
    check_prediction_type(prediction_type)
    if prediction_type == "sample":
        return x0
    if prediction_type == "epsilon":
        return x0_to_eps(x_t, x0, alpha, sigma)
    return x0_to_v(x_t, x0, alpha, sigma)


# ----------------------------------------------------------------------------------------------------------------------
# Thresholding, DDIM step, distillation target
# ----------------------------------------------------------------------------------------------------------------------


def _row_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolation quantile of each row of a `(batch, n)` tensor, as `torch.quantile` computes it.

    Uses `kthvalue` because `torch.quantile` refuses inputs of more than 2**24 elements, which video reaches.
    """
    n = values.shape[1]
    position = q * (n - 1)
    low = math.floor(position)
    fraction = position - low
    low_value = values.kthvalue(low + 1, dim=1).values
    if fraction == 0.0:
        return low_value
    high_value = values.kthvalue(low + 2, dim=1).values
    return torch.lerp(low_value, high_value, fraction)


# Same computation as diffusers.schedulers.scheduling_ddpm.DDPMScheduler._threshold_sample, as a function of its
# options, with the quantile taken by `_row_quantile` and `max_value=None` for no upper bound
def dynamic_threshold(x0: torch.Tensor, percentile: float = 0.995, max_value: float | None = None) -> torch.Tensor:
    """Dynamic thresholding of a predicted clean sample (Imagen, Saharia et al. 2022, section 2.3).

    Per batch element, `s` is the `percentile` quantile of `|x0|`, raised to at least 1 (and lowered to at most
    `max_value` when given); `x0` is clipped to `[-s, s]` and divided by `s`. A sample whose values all lie in
    [-1, 1] is returned unchanged.

    Args:
        x0 (`torch.Tensor`): Predicted clean sample, `(batch, ...)`, e.g. `(B, C, F, H, W)`.
        percentile (`float`, defaults to 0.995): The quantile of absolute values, in (0, 1].
        max_value (`float`, *optional*): Upper bound of `s`, at least 1, like diffusers' `sample_max_value` (whose
            default there, 1.0, reduces thresholding to clipping). `None` leaves `s` unbounded, as in Imagen.

    Returns:
        `torch.Tensor`: The thresholded sample, same shape and dtype, values in [-1, 1].
    """
    if not 0.0 < percentile <= 1.0:
        raise ValueError(f"`percentile` must be in (0, 1] but is {percentile}.")
    if max_value is not None and max_value < 1.0:
        raise ValueError(f"`max_value` must be at least 1 but is {max_value}.")
    dtype = x0.dtype
    flat = x0.reshape(x0.shape[0], -1)  # (B, C * F * H * W)
    if dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # quantiles and clamp need full precision (and clamp is not implemented for CPU half)
    s = _row_quantile(flat.abs(), percentile).clamp(min=1.0)  # s >= 1: in-range samples are left alone
    if max_value is not None:
        s = s.clamp(max=max_value)
    s = s.unsqueeze(1)  # (B, 1)
    flat = torch.clamp(flat, -s, s) / s
    return flat.reshape(x0.shape).to(dtype)


def ddim_update(x0: torch.Tensor, eps: torch.Tensor, alpha_s: Scalar, sigma_s: Scalar) -> torch.Tensor:
    """Deterministic DDIM update (Song et al. 2021, eq. 12 with eta = 0): `x_s = alpha_s * x_0 + sigma_s * epsilon`."""
    return _coef(alpha_s, x0) * x0 + _coef(sigma_s, x0) * eps


def ddim_step(x_t: torch.Tensor, v: torch.Tensor, t: NoiseLevel, s: NoiseLevel) -> torch.Tensor:
    """One deterministic DDIM step of a v-prediction model from noise level `t` to noise level `s`.

    Args:
        x_t (`torch.Tensor`): The sample at `t`.
        v (`torch.Tensor`): The model's v-prediction at `x_t`.
        t (`tuple`): `(alpha_t, sigma_t)`.
        s (`tuple`): `(alpha_s, sigma_s)`, usually less noisy than `t`.

    Returns:
        `torch.Tensor`: The sample at `s`.
    """
    alpha_t, sigma_t = t
    alpha_s, sigma_s = s
    x0 = v_to_x0(x_t, v, alpha_t, sigma_t)
    eps = v_to_eps(x_t, v, alpha_t, sigma_t)
    return ddim_update(x0, eps, alpha_s, sigma_s)


def distillation_target(
    x_t: torch.Tensor,
    t: NoiseLevel,
    x_s: torch.Tensor,
    s: NoiseLevel,
    prediction_type: str = "v_prediction",
) -> torch.Tensor:
    """What a progressive-distillation student must predict at `x_t` (Salimans & Ho 2022, Algorithm 2).

    The teacher takes two DDIM steps `t -> mid -> s` and lands on `x_s`. The student takes one DDIM step `t -> s`,
    which lands on `alpha_s * x0 + (sigma_s / sigma_t) * (x_t - alpha_t * x0)` for its predicted `x0`; solving for
    the `x0` that lands on `x_s` gives

        x0_target = (x_s - (sigma_s / sigma_t) * x_t) / (alpha_s - (sigma_s / sigma_t) * alpha_t),

    returned in the student's parameterisation.

    Args:
        x_t (`torch.Tensor`): The sample at `t`, the student's input.
        t (`tuple`): `(alpha_t, sigma_t)` of `x_t`; `sigma_t` must be positive.
        x_s (`torch.Tensor`): Where two teacher steps from `x_t` landed.
        s (`tuple`): `(alpha_s, sigma_s)` of `x_s`, less noisy than `t`.
        prediction_type (`str`, defaults to "v_prediction"): Parameterisation of the returned target: "v_prediction",
            "epsilon" or "sample" (then the target is `x0_target`).

    Returns:
        `torch.Tensor`: The regression target of the student.
    """
    check_prediction_type(prediction_type)
    alpha_t, sigma_t = t
    alpha_s, sigma_s = s
    if bool(torch.as_tensor(sigma_t).le(0).any()):
        raise ValueError(f"`t` must have sigma_t > 0 but has sigma_t = {sigma_t}.")
    ratio = _coef(sigma_s, x_t) / _coef(sigma_t, x_t)
    denominator = _coef(alpha_s, x_t) - ratio * _coef(alpha_t, x_t)
    if bool(torch.as_tensor(denominator).eq(0).any()):
        raise ValueError(f"`s` must be less noisy than `t` but `t` = {t} and `s` = {s}.")
    x0_target = (x_s - ratio * x_t) / denominator
    return x0_to_prediction(x0_target, x_t, alpha_t, sigma_t, prediction_type)
