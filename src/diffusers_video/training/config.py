"""`TrainingConfig`: every setting of a training run, as a JSON-serialisable dataclass.

A config is a JSON file whose keys are the fields below (nested objects for `data` and `model`); a key the dataclass
does not know is an error that names it, so a typo never silently trains with a default. Command-line overrides use
the same names, dotted for nested fields (`--data.height 32`).

Example:

```py
>>> from diffusers_video.training import TrainingConfig
>>> config = TrainingConfig(output_dir="runs/shapes", max_train_steps=100, data={"num_frames": 4})
>>> config.data.num_frames
4
>>> config.with_overrides({"learning_rate": 3e-4, "data.height": 16}).data.height
16
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers.optimization import SchedulerType

from ..data.shapes_datasets import IMAGE_FRAMES
from ..pipelines.checks import check_int_at_least
from .config_checks import PREDICTION_TYPES, _check_types
from .i2vgen_xl_config import I2VGenXLConfig, check_i2vgen_xl_config
from .imagen_video_config import ImagenVideoConfig
from .lora_config import LoraTrainingConfig
from .magicvideo_config import MagicVideoConfig, check_magicvideo_config
from .objectives import LOSS_WEIGHTINGS, TIMESTEP_BIAS_STRATEGIES
from .video_vae_config import VideoVAEConfig
from .videofusion_config import VideoFusionConfig
from .videogen_config import VideoGenConfig

MIXED_PRECISIONS = ("no", "fp16", "bf16")
UNET_CLASSES = ("UNet3DModel", "UNet2DConditionModel")
LR_SCHEDULERS = tuple(s.value for s in SchedulerType)

# Settings that say where and how long a run goes or how often it saves, not what it learns: changing them between a
# checkpoint and its resumption is expected, so they are left out of the config hash.
_HASH_EXCLUDED = ("output_dir", "resume_from_checkpoint", "checkpointing_steps", "checkpoints_total_limit")
_HASH_EXCLUDED_DATA = ("num_workers", "cache_dir")
_SECTION_NAMES = ("data", "model", "videofusion", "imagen_video", "video_vae", "magicvideo", "lora", "i2vgen_xl")


@dataclass
class DataConfig:
    """What the model trains on.

    Args:
        path (`str | None`, defaults to None): A folder of video files (`.mp4`, `.webm`, `.mov`, `.gif`, ...) and
            images with captions in `metadata.jsonl` or a (WebVid-style) CSV, decoded and sampled as
            `training.video_files` says; or of `.npy` clips at the training size listed in `metadata.jsonl`, used as
            they are (`training.data.VideoFolderDataset`). None trains on the procedural moving-shapes world.
        height (`int`, defaults to 32): Frame height in pixels.
        width (`int`, defaults to 32): Frame width in pixels.
        num_frames (`int`, defaults to 8): Frames per video; 1 trains an image model on still frames.
        num_samples (`int`, defaults to 100000): Size of the moving-shapes dataset (item `i` is scene `(seed, i)`);
            reshuffled every epoch. Keep it small with `cache_latents`. Ignored for a folder.
        world (`dict`, defaults to {}): Extra `ShapesWorld` options (`split`, `two_shape_prob`, `textured_prob`,
            `slow_travel`, `fast_travel`, `background_phrase`).
        num_workers (`int`, defaults to 0): `DataLoader` worker processes.
        cache_latents (`bool`, defaults to False): Encode every item once with the VAE before training (latent
            space only); for video files the latents are written as safetensors shards that later runs reuse.
        frame_stride (`int`, defaults to 1): Video files: take every `frame_stride`-th frame of a clip.
        fps (`float | None`, defaults to None): Video files: take frames at this rate of the clip's own time
            instead of by `frame_stride`.
        captions (`str | None`, defaults to None): Video files: the captions file in (or relative to) `path`, a
            `metadata.jsonl` or a CSV; None finds `metadata.jsonl`, `metadata.csv` or the only `.csv`.
        cache_dir (`str | None`, defaults to None): Where video files' latent caches go; None uses
            `<path>/.latent_cache`.
        image_frame (`str`, defaults to "still"): Moving-shapes still images: "still", a frame at a random time with a
            caption without motion words (a text-to-image model); "first", the clip's first frame with its full
            caption, so the model draws where a shape starts for the motion the caption asks (VideoGen's reference
            image, which the video model animates from that position).
    """

    path: str | None = None
    height: int = 32
    width: int = 32
    num_frames: int = 8
    num_samples: int = 100_000
    world: dict = field(default_factory=dict)
    num_workers: int = 0
    cache_latents: bool = False
    frame_stride: int = 1
    fps: float | None = None
    captions: str | None = None
    cache_dir: str | None = None
    image_frame: str = "still"

    def __post_init__(self):
        _check_types(self, "data.")
        if self.image_frame not in IMAGE_FRAMES:
            raise ValueError(f"`data.image_frame` must be one of {IMAGE_FRAMES} but is {self.image_frame!r}.")
        for name in ("height", "width"):
            check_int_at_least(getattr(self, name), f"data.{name}", 8)
        check_int_at_least(self.num_frames, "data.num_frames", 1)
        check_int_at_least(self.num_samples, "data.num_samples", 1)
        check_int_at_least(self.num_workers, "data.num_workers", 0)
        check_int_at_least(self.frame_stride, "data.frame_stride", 1)
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"`data.fps` must be > 0 or None but is {self.fps}.")
        reserved = sorted({"height", "width", "num_frames"} & set(self.world))
        if reserved:
            raise ValueError(
                f"`data.world` must not set {reserved}: use `data.height`, `data.width`, `data.num_frames`."
            )


@dataclass
class ModelConfig:
    """Where the models come from (ignored when `train` is given `components`).

    Args:
        pretrained_model_name_or_path (`str | None`, defaults to None): A local diffusers Stable-Diffusion-style
            folder with `unet/`, `text_encoder/`, `tokenizer/` and optionally `vae/` (latent space; pixel space
            without) and `scheduler/`.
        unet_class (`str`, defaults to "UNet3DModel"): The model to train. "UNet3DModel": a `UNet3DModel` folder is
            loaded as it is, a `UNet2DConditionModel` folder is inflated with `UNet3DModel.from_pretrained_2d`.
            "UNet2DConditionModel": an image model (needs `data.num_frames == 1`).
        unet_config (`dict | None`, defaults to None): Build the UNet from scratch with this config instead of
            loading `unet/`.
        temporal (`dict`, defaults to {}): Temporal options for inflation (`UNet3DModel.from_unet2d` arguments).
        noise_scheduler (`dict | None`, defaults to None): Training noise scheduler config (`_class_name` picks the
            class, default `DDPMScheduler`); None loads `scheduler/`, or uses `DDPMScheduler(clip_sample=False)` without one.
        pipeline_class (`str | None`, defaults to None): Pipeline class (in `diffusers_video` or `diffusers`) of the
            final folder, e.g. "StableDiffusionPipeline"; its `model_index.json` is written so that the class's
            `from_pretrained` loads the folder. None saves the components only.
        scalar_conditions (`dict`, defaults to {}): A constant value for each of the UNet's `scalar_conditions`
            (e.g. {"fps": 8}).
    """

    pretrained_model_name_or_path: str | None = None
    unet_class: str = "UNet3DModel"
    unet_config: dict | None = None
    temporal: dict = field(default_factory=dict)
    noise_scheduler: dict | None = None
    pipeline_class: str | None = None
    scalar_conditions: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_types(self, "model.")
        if self.unet_class not in UNET_CLASSES:
            raise ValueError(f"`model.unet_class` must be one of {UNET_CLASSES} but is {self.unet_class!r}.")
        for name, value in self.scalar_conditions.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"`model.scalar_conditions` must map names to numbers but has {name}={value!r}.")


@dataclass
class TrainingConfig:
    """All settings of a training run (see the README, "Training").

    Args:
        output_dir (`str`, defaults to "train_output"): Checkpoints, `train_log.jsonl` and `final/` go here.
        seed (`int`, defaults to 0): Seeds the model initialisation, the data stream and the training noise.
        max_train_steps (`int`, defaults to 1000): Optimizer steps.
        train_batch_size (`int`, defaults to 16): Samples per forward pass summed over all processes (each process
            takes `train_batch_size / num_processes`); an optimizer step sees this times
            `gradient_accumulation_steps`.
        gradient_accumulation_steps (`int`, defaults to 1): Micro-batches per optimizer step.
        learning_rate (`float`, defaults to 1e-4): AdamW learning rate.
        adam_beta1 (`float`, defaults to 0.9): AdamW beta1.
        adam_beta2 (`float`, defaults to 0.999): AdamW beta2.
        adam_epsilon (`float`, defaults to 1e-8): AdamW epsilon.
        adam_weight_decay (`float`, defaults to 1e-2): AdamW weight decay.
        lr_scheduler (`str`, defaults to "constant"): A `diffusers.optimization.get_scheduler` name.
        lr_warmup_steps (`int`, defaults to 0): Warm-up steps of the learning-rate schedule.
        max_grad_norm (`float | None`, defaults to 1.0): Gradient clipping norm; None does not clip.
        mixed_precision (`str`, defaults to "no"): "no", "fp16" or "bf16" (accelerate autocast).
        gradient_checkpointing (`bool`, defaults to False): Trade compute for memory in the UNet.
        ema_decay (`float | None`, defaults to None): Keep an EMA of the trained weights (diffusers `EMAModel`)
            and save it as the final model; None keeps none.
        checkpointing_steps (`int | None`, defaults to 500): Save a resumable checkpoint every this many steps.
        checkpoints_total_limit (`int | None`, defaults to None): Keep only the newest this many checkpoints.
        resume_from_checkpoint (`str | None`, defaults to None): "latest" (the newest complete checkpoint in
            `output_dir`, or a fresh start when there is none), a `checkpoint-<step>` folder, or a folder of them.
        condition_dropout (`float`, defaults to 0.1): Probability that a caption is replaced by "" (for
            classifier-free guidance).
        prediction_type (`str`, defaults to "epsilon"): "epsilon" or "v_prediction".
        snr_gamma (`float | None`, defaults to None): Min-SNR loss weighting (Hang et al. 2023); 5.0 is typical.
        loss_weighting (`str`, defaults to "none"): "v_equivalent" weights an epsilon model's loss by `1 / alpha_bar_t`
            so that it equals the loss of the implied v prediction (see `objectives.v_equivalent_loss_weights`);
            epsilon prediction only, and not with `snr_gamma`.
        timestep_bias_strategy (`str`, defaults to "none"): "later" draws the noisiest `timestep_bias_portion` of the
            training timesteps `timestep_bias_multiplier` times as often as the others, "earlier" the cleanest (as
            diffusers' SDXL training script); "none" draws them uniformly.
        timestep_bias_portion (`float`, defaults to 0.25): Fraction of the timesteps that are favoured, in (0, 1).
        timestep_bias_multiplier (`float`, defaults to 1.0): Their relative weight, > 0.
        image_fraction (`float`, defaults to 0.0): Joint image-video training: this fraction of each batch are still
            images, trained as single-frame videos (temporal layers skipped). In [0, 1).
        freeze_spatial (`bool`, defaults to False): Train only the temporal parameters (temporal layers, frame
            adaptors, scalar-condition embeddings) of a `UNet3DModel`.
        data (`DataConfig`): What to train on.
        model (`ModelConfig`): What to train (with `videofusion`: the residual generator).
        videofusion (`VideoFusionConfig | None`, defaults to None): Train VideoFusion's base and residual generators
            jointly; None trains the `model` alone.
        imagen_video (`ImagenVideoConfig | None`, defaults to None): Train one stage of an Imagen Video cascade (pixel
            space, v-prediction, noise-conditioning augmentation for super-resolution stages); None trains the
            `model` as a plain text-to-video model.
        video_vae (`VideoVAEConfig | None`, defaults to None): Train a temporal-aware VAE decoder (an
            `AutoencoderKLVideo` inflated from the model's VAE) on pixel clips, the encoder frozen.
        i2vgen_xl (`I2VGenXLConfig | None`, defaults to None): Train a stage of I2VGen-XL (the image-to-video base
            stage with its content encoder, or the refiner) saved as an `I2VGenXLCascadePipeline` (see
            `training.i2vgen_xl`).
        magicvideo (`MagicVideoConfig | None`, defaults to None): Train MagicVideo's interpolation model on segments
            whose end frames are given (see `training.magicvideo`), or pre-train its keyframe model on CLIP image
            embeddings of uncaptioned clips (`stage: "pretrain"`, see `training.magicvideo_pretrain`).
        lora (`LoraTrainingConfig | None`, defaults to None): Train LoRA adapters on the UNet instead of the UNet
            (with `videofusion`: on the residual generator, and on the base generator too with `videofusion.train_base`);
            None trains the weights.
        videogen (`VideoGenConfig | None`, defaults to None): Train one of VideoGen's models: the reference-conditioned
            video UNet, the latent super-resolution UNet or the flow upsampler (see `training.videogen`).
    """

    output_dir: str = "train_output"
    seed: int = 0
    max_train_steps: int = 1000
    train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    adam_weight_decay: float = 1e-2
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    ema_decay: float | None = None
    checkpointing_steps: int | None = 500
    checkpoints_total_limit: int | None = None
    resume_from_checkpoint: str | None = None
    condition_dropout: float = 0.1
    prediction_type: str = "epsilon"
    snr_gamma: float | None = None
    loss_weighting: str = "none"
    timestep_bias_strategy: str = "none"
    timestep_bias_portion: float = 0.25
    timestep_bias_multiplier: float = 1.0
    image_fraction: float = 0.0
    freeze_spatial: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    videofusion: VideoFusionConfig | None = None
    imagen_video: ImagenVideoConfig | None = None
    video_vae: VideoVAEConfig | None = None
    magicvideo: MagicVideoConfig | None = None
    lora: LoraTrainingConfig | None = None
    videogen: VideoGenConfig | None = None
    i2vgen_xl: I2VGenXLConfig | None = None

    def __post_init__(self):
        if isinstance(self.data, dict):
            self.data = _from_dict(DataConfig, self.data, "data.")
        if isinstance(self.model, dict):
            self.model = _from_dict(ModelConfig, self.model, "model.")
        if isinstance(self.videofusion, dict):
            self.videofusion = _from_dict(VideoFusionConfig, self.videofusion, "videofusion.")
        if isinstance(self.imagen_video, dict):
            self.imagen_video = _from_dict(ImagenVideoConfig, self.imagen_video, "imagen_video.")
        if isinstance(self.video_vae, dict):
            self.video_vae = _from_dict(VideoVAEConfig, self.video_vae, "video_vae.")
        if isinstance(self.magicvideo, dict):
            self.magicvideo = _from_dict(MagicVideoConfig, self.magicvideo, "magicvideo.")
        if isinstance(self.lora, dict):
            self.lora = _from_dict(LoraTrainingConfig, self.lora, "lora.")
        if isinstance(self.videogen, dict):
            self.videogen = _from_dict(VideoGenConfig, self.videogen, "videogen.")
        if isinstance(self.i2vgen_xl, dict):
            self.i2vgen_xl = _from_dict(I2VGenXLConfig, self.i2vgen_xl, "i2vgen_xl.")
        _check_types(self, "")
        check_int_at_least(self.seed, "seed", 0)
        for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps"):
            check_int_at_least(getattr(self, name), name, 1)
        check_int_at_least(self.lr_warmup_steps, "lr_warmup_steps", 0)
        for name in ("checkpointing_steps", "checkpoints_total_limit"):
            if getattr(self, name) is not None:
                check_int_at_least(getattr(self, name), name, 1)
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES} but is {self.prediction_type!r}.")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"`mixed_precision` must be one of {MIXED_PRECISIONS} but is {self.mixed_precision!r}.")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"`lr_scheduler` must be one of {LR_SCHEDULERS} but is {self.lr_scheduler!r}.")
        if not 0.0 <= self.image_fraction < 1.0:  # also rejects NaN
            raise ValueError(f"`image_fraction` must be in [0, 1) but is {self.image_fraction}.")
        if self.image_fraction > 0 and self.data.num_frames == 1:
            raise ValueError(
                f"`image_fraction` ({self.image_fraction}) needs videos (`data.num_frames` > 1), but "
                "`data.num_frames` is 1: every sample is already a still image."
            )
        if self.model.unet_class == "UNet2DConditionModel":
            if self.freeze_spatial:
                raise ValueError(
                    "`freeze_spatial` needs a UNet3DModel, but `model.unet_class` is 'UNet2DConditionModel'."
                )
            if self.data.num_frames != 1:
                raise ValueError(
                    "A UNet2DConditionModel trains on still images: `data.num_frames` must be 1 but is "
                    f"{self.data.num_frames}."
                )
        if not 0.0 <= self.condition_dropout <= 1.0:
            raise ValueError(f"`condition_dropout` must be in [0, 1] but is {self.condition_dropout}.")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in (0, 1) or None but is {self.ema_decay}.")
        for name in ("snr_gamma", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"`{name}` must be > 0 or None but is {value}.")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0 but is {self.learning_rate}.")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"`loss_weighting` must be one of {LOSS_WEIGHTINGS} but is {self.loss_weighting!r}.")
        if self.loss_weighting == "v_equivalent" and (self.prediction_type != "epsilon" or self.snr_gamma is not None):
            raise ValueError(
                "`loss_weighting='v_equivalent'` weights an epsilon model's loss: it needs `prediction_type` "
                f"'epsilon' (is {self.prediction_type!r}) and no `snr_gamma` (is {self.snr_gamma})."
            )
        if self.timestep_bias_strategy not in TIMESTEP_BIAS_STRATEGIES:
            raise ValueError(
                f"`timestep_bias_strategy` must be one of {TIMESTEP_BIAS_STRATEGIES} but is "
                f"{self.timestep_bias_strategy!r}."
            )
        if not 0.0 < self.timestep_bias_portion < 1.0:
            raise ValueError(f"`timestep_bias_portion` must be in (0, 1) but is {self.timestep_bias_portion}.")
        if not self.timestep_bias_multiplier > 0:
            raise ValueError(f"`timestep_bias_multiplier` must be > 0 but is {self.timestep_bias_multiplier}.")
        if self.videofusion is not None and self.imagen_video is not None:
            raise ValueError("`videofusion` and `imagen_video` cannot both be set: a run trains one system.")
        if self.videofusion is not None:
            self._check_videofusion()
        if self.imagen_video is not None:
            self._check_imagen_video()
        if self.video_vae is not None:
            self._check_video_vae()
        if self.magicvideo is not None:
            check_magicvideo_config(self)
        if self.lora is not None:
            self._check_lora()
        if self.videogen is not None:
            self.videogen.check_run(self)
        if self.i2vgen_xl is not None:
            check_i2vgen_xl_config(self)

    def _check_lora(self) -> None:
        if self.freeze_spatial:
            raise ValueError("`lora` and `freeze_spatial` cannot both be set: with `lora` only the adapters train.")
        if self.video_vae is not None:
            raise ValueError("`lora` cannot train a `video_vae` decoder: it adapts the UNet.")

    def _check_videofusion(self) -> None:
        if self.image_fraction > 0:
            raise ValueError(
                f"`image_fraction` must be 0 with `videofusion` (VideoFusion trains on videos only) but is "
                f"{self.image_fraction}."
            )
        if self.data.num_frames < 2:
            raise ValueError(f"`data.num_frames` must be >= 2 with `videofusion` but is {self.data.num_frames}.")
        if self.model.unet_class != "UNet3DModel":
            raise ValueError(
                f"`model.unet_class` must be 'UNet3DModel' with `videofusion` (the residual generator) but is "
                f"{self.model.unet_class!r}."
            )
        if self.model.pipeline_class not in (None, "VideoFusionPipeline"):
            raise ValueError(
                f"`model.pipeline_class` must be None or 'VideoFusionPipeline' with `videofusion` (the final folder "
                f"is a VideoFusionPipeline) but is {self.model.pipeline_class!r}."
            )

    def _check_video_vae(self) -> None:
        others = [name for name in ("videofusion", "imagen_video") if getattr(self, name) is not None]
        if others:
            raise ValueError(f"`video_vae` and `{others[0]}` cannot both be set: a run trains one system.")
        if self.data.num_frames < 2:
            raise ValueError(f"`data.num_frames` must be >= 2 with `video_vae` but is {self.data.num_frames}.")
        if self.image_fraction > 0 or self.data.cache_latents:
            raise ValueError(
                "`video_vae` trains on pixel clips: `image_fraction` must be 0, `data.cache_latents` false."
            )
        if self.video_vae.half_size_fraction > 0 and (self.data.height % 2 or self.data.width % 2):
            raise ValueError(
                f"`video_vae.half_size_fraction` needs an even frame size to downsample x2 but `data.height` x "
                f"`data.width` is {self.data.height}x{self.data.width}."
            )

    def _check_imagen_video(self) -> None:
        spec = self.imagen_video.stage_spec()
        if self.prediction_type != "v_prediction":
            raise ValueError(
                f"`prediction_type` must be 'v_prediction' with `imagen_video` (every stage of the cascade predicts v, "
                f"as in the paper) but is {self.prediction_type!r}."
            )
        if self.model.unet_class != "UNet3DModel":
            raise ValueError(
                f"`model.unet_class` must be 'UNet3DModel' with `imagen_video` but is {self.model.unet_class!r}."
            )
        if self.model.pipeline_class is not None:
            raise ValueError(
                f"`model.pipeline_class` must be None with `imagen_video` (the final folder is one stage of a cascade; "
                f"assemble the stages with `ImagenVideoPipeline`) but is {self.model.pipeline_class!r}."
            )
        data = self.data
        try:  # the data clip is the stage's output: the previous stage's size must come out whole
            spec.input_size(data.num_frames, data.height, data.width)
        except ValueError as error:
            raise ValueError(
                f"`imagen_video.stage` {spec.to_dict()} does not fit the data clips (`data.num_frames` "
                f"{data.num_frames}, `data.height` {data.height}, `data.width` {data.width}): {error}"
            ) from None
        if spec.kind == "tsr" and self.image_fraction > 0:
            raise ValueError(
                f"`image_fraction` must be 0 for a 'tsr' stage (a still image has no frames to interpolate) but is "
                f"{self.image_fraction}."
            )

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-compatible data."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json_file(self, path: str | Path) -> None:
        """Write the config as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """Build a config from a dict; an unknown key (nested ones included) is a `ValueError` naming it."""
        return _from_dict(cls, values, "")

    @classmethod
    def from_json_file(cls, path: str | Path) -> TrainingConfig:
        """Load a config file written by `to_json_file` (or by hand)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"The training config file '{path}' does not exist.")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"The training config file '{path}' is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"The training config file '{path}' must hold a JSON object but holds {type(values)}.")
        return cls.from_dict(values)

    def with_overrides(self, overrides: dict[str, Any]) -> TrainingConfig:
        """A copy with some values replaced; keys are field names, dotted for nested ones (`"data.height"`).

        A key of an optional section that is unset (`"videofusion.base_model"`) sets the section, its other keys
        at their defaults.
        """
        values, hints = self.to_dict(), typing.get_type_hints(type(self))
        for key, value in overrides.items():
            *parents, name = key.split(".")
            target = values
            for parent in parents:
                section = _section_class(hints[parent]) if target is values and parent in hints else None
                if section is not None and target[parent] is None:
                    target[parent] = dataclasses.asdict(section())  # an unset optional section (`videofusion`)
                if not isinstance(target.get(parent), dict):
                    raise ValueError(f"Unknown config key {key!r}.")
                target = target[parent]
            if name not in target:
                raise ValueError(f"Unknown config key {key!r}.")
            target[name] = value
        return type(self).from_dict(values)

    def hash(self) -> str:
        """A short hash of what the run learns (where it writes and how often it saves left out)."""
        values = _learning_values(self.to_dict())
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def changed_keys(self, saved: dict[str, Any]) -> list[str]:
        """Dotted keys of what the run learns that differ from a saved config's `to_dict()`."""
        return _diff_keys(_learning_values(saved), _learning_values(self.to_dict()))


def config_fields(cls=TrainingConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable key (dotted for nested fields) with its type hint: what the command line accepts."""
    hints = typing.get_type_hints(cls)
    keys = {}
    for f in dataclasses.fields(cls):
        section = _section_class(hints[f.name])
        if section is not None:
            keys.update(config_fields(section, f"{prefix}{f.name}."))
        else:
            keys[f"{prefix}{f.name}"] = hints[f.name]
    return keys


def _section_class(hint: Any) -> type | None:
    """The dataclass of a nested section hinted `Section` or `Section | None`, else None."""
    candidates = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    sections = [c for c in candidates if dataclasses.is_dataclass(c)]
    return sections[0] if len(sections) == 1 else None


def _learning_values(values: dict[str, Any]) -> dict[str, Any]:
    """A `to_dict()` without the keys left out of the hash."""
    values = {key: value for key, value in values.items() if key not in _HASH_EXCLUDED}
    if isinstance(values.get("data"), dict):
        values["data"] = {key: value for key, value in values["data"].items() if key not in _HASH_EXCLUDED_DATA}
    return values


def _diff_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        sections = isinstance(a.get(key), dict) and isinstance(b.get(key), dict)
        if not prefix and key in _SECTION_NAMES and sections:
            keys += _diff_keys(a[key], b[key], f"{key}.")
        elif a.get(key) != b.get(key):
            keys.append(f"{prefix}{key}")
    return keys


# ---------------------------------------------------------------------------------------------------------- helpers


def _from_dict(cls, values: dict[str, Any], prefix: str):
    if not isinstance(values, dict):
        raise ValueError(f"`{prefix.rstrip('.') or 'config'}` must be a JSON object but is {values!r}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"Unknown config keys {[prefix + key for key in unknown]}; known keys are {sorted(names)}.")
    return cls(**values)
