"""Training objectives as small pure functions: noise, targets, loss weights.

Videos are `(batch, channels, frames, height, width)`; a still image is a single-frame video. The noise scheduler is
any scheduler with diffusers' training interface (`add_noise`, `get_velocity`, `alphas_cumprod`): `DDPMScheduler`,
`DDIMScheduler`, or `DecomposedNoiseScheduler`, whose training noise is VideoFusion's decomposed noise.

Each objective is one function `(noise_scheduler, clean, noise, timesteps) -> target` in `OBJECTIVES`, keyed by the
scheduler's `prediction_type`. VideoFusion's separate base and residual generators can be added as objectives that
read `noise.base` and `noise.residual`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.training_utils import compute_snr
from diffusers.utils.torch_utils import randn_tensor

from ..schedulers.scheduling_decomposed import DecomposedNoiseScheduler


@dataclass
class TrainingNoise:
    """The noise of one training batch.

    Args:
        noise (`torch.Tensor`): `(B, C, F, H, W)`, what `add_noise` adds to the clean sample.
        base (`torch.Tensor | None`): `(B, C, 1, H, W)`, the base noise shared by all frames (decomposed noise only).
        residual (`torch.Tensor | None`): `(B, C, F, H, W)`, the per-frame residual noise (decomposed noise only).
    """

    noise: torch.Tensor
    base: torch.Tensor | None = None
    residual: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TrainingNoise:
        move = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        return TrainingNoise(move(self.noise), move(self.base), move(self.residual))


def sample_training_noise(
    noise_scheduler, shape: tuple[int, ...], generators: list[torch.Generator] | torch.Generator | None
) -> TrainingNoise:
    """Draw the noise of a batch `shape` `(B, C, F, H, W)`: decomposed when the scheduler is a
    `DecomposedNoiseScheduler`, else standard normal.

    With one generator per sample (a list), each sample's noise depends on its own generator only, so a sample gets
    the same noise whatever batch it is in.
    """
    if isinstance(noise_scheduler, DecomposedNoiseScheduler):
        noise, base, residual = noise_scheduler.sample_noise(shape, generator=generators)
        return TrainingNoise(noise, base, residual)
    return TrainingNoise(randn_tensor(shape, generator=generators))


def epsilon_objective(noise_scheduler, clean: torch.Tensor, noise: TrainingNoise, timesteps: torch.Tensor):
    """Target of an epsilon-prediction model: the noise (the combined decomposed noise for VideoFusion)."""
    return noise.noise


def v_prediction_objective(noise_scheduler, clean: torch.Tensor, noise: TrainingNoise, timesteps: torch.Tensor):
    """Target of a v-prediction model (Salimans & Ho 2022): `v = alpha_t * noise - sigma_t * x_0`."""
    return noise_scheduler.get_velocity(clean, noise.noise, timesteps)


Objective = Callable[[object, torch.Tensor, TrainingNoise, torch.Tensor], torch.Tensor]
OBJECTIVES: dict[str, Objective] = {"epsilon": epsilon_objective, "v_prediction": v_prediction_objective}


TIMESTEP_BIAS_STRATEGIES = ("none", "later", "earlier")


def timestep_weights(num_timesteps: int, strategy: str = "none", portion: float = 0.0, multiplier: float = 1.0):
    """Relative sampling weights of the training timesteps `0..num_timesteps-1`, or None for uniform sampling.

    "later" multiplies the weight of the last `portion` of the timesteps (the noisiest) by `multiplier`, "earlier" that
    of the first `portion` (the cleanest), as the `--timestep_bias_strategy` option of diffusers' SDXL training
    script does. The noisiest timesteps are where the text alone decides what a video becomes: a small video model
    learns which way things move there, because at lower noise the motion is already visible in its input.
    """
    if strategy not in TIMESTEP_BIAS_STRATEGIES:
        raise ValueError(f"`timestep_bias_strategy` must be one of {TIMESTEP_BIAS_STRATEGIES} but is {strategy!r}.")
    if strategy == "none" or portion == 0.0 or multiplier == 1.0:
        return None
    count = max(1, round(portion * num_timesteps))
    weights = torch.ones(num_timesteps, dtype=torch.float64)
    if strategy == "later":
        weights[num_timesteps - count :] = multiplier
    else:
        weights[:count] = multiplier
    return weights


def sample_timesteps(num_timesteps: int, generators: list[torch.Generator], weights: torch.Tensor | None = None):
    """One training timestep per sample, each from that sample's own generator: `(len(generators),)` int64.

    Uniform (`torch.randint`, the numbers earlier runs drew) when `weights` is None, else drawn with `weights`.
    """
    if weights is None:
        return torch.cat([torch.randint(0, num_timesteps, (1,), generator=g) for g in generators])
    return torch.cat([torch.multinomial(weights, 1, generator=g) for g in generators])


def snr_loss_weights(noise_scheduler, timesteps: torch.Tensor, snr_gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023, https://huggingface.co/papers/2303.09556), one per sample.

    # Adapted from diffusers' examples/text_to_image/train_text_to_image.py (min-SNR weighting)
    The MSE of an epsilon target is weighted by `min(SNR, gamma) / SNR`, that of a v target by
    `min(SNR, gamma) / (SNR + 1)`.
    """
    snr = compute_snr(noise_scheduler, timesteps)
    weights = torch.clamp(snr, max=snr_gamma)
    if prediction_type == "epsilon":
        return weights / snr
    if prediction_type == "v_prediction":
        return weights / (snr + 1)
    raise ValueError(f"`prediction_type` must be one of {tuple(OBJECTIVES)} but is {prediction_type!r}.")


LOSS_WEIGHTINGS = ("none", "v_equivalent")


def v_equivalent_loss_weights(noise_scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Weights `(SNR + 1) / SNR = 1 / alpha_bar_t` that turn an epsilon MSE into the MSE of the implied v prediction.

    An epsilon model's error on `x_0` at timestep t is its epsilon error divided by `sqrt(SNR)`, so plain epsilon
    training gives the noisiest timesteps, where only the text says what the video will be, almost no weight
    (`SNR` ~ 0.005 at the last timestep of Stable Diffusion's schedule). Weighted this way the loss is what a
    v-prediction model of the same network would get, while the model keeps predicting epsilon.
    """
    snr = compute_snr(noise_scheduler, timesteps)
    return (snr + 1) / snr


def per_sample_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each sample, in float32: `(B, ...) -> (B,)`."""
    error = (prediction.float() - target.float()) ** 2
    return error.reshape(error.shape[0], -1).mean(dim=1)


def mean_over_samples(per_sample_losses: list[torch.Tensor]) -> torch.Tensor:
    """One loss for a batch made of parts (videos, images): every sample counts once, whatever its part."""
    losses = [loss for loss in per_sample_losses if loss.numel() > 0]
    if not losses:
        raise ValueError("A training batch must hold at least one sample.")
    return torch.cat(losses).mean()
