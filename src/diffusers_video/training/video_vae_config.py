"""`VideoVAEConfig`: the `video_vae` section of a `TrainingConfig` (see `training.video_vae`).

Kept out of `training.config` for that module's size; `training.config` imports it, so
`from diffusers_video.training.config import VideoVAEConfig` works too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VIDEO_VAE_TRAIN_LAYERS = ("temporal", "decoder")


@dataclass
class VideoVAEConfig:
    """A temporal-aware VAE decoder trained on unlabeled clips (see `training.video_vae`).

    Setting this section (`"video_vae": {...}` in a config file, or any `--video_vae.KEY` on the command line) inflates
    the image VAE `model.pretrained_model_name_or_path`/`subfolder` into an `AutoencoderKLVideo` (an
    `AutoencoderKLVideo` folder is loaded as it is) and trains its decoder with the encoder frozen, on the pixel clips
    of `data`, with the loss `L1(x_hat, x) + temporal_loss_weight * L1(diff(x_hat), diff(x))` (differences of
    consecutive frames). The final folder is the `AutoencoderKLVideo` folder.

    Args:
        train_layers (`str`, defaults to "temporal"): "temporal" trains the layers `from_vae2d` adds only, "decoder"
            the whole decoder (and `post_quant_conv`).
        temporal_loss_weight (`float`, defaults to 1.0): `w` of the temporal loss, >= 0.
        subfolder (`str | None`, defaults to "vae"): The VAE's folder inside `model.pretrained_model_name_or_path`;
            None when that path is the VAE folder itself.
        temporal (`dict`, defaults to {}): `AutoencoderKLVideo.from_vae2d` options (`temporal_attention`, ...).
        half_size_fraction (`float`, defaults to 0.0): Fraction of each micro-batch's clips (the first
            `round(fraction * B)`) area-downsampled x2 before encoding, in [0, 1): a decoder fine-tuned at a larger
            size (I2VGen-XL's refined 64x64) keeps decoding the size below (the base stage's 32x32). The two sizes'
            losses are averaged by their clip counts.
    """

    train_layers: str = "temporal"
    temporal_loss_weight: float = 1.0
    subfolder: str | None = "vae"
    temporal: dict = field(default_factory=dict)
    half_size_fraction: float = 0.0

    def __post_init__(self):
        for name, kinds, wanted in (
            ("train_layers", str, "str"),
            ("temporal_loss_weight", (int, float), "float"),
            ("subfolder", (str, type(None)), "str | None"),
            ("temporal", dict, "dict"),
            ("half_size_fraction", (int, float), "float"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"`video_vae.{name}` must be of type {wanted} but is {value!r}.")
        self.temporal_loss_weight = float(self.temporal_loss_weight)
        if self.train_layers not in VIDEO_VAE_TRAIN_LAYERS:
            raise ValueError(
                f"`video_vae.train_layers` must be one of {VIDEO_VAE_TRAIN_LAYERS} but is {self.train_layers!r}."
            )
        if not self.temporal_loss_weight >= 0:  # also rejects NaN
            raise ValueError(f"`video_vae.temporal_loss_weight` must be >= 0 but is {self.temporal_loss_weight}.")
        self.half_size_fraction = float(self.half_size_fraction)
        if not 0.0 <= self.half_size_fraction < 1.0:
            raise ValueError(f"`video_vae.half_size_fraction` must be in [0, 1) but is {self.half_size_fraction}.")
