"""One `MagicVideoPipeline` folder from MagicVideo's separately trained runs.

The keyframe model, the interpolation model and the latent super-resolution model train apart (the interpolation
model on masked segments, the super-resolution model at the output size), each from the same Stable Diffusion 2.1
stand-in, so they share its VAE and text encoder. `assemble_pipeline` puts the other runs behind the keyframe
pipeline folder, checks that every stage trained on the same VAE and text encoder, optionally swaps in a video
decoder (`AutoencoderKLVideo` whose encoder is the keyframe folder's: MagicVideo's VideoVAE), and saves the whole as
one folder, atomically. The latent super-resolution run is the one `pipelines/videogen/train_super_resolution.json`
trains (the same latents, the same noise-conditioning augmentation); the pipeline gives it the scalar conditions it
has.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..folders import TRAINING_CONFIG_NAME, read_json, save_assembled
from ..models.unet_3d import UNet3DModel
from ..pipelines.magicvideo.pipeline_magicvideo import MagicVideoPipeline
from .shared_weights import decoder_only_vae, latent_super_resolution_run, trained_stage

__all__ = ["assemble_pipeline"]


def _interpolation_run(folder: Path, owner: Path, pipe: MagicVideoPipeline) -> tuple[UNet3DModel, object]:
    """The UNet and scheduler of an interpolation run's final folder, refused unless it is one and shares the
    keyframe folder's VAE and text encoder."""
    section = (read_json(folder / TRAINING_CONFIG_NAME, missing_ok=True) or {}).get("magicvideo")
    if not section or section.get("stage", "interpolation") != "interpolation":
        raise ValueError(
            f"`interpolation_folder` {str(folder)!r} is not a MagicVideo interpolation run's final folder (a "
            "training_config.json with `magicvideo.stage` 'interpolation', as pipelines/magicvideo/"
            "train_interpolation.json writes)."
        )
    if not (folder / "unet" / "config.json").is_file():
        raise ValueError(f"`interpolation_folder` {str(folder)!r} has no `unet/`.")
    return trained_stage(folder, owner, pipe.vae, pipe.text_encoder, pipe.scheduler)


def assemble_pipeline(
    keyframes_folder: str | Path,
    output_dir: str | Path,
    interpolation_folder: str | Path | None = None,
    super_resolution_folder: str | Path | None = None,
    vae_folder: str | Path | None = None,
    fp16: bool = False,
) -> Path:
    """One `MagicVideoPipeline` folder: the keyframe pipeline folder with the given stages behind it.

    Args:
        keyframes_folder (`str | Path`): A `MagicVideoPipeline` folder (the keyframe recipe's final folder, or a
            committed demo); its interpolation and super-resolution stages, if any, are replaced by those given.
        output_dir (`str | Path`): Where the pipeline goes, written atomically (an existing folder is kept if it fails).
        interpolation_folder (`str | Path`, *optional*): An interpolation run's final folder (`unet/`,
            `training_config.json` with `magicvideo.stage` "interpolation").
        super_resolution_folder (`str | Path`, *optional*): A latent super-resolution run's final folder
            (`pipelines/videogen/train_super_resolution.json`'s); the pipeline's `super_resolution_factor` becomes
            its factor, in latent space.
        vae_folder (`str | Path`, *optional*): A VAE folder to decode with (MagicVideo's VideoVAE: an
            `AutoencoderKLVideo` whose decoder alone was trained); its encoder must be the keyframe folder's.
        fp16 (`bool`, defaults to False): Save the UNets' weights in float16 (half the size, for committing a demo);
            `from_pretrained` loads them back in float32.

    Returns:
        `Path`: `output_dir`, with the keyframe folder's `training_config.json`.

    Raises:
        ValueError: A folder that is not the run it should be, a stage trained on another VAE or text encoder, or
            a stage whose channels do not fit (the pipeline's own checks); nothing is written then.
    """
    keyframes_folder = Path(keyframes_folder)
    if read_json(keyframes_folder / "model_index.json", missing_ok=True) is None:
        raise ValueError(
            f"`keyframes_folder` {str(keyframes_folder)!r} is not a pipeline folder (no model_index.json)."
        )
    pipe = MagicVideoPipeline.from_pretrained(keyframes_folder)
    components = dict(pipe.components)
    config = {"super_resolution_factor": pipe.config.super_resolution_factor,
              "super_resolution_space": pipe.config.super_resolution_space}  # fmt: skip
    if interpolation_folder is not None:
        unet, scheduler = _interpolation_run(Path(interpolation_folder), keyframes_folder, pipe)
        components["interpolation_unet"], components["interpolation_scheduler"] = unet, scheduler
    if super_resolution_folder is not None:
        unet, scheduler, factor = latent_super_resolution_run(
            Path(super_resolution_folder), keyframes_folder, pipe.vae, pipe.text_encoder, pipe.scheduler
        )
        components["super_resolution_unet"], components["super_resolution_scheduler"] = unet, scheduler
        config = {"super_resolution_factor": factor, "super_resolution_space": "latent"}
    if vae_folder is not None:
        components["vae"] = decoder_only_vae(Path(vae_folder), pipe.vae)
    assembled = MagicVideoPipeline(**components, **config)  # checks the channels, conditions and factor
    if fp16:
        for name in ("unet", "interpolation_unet", "super_resolution_unet"):
            if getattr(assembled, name, None) is not None:
                getattr(assembled, name).to(torch.float16)
    return save_assembled(assembled, output_dir, keyframes_folder)
