"""The tiny stand-in for Stable Diffusion 2.1: tokenizer, text encoder and VAE of the moving-shapes world.

The stand-in is an ordinary diffusers `StableDiffusionPipeline` folder, built in three steps:

1. `build_base_folder` writes everything but the UNet: a word-level `CLIPTokenizer` built in memory from the
   caption vocabulary (`build_tokenizer`), a small `CLIPTextModel` trained as CLIP's text tower, contrastively
   against a small video encoder on moving-shapes clips (`train_text_encoder`; frozen afterwards), a small
   `AutoencoderKL` trained here on moving-shapes frames (`train_vae`) with its `scaling_factor` set from the latents'
   standard deviation, and a v-prediction `DDPMScheduler`.
2. `diffusers-video train` trains the `UNet2DConditionModel` (SD 2.1 block structure, scaled down) on still
   frames in that VAE's latent space (`data.num_frames: 1`), from the folder of step 1.
3. `evaluate_pipeline` samples single frames with diffusers' `StableDiffusionPipeline` and scores colour and shape
   with `ShapesScorer`.

This module holds the base folder and the export of a trained stand-in, and is where the stand-in's parts are
imported from; they are written by job in `stand_in_text` (tokenizers, text encoders and their contrastive
training), `stand_in_vae` (the VAE) and `stand_in_eval` (scoring). The recipe (configs and exact commands) is in
`pipelines/shapes_sd/README.md`. Command line (`commands/stand_in.py`)::

    diffusers-video stand-in base --output_dir runs/shapes_sd_base
    diffusers-video stand-in eval runs/shapes_sd/checkpoint-2000 --num_samples 64
    diffusers-video stand-in export runs/shapes_sd/final --output_dir pipelines/shapes_sd
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..folders import TRAINING_CONFIG_NAME, read_json
from . import checkpointing, state_files
from .components import (
    caption_token_ids,  # noqa: F401 (read as `stand_in.caption_token_ids`)
    resolve_class,
    with_prediction_type,
)
from .stand_in_eval import evaluate_pipeline, evaluation_prompts, format_result, score_single_frames
from .stand_in_text import (
    _WORD_PATTERN,  # noqa: F401 (read by the tokenizer tests as `stand_in._WORD_PATTERN`)
    BOS_TOKEN,
    EOS_TOKEN,
    ShapesVideoEncoder,
    attribute_share,
    build_t5_text_encoder,
    build_t5_tokenizer,
    build_text_encoder,
    build_tokenizer,
    contrastive_loss,
    direction_share,
    pooled_text_features,
    train_text_encoder,
    vocabulary_words,
)
from .stand_in_vae import (
    DEFAULT_VAE_CONFIG,
    build_vae,
    reconstruction_error,
    set_scaling_factor,
    shapes_frames,
    train_vae,
)

__all__ = [
    "BOS_TOKEN",
    "DEFAULT_VAE_CONFIG",
    "EOS_TOKEN",
    "ShapesVideoEncoder",
    "attribute_share",
    "build_base_folder",
    "build_scheduler",
    "build_t5_text_encoder",
    "build_t5_tokenizer",
    "build_text_encoder",
    "build_tokenizer",
    "build_vae",
    "contrastive_loss",
    "direction_share",
    "evaluate_pipeline",
    "evaluation_prompts",
    "export_pipeline",
    "format_result",
    "pipeline_from_checkpoint",
    "pooled_text_features",
    "reconstruction_error",
    "score_single_frames",
    "set_scaling_factor",
    "shapes_frames",
    "train_text_encoder",
    "train_vae",
    "vocabulary_words",
]


# -------------------------------------------------------------------------------------------------- base folder


def build_scheduler():
    """The stand-in's noise scheduler: SD 2.1's (scaled-linear betas, v-prediction), without x0 clipping."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        clip_sample=False,
        steps_offset=1,
        timestep_spacing="trailing",
    )


