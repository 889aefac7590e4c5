"""`MagicVideoConfig`: the `magicvideo` section of a `TrainingConfig` (see `training.magicvideo`).

Kept out of `training.config` for that module's size; `training.config` imports it, so
`from diffusers_video.training.config import MagicVideoConfig` works too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..pipelines.magicvideo.stages import INTERPOLATION_FACTORS

MAGICVIDEO_STAGES = ("interpolation",)
"""The MagicVideo stages that need a trainer of their own. The keyframe model trains with no section (the generic
trainer, `pipelines/magicvideo/train_keyframes.json`), the pixel super-resolution model with `imagen_video`."""


@dataclass
class MagicVideoConfig:
    """A stage of MagicVideo that the generic trainer cannot train alone (see `training.magicvideo`).

    Setting this section (`"magicvideo": {...}` in a config file, or any `--magicvideo.KEY` on the command line)
    trains MagicVideo's interpolation model: every clip of `data.num_frames = factor + 1` frames is a segment whose
    first and last frames are given to the UNet as context (concatenated along channels with a mask of the given
    frames: `in_channels = 2 * C + 1`), as `MagicVideoPipeline` lays them out. The final folder's `unet/` is the
    pipeline's `interpolation_unet`.

    Args:
        stage (`str`, defaults to "interpolation"): The stage trained; "interpolation" is the only one so far.
        context_dropout (`float`, defaults to 0.1): Fraction of the samples whose context (the given frames and their
            mask) is zeroed, so that the model also learns the unconditional case. In [0, 1].
    """

    stage: str = "interpolation"
    context_dropout: float = 0.1

    def __post_init__(self):
        for name, kinds, wanted in (("stage", str, "str"), ("context_dropout", (int, float), "float")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"`magicvideo.{name}` must be of type {wanted} but is {value!r}.")
        self.context_dropout = float(self.context_dropout)
        if self.stage not in MAGICVIDEO_STAGES:
            raise ValueError(f"`magicvideo.stage` must be one of {MAGICVIDEO_STAGES} but is {self.stage!r}.")
        if not 0.0 <= self.context_dropout <= 1.0:  # also rejects NaN
            raise ValueError(f"`magicvideo.context_dropout` must be in [0, 1] but is {self.context_dropout}.")


def check_magicvideo_config(config: Any) -> None:
    """The checks a `TrainingConfig` with a `magicvideo` section adds (`ValueError` naming the key and its value).

    `config` is the `TrainingConfig` (not imported here: `training.config` imports this module).
    """
    others = [name for name in ("videofusion", "imagen_video", "video_vae") if getattr(config, name) is not None]
    if others:
        raise ValueError(f"`magicvideo` and `{others[0]}` cannot both be set: a run trains one system.")
    if config.data.num_frames - 1 not in INTERPOLATION_FACTORS:
        raise ValueError(
            f"`data.num_frames` must be an interpolation factor plus one ({[f + 1 for f in INTERPOLATION_FACTORS]}: a "
            f"segment from one given frame to the next) with `magicvideo` but is {config.data.num_frames}."
        )
    if config.image_fraction > 0:
        raise ValueError(
            f"`image_fraction` must be 0 with `magicvideo` (a still image has nothing to interpolate) but is "
            f"{config.image_fraction}."
        )
    if config.model.pipeline_class is not None:
        raise ValueError(
            f"`model.pipeline_class` must be None with `magicvideo` (the final folder's `unet/` is a "
            f"MagicVideoPipeline's `interpolation_unet`) but is {config.model.pipeline_class!r}."
        )
