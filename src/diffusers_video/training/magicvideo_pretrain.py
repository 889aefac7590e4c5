"""MagicVideo's unsupervised pre-training of the keyframe model on CLIP image embeddings (issue 26).

The paper pre-trains its keyframe model on clips without captions, conditioned on CLIP image embeddings, then
fine-tunes it on captioned clips; it gives no details. Here (our design, see `docs/magicvideo.md`) the keyframe UNet
trains as the keyframe recipe trains it (the same data, UNet options and objective), except for the cross-attention
context of each clip:

- **image tokens** (an uncaptioned clip): one frame of the clip, chosen at random per sample, goes through the frozen
  CLIP image tower (`image_encoder`, e.g. the stand-in's `pipelines/shapes_sd`, trained contrastively against the
  text tower) as `I2VGenXLCascadePipeline` shows it its image (`stand_in_image.clip_image_inputs`); its
  `image_embeds` `(E,)` are mapped by a small learned `MagicVideoImageProjection` (Linear + LayerNorm, trained with
  the UNet) to `num_image_tokens` tokens of the text encoder's width, which replace the caption's embeddings;
- **the caption** (the first `caption_fraction` of the dataset's items, the clips that "have captions"): its text
  embeddings, as usual;
- **condition dropout** (`condition_dropout` of the samples, either kind): the empty caption's embeddings, the
  pipeline's unconditional branch.

A batch holds both token lengths, so the UNet runs once on the image-conditioned samples and once on the others,
inside one module (`MagicVideoPretrainDenoiser`: one forward per backward). The frame and the dropout are drawn from
the sample's own generators (`(seed, position, FRAME_STREAM)` and the diffusion noise's `(seed, position)`), so a
killed and resumed run repeats the uninterrupted one. With `data.cache_latents` the chosen frame's pixels are
rendered (or decoded) again from the dataset item the latents were encoded from.

The final folder is a keyframe `MagicVideoPipeline` folder, as `pipelines/magicvideo/train_keyframes.json` writes, so
the ordinary keyframe recipe fine-tunes it on captions (`model.pretrained_model_name_or_path` = the folder); the
projection is saved beside it as `image_projection/` (only pre-training uses it: the pipeline reads text).
`MagicVideoInterpolationTrainer.class_for_config` hands `magicvideo.stage = "pretrain"` configs to this trainer, so
`diffusers-video train --config pipelines/magicvideo/pretrain_keyframes.json` runs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..folders import TRAINING_CONFIG_NAME
from ..models.unet_3d import UNet3DModel
from .components import TrainingComponents, load_components, save_components
from .config import TrainingConfig
from .data import TrainingItems, sample_generator
from .magicvideo_config import PRETRAIN_PIPELINE
from .objectives import (
    OBJECTIVES,
    sample_timesteps,
    sample_training_noise,
)
from .stand_in_image import clip_image_inputs
from .trainer import Trainer

__all__ = [
    "FRAME_STREAM",
    "IMAGE_PROJECTION_NAME",
    "MagicVideoImageProjection",
    "MagicVideoPretrainComponents",
    "MagicVideoPretrainDenoiser",
    "MagicVideoPretrainTrainer",
    "build_image_projection",
    "captioned_items",
    "load_pretrain_components",
]

FRAME_STREAM = 28
"""Third key of the per-sample generators `(seed, position, FRAME_STREAM)` that choose the frame a clip is
conditioned on (apart from the diffusion noise's `(seed, position)` and the other trainers' streams)."""

IMAGE_PROJECTION_NAME = "image_projection"
"""Sub-folder of the final folder (and of an exported checkpoint) that holds the projection."""


class MagicVideoImageProjection(ModelMixin, ConfigMixin):
    """CLIP image embeddings `(B, image_embed_dim)` -> `num_tokens` cross-attention tokens `(B, num_tokens,
    cross_attention_dim)`: one linear map to all tokens, then a LayerNorm over each token's width (the text encoder's
    last hidden states also leave a final layer norm).

    Args:
        image_embed_dim (`int`): The CLIP image tower's `projection_dim`.
        cross_attention_dim (`int`): The UNet's cross-attention width (the text encoder's).
        num_tokens (`int`, defaults to 4): Tokens per image.
    """

    @register_to_config
    def __init__(self, image_embed_dim: int, cross_attention_dim: int, num_tokens: int = 4):
        super().__init__()
        for name, value in (
            ("image_embed_dim", image_embed_dim), ("cross_attention_dim", cross_attention_dim),
            ("num_tokens", num_tokens),
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1 but is {value!r}.")
        self.proj = nn.Linear(image_embed_dim, num_tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        if image_embeds.ndim != 2 or image_embeds.shape[1] != self.config.image_embed_dim:
            raise ValueError(
                f"`image_embeds` must be (B, {self.config.image_embed_dim}) but has shape {tuple(image_embeds.shape)}."
            )
        tokens = self.proj(image_embeds.to(self.proj.weight.dtype))  # (B, k * D)
        return self.norm(tokens.view(len(image_embeds), self.config.num_tokens, self.config.cross_attention_dim))


@dataclasses.dataclass
class MagicVideoPretrainComponents(TrainingComponents):
    """The models of a pre-training run: `TrainingComponents` plus the frozen CLIP image tower, its processor and
    the projection that is trained (built when None)."""

    image_encoder: Any | None = None
    feature_extractor: Any | None = None
    image_projection: MagicVideoImageProjection | None = None


def build_image_projection(image_encoder, unet, num_tokens: int, seed: int) -> MagicVideoImageProjection:
    """A new projection from the image tower's embeddings to `num_tokens` tokens of the UNet's cross-attention width,
    its weights seeded by `seed`."""
    torch.manual_seed(seed)
    return MagicVideoImageProjection(
        image_embed_dim=image_encoder.config.projection_dim,
        cross_attention_dim=unet.config.cross_attention_dim,
        num_tokens=num_tokens,
    )


def load_pretrain_components(config: TrainingConfig) -> MagicVideoPretrainComponents:
    """The models of a run as `config.model` and `config.magicvideo` say: the keyframe UNet, text encoder, VAE and
    scheduler, the CLIP image tower and its processor from `magicvideo.image_encoder`, a new projection.

    Raises:
        FileNotFoundError: The image-encoder folder lacks `image_encoder/` or `feature_extractor/`.
    """
    from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

    section = config.magicvideo
    loaded = load_components(config.model, config.seed)
    folder = Path(section.image_encoder or config.model.pretrained_model_name_or_path)
    for sub in ("image_encoder", "feature_extractor"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(
                f"The CLIP image encoder folder '{folder}' (`magicvideo.image_encoder`) has no `{sub}/` sub-folder "
                "(write one with `diffusers-video stand-in-image`)."
            )
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder")
    feature_extractor = AutoImageProcessor.from_pretrained(folder / "feature_extractor")
    values = {f.name: getattr(loaded, f.name) for f in dataclasses.fields(TrainingComponents)}
    projection = build_image_projection(image_encoder, loaded.unet, section.num_image_tokens, config.seed)
    return MagicVideoPretrainComponents(
        **values, image_encoder=image_encoder, feature_extractor=feature_extractor, image_projection=projection
    )


def captioned_items(caption_fraction: float, num_items: int) -> int:
    """How many of a dataset's items have captions: the first `round(caption_fraction * num_items)` (half up)."""
    return int(caption_fraction * num_items + 0.5)


