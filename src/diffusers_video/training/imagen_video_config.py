"""`ImagenVideoConfig`: the `imagen_video` section of a `TrainingConfig` (see `training.imagen_video`).

Kept out of `training.config` for that module's size; `training.config` imports it, so
`from diffusers_video.training.config import ...` works too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..pipelines.imagen_video.cascade import StageSpec  # the cascade's own definition, shared with sampling
from .config_checks import _check_types


@dataclass
class ImagenVideoConfig:
    """One stage of an Imagen Video cascade, trained in pixel space (see `training.imagen_video`).

    Setting this section (`"imagen_video": {...}` in a config file, or any `--imagen_video.KEY` on the command line)
    trains the stage `stage` of a pixel-space cascade with v-prediction: the `data` size is the stage's *output* size,
    and a super-resolution stage's UNet (`in_channels` 6, a "noise_aug_level" scalar condition) sees the clip brought
    down to the previous stage's size and back up (`downsample_for_condition`, `upsample_condition`), noise-augmented
    at a random level, concatenated to its noisy sample. The final folder is a stage folder (`stage.json` added).

    Args:
        stage (`dict`, defaults to {"kind": "base", "factor": 1}): The stage, a `StageSpec` as a dict: "base"
            (text-to-video), "tsr" (frames x `factor`) or "ssr" (height and width x `factor`).
        noise_aug_max (`float`, defaults to 0.5): Noise-conditioning augmentation in training: every sample's
            conditioning is noised to a level drawn uniformly from [0, `noise_aug_max`] (cosine schedule, 0 clean,
            1 pure noise), which the UNet is told as its "noise_aug_level" condition (`1000 * level`). In [0, 1];
            super-resolution stages only.
        noise_aug_level (`float`, defaults to 0.1): The fixed level at which the stage is sampled in the cascade
            (recorded in `stage.json`) and distilled (`diffusers-video distill`). In [0, `noise_aug_max`].
    """

    stage: dict = field(default_factory=lambda: {"kind": "base", "factor": 1})
    noise_aug_max: float = 0.5
    noise_aug_level: float = 0.1

    def __post_init__(self):
        _check_types(self, "imagen_video.")
        self.stage = self.stage_spec().to_dict()  # a bad stage fails here, naming the key; "factor" made explicit
        for name in ("noise_aug_max", "noise_aug_level"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"`imagen_video.{name}` must be in [0, 1] but is {value}.")
        if self.stage_spec().is_super_resolution and self.noise_aug_level > self.noise_aug_max:
            raise ValueError(
                f"`imagen_video.noise_aug_level` ({self.noise_aug_level}) must not exceed `imagen_video.noise_aug_max` "
                f"({self.noise_aug_max}): the stage would be sampled at a level it never trained on."
            )

    def stage_spec(self) -> StageSpec:
        """The `StageSpec` of `stage` (a `ValueError` naming `imagen_video.stage` when it is not one)."""
        try:
            return StageSpec.from_dict(self.stage)
        except ValueError as error:
            raise ValueError(f"`imagen_video.stage` is not a valid stage ({self.stage!r}): {error}") from None
