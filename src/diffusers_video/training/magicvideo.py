"""Training MagicVideo's interpolation model: masked keyframes, as `pipelines/magicvideo/stages.py` lays them out.

The keyframe model needs no trainer of its own (the generic `Trainer` inflates and trains it: see
`pipelines/magicvideo/train_keyframes.json`), and the pixel-space super-resolution model is Imagen Video's SSR stage
(`training.imagen_video`). The interpolation model learns to fill in the frames between two given ones: every clip of
`data.num_frames = factor + 1` frames is one segment, its first and last frames given as context (at indices 0 and
`factor`, zeros between, with a mask that is 1 there), concatenated to its noisy sample along channels; the UNet has
`in_channels = 2 * C + 1` (`"model": {"temporal": {"in_channels": 9}}` in latent space). On a fraction
`context_dropout` of the samples the context and the mask are zeroed, so that the model also learns the unconditional
case (Make-A-Video's and Video LDM's masked interpolation; MagicVideo's paper does not say how its interpolation
network is conditioned).

The trainer is registered for the `magicvideo` section of `TrainingConfig` (`MagicVideoConfig`, whose
`context_dropout` it reads), so `diffusers-video train --config pipelines/magicvideo/train_interpolation.json` and
`train(config)` run it; it hands the section's "pretrain" stage to `MagicVideoPretrainTrainer`
(`training.magicvideo_pretrain`, the keyframe model's pre-training on CLIP image embeddings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..pipelines.magicvideo.stages import INTERPOLATION_FACTORS, interpolation_context
from .components import TrainingComponents
from .config import TrainingConfig
from .data import sample_generator
from .magicvideo_config import MagicVideoConfig
from .magicvideo_pretrain import MagicVideoPretrainTrainer
from .registry import register_trainer
from .trainer import Trainer

__all__ = ["CONTEXT_STREAM", "DEFAULT_CONTEXT_DROPOUT", "MagicVideoInterpolationTrainer", "train_interpolation"]

CONTEXT_STREAM = 26
"""Third key of the per-sample generators of the context dropout, apart from the diffusion noise's `(seed, position)`
generators and Imagen Video's augmentation stream."""

DEFAULT_CONTEXT_DROPOUT = MagicVideoConfig.context_dropout
"""Fraction of the samples whose context (the given frames and their mask) is dropped."""


@register_trainer("magicvideo")
class MagicVideoInterpolationTrainer(Trainer):
    """Trains an interpolation UNet on segments of `factor + 1` frames whose end frames are given.

    Args:
        config (`TrainingConfig`): The run; `data.num_frames - 1` is the interpolation factor (2 or 4), and
            `image_fraction` must be 0 (a still image has no frames to interpolate). Its `magicvideo` section (or
            the section's defaults when it is unset) gives the context dropout.
        components (`TrainingComponents`, *optional*): Models to train instead of those `config.model` loads.
        context_dropout (`float | None`, defaults to None): Fraction of the samples trained without context, in
            [0, 1]; None takes `config.magicvideo.context_dropout`.
    """

    def __init__(
        self,
        config: TrainingConfig,
        components: TrainingComponents | None = None,
        context_dropout: float | None = None,
    ):
        if config.magicvideo is not None and config.magicvideo.stage != "interpolation":
            raise ValueError(
                f"MagicVideoInterpolationTrainer trains the 'interpolation' stage but `magicvideo.stage` is "
                f"{config.magicvideo.stage!r} (`train(config)` runs the stage's trainer)."
            )
        if context_dropout is None:
            context_dropout = (config.magicvideo or MagicVideoConfig()).context_dropout
        factor = config.data.num_frames - 1
        if factor not in INTERPOLATION_FACTORS:
            raise ValueError(
                f"`data.num_frames` must be an interpolation factor plus one ({[f + 1 for f in INTERPOLATION_FACTORS]}:"
                f" a segment from one given frame to the next) but is {config.data.num_frames}."
            )
        if config.image_fraction:
            raise ValueError(
                f"`image_fraction` must be 0 for an interpolation model (a still image has nothing to interpolate) "
                f"but is {config.image_fraction}."
            )
        if isinstance(context_dropout, bool) or not isinstance(context_dropout, (int, float)):
            raise ValueError(f"`context_dropout` must be a number in [0, 1] but is {context_dropout!r}.")
        if not 0.0 <= context_dropout <= 1.0:
            raise ValueError(f"`context_dropout` must be in [0, 1] but is {context_dropout!r}.")
        self.factor = factor
        self.context_dropout = float(context_dropout)
        super().__init__(config, components)

    @classmethod
    def class_for_config(cls, config: TrainingConfig) -> type:
        """The trainer of the config's `magicvideo.stage` (see `training.registry.registered_class`)."""
        pretrain = config.magicvideo is not None and config.magicvideo.stage == "pretrain"
        return MagicVideoPretrainTrainer if pretrain else cls

    def conditioning_channels(self) -> int:
        """The given frames (the data's channels) and their mask (1)."""
        vae = self.components.vae
        return (vae.config.latent_channels if vae is not None else 3) + 1

    def conditioning(self, part: dict[str, Any], clean: torch.Tensor) -> torch.Tensor:
        """`[context, mask]` `(B, C + 1, factor + 1, H, W)` of each clip, zero for the samples whose context is dropped.

        The context is `interpolation_context` of the clip's end frames: what the pipeline gives the UNet at sampling.
        """
        context, mask = interpolation_context(
            clean[:, :, :: self.factor], self.factor
        )  # (B, C, f + 1, H, W), (B, 1, ..)
        generators = [sample_generator(self.config.seed, int(p), CONTEXT_STREAM) for p in part["positions"]]
        dropped = torch.cat([torch.rand(1, generator=g) for g in generators]) < self.context_dropout  # (B,)
        keep = (~dropped).to(device=clean.device, dtype=clean.dtype)[:, None, None, None, None]
        return torch.cat([context, mask], dim=1) * keep


def train_interpolation(
    config: TrainingConfig,
    components: TrainingComponents | None = None,
    context_dropout: float | None = None,
) -> Path:
    """Trains an interpolation UNet (see [`MagicVideoInterpolationTrainer`]); returns the final folder, whose `unet/`
    is the pipeline's `interpolation_unet`."""
    return MagicVideoInterpolationTrainer(config, components, context_dropout).train()
