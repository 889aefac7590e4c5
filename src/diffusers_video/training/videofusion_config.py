"""`VideoFusionConfig`: the `videofusion` section of a `TrainingConfig` (see `training.videofusion`).

Kept out of `training.config` for that module's size; `training.config` imports it, so
`from diffusers_video.training.config import ...` works too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config_checks import PREDICTION_TYPES, _check_types


@dataclass
class VideoFusionConfig:
    """VideoFusion's joint training of a base and a residual generator (see `training.videofusion`).

    Setting this section (`"videofusion": {...}` in a config file, or any `--videofusion.KEY` on the command line)
    trains VideoFusion: the `model` section gives the residual generator (a `UNet3DModel`, e.g. inflated from the
    image model), the noise is VideoFusion's decomposed noise, and the final folder is a `VideoFusionPipeline`.

    Args:
        base_noise_ratio (`float`, defaults to 0.5): `lambda` in [0, 1], the share of each frame's noise variance that
            is the base noise shared by the clip; with a base generator the key (middle) frame has `lambda = 1`.
        base_model (`str | None`, defaults to None): A local folder holding `unet/` (a `UNet2DConditionModel`, e.g.
            "pipelines/shapes_sd") and optionally `scheduler/`: the base generator. None trains no base generator:
            the residual UNet learns the whole decomposed noise.
        base_prediction_type (`str | None`, defaults to None): How the base generator's output reads, "epsilon" or
            "v_prediction"; None reads it from `base_model`'s `scheduler/scheduler_config.json`.
        train_base (`bool`, defaults to True): Train the base generator jointly with the residual one, as the paper
            does; False keeps it frozen.
        key_frame_residual (`bool`, defaults to False): The residual generator also learns the key frame (its target
            there is `-sigma_t x_0^k`, the velocity of a frame whose noise is the base alone), so that the sampler takes
            the key frame's `x_0` from the model that sees every frame instead of from the image model alone, which
            leaves the key frame off the other frames' path. Needs v-prediction; the saved pipeline records it
            (`key_frame_estimate="residual"`).
    """

    base_noise_ratio: float = 0.5
    base_model: str | None = None
    base_prediction_type: str | None = None
    train_base: bool = True
    key_frame_residual: bool = False

    def __post_init__(self):
        _check_types(self, "videofusion.")
        if not 0.0 <= self.base_noise_ratio <= 1.0:  # also rejects NaN
            raise ValueError(f"`videofusion.base_noise_ratio` must be in [0, 1] but is {self.base_noise_ratio}.")
        if self.base_prediction_type is not None and self.base_prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"`videofusion.base_prediction_type` must be one of {PREDICTION_TYPES} or None but is "
                f"{self.base_prediction_type!r}."
            )
