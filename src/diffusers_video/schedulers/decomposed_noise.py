"""VideoFusion's decomposed noise as pure functions: a base noise shared by all frames plus a residual noise per frame.

VideoFusion (Luo et al. 2023, https://huggingface.co/papers/2303.08320) writes the noise of frame `i` of a clip as

    epsilon_i = sqrt(lambda_i) * b + sqrt(1 - lambda_i) * r_i,

with one base noise `b` shared by every frame and a residual `r_i` per frame, all standard normal. These functions
draw, split, combine and remove it (and the matching velocities); [`DecomposedNoiseScheduler`]
(`scheduling_decomposed.py`) calls them. Video tensors are `(batch, channels, frames, height, width)`; a base tensor
has one frame, `(batch, channels, 1, height, width)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from .diffusion_math import (
    _coef,
)

BaseNoiseRatio = float | Sequence[float]


# ----------------------------------------------------------------------------------------------------------------------
# Noise decomposition
# ----------------------------------------------------------------------------------------------------------------------


def check_base_noise_ratio(base_noise_ratio: BaseNoiseRatio) -> None:
    """Raises unless `base_noise_ratio` is a number, or a non-empty sequence of numbers, in [0, 1]."""
    values = base_noise_ratio if isinstance(base_noise_ratio, (list, tuple)) else [base_noise_ratio]
    if len(values) == 0:
        raise ValueError("`base_noise_ratio` must be a number or a non-empty list of numbers but is [].")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"`base_noise_ratio` must be a number or a list of numbers but is {base_noise_ratio!r}.")
        if not 0.0 <= value <= 1.0:  # also rejects NaN
            raise ValueError(f"`base_noise_ratio` must be in [0, 1] but is {base_noise_ratio}.")


def frame_ratios(
    base_noise_ratio: BaseNoiseRatio,
    num_frames: int,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The ratio `lambda_i` of every frame as a tensor of shape `(num_frames,)`.

    Args:
        base_noise_ratio (`float` or `Sequence[float]`): One ratio for all frames, or one per frame.
        num_frames (`int`): Number of frames of the video.
        device (`str` or `torch.device`, *optional*): Device of the result.
        dtype (`torch.dtype`, defaults to `torch.float32`): Dtype of the result.

    Raises:
        ValueError: If a per-frame list does not have `num_frames` entries.
    """
    check_base_noise_ratio(base_noise_ratio)
    if isinstance(base_noise_ratio, (list, tuple)):
        if len(base_noise_ratio) != num_frames:
            raise ValueError(
                f"`base_noise_ratio` must have one value per frame ({num_frames} frames) but has"
                f" {len(base_noise_ratio)}: {list(base_noise_ratio)}."
            )
        return torch.tensor([float(v) for v in base_noise_ratio], device=device, dtype=dtype)
    return torch.full((num_frames,), float(base_noise_ratio), device=device, dtype=dtype)


def key_frame_index(num_frames: int) -> int:
    """Index `floor(N / 2)` of VideoFusion's key frame: the middle frame, whose noise is the base noise alone."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"`num_frames` must be an integer >= 1 but is {num_frames!r}.")
    return num_frames // 2


def with_key_frame(ratios: torch.Tensor, key_frame: int | None = None) -> torch.Tensor:
    """`ratios` with `lambda = 1` at the key frame (default: the middle one), as VideoFusion sets it.

    With `lambda_key = 1` the key frame is diffused by the base noise alone, `x_t^key = alpha_t x_0^key + sigma_t b`:
    exactly an image diffusion sample, so an image model (the base generator) can estimate `b` from that frame.
    """
    if ratios.ndim != 1:
        raise ValueError(f"`ratios` must have shape (frames,) but has shape {tuple(ratios.shape)}.")
    num_frames = ratios.shape[0]
    key_frame = key_frame_index(num_frames) if key_frame is None else key_frame
    if isinstance(key_frame, bool) or not isinstance(key_frame, int) or not 0 <= key_frame < num_frames:
        raise ValueError(f"`key_frame` must be an integer in [0, {num_frames}) but is {key_frame!r}.")
    ratios = ratios.clone()
    ratios[key_frame] = 1.0
    return ratios


def _check_video(tensor: torch.Tensor, name: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor but is {type(tensor).__name__}.")
    if tensor.ndim != 5:
        raise ValueError(
            f"`{name}` must be a video of shape (batch, channels, frames, height, width) but has shape"
            f" {tuple(tensor.shape)}."
        )


def _frame_weights(ratios: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(sqrt(lambda_i), sqrt(1 - lambda_i))` shaped `(1, 1, F, 1, 1)` to broadcast against a video."""
    ratios = ratios.to(device=like.device, dtype=like.dtype).reshape(1, 1, -1, 1, 1)
    return ratios.sqrt(), (1 - ratios).sqrt()


