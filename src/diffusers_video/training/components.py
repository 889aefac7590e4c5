"""The models a training run uses, where they come from, and the folder the trained model is saved as."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from diffusers import DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import logging

from .. import models as video_models
from .. import schedulers as video_schedulers
from ..folders import check_no_pickled_weights, read_json
from ..models.unet_3d import UNet3DModel
from ..pipelines.pipeline_utils import VideoDiffusionPipeline
from .config import ModelConfig

logger = logging.get_logger(__name__)


@dataclass
class TrainingComponents:
    """The models of a training run; pass them to `train` to train models built in memory.

    Args:
        unet (`UNet3DModel | UNet2DConditionModel`): The model that is trained.
        text_encoder (`transformers.PreTrainedModel`): Frozen text encoder; `text_encoder(input_ids)[0]` are the
            token embeddings `(batch, tokens, dim)`.
        tokenizer (`transformers.PreTrainedTokenizerBase`): Its tokenizer.
        noise_scheduler: Training noise scheduler (`DDPMScheduler`, `DDIMScheduler`, `DecomposedNoiseScheduler`, ...),
            saved as the final pipeline's scheduler.
        vae (`AutoencoderKL | None`, defaults to None): Frozen VAE: latent space with one, pixel space without.
    """

    unet: UNet3DModel | UNet2DConditionModel
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    vae: Any | None = None

    def as_dict(self) -> dict[str, Any]:
        """The components by their diffusers pipeline names (`vae` left out when there is none)."""
        names = ("unet", "text_encoder", "tokenizer", "vae", "scheduler")
        values = (self.unet, self.text_encoder, self.tokenizer, self.vae, self.noise_scheduler)
        return {name: value for name, value in zip(names, values) if value is not None}


def resolve_class(name: str, kind: str = "class"):
    """A class of `diffusers_video` (its models, schedulers and pipelines) or, failing that, of `diffusers`, by name."""
    for found in (
        getattr(video_models, name, None),
        getattr(video_schedulers, name, None),
        VideoDiffusionPipeline.pipeline_class(name),
        getattr(diffusers, name, None),
    ):
        if isinstance(found, type):
            return found
    raise ValueError(f"Unknown {kind} {name!r}: it is neither in `diffusers_video` nor in `diffusers`.")


def resolve_pipeline_class(name: str) -> type[DiffusionPipeline]:
    """The pipeline class that `model.pipeline_class` names; checked before training starts."""
    cls = resolve_class(name, "pipeline class")
    if not issubclass(cls, DiffusionPipeline):
        raise ValueError(f"`model.pipeline_class`={name!r} is not a diffusers `DiffusionPipeline`.")
    return cls


# ------------------------------------------------------------------------------------------------------------ loading


def load_components(model: ModelConfig, seed: int = 0) -> TrainingComponents:
    """Load (or build) the models that `model` describes.

    Args:
        model (`ModelConfig`): Where the models come from.
        seed (`int`, defaults to 0): Seeds the weights created here (a UNet from scratch, inflated temporal layers).

    Raises:
        FileNotFoundError: The folder or one of its required sub-folders does not exist.
        ValueError: The folder and the config do not fit together, or a model in it has only pickled weights (convert
            them: load with `allow_pickle=True`, then `save_pretrained`).
    """
    if model.pretrained_model_name_or_path is None:
        raise ValueError(
            "`model.pretrained_model_name_or_path` is required (the text encoder and tokenizer come from it) unless "
            "`train` is given `components`."
        )
    root = Path(model.pretrained_model_name_or_path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"The model folder `model.pretrained_model_name_or_path`='{root}' does not exist (a local diffusers "
            "folder with unet/, text_encoder/, tokenizer/; download Hub models first with `hf download`)."
        )
    for sub in ("text_encoder", "tokenizer"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"The model folder '{root}' has no `{sub}/` sub-folder.")
    for sub in ("unet", "text_encoder", "vae"):  # training loads safetensors only: pickles run code when loaded
        check_no_pickled_weights(root / sub)
    unet = _load_unet(model, root, seed)
    text_encoder = load_text_encoder(root / "text_encoder")
    tokenizer = transformers.AutoTokenizer.from_pretrained(root / "tokenizer")
    vae = None
    if (root / "vae").is_dir():
        vae_class = resolve_class(read_json(root / "vae" / "config.json").get("_class_name", "AutoencoderKL"))
        vae = vae_class.from_pretrained(root, subfolder="vae")
    return TrainingComponents(unet, text_encoder, tokenizer, _load_scheduler(model, root), vae)


def _load_unet(model: ModelConfig, root: Path, seed: int):
    torch.manual_seed(seed)  # the same initial weights on every process and in every rerun
    if model.unet_config is not None:
        if model.temporal:
            raise ValueError(
                "`model.temporal` only applies when inflating a 2D UNet; put the options in `unet_config`."
            )
        cls = UNet3DModel if model.unet_class == "UNet3DModel" else UNet2DConditionModel
        return cls(**{key: value for key, value in model.unet_config.items() if not key.startswith("_")})
    config_file = root / "unet" / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"The model folder '{root}' has no `unet/config.json` and `model.unet_config` is unset."
        )
    saved = read_json(config_file).get("_class_name")
    if saved == "UNet3DModel":
        if model.unet_class != "UNet3DModel" or model.temporal:
            raise ValueError(
                f"'{root}/unet' is a UNet3DModel: it trains as it is (`model.unet_class` 'UNet3DModel', no "
                "`model.temporal` options)."
            )
        return UNet3DModel.from_pretrained(root, subfolder="unet")
    if saved == "UNet2DConditionModel":
        if model.unet_class == "UNet3DModel":
            return UNet3DModel.from_pretrained_2d(str(root), subfolder="unet", **model.temporal)
        if model.temporal:
            raise ValueError("`model.temporal` needs `model.unet_class`='UNet3DModel' (inflation).")
        return UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    raise ValueError(f"'{config_file}' holds a {saved!r}; expected a UNet3DModel or a UNet2DConditionModel.")


T5_MODEL_TYPES = ("t5", "mt5", "umt5")


def caption_token_ids(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    """`(B, tokens)` ids of `captions`, padded to the tokenizer's `model_max_length` (at most the text encoder's
    `max_position_embeddings`) and truncated, as the pipelines tokenize prompts."""
    limit = getattr(text_encoder.config, "max_position_embeddings", None) or 10**9
    max_length = min(tokenizer.model_max_length, limit)
    return tokenizer(
        captions, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    ).input_ids


def encode_token_ids(text_encoder, input_ids: torch.Tensor):
    """The text encoder's output for padded `input_ids`, masked as the pipeline that reads it masks them.

    `ImagenVideoPipeline` encodes with T5's attention mask (padding does not change the real tokens' features) and
    the Stable Diffusion-style pipelines encode CLIP without one (its causal attention already keeps the padding out
    of the real tokens), unless the encoder's config sets `use_attention_mask`. Training and distillation must encode
    the captions the same way, or the UNets learn features they never see at sampling.
    """
    config = text_encoder.config
    if getattr(config, "model_type", None) in T5_MODEL_TYPES or getattr(config, "use_attention_mask", False):
        attention_mask = (input_ids != config.pad_token_id).long()
        return text_encoder(input_ids, attention_mask=attention_mask)
    return text_encoder(input_ids)


def load_text_encoder(folder: Path):
    """The text encoder saved in `folder`, as the transformers class its `config.json` names (`architectures`)."""
    architectures = read_json(folder / "config.json").get("architectures") or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    if cls is None:
        raise ValueError(f"'{folder}/config.json' names no transformers architecture ({architectures}).")
    return cls.from_pretrained(folder)


def _load_scheduler(model: ModelConfig, root: Path):
    if model.noise_scheduler is not None:
        config = dict(model.noise_scheduler)
        cls = resolve_class(config.pop("_class_name", "DDPMScheduler"), "scheduler class")
        return cls.from_config(config)
    if (root / "scheduler").is_dir():
        config = read_json(root / "scheduler" / "scheduler_config.json")
        return resolve_class(config["_class_name"], "scheduler class").from_pretrained(root, subfolder="scheduler")
    # No clipping of x0: with guidance, diffusers' clipping of the predicted sample inverts colours (TRAINING-NOTES),
    # and it is wrong in latent space; the saved scheduler is what pipelines sample with.
    return DDPMScheduler(clip_sample=False)


def with_prediction_type(noise_scheduler, prediction_type: str):
    """The scheduler configured for `prediction_type`, so the saved pipeline samples the way the model was trained."""
    if noise_scheduler.config.get("prediction_type", prediction_type) == prediction_type:
        return noise_scheduler
    logger.info(f"Setting the noise scheduler's `prediction_type` to {prediction_type!r} (the training objective).")
    return type(noise_scheduler).from_config(noise_scheduler.config, prediction_type=prediction_type)


# ------------------------------------------------------------------------------------------------------------- saving


def save_components(folder: str | Path, components: TrainingComponents, pipeline_class: str | None = None) -> None:
    """Save the components into `folder` as sub-folders (`unet/`, `text_encoder/`, ...).

    With a `pipeline_class`, the pipeline is assembled and saved with its own `save_pretrained`, which writes the
    `model_index.json` that `pipeline_class.from_pretrained(folder)` needs; the pipeline's other components (safety
    checker, feature extractor, ...) are saved as absent. Without one, each component is saved on its own.
    """
    folder = Path(folder)
    if pipeline_class is None:
        for name, component in components.as_dict().items():
            component.save_pretrained(folder / name)
        return
    cls = resolve_pipeline_class(pipeline_class)
    available = components.as_dict()
    # a copy: some pipelines rewrite their scheduler's config in place (StableDiffusionPipeline's legacy fixes)
    available["scheduler"] = type(components.noise_scheduler).from_config(components.noise_scheduler.config)
    kwargs = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in available:
            kwargs[name] = available[name]
        elif name == "requires_safety_checker":
            kwargs[name] = False
        elif parameter.default is inspect.Parameter.empty:
            kwargs[name] = None  # an optional component this run does not have (safety checker, ...)
    unused = sorted(set(available) - set(kwargs))
    if unused:
        raise ValueError(f"`model.pipeline_class`={pipeline_class!r} takes no {unused}; it cannot hold this model.")
    cls(**kwargs).save_pretrained(folder)
