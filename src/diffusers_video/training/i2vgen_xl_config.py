"""`I2VGenXLConfig`: the `i2vgen_xl` section of a `TrainingConfig` (see `training.i2vgen_xl`).

Kept out of `training.config` for that module's size; `training.config` imports it, so
`from diffusers_video.training.config import I2VGenXLConfig` works too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

I2VGENXL_STAGES = ("base", "refiner")
PIPELINE_CLASS = "I2VGenXLCascadePipeline"


@dataclass
class I2VGenXLConfig:
    """One stage of I2VGen-XL (see `training.i2vgen_xl`).

    Setting this section (`"i2vgen_xl": {...}` in a config file, or any `--i2vgen_xl.KEY` on the command line) trains:

    - stage "base": image-to-video. The `model` UNet (inflated with `in_channels` = latent + content-encoder channels
      and an "fps" scalar condition) and a new `I2VGenXLContentEncoder` learn; the CLIP image encoder (from
      `image_encoder`) is frozen; the first frame of every clip is the image. The final folder is an
      `I2VGenXLCascadePipeline` without refiner.
    - stage "refiner": the text-conditioned refinement UNet (v-prediction on a zero-terminal-SNR schedule, e.g. at
      64x64); the final folder is the cascade `base_model` with it as `refiner_unet`.

    Args:
        stage (`str`, defaults to "base"): "base" or "refiner".
        image_encoder (`str | None`, defaults to None): A folder with `image_encoder/` (a
            `CLIPVisionModelWithProjection`) and `feature_extractor/` (its `CLIPImageProcessor`); None reads them from
            `model.pretrained_model_name_or_path`. Base stage only.
        base_model (`str | None`, defaults to None): The base stage's `I2VGenXLCascadePipeline` folder; required for,
            and only for, the refiner.
        content_encoder (`dict`, defaults to {}): `I2VGenXLContentEncoder` config keys over the ones derived from the
            UNet, VAE and image encoder (e.g. `{"latent_token_grid": 16}`: 16 latent tokens).
        image_embed_dropout (`float`, defaults to 0.1): Fraction of the samples whose CLIP image embedding alone is
            zeroed (VGen's partial condition dropout), on top of `condition_dropout`, which drops the caption and the
            CLIP embedding together, as the pipeline's unconditional branch has them. In [0, 1].
        clip_skip (`int | None`, defaults to 1): The text layer the UNet reads, as the pipeline's `clip_skip` (1: the
            penultimate layer then the final layer norm, VGen's choice and the pipeline's default); None: the last.
    """

    stage: str = "base"
    image_encoder: str | None = None
    base_model: str | None = None
    content_encoder: dict = field(default_factory=dict)
    image_embed_dropout: float = 0.1
    clip_skip: int | None = 1

    def __post_init__(self):
        for name, kinds, wanted in (
            ("stage", str, "str"), ("image_embed_dropout", (int, float), "float"), ("content_encoder", dict, "dict"),
            ("image_encoder", (str, type(None)), "str | None"), ("base_model", (str, type(None)), "str | None"),
            ("clip_skip", (int, type(None)), "int | None"),
        ):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"`i2vgen_xl.{name}` must be of type {wanted} but is {value!r}.")
        self.image_embed_dropout = float(self.image_embed_dropout)
        if self.stage not in I2VGENXL_STAGES:
            raise ValueError(f"`i2vgen_xl.stage` must be one of {I2VGENXL_STAGES} but is {self.stage!r}.")
        if not 0.0 <= self.image_embed_dropout <= 1.0:  # also rejects NaN
            raise ValueError(f"`i2vgen_xl.image_embed_dropout` must be in [0, 1] but is {self.image_embed_dropout}.")
        if self.clip_skip is not None and self.clip_skip < 0:
            raise ValueError(f"`i2vgen_xl.clip_skip` must be None or an integer >= 0 but is {self.clip_skip}.")
        if (self.stage == "refiner") != (self.base_model is not None):
            raise ValueError(
                f"`i2vgen_xl.base_model` (the base stage's cascade folder) must be set for the 'refiner' stage and only "
                f"for it, but the stage is {self.stage!r} and `i2vgen_xl.base_model` is {self.base_model!r}."
            )
        if self.stage == "refiner" and self.image_encoder is not None:
            raise ValueError(
                f"`i2vgen_xl.image_encoder` must be None for the 'refiner' stage (it reads no image) but is "
                f"{self.image_encoder!r}."
            )


def check_i2vgen_xl_config(config) -> None:
    """The checks a `TrainingConfig` (`config`; not imported here: `training.config` imports this module) with an `i2vgen_xl` section adds (`ValueError` naming the key and its value)."""
    others = [
        name for name in ("videofusion", "imagen_video", "video_vae", "magicvideo", "videogen", "lora")
        if getattr(config, name, None) is not None
    ]  # fmt: skip
    if others:
        raise ValueError(f"`i2vgen_xl` and `{others[0]}` cannot both be set: a run trains one system.")
    if config.model.unet_class != "UNet3DModel":
        raise ValueError(
            f"`model.unet_class` must be 'UNet3DModel' with `i2vgen_xl` but is {config.model.unet_class!r}."
        )
    if config.model.pipeline_class not in (None, PIPELINE_CLASS):
        raise ValueError(
            f"`model.pipeline_class` must be None or {PIPELINE_CLASS!r} with `i2vgen_xl` (the final folder is one) but "
            f"is {config.model.pipeline_class!r}."
        )
    stage = config.i2vgen_xl.stage
    if stage == "refiner" and config.prediction_type != "v_prediction":
        raise ValueError(
            f"`prediction_type` must be 'v_prediction' for the `i2vgen_xl` refiner (ModelScope's refiner predicts v on "
            f"a zero-terminal-SNR schedule) but is {config.prediction_type!r}."
        )
    if stage == "base" and config.data.num_frames < 2:
        raise ValueError(
            f"`data.num_frames` must be >= 2 for the `i2vgen_xl` base stage but is {config.data.num_frames}."
        )
    if stage == "base" and config.data.cache_latents:
        raise ValueError(
            "`data.cache_latents` must be false for the `i2vgen_xl` base stage: its CLIP image encoder reads the first "
            "frame's pixels."
        )
