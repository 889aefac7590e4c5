"""The stand-in's VAE: a small `AutoencoderKL` trained on moving-shapes frames, its scaling factor set from its
latents as Stable Diffusion's was (`training.stand_in.build_base_folder` writes it)."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..data.shapes import ShapesWorld

logger = logging.getLogger(__name__)

DEFAULT_VAE_CONFIG: dict = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (32, 64, 64),  # 3 levels: 4x downsampling
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 32,
}


def build_vae(seed: int = 0, **overrides):
    """A small `AutoencoderKL` (`DEFAULT_VAE_CONFIG`, 4x downsampling, 4 latent channels) with seeded weights."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**{**DEFAULT_VAE_CONFIG, **overrides})


def shapes_frames(
    num_frames: int, height: int = 32, width: int = 32, seed: int = 0, split: str = "all"
) -> torch.Tensor:
    """`num_frames` still frames `(N, 3, H, W)` in [-1, 1] of the moving-shapes world (one frame per scene)."""
    world = ShapesWorld(height=height, width=width, num_frames=2, split=split)
    images = [world.sample((seed, i)).image for i in range(num_frames)]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() * 2 - 1


def train_vae(
    vae,
    frames: torch.Tensor,
    steps: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    kl_weight: float = 1e-6,
    seed: int = 0,
    log_every: int = 50,
) -> list[float]:
    """Train `vae` in place on `frames` with an L1 + L2 reconstruction loss and a small KL term.

    Deterministic for a given seed: batches are drawn with a seeded generator and the posterior is sampled with it.
    The learning rate decays with a cosine to 10% over `steps`.

    Args:
        vae (`AutoencoderKL`): the autoencoder (trained in place, left in eval mode).
        frames (`torch.Tensor`): `(N, 3, H, W)` in [-1, 1].
        steps (`int`, defaults to 1000): optimizer steps.
        batch_size (`int`, defaults to 32): frames per step.
        learning_rate (`float`, defaults to 1e-3): AdamW peak learning rate.
        kl_weight (`float`, defaults to 1e-6): weight of the KL term (per element mean).
        seed (`int`, defaults to 0): seeds batches and posterior samples.
        log_every (`int`, defaults to 50): log the running loss every this many steps (0: never).

    Returns:
        `list[float]`: the reconstruction loss (L1 + L2) of every step.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"`frames` must be (N, 3, H, W), but has shape {tuple(frames.shape)}.")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"`steps` and `batch_size` must be >= 1, but are {steps} and {batch_size}.")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )
    vae.train()
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        index = torch.randint(0, frames.shape[0], (batch_size,), generator=generator)
        x = frames[index]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        recon = vae.decode(z).sample
        reconstruction = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        loss = reconstruction + kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(reconstruction.item())
        if log_every and (step + 1) % log_every == 0:
            recent = float(np.mean(losses[-log_every:]))
            logger.info(f"vae step {step + 1}/{steps}: recon {recent:.4f} ({time.perf_counter() - start:.0f} s)")
            print(f"vae step {step + 1}/{steps}: recon {recent:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    vae.eval()
    return losses


@torch.no_grad()
def set_scaling_factor(vae, frames: torch.Tensor, batch_size: int = 256) -> float:
    """Set `vae.config.scaling_factor` to 1 / std of the posterior-mode latents of `frames` (as SD did); returns it."""
    latents = torch.cat(
        [vae.encode(frames[i : i + batch_size]).latent_dist.mode() for i in range(0, len(frames), batch_size)]
    )
    factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=factor)
    return factor


@torch.no_grad()
def reconstruction_error(vae, frames: torch.Tensor, batch_size: int = 256) -> float:
    """Mean absolute error (in [0, 1] intensity units) of `vae` reconstructing `frames` through the posterior mode."""
    errors = []
    for i in range(0, len(frames), batch_size):
        x = frames[i : i + batch_size]
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        errors.append((recon - x).abs().mean(dim=(1, 2, 3)) / 2)
    return float(torch.cat(errors).mean())