def _rows(value: Any, rows: torch.Tensor) -> Any:
    """`value` (a tensor with a batch axis, or a dict of them) at the batch `rows`."""
    if isinstance(value, dict):
        return {key: _rows(v, rows) for key, v in value.items()}
    return value[rows.to(value.device)] if isinstance(value, torch.Tensor) and value.ndim > 0 else value


class MagicVideoPretrainDenoiser(nn.Module):
    """The projection and the keyframe UNet behind one forward call per micro-batch (one forward per backward).

    Each part is a dict with `sample` `(B, C, F, h, w)`, `timesteps` `(B,)`, `text` `(B, T, D)`, `image_embeds`
    `(B, E)`, `use_image` `(B,)` bool and `kwargs` (the UNet's scalar conditions, `(B,)` each). The samples with
    `use_image` read `image_projection(image_embeds)` `(n, k, D)`, the others `text`: two UNet calls (the token
    counts differ), whose outputs are put back in the part's order.
    """

    def __init__(self, image_projection: MagicVideoImageProjection, unet: nn.Module):
        super().__init__()
        self.image_projection, self.unet = image_projection, unet

    def forward(self, parts: list[dict[str, Any]]) -> list[torch.Tensor]:
        outputs = []
        for part in parts:
            use_image = part["use_image"].to(part["sample"].device)
            pieces, order = [], []
            for rows, from_image in ((use_image.nonzero()[:, 0], True), ((~use_image).nonzero()[:, 0], False)):
                if len(rows) == 0:
                    continue
                context = self.image_projection(part["image_embeds"][rows]) if from_image else part["text"][rows]
                out = self.unet(
                    part["sample"][rows], part["timesteps"][rows], encoder_hidden_states=context.to(part["text"].dtype),
                    **_rows(part["kwargs"], rows),
                ).sample  # fmt: skip
                pieces.append(out)
                order.append(rows)
            outputs.append(torch.cat(pieces)[torch.argsort(torch.cat(order))])  # (B, C, F, h, w)
        return outputs