def _as_base(
    base: torch.Tensor, video: torch.Tensor | None = None, name: str = "base", video_name: str = "video"
) -> torch.Tensor:
    """Accepts a base as `(B, C, 1, H, W)` or, as an image model returns it, `(B, C, H, W)`; with `video`, it must
    have the video's batch, channels, height and width (no silent broadcasting)."""
    if not isinstance(base, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor but is {type(base).__name__}.")
    if base.ndim == 4:
        base = base.unsqueeze(2)  # (B, C, 1, H, W)
    elif base.ndim != 5 or base.shape[2] != 1:
        raise ValueError(
            f"`{name}` must have shape (batch, channels, 1, height, width) or (batch, channels, height, width) but has"
            f" shape {tuple(base.shape)}."
        )
    if video is not None and (base.shape[:2] != video.shape[:2] or base.shape[3:] != video.shape[3:]):
        batch, channels, _, height, width = video.shape
        raise ValueError(
            f"`{name}` must have the batch, channels, height and width of `{video_name}` (shape"
            f" {tuple(video.shape)}): ({batch}, {channels}, 1, {height}, {width}), but has shape {tuple(base.shape)}."
        )
    return base


def combine_noise(base: torch.Tensor, residual: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """`sqrt(lambda_i) * base + sqrt(1 - lambda_i) * residual_i` for every frame `i`.

    Linear, so it combines noises and also base and residual predictions of any parameterisation.

    Args:
        base (`torch.Tensor`): `(B, C, 1, H, W)` or `(B, C, H, W)`, shared by all frames.
        residual (`torch.Tensor`): `(B, C, F, H, W)`.
        ratios (`torch.Tensor`): `lambda_i`, shape `(F,)` (see [`frame_ratios`]).

    Returns:
        `torch.Tensor`: `(B, C, F, H, W)`.
    """
    _check_video(residual, "residual")
    base_weight, residual_weight = _frame_weights(ratios, residual)
    return base_weight * _as_base(base, residual, "base", "residual") + residual_weight * residual


def split_noise(
    noise: torch.Tensor, ratios: torch.Tensor, base: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Splits per-frame noise into a base and residuals with `combine_noise(base, residual, ratios) == noise`.

    `F` frames of noise cannot determine `F + 1` unknowns, so:

    - with `base` given, the residuals are solved exactly: `r_i = (noise_i - sqrt(lambda_i) base) / sqrt(1 -
      lambda_i)`, and `split_noise(combine_noise(b, r, ratios), ratios, b)` returns `(b, r)`;
    - without it, the base is its posterior mean given the noise (all noises standard normal),
      `b = sum_i w_i noise_i / (1 + sum_i w_i sqrt(lambda_i))` with `w_i = sqrt(lambda_i) / (1 - lambda_i)`; a frame
      with `lambda_i = 1` holds the base exactly and is used as it.

    Either way `combine_noise(*split_noise(noise, ratios), ratios)` gives `noise` back, for any noise as long as at
    most one frame has `lambda_i = 1`. The residual of a frame with `lambda_i = 1` does not enter its noise and is
    returned as zeros.

    Args:
        noise (`torch.Tensor`): `(B, C, F, H, W)`.
        ratios (`torch.Tensor`): `lambda_i`, shape `(F,)`.
        base (`torch.Tensor`, *optional*): The known base, `(B, C, 1, H, W)` or `(B, C, H, W)`.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `(base, residual)`, shapes `(B, C, 1, H, W)` and `(B, C, F, H, W)`.
    """
    _check_video(noise, "noise")
    base_weight, residual_weight = _frame_weights(ratios, noise)
    exact = residual_weight == 0  # frames with lambda_i = 1: pure base noise
    if base is None:
        if bool(exact.any()):
            first = int(exact.flatten().nonzero()[0, 0])
            base = noise[:, :, first : first + 1]
        else:
            weights = base_weight / residual_weight**2  # sqrt(lambda_i) / (1 - lambda_i)
            base = (weights * noise).sum(dim=2, keepdim=True) / (1 + (weights * base_weight).sum())
    else:
        base = _as_base(base, noise, "base", "noise")
    safe_residual_weight = torch.where(exact, torch.ones_like(residual_weight), residual_weight)
    residual = torch.where(exact, torch.zeros_like(noise), (noise - base_weight * base) / safe_residual_weight)
    return base, residual


def remove_base_noise(
    sample: torch.Tensor, base: torch.Tensor, sigma: float | torch.Tensor, ratios: torch.Tensor
) -> torch.Tensor:
    """`x_t^i - sigma_t * sqrt(lambda_i) * base`: a noisy video with its (predicted) base noise taken out.

    In VideoFusion this is the input of the residual generator once the base generator has predicted the base.

    Args:
        sample (`torch.Tensor`): The noisy video `x_t`, `(B, C, F, H, W)`.
        base (`torch.Tensor`): The base noise or its prediction, `(B, C, 1, H, W)` or `(B, C, H, W)`.
        sigma (`float` or `torch.Tensor`): `sigma_t = sqrt(1 - alpha_bar_t)`, a number or one per batch element.
        ratios (`torch.Tensor`): `lambda_i`, shape `(F,)`.
    """
    _check_video(sample, "sample")
    base_weight, _ = _frame_weights(ratios, sample)
    return sample - _coef(sigma, sample) * base_weight * _as_base(base, sample, "base", "sample")


def residual_velocity(
    x0: torch.Tensor,
    residual: torch.Tensor,
    alpha: float | torch.Tensor,
    sigma: float | torch.Tensor,
    ratios: torch.Tensor,
) -> torch.Tensor:
    """The v-prediction target of VideoFusion's residual generator: `u_i = alpha_t sqrt(1 - lambda_i) r_i - sigma_t x_0^i`.

    With the base noise taken out, frame `i` is `x'_i = alpha_t x_0^i + sigma_t s_i` with `s_i = sqrt(1 - lambda_i) r_i`,
    and `(x'_i, u_i)` is the rotation of `(x_0^i, s_i)` that v-prediction uses: `x_0^i = alpha_t x'_i - sigma_t u_i` and
    `s_i = sigma_t x'_i + alpha_t u_i`, so `x_0` stays predictable at zero terminal SNR (`alpha_t = 0`), where an
    epsilon prediction says nothing about it. The full velocity of the frame is `v_i = alpha_t sqrt(lambda_i) b + u_i`
    (see [`combine_velocity`]).

    Args:
        x0 (`torch.Tensor`): The clean video, `(B, C, F, H, W)`.
        residual (`torch.Tensor`): The residual noise `r`, `(B, C, F, H, W)`.
        alpha (`float` or `torch.Tensor`): `alpha_t`, a number or one per batch element.
        sigma (`float` or `torch.Tensor`): `sigma_t`, likewise.
        ratios (`torch.Tensor`): `lambda_i`, shape `(F,)`.
    """
    _check_video(x0, "x0")
    _, residual_weight = _frame_weights(ratios, x0)
    return _coef(alpha, x0) * residual_weight * residual - _coef(sigma, x0) * x0


def combine_velocity(
    base_noise: torch.Tensor,
    base_x0: torch.Tensor,
    residual_velocity: torch.Tensor,
    alpha: float | torch.Tensor,
    sigma: float | torch.Tensor,
    ratios: torch.Tensor,
    key_frame_from_residual: bool = False,
) -> torch.Tensor:
    """VideoFusion in v-prediction: the velocity `v_i = alpha_t eps_i - sigma_t x_0^i` of every frame from the two
    generators' estimates.

    Frames with `lambda_i < 1` get `alpha_t sqrt(lambda_i) b_hat + u_hat_i` (`u` as in [`residual_velocity`]); a frame
    with `lambda_i = 1` (the key frame) is an image diffusion sample of the base noise alone, and gets the base
    generator's own velocity `alpha_t b_hat - sigma_t x0_hat` (the residual generator's output there is not used),
    unless `key_frame_from_residual`: then it too gets `alpha_t b_hat + u_hat_k`, where the residual generator, trained
    on the key frame as well (`u_k = -sigma_t x_0^k`), estimates the key frame's `x_0` from every frame of the clip.

    Args:
        base_noise (`torch.Tensor`): The base generator's `b_hat`, `(B, C, H, W)` or `(B, C, 1, H, W)`.
        base_x0 (`torch.Tensor`): The base generator's `x_0` estimate of the key frame, same shape.
        residual_velocity (`torch.Tensor`): The residual generator's `u_hat`, `(B, C, F, H, W)`.
        alpha (`float` or `torch.Tensor`): `alpha_t`, a number or one per batch element.
        sigma (`float` or `torch.Tensor`): `sigma_t`, likewise.
        ratios (`torch.Tensor`): `lambda_i`, shape `(F,)`.
        key_frame_from_residual (`bool`, defaults to False): Take the key frame's `x_0` from `residual_velocity` too.
    """
    _check_video(residual_velocity, "residual_velocity")
    base_weight, _ = _frame_weights(ratios, residual_velocity)  # (1, 1, F, 1, 1)
    alpha, sigma = _coef(alpha, residual_velocity), _coef(sigma, residual_velocity)
    base_noise = _as_base(base_noise, residual_velocity, "base_noise", "residual_velocity")
    base_x0 = _as_base(base_x0, residual_velocity, "base_x0", "residual_velocity")
    velocity = alpha * base_weight * base_noise + residual_velocity
    if key_frame_from_residual:
        return velocity
    return torch.where(base_weight == 1, alpha * base_noise - sigma * base_x0, velocity)


def _check_shape(shape: Sequence[int]) -> None:
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or len(shape) != 5
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise ValueError(
            f"`shape` must be five integers >= 1, (batch, channels, frames, height, width), but is {shape!r}."
        )


def sample_decomposed_noise(
    shape: Sequence[int],
    ratios: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draws decomposed video noise.

    The residual is drawn first, with exactly the call diffusers makes for plain noise, so with every `lambda_i = 0`
    the noise equals what `randn_tensor(shape, generator)` gives, and the base is not drawn at all (zeros).

    Args:
        shape (`Sequence[int]`): `(B, C, F, H, W)`.
        ratios (`torch.Tensor`): `lambda_i`, shape `(F,)`.
        generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Random generator(s), one per batch
            element for a list.
        device (`str` or `torch.device`, *optional*): Device of the result.
        dtype (`torch.dtype`, *optional*): Dtype of the result.

    Returns:
        `tuple[torch.Tensor, torch.Tensor, torch.Tensor]`: `(noise, base, residual)` with `noise` and `residual`
        `(B, C, F, H, W)` and `base` `(B, C, 1, H, W)`.
    """
    _check_shape(shape)
    shape = tuple(int(s) for s in shape)
    residual = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    base_shape = (shape[0], shape[1], 1, shape[3], shape[4])
    if bool((ratios == 0).all()):
        base = torch.zeros(base_shape, device=residual.device, dtype=residual.dtype)
    else:
        base = randn_tensor(base_shape, generator=generator, device=device, dtype=dtype)
    return combine_noise(base, residual, ratios), base, residual
