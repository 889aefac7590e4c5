"""`MagicVideoConfig`: the `magicvideo` section of a `TrainingConfig` (see `training.magicvideo`).

Kept out of `training.config` for that module's size; `training.config` imports it, so
`from diffusers_video.training.config import MagicVideoConfig` works too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..pipelines.magicvideo.stages import INTERPOLATION_FACTORS

MAGICVIDEO_STAGES = ("interpolation", "pretrain")
"""The MagicVideo stages that need a trainer of their own: the interpolation model (`training.magicvideo`) and the
keyframe model's pre-training on CLIP image embeddings (`training.magicvideo_pretrain`). The keyframe model trains on
captions with no section (the generic trainer, `pipelines/magicvideo/train_keyframes.json`), the pixel
super-resolution model with `imagen_video`."""
PRETRAIN_PIPELINE = "MagicVideoPipeline"


@dataclass
class MagicVideoConfig:
    """A stage of MagicVideo that the generic trainer cannot train alone (see `training.magicvideo`).

    Setting this section (`"magicvideo": {...}` in a config file, or any `--magicvideo.KEY` on the command line)
    trains MagicVideo's interpolation model: every clip of `data.num_frames = factor + 1` frames is a segment whose
    first and last frames are given to the UNet as context (concatenated along channels with a mask of the given
    frames: `in_channels = 2 * C + 1`), as `MagicVideoPipeline` lays them out. The final folder's `unet/` is the
    pipeline's `interpolation_unet`. With `stage: "pretrain"` it pre-trains the keyframe model on uncaptioned clips
    instead (`training.magicvideo_pretrain`): the cross-attention context of a clip is a learned projection of the
    frozen CLIP image embedding of one of its frames; the final folder is a keyframe `MagicVideoPipeline`.

    Args:
        stage (`str`, defaults to "interpolation"): The stage trained: "interpolation" or "pretrain".
        context_dropout (`float`, defaults to 0.1): Interpolation: fraction of the samples whose context (the given
            frames and their mask) is zeroed, so that the model also learns the unconditional case. In [0, 1].
        image_encoder (`str | None`, defaults to None): Pre-training: a folder with `image_encoder/` (a
            `CLIPVisionModelWithProjection`) and `feature_extractor/` (its `CLIPImageProcessor`); None reads them from
            `model.pretrained_model_name_or_path`.
        num_image_tokens (`int`, defaults to 4): Pre-training: tokens the projection makes of one image embedding.
        caption_fraction (`float`, defaults to 0.0): Pre-training: share of the clips that have captions (the first
            `caption_fraction` of the dataset's items); they are conditioned on their caption as usual, every other
            clip on its image tokens. In [0, 1].
    """

    stage: str = "interpolation"
    context_dropout: float = 0.1
    image_encoder: str | None = None
    num_image_tokens: int = 4
    caption_fraction: float = 0.0

    def __post_init__(self):
        for name, kinds, wanted in (
            ("stage", str, "str"), ("context_dropout", (int, float), "float"),
            ("image_encoder", (str, type(None)), "str | None"), ("num_image_tokens", int, "int"),
            ("caption_fraction", (int, float), "float"),
        ):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"`magicvideo.{name}` must be of type {wanted} but is {value!r}.")
        self.context_dropout = float(self.context_dropout)
        self.caption_fraction = float(self.caption_fraction)
        if self.stage not in MAGICVIDEO_STAGES:
            raise ValueError(f"`magicvideo.stage` must be one of {MAGICVIDEO_STAGES} but is {self.stage!r}.")
        if not 0.0 <= self.context_dropout <= 1.0:  # also rejects NaN
            raise ValueError(f"`magicvideo.context_dropout` must be in [0, 1] but is {self.context_dropout}.")
        if self.num_image_tokens < 1:
            raise ValueError(f"`magicvideo.num_image_tokens` must be an integer >= 1 but is {self.num_image_tokens}.")
        if not 0.0 <= self.caption_fraction <= 1.0:
            raise ValueError(f"`magicvideo.caption_fraction` must be in [0, 1] but is {self.caption_fraction}.")
        if self.stage != "pretrain":
            defaults = {"image_encoder": None, "num_image_tokens": 4, "caption_fraction": 0.0}
            for name, default in defaults.items():
                if getattr(self, name) != default:
                    raise ValueError(
                        f"`magicvideo.{name}` applies to the 'pretrain' stage only, but the stage is {self.stage!r} "
                        f"and `magicvideo.{name}` is {getattr(self, name)!r}."
                    )


def check_magicvideo_config(config: Any) -> None:
    """The checks a `TrainingConfig` with a `magicvideo` section adds (`ValueError` naming the key and its value).

    `config` is the `TrainingConfig` (not imported here: `training.config` imports this module).
    """
    others = [name for name in ("videofusion", "imagen_video", "video_vae") if getattr(config, name) is not None]
    if others:
        raise ValueError(f"`magicvideo` and `{others[0]}` cannot both be set: a run trains one system.")
    if config.magicvideo.stage == "pretrain":
        _check_pretrain(config)
        return
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


def _check_pretrain(config: Any) -> None:
    """The checks of the keyframe model's pre-training (a `MagicVideoPipeline` keyframe folder comes out)."""
    if config.model.unet_class != "UNet3DModel":
        raise ValueError(
            f"`model.unet_class` must be 'UNet3DModel' for the `magicvideo` 'pretrain' stage (the keyframe model) but "
            f"is {config.model.unet_class!r}."
        )
    if config.model.pipeline_class not in (None, PRETRAIN_PIPELINE):
        raise ValueError(
            f"`model.pipeline_class` must be None or {PRETRAIN_PIPELINE!r} for the `magicvideo` 'pretrain' stage (the "
            f"final folder is a keyframe MagicVideoPipeline) but is {config.model.pipeline_class!r}."
        )
    if config.lora is not None:
        raise ValueError(
            "`lora` cannot be set for the `magicvideo` 'pretrain' stage: it trains the whole keyframe UNet."
        )