def build_base_folder(
    output_dir: str | Path,
    height: int = 32,
    width: int = 32,
    text_hidden_size: int = 64,
    text_layers: int = 2,
    vae_steps: int = 1000,
    vae_batch_size: int = 32,
    vae_learning_rate: float = 1e-3,
    vae_num_frames: int = 4096,
    vae_config: dict | None = None,
    text_steps: int = 600,
    text_num_clips: int = 8000,
    seed: int = 0,
) -> dict:
    """Write the stand-in's components other than the UNet (`tokenizer/`, `text_encoder/`, `vae/`, `scheduler/`).

    The folder is what the UNet recipe's `model.pretrained_model_name_or_path` points at.

    Args:
        output_dir (`str | Path`): the folder to write.
        height (`int`, defaults to 32), width (`int`, defaults to 32): frame size the VAE is trained on.
        text_hidden_size (`int`, defaults to 64), text_layers (`int`, defaults to 2): text encoder size.
        vae_steps (`int`, defaults to 1000), vae_batch_size (`int`, defaults to 32),
            vae_learning_rate (`float`, defaults to 1e-3): VAE training.
        vae_num_frames (`int`, defaults to 4096): training frames (one per scene); 512 more are held out.
        vae_config (`dict | None`): overrides of `DEFAULT_VAE_CONFIG`.
        text_steps (`int`, defaults to 600), text_num_clips (`int`, defaults to 8000): contrastive training of the
            text encoder (`train_text_encoder`); 0 steps keep it random.
        seed (`int`, defaults to 0): seeds everything.

    Returns:
        `dict`: a summary (VAE losses, held-out reconstruction error, scaling factor, wall time).
    """
    start = time.perf_counter()
    output_dir = Path(output_dir)
    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(
        len(tokenizer), text_hidden_size, text_layers, tokenizer.model_max_length, seed=seed
    )
    summary: dict = {"text_direction_share_random": direction_share(text_encoder, tokenizer)}
    if text_steps:
        text_losses = train_text_encoder(
            text_encoder, tokenizer, steps=text_steps, num_clips=text_num_clips, height=height, width=width, seed=seed
        )
        summary["text_steps"] = text_steps
        summary["text_final_loss"] = float(np.mean(text_losses[-50:]))
        summary["text_direction_share"] = direction_share(text_encoder, tokenizer)
    frames = shapes_frames(vae_num_frames, height, width, seed=seed)
    held_out = shapes_frames(512, height, width, seed=seed + 1)
    vae = build_vae(seed=seed, sample_size=max(height, width), **(vae_config or {}))
    losses = train_vae(vae, frames, vae_steps, vae_batch_size, vae_learning_rate, seed=seed)
    factor = set_scaling_factor(vae, frames)
    summary |= {
        "vae_steps": vae_steps,
        "vae_final_loss": float(np.mean(losses[-50:])),
        "vae_heldout_l1": reconstruction_error(vae, held_out),
        "scaling_factor": factor,
        "wall_time_s": 0.0,
    }
    tokenizer.save_pretrained(output_dir / "tokenizer")
    text_encoder.save_pretrained(output_dir / "text_encoder")
    vae.save_pretrained(output_dir / "vae")
    build_scheduler().save_pretrained(output_dir / "scheduler")
    summary["wall_time_s"] = round(time.perf_counter() - start, 1)
    (output_dir / "base_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ------------------------------------------------------------------------------------------ checkpoints, export


def pipeline_from_checkpoint(checkpoint: str | Path, base_folder: str | Path | None = None, use_ema: bool = True):
    """A `StableDiffusionPipeline` from a training checkpoint (`runs/.../checkpoint-<step>`), to evaluate mid-run.

    The UNet is built from the checkpoint's `training_config.json` (`model.unet_config`) and given the EMA weights
    (or the raw weights with `use_ema=False`); the other components come from the base folder.

    Args:
        checkpoint (`str | Path`): a `checkpoint-<step>` folder written by `diffusers-video train`.
        base_folder (`str | Path`, *optional*): the folder with `tokenizer/`, `text_encoder/`, `vae/`, `scheduler/`;
            defaults to the config's `model.pretrained_model_name_or_path`.
        use_ema (`bool`, defaults to `True`): load the EMA weights when the checkpoint has them.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, CLIPTextModel

    checkpoint = Path(checkpoint)
    config_file = checkpoint / TRAINING_CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"'{checkpoint}' is not a training checkpoint (no training_config.json).")
    config = read_json(config_file)
    base = Path(base_folder or config["model"]["pretrained_model_name_or_path"])
    unet_config = {k: v for k, v in config["model"]["unet_config"].items() if not k.startswith("_")}
    unet = UNet2DConditionModel(**unet_config)
    checkpointing.verified_marker(checkpoint)  # every file is the one training wrote
    weights = load_file(str(checkpoint / "model.safetensors"))
    unet.load_state_dict({key.removeprefix("unet."): value for key, value in weights.items()})
    if use_ema and config.get("ema_decay") is not None:
        with torch.no_grad():  # the EMA state as the trainer stores it: JSON and safetensors, no pickle
            for parameter, shadow in zip(
                unet.parameters(), state_files.read_state(checkpoint, "ema")["shadow_params"], strict=True
            ):
                parameter.copy_(shadow)
    scheduler_config = read_json(base / "scheduler" / "scheduler_config.json")
    scheduler = resolve_class(scheduler_config["_class_name"]).from_pretrained(base, subfolder="scheduler")
    return StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(base, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(base / "text_encoder"),
        tokenizer=AutoTokenizer.from_pretrained(base / "tokenizer"),
        unet=unet.eval(),
        scheduler=with_prediction_type(scheduler, config.get("prediction_type", "v_prediction")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def export_pipeline(source, output_dir: str | Path, fp16: bool = True) -> Path:
    """Save a stand-in pipeline for committing: safetensors, fp16 weights, a DDIM scheduler (`clip_sample=False`).

    Args:
        source (`str | Path | StableDiffusionPipeline`): a pipeline folder (e.g. `runs/shapes_sd/final`) or a
            loaded pipeline.
        output_dir (`str | Path`): where to write it (e.g. `pipelines/shapes_sd`); existing files are overwritten.
        fp16 (`bool`, defaults to `True`): store the UNet and VAE weights in float16 (the text encoder stays float32);
            `StableDiffusionPipeline.from_pretrained(folder)` loads everything back in float32.
    """
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = source
    if isinstance(source, (str, Path)):
        pipe = StableDiffusionPipeline.from_pretrained(source, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing"
    )
    if fp16:
        # The UNet and the VAE only: diffusers loads them back in float32 by default, transformers 5 would load a
        # float16 text encoder in float16 (a mixed-dtype pipeline); the text encoder is small anyway.
        pipe.unet.to(torch.float16)
        pipe.vae.to(torch.float16)
    output_dir = Path(output_dir)
    pipe.save_pretrained(output_dir, safe_serialization=True)
    return output_dir
