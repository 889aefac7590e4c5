"""Checks that assembled pipelines share what their stages trained with: the same weights key for key, a VAE that may
differ from another only in its decoder (a decoder fine-tuned at a new size decodes the same latents), and a latent
super-resolution run (VideoGen's recipe, which MagicVideo's latent stage reuses) on the same VAE and text encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from torch import nn

from ..folders import TRAINING_CONFIG_NAME, read_json
from ..models.unet_3d import UNet3DModel
from ..models.video_vae import AutoencoderKLVideo

__all__ = ["decoder_only_vae", "latent_super_resolution_run", "same_weights", "trained_stage"]


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


def trained_stage(
    folder: Path, owner: Path, vae: nn.Module, text_encoder: nn.Module, scheduler: Any
) -> tuple[UNet3DModel, Any]:
    """The `unet/` of a stage run's final folder and a fresh scheduler of its `scheduler/` config (or of `scheduler`'s),
    refused unless the VAE and text encoder the run saved are `vae` and `text_encoder` (those of the pipeline folder
    `owner`), weight for weight: every stage of an assembled pipeline reads the same latents and text."""
    for name, module in (("vae", vae), ("text_encoder", text_encoder)):
        if (folder / name).is_dir() and not same_weights(module, type(module).from_pretrained(folder, subfolder=name)):
            raise ValueError(f"'{owner}/{name}' and '{folder}/{name}' differ: every stage shares it.")
    unet = UNet3DModel.from_pretrained(folder, subfolder="unet")
    if (folder / "scheduler").is_dir():
        scheduler = type(scheduler).from_pretrained(folder, subfolder="scheduler")
    return unet, type(scheduler).from_config(scheduler.config)


def latent_super_resolution_run(
    folder: Path, owner: Path, vae: nn.Module, text_encoder: nn.Module, scheduler: Any
) -> tuple[UNet3DModel, Any, int]:
    """The stage of a latent super-resolution run's final folder (`videogen.stage` "super_resolution": `unet/`,
    `scheduler/`, `training_config.json`), loaded by `trained_stage`.

    Returns:
        `(unet, scheduler, factor)`: the UNet, a fresh scheduler of the run's config (or of `scheduler`'s), and the
        run's `videogen.super_resolution_factor`.
    """
    trained = read_json(folder / TRAINING_CONFIG_NAME, missing_ok=True) or {}
    settings = trained.get("videogen") or {}
    if settings.get("stage") != "super_resolution" or not (folder / "unet" / "config.json").is_file():
        raise ValueError(
            f"`super_resolution_folder` {str(folder)!r} is not a latent super-resolution run's final folder (`unet/` "
            "and a training_config.json with `videogen.stage` 'super_resolution', as "
            "pipelines/videogen/train_super_resolution.json writes)."
        )
    unet, scheduler = trained_stage(folder, owner, vae, text_encoder, scheduler)
    return unet, scheduler, int(settings.get("super_resolution_factor", 2))