@contextlib.contextmanager
def _without_latents(dataset):
    """The dataset's items as pixels while inside (its cached latents set aside, then put back)."""
    latents = getattr(dataset, "latents", None)
    dataset.latents = None
    try:
        yield dataset
    finally:
        dataset.latents = latents


class MagicVideoPretrainTrainer(Trainer):
    """The training loop for a config whose `magicvideo.stage` is "pretrain" (what `train(config)` runs for one).

    Args:
        config (`TrainingConfig`): The run; `config.magicvideo.stage` must be "pretrain".
        components (`TrainingComponents | None`): Models built in memory: a `MagicVideoPretrainComponents` with
            `image_encoder` and `feature_extractor` (a projection is built when it has none). None loads them as
            `config.model` and `config.magicvideo` say.
    """

    config_section = "magicvideo"  # not registered itself: `MagicVideoInterpolationTrainer.class_for_config` names it

    def __init__(self, config: TrainingConfig, components: TrainingComponents | None = None):
        section = config.magicvideo if isinstance(config, TrainingConfig) else None
        if section is None or section.stage != "pretrain":
            raise ValueError(
                "MagicVideoPretrainTrainer needs a TrainingConfig whose `magicvideo.stage` is 'pretrain'."
            )
        if components is None:
            components = load_pretrain_components(config)
        elif not isinstance(components, TrainingComponents):
            raise TypeError(f"`components` must be MagicVideoPretrainComponents but is {type(components).__name__}.")
        elif not isinstance(components, MagicVideoPretrainComponents):
            components = MagicVideoPretrainComponents(
                **{f.name: getattr(components, f.name) for f in dataclasses.fields(TrainingComponents)}
            )
        if components.image_encoder is None or components.feature_extractor is None:
            raise ValueError(
                "The `magicvideo` 'pretrain' stage needs `image_encoder` and `feature_extractor` components."
            )
        if components.image_projection is None:
            projection = build_image_projection(
                components.image_encoder, components.unet, section.num_image_tokens, config.seed
            )
            components = dataclasses.replace(components, image_projection=projection)
        self.caption_fraction = section.caption_fraction
        super().__init__(config, components)
        self.components.image_encoder.requires_grad_(False).eval().to(self.accelerator.device)
        self._items = TrainingItems(self.datasets, config.seed)  # positions -> dataset items (its permutations)

    # ------------------------------------------------------------------------------------------------ setup

    def _check_components(self) -> None:
        super()._check_components()
        c, section = self.components, self.config.magicvideo
        if not isinstance(c.unet, UNet3DModel):
            raise ValueError(f"The keyframe model must be a UNet3DModel but is {type(c.unet).__name__}.")
        projection = c.image_projection.config
        expected = {
            "image_embed_dim": (c.image_encoder.config.projection_dim, "the CLIP image tower's `projection_dim`"),
            "cross_attention_dim": (c.unet.config.cross_attention_dim, "the UNet's `cross_attention_dim`"),
            "num_tokens": (section.num_image_tokens, "`magicvideo.num_image_tokens`"),
        }
        for name, (value, what) in expected.items():
            if projection[name] != value:
                raise ValueError(f"The image projection's `{name}` ({projection[name]}) must equal {what} ({value}).")

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The UNet's parameters (as the keyframe recipe trains them) and the projection's; the CLIP tower is frozen."""
        trainable = super().trainable_parameters()
        projection = self.components.image_projection.requires_grad_(True).train()
        return trainable + list(projection.parameters())

    def build_denoiser(self) -> nn.Module:
        handler = getattr(self.accelerator, "ddp_handler", None)
        if handler is not None and (self.config.condition_dropout > 0 or self.caption_fraction > 0):
            handler.find_unused_parameters = True  # a micro-batch of captions alone leaves the projection unused
        return MagicVideoPretrainDenoiser(self.components.image_projection, self.components.unet)

    # ---------------------------------------------------------------------------------------------- inputs

    def condition_choices(self, kind: str, part: dict[str, Any], num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(captioned, frames)` of a batch part: whether each sample's clip has a caption (its dataset item is among
        the first `caption_fraction` of the dataset) `(B,)` bool, and the frame its image tokens come from `(B,)`,
        drawn uniformly from `(seed, position, FRAME_STREAM)`."""
        dataset = self.datasets[kind]
        captioned_count = captioned_items(self.caption_fraction, len(dataset))
        positions = [int(p) for p in part["positions"]]
        captioned = [self._items.dataset_index(p, len(dataset)) < captioned_count for p in positions]
        frames = [
            int(torch.randint(num_frames, (1,), generator=sample_generator(self.config.seed, p, FRAME_STREAM)))
            for p in positions
        ]
        return torch.tensor(captioned, dtype=torch.bool), torch.tensor(frames, dtype=torch.long)

    def frame_pixels(self, kind: str, part: dict[str, Any], rows: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Pixels `(n, 3, H, W)` in [-1, 1] of frame `frames[i]` of the clip of each sample `i` in `rows`: from the
        batch, or (cached latents) from the dataset item the latents were encoded from."""
        if not part["latent"]:
            return part["x"][rows, :, frames[rows]]
        dataset = self.datasets[kind]
        pixels = []
        with _without_latents(dataset):
            for row in rows.tolist():
                item = dataset[self._items.dataset_index(int(part["positions"][row]), len(dataset))][kind]
                pixels.append(item[:, int(frames[row])] if kind == "video" else item)  # (3, H, W)
        return torch.stack(pixels)

    @torch.no_grad()
    def image_embeds(self, frames: torch.Tensor) -> torch.Tensor:
        """The frozen CLIP image embeddings `(n, E)` of frames `(n, 3, H, W)` in [-1, 1] (`clip_image_inputs`)."""
        pixels = clip_image_inputs(frames, self.components.feature_extractor).to(self.accelerator.device)
        return self.components.image_encoder(pixel_values=pixels).image_embeds.float()

    # ------------------------------------------------------------------------------------------------ loss

    def training_loss(self, parts: dict[str, dict[str, Any]]) -> torch.Tensor:
        """`Trainer.training_loss` (the same draws, objective and weights) with each sample's context chosen as the
        module docstring says."""
        config, scheduler = self.config, self.components.noise_scheduler
        device = self.accelerator.device
        inputs, targets, timesteps_of_parts = [], [], []
        for kind, part in parts.items():
            clean = self.model_inputs(part)  # (B, C, F, h, w)
            generators = [sample_generator(config.seed, int(p)) for p in part["positions"]]
            timesteps = sample_timesteps(scheduler.config.num_train_timesteps, generators, self.timestep_weights)
            dropped = torch.cat([torch.rand(1, generator=g) for g in generators]) < config.condition_dropout
            noise = sample_training_noise(scheduler, tuple(clean.shape), generators).to(device, clean.dtype)
            timesteps = timesteps.to(device)
            captioned, frames = self.condition_choices(kind, part, clean.shape[2])
            use_image = ~dropped & ~captioned  # (B,)
            captions = ["" if drop else caption for drop, caption in zip(dropped.tolist(), part["captions"])]
            rows = use_image.nonzero()[:, 0]
            embeds = torch.zeros(len(captions), self.components.image_encoder.config.projection_dim, device=device)
            if len(rows):
                embeds[rows.to(device)] = self.image_embeds(self.frame_pixels(kind, part, rows, frames))
            inputs.append(
                {
                    "sample": scheduler.add_noise(clean, noise.noise, timesteps),
                    "timesteps": timesteps,
                    "text": self.encode_prompts(captions),
                    "image_embeds": embeds,
                    "use_image": use_image.to(device),
                    "kwargs": self.unet_kwargs(part, clean.shape[0]),
                }
            )
            targets.append(OBJECTIVES[config.prediction_type](scheduler, clean, noise, timesteps))
            timesteps_of_parts.append(timesteps)
        predictions = self.model(inputs)
        return self.weighted_loss(predictions, targets, timesteps_of_parts)

    # ---------------------------------------------------------------------------------------------- final

    def save_model(self, folder: Path) -> None:
        """A keyframe `MagicVideoPipeline` folder (as the keyframe recipe writes), `image_projection/` and
        `training_config.json`."""
        c = self.components
        plain = TrainingComponents(c.unet, c.text_encoder, c.tokenizer, c.noise_scheduler, c.vae)
        save_components(folder, plain, PRETRAIN_PIPELINE)
        c.image_projection.save_pretrained(Path(folder) / IMAGE_PROJECTION_NAME)
        self.config.to_json_file(Path(folder) / TRAINING_CONFIG_NAME)
