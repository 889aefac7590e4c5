"""Checks that assembled pipelines share what their stages trained with: the same weights key for key, and a VAE
that may differ from another only in its decoder (a decoder fine-tuned at a new size decodes the same latents)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from ..folders import read_json
from ..models.video_vae import AutoencoderKLVideo

__all__ = ["decoder_only_vae", "same_weights"]


def same_weights(mine: nn.Module, theirs: nn.Module) -> bool:
    """Whether two models hold the same weights, key for key (`theirs` cast to `mine`'s dtypes): the check that both
    stages of a cascade share their VAE and text encoder."""
    a, b = mine.state_dict(), theirs.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].to(a[k].dtype)) for k in a)


def decoder_only_vae(folder: Path, vae: nn.Module) -> AutoencoderKL | AutoencoderKLVideo:
    """The VAE of `folder` (an `AutoencoderKLVideo` or `AutoencoderKL` folder), refused unless its encoder and
    `quant_conv` equal `vae`'s: only its decoder may differ."""
    config = read_json(folder / "config.json", missing_ok=True)
    if config is None:
        raise ValueError(f"`vae_folder` '{folder}' holds no VAE (no config.json).")
    kind = AutoencoderKLVideo if config.get("_class_name") == "AutoencoderKLVideo" else AutoencoderKL
    new = kind.from_pretrained(folder)
    if not same_weights(nn.ModuleList([vae.encoder, vae.quant_conv]), nn.ModuleList([new.encoder, new.quant_conv])):
        raise ValueError(
            f"`vae_folder` '{folder}' has another encoder than the base stage's VAE: the latents the stages trained on "
            "would change. Pass a VAE whose decoder alone was trained (`video_vae.train_layers` 'decoder')."
        )
    return new
