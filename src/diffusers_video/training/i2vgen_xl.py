"""Training I2VGen-XL's two stages in the accelerate training loop (Zhang et al. 2023, arXiv 2311.04145).

Nobody ships I2VGen-XL's training (VGen #7, #75, #115, #118). This module trains both stages of the cascade that
`I2VGenXLCascadePipeline` samples, with an `i2vgen_xl` section in the training config (`I2VGenXLConfig`):

- **Base stage** (`stage: "base"`): image-to-video. The UNet is a `UNet3DModel` inflated from the image model
  (`temporal_layout="modelscope"`, as the converted public weights; `in_channels` = the latent channels plus the
  content encoder's conditioning channels, whose `conv_in` weights start at zero, so the fresh model is the image
  model frame by frame; an "fps" scalar condition). Both "hierarchical encoders" of the paper condition it on the
  first frame of every training clip: the frozen CLIP image encoder (its `image_embeds` -> 4 tokens) and the learned
  `I2VGenXLContentEncoder` (the first frame's latent concatenated on channels with frame-position masks, and 16-64
  latent tokens), all in the cross-attention context after the text, as the pipeline lays them out. The UNet and the
  content encoder train together, one module that accelerate prepares (`I2VGenXLDenoiser`).
- **Refinement stage** (`stage: "refiner"`): the text-conditioned video UNet that SDEdit-refines the base video at a
  higher resolution (ModelScope's `damo/Video-to-Video`): the ordinary text-to-video loss at the data size (e.g.
  64 x 64), v-prediction on a zero-terminal-SNR schedule (both checked). The final folder is the base stage's cascade
  (`i2vgen_xl.base_model`) with this UNet as its `refiner_unet` and a trailing DDIM `refiner_scheduler`.

Condition dropout for guidance follows the pipeline's unconditional branch, which has the negative prompt and a zero
CLIP embedding but keeps the image latent (VGen's `use_zero_infer`): with probability `condition_dropout` a sample's
caption becomes "" and its CLIP embedding zero together; with probability `i2vgen_xl.image_embed_dropout` the CLIP
embedding alone is zeroed (VGen's partial dropout of the "image" key). Captions are encoded as the pipeline encodes
prompts (`i2vgen_xl.clip_skip`, default 1: the penultimate layer, then the final layer norm).

Joint image-video batches (`image_fraction`): a still image is a one-frame clip whose first frame is itself, so it
trains the model at `num_frames=1` to keep the given image, which the pipeline then does for frame 0 of every video.

Every sample's timestep, caption dropout and noise come from its `(seed, position)` generator, its CLIP dropout from
`(seed, position, IMAGE_EMBED_STREAM)`, so a killed and resumed run repeats the uninterrupted one exactly.
Recipes: `pipelines/i2vgen_xl/train_base.json`, `train_refiner.json` (`diffusers-video train --config ...`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler
from torch import nn

from ..folders import INDEX_NAME, TRAINING_CONFIG_NAME, read_json, save_assembled
from ..models.i2vgen_xl_content import I2VGenXLContentEncoder
from ..pipelines.i2vgen_xl import I2VGenXLCascadePipeline
from ..pipelines.i2vgen_xl.inputs import check_components as check_cascade_components
from .components import TrainingComponents, caption_token_ids, encode_token_ids, load_components
from .config import TrainingConfig
from .data import sample_generator
from .objectives import (
    OBJECTIVES,
    sample_timesteps,
    sample_training_noise,
)
from .registry import register_trainer
from .shared_weights import decoder_only_vae, same_weights
from .stand_in_image import clip_image_inputs
from .trainer import Trainer

__all__ = [
    "IMAGE_EMBED_STREAM",
    "I2VGenXLComponents",
    "I2VGenXLDenoiser",
    "I2VGenXLTrainer",
    "build_content_encoder",
    "load_i2vgen_xl_components",
    "sampling_scheduler",
]

PIPELINE = "I2VGenXLCascadePipeline"
IMAGE_EMBED_STREAM = 27
"""Third key of the per-sample generators `(seed, position, IMAGE_EMBED_STREAM)` of the CLIP-embedding dropout."""


@dataclasses.dataclass
class I2VGenXLComponents(TrainingComponents):
    """The models of an I2VGen-XL run: `TrainingComponents` plus, for the base stage, the frozen CLIP image encoder,
    its processor and the content encoder that is trained."""

    image_encoder: Any | None = None
    feature_extractor: Any | None = None
    content_encoder: I2VGenXLContentEncoder | None = None


def build_content_encoder(unet, vae, image_encoder, overrides: dict | None = None, seed: int = 0):
    """A new `I2VGenXLContentEncoder` that fits the UNet, the VAE and the CLIP image encoder.

    Its conditioning channels are the UNet's `in_channels` less the latent channels; its tokens have the UNet's
    cross-attention width; it reads the image encoder's `projection_dim`. The two token heads start at zero (the last
    layers of `image_latents_context_embedding` and `context_embedding`), so the image tokens enter the inflated
    model's cross-attention softly, as the concatenated path enters through `conv_in` weights that start at zero.

    Raises:
        ValueError: The UNet has no input channels for the concatenated path, or an override is not a config key.
    """
    latent = vae.config.latent_channels if vae is not None else 3
    conditioning = unet.config.in_channels - latent
    if conditioning < 1:
        raise ValueError(
            f"The base UNet's `in_channels` ({unet.config.in_channels}) must exceed the {latent} latent channels by "
            "the content encoder's conditioning channels (set `model.temporal.in_channels`, e.g. twice the latent "
            "channels)."
        )
    config = {
        "latent_channels": latent,
        "conditioning_channels": conditioning,
        "cross_attention_dim": unet.config.cross_attention_dim,
        "image_embed_dim": image_encoder.config.projection_dim,
        "hidden_dim": 4 * unet.config.block_out_channels[0],
    }
    unknown = sorted(set(overrides or {}) - _content_keys())
    if unknown:
        raise ValueError(f"`i2vgen_xl.content_encoder` has keys {unknown} that I2VGenXLContentEncoder does not take.")
    config.update(overrides or {})
    torch.manual_seed(seed)
    encoder = I2VGenXLContentEncoder(**config)
    with torch.no_grad():
        for last in (encoder.image_latents_context_embedding[-1], encoder.context_embedding[-1]):
            last.weight.zero_()
            last.bias.zero_()
    return encoder


def _content_keys() -> set[str]:
    import inspect

    return set(inspect.signature(I2VGenXLContentEncoder.__init__).parameters) - {"self"}


def load_i2vgen_xl_components(config: TrainingConfig) -> I2VGenXLComponents:
    """The models of a run as `config.model` and `config.i2vgen_xl` say (base: the CLIP image encoder and its
    processor from `i2vgen_xl.image_encoder`, a new content encoder).

    Raises:
        FileNotFoundError: The image-encoder folder lacks `image_encoder/` or `feature_extractor/`.
    """
    from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

    section = config.i2vgen_xl
    loaded = load_components(config.model, config.seed)
    values = {f.name: getattr(loaded, f.name) for f in dataclasses.fields(TrainingComponents)}
    if section.stage != "base":
        return I2VGenXLComponents(**values)
    folder = Path(section.image_encoder or config.model.pretrained_model_name_or_path)
    for sub in ("image_encoder", "feature_extractor"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(
                f"The CLIP image encoder folder '{folder}' (`i2vgen_xl.image_encoder`) has no `{sub}/` sub-folder "
                "(write one with `diffusers-video stand-in-image`)."
            )
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder")
    feature_extractor = AutoImageProcessor.from_pretrained(folder / "feature_extractor")
    content = build_content_encoder(loaded.unet, loaded.vae, image_encoder, section.content_encoder, config.seed)
    return I2VGenXLComponents(
        **values, image_encoder=image_encoder, feature_extractor=feature_extractor, content_encoder=content
    )


def sampling_scheduler(noise_scheduler) -> DDIMScheduler:
    """The DDIM scheduler a stage is sampled with: the training schedule, no clipping, trailing timesteps (which
    visit the zero-SNR step; the public weights were sampled with "leading", see `benchmarks/bench_i2vgen_xl.py`)."""
    return DDIMScheduler.from_config(
        noise_scheduler.config, clip_sample=False, timestep_spacing="trailing", steps_offset=1, set_alpha_to_one=False
    )


class I2VGenXLDenoiser(nn.Module):
    """The content encoder and the base UNet behind one forward call per micro-batch (one forward per backward).

    Each part is a dict with `sample` `(B, C, F, h, w)`, `timesteps` `(B,)`, `text` `(B, T, D)`, `image_latent`
    `(B, C, h, w)` (the first frame's latent), `image_embeds` `(B, E)` and `kwargs` (the UNet's scalar conditions).
    """

    def __init__(self, content_encoder: I2VGenXLContentEncoder, unet: nn.Module):
        super().__init__()
        self.content_encoder, self.unet = content_encoder, unet

    def forward(self, parts: list[dict[str, Any]]) -> list[torch.Tensor]:
        outputs = []
        for part in parts:
            sample = part["sample"]
            encoded = self.content_encoder(part["image_latent"], part["image_embeds"], sample.shape[2], part["text"])
            unet_input = torch.cat([sample, encoded.image_latents.to(sample.dtype)], dim=1)  # (B, C + c, F, h, w)
            output = self.unet(unet_input, part["timesteps"], encoder_hidden_states=encoded.context, **part["kwargs"])
            outputs.append(output.sample)  # (B, C, F, h, w)
        return outputs


@register_trainer("i2vgen_xl")
class I2VGenXLTrainer(Trainer):
    """The training loop for a config with an `i2vgen_xl` section (what `train(config)` runs for one).

    Args:
        config (`TrainingConfig`): The run; `config.i2vgen_xl` must be set.
        components (`TrainingComponents | None`): Models built in memory: for the base stage an `I2VGenXLComponents`
            with `image_encoder` and `feature_extractor` (a `content_encoder` is built when it has none). None loads
            them as `config.model` and `config.i2vgen_xl` say.
    """

    def __init__(self, config: TrainingConfig, components: TrainingComponents | None = None):
        if not isinstance(config, TrainingConfig) or config.i2vgen_xl is None:
            raise ValueError("I2VGenXLTrainer needs a TrainingConfig with an `i2vgen_xl` section.")
        section = config.i2vgen_xl
        self.stage = section.stage
        if components is None:
            components = load_i2vgen_xl_components(config)
        elif not isinstance(components, TrainingComponents):
            raise TypeError(f"`components` must be I2VGenXLComponents but is {type(components).__name__}.")
        elif not isinstance(components, I2VGenXLComponents):
            components = I2VGenXLComponents(
                **{f.name: getattr(components, f.name) for f in dataclasses.fields(TrainingComponents)}
            )
        if self.stage == "base":
            if components.image_encoder is None or components.feature_extractor is None:
                raise ValueError(
                    "The `i2vgen_xl` base stage needs `image_encoder` and `feature_extractor` components."
                )
            if components.content_encoder is None:
                content = build_content_encoder(
                    components.unet, components.vae, components.image_encoder, section.content_encoder, config.seed
                )
                components = dataclasses.replace(components, content_encoder=content)
            self.base_pipeline = None
        else:
            self.base_pipeline = self._load_base(Path(section.base_model), components)
            zero_snr = components.noise_scheduler.config.get("rescale_betas_zero_snr")
            if not zero_snr:
                raise ValueError(
                    "The `i2vgen_xl` refiner trains on a zero-terminal-SNR schedule: set "
                    f"`model.noise_scheduler.rescale_betas_zero_snr` to true (it is {zero_snr!r})."
                )
        super().__init__(config, components)
        if self.stage == "base":
            self.components.image_encoder.requires_grad_(False).eval().to(self.accelerator.device)

    @staticmethod
    def _load_base(folder: Path, components: TrainingComponents | None) -> I2VGenXLCascadePipeline:
        index = folder / INDEX_NAME
        if not index.is_file() or read_json(index).get("_class_name") not in (PIPELINE, ["pipeline", PIPELINE]):
            raise ValueError(
                f"`i2vgen_xl.base_model` '{folder}' must be an I2VGenXLCascadePipeline folder (the base stage's final "
                "folder)."
            )
        base = I2VGenXLCascadePipeline.from_pretrained(folder, torch_dtype=torch.float32)
        for name in ("text_encoder", "vae") if components is not None else ():
            if not same_weights(getattr(components, name), getattr(base, name)):
                raise ValueError(
                    f"The refiner's {name} (from `model.pretrained_model_name_or_path`) differs from the base stage's "
                    f"('{folder}/{name}'): both stages of the cascade share it."
                )
        return base

    # ------------------------------------------------------------------------------------------------ setup

    def _check_components(self) -> None:
        super()._check_components()
        c = self.components
        if self.stage == "base":  # the final folder's own checks, before any training
            check_cascade_components(c.vae, c.content_encoder, c.unet, None, None)
            if c.image_encoder.config.projection_dim != c.content_encoder.config.image_embed_dim:
                raise ValueError(
                    f"The CLIP image encoder's `projection_dim` ({c.image_encoder.config.projection_dim}) must equal "
                    f"the content encoder's `image_embed_dim` ({c.content_encoder.config.image_embed_dim})."
                )
        else:
            if c.unet.config.scalar_conditions:
                raise ValueError(
                    f"The refiner UNet is conditioned on the text alone but has `scalar_conditions`="
                    f"{list(c.unet.config.scalar_conditions)}."
                )
            base = self.base_pipeline
            check_cascade_components(base.vae, base.content_encoder, base.unet, c.unet, self._refiner_scheduler())

    def conditioning_channels(self) -> int:
        return self.components.content_encoder.config.conditioning_channels if self.stage == "base" else 0

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The UNet's parameters, and for the base stage the content encoder's (the CLIP image encoder is frozen)."""
        trainable = super().trainable_parameters()
        if self.stage != "base":
            return trainable
        content = self.components.content_encoder.requires_grad_(True).train()
        return trainable + list(content.parameters())

    def build_denoiser(self) -> nn.Module:
        if self.stage != "base":
            return super().build_denoiser()
        return I2VGenXLDenoiser(self.components.content_encoder, self.components.unet)

    # ---------------------------------------------------------------------------------------------- inputs

    @torch.no_grad()
    def encode_prompts(self, captions: list[str]) -> torch.Tensor:
        """Text embeddings `(B, tokens, dim)` as the pipeline computes them with `clip_skip` (`encode_clip_prompt`):
        the hidden states `clip_skip` layers before the last, through the final layer norm."""
        skip = self.config.i2vgen_xl.clip_skip
        text_encoder = self.components.text_encoder
        ids = caption_token_ids(self.components.tokenizer, text_encoder, captions).to(self.accelerator.device)
        if skip is None:
            return encode_token_ids(text_encoder, ids)[0]
        hidden = text_encoder(ids, output_hidden_states=True).hidden_states[-(skip + 1)]
        return getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)

    def model_inputs(self, part: dict[str, Any]) -> torch.Tensor:
        """`Trainer.model_inputs`, contiguous: latents encoded on the fly are a permuted view, and the ModelScope
        layout's temporal GroupNorm (`torch.native_group_norm`) refuses the channels-last activations they lead to."""
        return super().model_inputs(part).contiguous()

    @torch.no_grad()
    def image_embeds(self, first_frames: torch.Tensor) -> torch.Tensor:
        """The frozen CLIP image embeddings `(B, E)` of first frames `(B, 3, H, W)` in [-1, 1], seen as the pipeline
        shows the image (`stand_in_image.clip_image_inputs`)."""
        pixels = clip_image_inputs(first_frames, self.components.feature_extractor).to(self.accelerator.device)
        return self.components.image_encoder(pixel_values=pixels).image_embeds.float()

    # ------------------------------------------------------------------------------------------------ loss

    def training_loss(self, parts: dict[str, dict[str, Any]]) -> torch.Tensor:
        """The base stage's loss: each sample denoised given its first frame (both encoders), its caption and fps;
        weighted as every trainer's (`weighted_loss`: min-SNR, `loss_weighting`). The refiner's is the plain
        text-to-video loss."""
        if self.stage != "base":
            return super().training_loss(parts)
        config, scheduler = self.config, self.components.noise_scheduler
        device = self.accelerator.device
        inputs, targets, timesteps_of_parts = [], [], []
        for part in parts.values():
            if part["latent"]:
                raise ValueError("The `i2vgen_xl` base stage needs pixel clips (its CLIP encoder reads frame 0).")
            clean = self.model_inputs(part)  # (B, C, F, h, w)
            positions = [int(p) for p in part["positions"]]
            generators = [sample_generator(config.seed, p) for p in positions]
            timesteps = sample_timesteps(scheduler.config.num_train_timesteps, generators, self.timestep_weights)
            dropped = torch.cat([torch.rand(1, generator=g) for g in generators]) < config.condition_dropout
            noise = sample_training_noise(scheduler, tuple(clean.shape), generators).to(device, clean.dtype)
            timesteps = timesteps.to(device)
            embed_generators = [sample_generator(config.seed, p, IMAGE_EMBED_STREAM) for p in positions]
            embed_dropped = torch.cat([torch.rand(1, generator=g) for g in embed_generators])
            embed_dropped = dropped | (embed_dropped < config.i2vgen_xl.image_embed_dropout)  # (B,)
            captions = ["" if drop else caption for drop, caption in zip(dropped.tolist(), part["captions"])]
            embeds = self.image_embeds(part["x"][:, :, 0])  # (B, E): frame 0 is the image
            embeds = embeds * (~embed_dropped).to(device=device, dtype=embeds.dtype)[:, None]  # zero: unconditional
            inputs.append(
                {
                    "sample": scheduler.add_noise(clean, noise.noise, timesteps),
                    "timesteps": timesteps,
                    "text": self.encode_prompts(captions),
                    "image_latent": clean[:, :, 0],  # (B, C, h, w): the first frame's latent
                    "image_embeds": embeds,
                    "kwargs": self.unet_kwargs(part, clean.shape[0]),
                }
            )
            targets.append(OBJECTIVES[config.prediction_type](scheduler, clean, noise, timesteps))
            timesteps_of_parts.append(timesteps)
        return self.weighted_loss(self.model(inputs), targets, timesteps_of_parts)

    # ---------------------------------------------------------------------------------------------- final

    def _refiner_scheduler(self) -> DDIMScheduler:
        return sampling_scheduler(self.components.noise_scheduler)

    def cascade_pipeline(self) -> I2VGenXLCascadePipeline:
        """The `I2VGenXLCascadePipeline` of the run's models (the trained models themselves, not copies)."""
        c, data = self.components, self.config.data
        if self.stage == "base":
            return I2VGenXLCascadePipeline(
                vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, image_encoder=c.image_encoder,
                feature_extractor=c.feature_extractor, content_encoder=c.content_encoder, unet=c.unet,
                scheduler=sampling_scheduler(c.noise_scheduler), default_height=data.height, default_width=data.width,
            )  # fmt: skip
        base = self.base_pipeline
        factor = base.vae_scale_factor  # the refined size the pipeline defaults to: the size trained on
        c.unet.register_to_config(sample_size=[data.height // factor, data.width // factor])
        parts = {k: v for k, v in base.components.items() if k not in ("refiner_unet", "refiner_scheduler")}
        return I2VGenXLCascadePipeline(
            **parts, refiner_unet=c.unet, refiner_scheduler=self._refiner_scheduler(),
            default_height=base.config.default_height, default_width=base.config.default_width,
        )  # fmt: skip

    def save_model(self, folder: Path) -> None:
        """An `I2VGenXLCascadePipeline` folder (the refiner's: the base cascade with `refiner_unet/`) and
        `training_config.json`."""
        self.cascade_pipeline().save_pretrained(folder)
        self.config.to_json_file(folder / TRAINING_CONFIG_NAME)


def assemble_cascade(
    base_folder: str | Path,
    refiner_folder: str | Path,
    output_dir: str | Path,
    fp16: bool = False,
    vae_folder: str | Path | None = None,
):
    """One `I2VGenXLCascadePipeline` folder from a base-stage folder and a refiner folder.

    The refiner trains on real clips alone, so it can train while the base stage does, against an exported
    checkpoint of the base as `i2vgen_xl.base_model` (which only lends it the shared VAE and text encoder); this puts
    its `refiner_unet` and `refiner_scheduler` behind the finished base stage. The two must share the VAE and the text
    encoder weight for weight.

    Args:
        base_folder (`str | Path`): The base stage's final folder (an `I2VGenXLCascadePipeline`; a refiner in it is
            replaced).
        refiner_folder (`str | Path`): A refiner run's final folder (a cascade with `refiner_unet/`).
        output_dir (`str | Path`): Where the cascade goes, written atomically (an existing folder is kept if it fails).
        fp16 (`bool`, defaults to False): Save the two UNets' weights in float16 (half the size, for committing a
            demo); `from_pretrained` loads them back in float32.
        vae_folder (`str | Path`, *optional*): A VAE folder (`AutoencoderKL` or `AutoencoderKLVideo`) to decode with
            instead of the base's, e.g. a decoder fine-tuned at the refined size (`video_vae.train_layers` "decoder");
            its encoder must be the base's, weight for weight, so the latents both stages trained on stay the same.

    Returns:
        `Path`: `output_dir`, with the base's `training_config.json`.
    """
    base_folder, refiner_folder = Path(base_folder), Path(refiner_folder)
    base = I2VGenXLTrainer._load_base(base_folder, None)
    refiner = I2VGenXLTrainer._load_base(refiner_folder, None)
    if refiner.refiner_unet is None:
        raise ValueError(f"'{refiner_folder}' has no `refiner_unet/`: pass a refiner run's final folder.")
    for name in ("text_encoder", "vae"):
        if not same_weights(getattr(base, name), getattr(refiner, name)):
            raise ValueError(
                f"'{base_folder}/{name}' and '{refiner_folder}/{name}' differ: both stages of a cascade share it."
            )
    parts = {k: v for k, v in base.components.items() if k not in ("refiner_unet", "refiner_scheduler")}
    if vae_folder is not None:
        parts["vae"] = decoder_only_vae(Path(vae_folder), base.vae)
    cascade = I2VGenXLCascadePipeline(
        **parts, refiner_unet=refiner.refiner_unet, refiner_scheduler=refiner.refiner_scheduler,
        default_height=base.config.default_height, default_width=base.config.default_width,
    )  # fmt: skip
    if fp16:
        cascade.unet.to(torch.float16)
        cascade.refiner_unet.to(torch.float16)
    return save_assembled(cascade, output_dir, base_folder)
