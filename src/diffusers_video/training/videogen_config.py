"""`VideoGenConfig`: the `videogen` section of a `TrainingConfig` (see `training.videogen`).

Kept out of `training.config` for that module's size; `training.config` imports it, so
`from diffusers_video.training.config import VideoGenConfig` works too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..pipelines.checks import check_int_at_least
from .config_checks import _check_types

__all__ = ["REFERENCE_FRAMES", "VIDEOGEN_STAGES", "VideoGenConfig"]


VIDEOGEN_STAGES = ("video", "super_resolution", "flow_upsampler")
"""The models of VideoGen that `videogen.stage` trains (see `training.videogen`)."""

REFERENCE_FRAMES = ("first", "random")
"""The frame of a training clip that is its reference (`videogen.reference_frame`)."""


@dataclass
class VideoGenConfig:
    """One model of VideoGen's pipeline (see `training.videogen`).

    Setting this section (`"videogen": {...}` in a config file, or any `--videogen.KEY` on the command line) trains:

    - "video": the reference-conditioned video UNet (`in_channels = 2 * C`, e.g. `"model": {"temporal":
      {"in_channels": 8}}`). The reference is the clip's first frame latent (the paper's training), repeated to every
      frame and zeroed on a fraction `reference_dropout` of the samples (guidance on the reference); the final folder is
      a `VideoGenPipeline` whose `image_unet` is the model folder's image UNet when it has one.
    - "super_resolution": the latent super-resolution UNet (`in_channels = 2 * C`, a "noise_aug_level" scalar
      condition) on clips at the output size, conditioned on their `super_resolution_factor`-times smaller latents
      upsampled back and noise-augmented at a level drawn from `[0, noise_aug_max]` per sample (Imagen Video's SSR).
    - "flow_upsampler": a `FlowTemporalUpsampler` on clips of `2k + 1` frames: from the even frames it makes the odd
      ones, supervised by the odd frames' latents (L1; plus decoded pixels with `pixel_loss_weight`) and by the
      moving-shapes world's true motion (`flow_loss_weight`, L1 on the intermediate flows, in latent pixels).

    Args:
        stage (`str`, defaults to "video"): One of `VIDEOGEN_STAGES`.
        reference_dropout (`float`, defaults to 0.1): Fraction of the samples trained without reference, in [0, 1].
        reference_frame (`str`, defaults to "first"): Which frame of the clip is the reference: "first" (the paper's
            training: the video starts from the reference) or "random" (ours: a frame drawn per sample, so the model
            learns to pass through the reference at some time; the reference a text-to-image model draws from a caption
            without motion is a shape anywhere on its path, as a still frame at a random time is).
        super_resolution_factor (`int`, defaults to 2): Height and width factor of the super-resolution stage.
        noise_aug_max (`float`, defaults to 0.3): Largest augmentation level of the super-resolution conditioning.
        flow_loss_weight (`float`, defaults to 1.0): Weight of the flow supervision, >= 0.
        pixel_loss_weight (`float`, defaults to 0.0): Weight of the L1 of the decoded middle frames, >= 0.
        flow_block_out_channels (`list`, defaults to [32, 64]): The flow estimator's channels per level.
        flow_refine_channels (`int`, defaults to 32): The refinement CNN's channels.
    """

    stage: str = "video"
    reference_dropout: float = 0.1
    reference_frame: str = "first"
    super_resolution_factor: int = 2
    noise_aug_max: float = 0.3
    flow_loss_weight: float = 1.0
    pixel_loss_weight: float = 0.0
    flow_block_out_channels: list = field(default_factory=lambda: [32, 64])
    flow_refine_channels: int = 32

    def __post_init__(self):
        _check_types(self, "videogen.")
        if self.reference_frame not in REFERENCE_FRAMES:
            raise ValueError(
                f"`videogen.reference_frame` must be one of {REFERENCE_FRAMES} but is {self.reference_frame!r}."
            )
        if self.stage not in VIDEOGEN_STAGES:
            raise ValueError(f"`videogen.stage` must be one of {VIDEOGEN_STAGES} but is {self.stage!r}.")
        for name in ("reference_dropout", "noise_aug_max"):
            if not 0.0 <= getattr(self, name) <= 1.0:  # also rejects NaN
                raise ValueError(f"`videogen.{name}` must be in [0, 1] but is {getattr(self, name)}.")
        for name in ("flow_loss_weight", "pixel_loss_weight"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"`videogen.{name}` must be >= 0 but is {getattr(self, name)}.")
        check_int_at_least(self.super_resolution_factor, "videogen.super_resolution_factor", 2)
        check_int_at_least(self.flow_refine_channels, "videogen.flow_refine_channels", 1)
        if not self.flow_block_out_channels:
            raise ValueError("`videogen.flow_block_out_channels` must list at least one channel count but is [].")
        for value in self.flow_block_out_channels:
            check_int_at_least(value, "videogen.flow_block_out_channels[i]", 1)

    def check_run(self, config: Any) -> None:  # a TrainingConfig (which imports this module)
        """The checks a `TrainingConfig` with a `videogen` section adds (`ValueError` naming the key and its value)."""
        systems = ("videofusion", "imagen_video", "video_vae", "magicvideo", "i2vgen_xl")
        others = [name for name in systems if getattr(config, name, None) is not None]
        if others:
            raise ValueError(f"`videogen` and `{others[0]}` cannot both be set: a run trains one system.")
        if config.image_fraction > 0 and self.stage != "super_resolution":
            raise ValueError(
                f"`image_fraction` must be 0 with `videogen.stage` {self.stage!r} (a still image has no first frame to"
                f" be guided by, nor frames between) but is {config.image_fraction}."
            )
        if config.model.unet_class != "UNet3DModel":
            raise ValueError(
                f"`model.unet_class` must be 'UNet3DModel' with `videogen` but is {config.model.unet_class!r}."
            )
        allowed = (None, "VideoGenPipeline") if self.stage == "video" else (None,)
        if config.model.pipeline_class not in allowed:
            raise ValueError(
                f"`model.pipeline_class` must be one of {allowed} with `videogen.stage` {self.stage!r} but is "
                f"{config.model.pipeline_class!r}."
            )
        frames = config.data.num_frames
        if self.stage == "video" and frames < 2:
            raise ValueError(f"`data.num_frames` must be >= 2 with `videogen.stage` 'video' but is {frames}.")
        if self.stage == "flow_upsampler":
            if frames < 3 or frames % 2 == 0:
                raise ValueError(
                    f"`data.num_frames` must be odd and >= 3 with `videogen.stage` 'flow_upsampler' (the even frames are"
                    f" given, the odd ones made) but is {frames}."
                )
            if config.lora is not None:
                raise ValueError("`lora` cannot train a `videogen` flow upsampler: it adapts a UNet.")
            if config.data.path is not None and self.flow_loss_weight > 0:
                raise ValueError(
                    f"`videogen.flow_loss_weight` must be 0 on video files (`data.path`={config.data.path!r}): only the "
                    f"moving-shapes world knows the true motion; it is {self.flow_loss_weight}."
                )
