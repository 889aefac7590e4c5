"""Training VideoGen's models: the reference-conditioned video UNet, the latent super-resolution UNet, the flow upsampler.

A `videogen` config section picks the model (`videogen.stage`, see `VideoGenConfig`):

- "video" ([`VideoGenTrainer`]): the generic diffusion loss, with the clip's first frame latent (the paper's training
  reference) concatenated to every frame's noisy latent along channels, zeroed on a fraction `reference_dropout` of the
  samples (drawn apart from the caption dropout, so that the four combinations of guidance on the reference and on the
  text are all trained). The final folder is a `VideoGenPipeline` (with `model.pipeline_class` "VideoGenPipeline")
  whose `image_unet` is the model folder's image UNet, so it samples from text alone.
- "super_resolution" ([`VideoGenTrainer`]): Imagen Video's SSR conditioning (`training.imagen_video.stage_condition`)
  on latents: each clip's latents area-downsampled by `super_resolution_factor`, upsampled back bilinearly and
  noise-augmented at a level uniform in `[0, noise_aug_max]`; the UNet is told the level (times 1000).
- "flow_upsampler" ([`FlowUpsamplerTrainer`]): a `FlowTemporalUpsampler` learns to make the odd frames of clips of
  `2k + 1` frames from the even ones (held-out middle frames: L1 on latents, and on decoded pixels with
  `pixel_loss_weight`), and its intermediate flows are supervised by the moving-shapes world's true motion
  ([`true_middle_flows`], `flow_loss_weight`): every shape's position per frame gives every pixel's displacement,
  computed at the latent resolution, in latent pixels. The paper gives none of these losses (ours).

`VideoGenTrainer` is the class registered for the section; for "flow_upsampler" it builds a `FlowUpsamplerTrainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from torch import nn

from ..data.shapes_captions import DIRECTION_VECTORS
from ..data.shapes_scorer import shape_coverage
from ..folders import TRAINING_CONFIG_NAME, read_json, save_assembled
from ..models.flow_upsampler import FlowTemporalUpsampler
from ..pipelines.imagen_video.cascade import NOISE_AUG_CONDITION, StageSpec, noise_aug_condition_value
from ..pipelines.videogen.pipeline_videogen import VideoGenPipeline
from .components import TrainingComponents
from .config import TrainingConfig
from .data import TrainingItems, sample_generator
from .imagen_video import augmentation_generators, noise_aug_levels, stage_condition
from .registry import register_trainer
from .shared_weights import decoder_only_vae, latent_super_resolution_run
from .trainer import Trainer

__all__ = ["REFERENCE_STREAM", "FlowUpsamplerTrainer", "VideoGenTrainer", "assemble_pipeline", "true_middle_flows"]

REFERENCE_STREAM = 27
"""Third key of the per-sample generators of the reference dropout, apart from the diffusion noise's `(seed,
position)` generators and the other trainers' streams."""


def true_middle_flows(scene, num_frames: int, height: int, width: int, stride: int = 1) -> torch.Tensor:
    """The true intermediate flows of a moving-shapes clip: `(P, 4, height, width)` float32, `flow_t0` then `flow_t1`.

    Pair `j` is frames `(j * stride, (j + 1) * stride)` of the clip of `num_frames` frames; its middle time is
    `j * stride + stride / 2`. A shape moves by the same displacement `d` every frame (`ShapeObject.centers`), so a
    pixel that shows it at the middle time shows it at `p - d stride / 2` in the first frame and `p + d stride / 2` in
    the second: `flow_t0 = -d stride / 2`, `flow_t1 = +d stride / 2`, in pixels of a `height x width` rendering (pass
    the latent size for latent pixels). The background is static (zero flow); where shapes overlap or at their
    anti-aliased edges the flows are composited by coverage in drawing order, as the renderer composites colours.
    """
    pairs = (num_frames - 1) // stride
    ys = (np.arange(height, dtype=np.float32) + 0.5)[None, :, None]  # (1, H, 1) pixel centres
    xs = (np.arange(width, dtype=np.float32) + 0.5)[None, None, :]  # (1, 1, W)
    flow = np.zeros((pairs, 2, height, width), dtype=np.float32)  # flow_t1 = d stride / 2 per pixel
    middle = (np.arange(pairs) * stride + stride / 2) / max(num_frames - 1, 1)  # (P,) progress at the middle times
    side = min(height, width)
    for obj in scene.objects:
        dx, dy = DIRECTION_VECTORS[obj.spec.direction]
        cx = ((obj.start[0] + dx * obj.travel * middle) * width)[:, None, None]  # (P, 1, 1) in pixels
        cy = ((obj.start[1] + dy * obj.travel * middle) * height)[:, None, None]
        coverage = shape_coverage(obj.spec.shape, xs - cx, ys - cy, obj.size * side)[:, None]  # (P, 1, H, W)
        step = obj.travel / max(num_frames - 1, 1) * stride / 2  # half the pair's displacement, in frame fractions
        moved = np.asarray([dx * step * width, dy * step * height], dtype=np.float32)[None, :, None, None]
        flow = flow * (1 - coverage) + moved * coverage
    flow = torch.from_numpy(flow.astype(np.float32))
    return torch.cat([-flow, flow], dim=1)  # (P, 4, H, W)


def text_to_image_model(folder: Path, unet_name: str, scheduler_name: str) -> tuple[UNet2DConditionModel | None, Any]:
    """The `UNet2DConditionModel` of `folder/unet_name` and a DDIM scheduler of `folder/scheduler_name` (None when that
    folder is missing): the text-to-image model that draws VideoGen's reference. `(None, None)` when `unet_name` holds
    no `UNet2DConditionModel`."""
    config = read_json(folder / unet_name / "config.json", missing_ok=True) or {}
    if config.get("_class_name") != "UNet2DConditionModel":
        return None, None
    scheduler = None
    if (folder / scheduler_name).is_dir():
        scheduler = DDIMScheduler.from_pretrained(folder, subfolder=scheduler_name)
    return UNet2DConditionModel.from_pretrained(folder, subfolder=unet_name), scheduler


@register_trainer("videogen")
class VideoGenTrainer(Trainer):
    """Trains VideoGen's reference-conditioned video UNet or its latent super-resolution UNet (see the module
    docstring); for `videogen.stage` "flow_upsampler" the class makes a [`FlowUpsamplerTrainer`] instead.

    Args:
        config (`TrainingConfig`): The run, with a `videogen` section.
        components (`TrainingComponents`, *optional*): Models to train instead of those `config.model` loads.
    """

    def __new__(cls, config: TrainingConfig, components: TrainingComponents | None = None):
        if cls is VideoGenTrainer and config.videogen is not None and config.videogen.stage == "flow_upsampler":
            return FlowUpsamplerTrainer(config, components)  # not a VideoGenTrainer: its `__init__` is not run again
        return super().__new__(cls)

    def __init__(self, config: TrainingConfig, components: TrainingComponents | None = None):
        if config.videogen is None:
            raise ValueError("VideoGenTrainer trains configs with a `videogen` section; this config has none.")
        self.settings = config.videogen
        if self.settings.stage == "super_resolution":
            self.computed_scalar_conditions = (NOISE_AUG_CONDITION,)
            self.spec = StageSpec("ssr", self.settings.super_resolution_factor)
        super().__init__(config, components)

    def conditioning_channels(self) -> int:
        """The reference (video) or the upsampled clip (super-resolution): the data's channels."""
        vae = self.components.vae
        return vae.config.latent_channels if vae is not None else 3

    def conditioning(self, part: dict[str, Any], clean: torch.Tensor) -> torch.Tensor:
        """The reference `(B, C, F, H, W)` (the first frame on every frame, zero where dropped), or the
        super-resolution conditioning."""
        if self.settings.stage == "super_resolution":
            generators = augmentation_generators(self.config.seed, part["positions"])
            levels = noise_aug_levels(generators, self.settings.noise_aug_max)
            return stage_condition(clean, self.spec, levels, generators)
        generators = [sample_generator(self.config.seed, int(p), REFERENCE_STREAM) for p in part["positions"]]
        dropped = torch.cat([torch.rand(1, generator=g) for g in generators]) < self.settings.reference_dropout
        keep = (~dropped).to(device=clean.device, dtype=clean.dtype)[:, None, None, None, None]
        if self.settings.reference_frame == "random":  # drawn after the dropout, from the same per-sample generators
            frames = torch.cat([torch.randint(clean.shape[2], (1,), generator=g) for g in generators])
            reference = clean[torch.arange(clean.shape[0]), :, frames.to(clean.device)][:, :, None]  # (B, C, 1, H, W)
        else:
            reference = clean[:, :, :1]
        return reference.expand_as(clean) * keep  # (B, C, F, H, W)

    def unet_kwargs(self, part: dict[str, Any], batch_size: int) -> dict[str, Any]:
        """The constant scalar conditions, and the super-resolution stage's "noise_aug_level" per sample."""
        kwargs = super().unet_kwargs(part, batch_size)
        if self.settings.stage != "super_resolution":
            return kwargs
        levels = noise_aug_levels(augmentation_generators(self.config.seed, part["positions"]),
                                  self.settings.noise_aug_max)  # fmt: skip
        conds = dict(kwargs.get("scalar_conds", {}))
        conds[NOISE_AUG_CONDITION] = noise_aug_condition_value(levels).to(self.accelerator.device)
        return {**kwargs, "scalar_conds": conds}

    def image_model(self) -> tuple[UNet2DConditionModel | None, Any]:
        """The model folder's image UNet and a DDIM scheduler of its `scheduler/` (the pipeline's text-to-image model
        of the reference), or `(None, None)` when the folder has no image UNet. A `VideoGenPipeline` folder (a video
        model trained on) lends its `image_unet/` and `image_scheduler/`."""
        root = self.config.model.pretrained_model_name_or_path
        if root is None:
            return None, None
        if (Path(root) / "image_unet" / "config.json").is_file():
            return text_to_image_model(Path(root), "image_unet", "image_scheduler")
        return text_to_image_model(Path(root), "unet", "scheduler")

    def save_model(self, folder: Path) -> None:
        """A `VideoGenPipeline` folder with the model folder's image UNet (for "video" with `model.pipeline_class`
        "VideoGenPipeline"); otherwise the components, as the generic trainer saves them."""
        if self.settings.stage != "video" or self.config.model.pipeline_class != "VideoGenPipeline":
            return super().save_model(folder)
        c = self.components
        image_unet, image_scheduler = self.image_model()
        pipe = VideoGenPipeline(
            vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet,
            scheduler=type(c.noise_scheduler).from_config(c.noise_scheduler.config), image_unet=image_unet,
            image_scheduler=image_scheduler,
        )  # fmt: skip
        pipe.save_pretrained(folder)
        self.config.to_json_file(folder / TRAINING_CONFIG_NAME)


class FlowUpsamplerTrainer(Trainer):
    """Trains a `FlowTemporalUpsampler` on held-out middle frames and the world's true motion (see the module
    docstring). The accelerate loop, checkpoints, EMA and logs are the generic trainer's; the UNet that `config.model`
    loads is not trained (the VAE encodes the clips).

    Args:
        config (`TrainingConfig`): The run, with `videogen.stage` "flow_upsampler".
        components (`TrainingComponents`, *optional*): The VAE (and text models) instead of those `config.model` loads.
        flow_upsampler (`FlowTemporalUpsampler`, *optional*): The model to train; a new one of the config's size.
    """

    config_section = "videogen"

    def __init__(
        self,
        config: TrainingConfig,
        components: TrainingComponents | None = None,
        flow_upsampler: FlowTemporalUpsampler | None = None,
    ):
        if config.videogen is None or config.videogen.stage != "flow_upsampler":
            raise ValueError("FlowUpsamplerTrainer needs a config with `videogen.stage` 'flow_upsampler'.")
        self.settings = config.videogen
        self.flow_upsampler = flow_upsampler
        super().__init__(config, components)

    def _check_components(self) -> None:
        vae = self.components.vae
        if self.settings.pixel_loss_weight > 0 and vae is None:
            raise ValueError(
                f"`videogen.pixel_loss_weight` is {self.settings.pixel_loss_weight} but the run has no VAE to decode "
                "the made frames (it is in pixel space): set it to 0."
            )
        channels = vae.config.latent_channels if vae is not None else 3
        if self.flow_upsampler is not None and self.flow_upsampler.config.in_channels != channels:
            raise ValueError(
                f"`flow_upsampler` has in_channels={self.flow_upsampler.config.in_channels} but the training data has "
                f"{channels} channels."
            )
        if self.config.data.cache_latents and vae is None:
            raise ValueError("`data.cache_latents` needs a VAE (latent space); this run is in pixel space.")

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The flow upsampler's parameters (a new one, seeded by `seed`, unless given); the UNet is frozen."""
        if self.flow_upsampler is None:
            vae = self.components.vae
            torch.manual_seed(self.config.seed)  # the same initial weights on every process and in every rerun
            self.flow_upsampler = FlowTemporalUpsampler(
                in_channels=vae.config.latent_channels if vae is not None else 3,
                block_out_channels=tuple(self.settings.flow_block_out_channels),
                refine_channels=self.settings.flow_refine_channels,
            )
        self.components.unet.requires_grad_(False)
        self.flow_upsampler.to(self.accelerator.device).train().requires_grad_(True)
        return list(self.flow_upsampler.parameters())

    def build_denoiser(self) -> nn.Module:
        return self.flow_upsampler

    def true_flows(self, part: dict[str, Any], height: int, width: int) -> torch.Tensor:
        """The true intermediate flows `(B, 4, P, height, width)` of the clips of a batch part, between frames two
        apart (the given frames), in pixels of `height x width` (the latent size)."""
        dataset = self.datasets["video"]  # a `ShapesDataset` (`VideoGenConfig.check_run` refuses video files)
        items = TrainingItems(self.datasets, self.config.seed)
        frames = self.config.data.num_frames
        flows = []
        for position in part["positions"]:
            index = items.dataset_index(int(position), len(dataset))
            scene = dataset.world.scene((dataset.seed, index % len(dataset)))
            flows.append(true_middle_flows(scene, frames, height, width, stride=2).transpose(0, 1))  # (4, P, h, w)
        return torch.stack(flows).to(self.accelerator.device)

    def training_loss(self, parts: dict[str, dict[str, Any]]) -> torch.Tensor:
        """L1 of the made middle frames (latents, and decoded pixels with `pixel_loss_weight`) plus `flow_loss_weight`
        times the L1 of the intermediate flows against the true motion, averaged over the samples."""
        part = parts["video"]
        clean = self.model_inputs(part)  # (B, C, F, h, w)
        given, held_out = clean[:, :, ::2], clean[:, :, 1::2]  # (B, C, k + 1, h, w), (B, C, k, h, w)
        out = self.model(given)
        reconstruction = (out.middle - held_out).abs().mean()
        loss = reconstruction
        self.loss_parts = {"reconstruction": reconstruction.detach()}
        if self.settings.flow_loss_weight > 0:
            flow = (out.flows - self.true_flows(part, clean.shape[3], clean.shape[4])).abs().mean()
            loss = loss + self.settings.flow_loss_weight * flow
            self.loss_parts["flow"] = flow.detach()
        if self.settings.pixel_loss_weight > 0:
            pixels = self._decode(out.middle)
            with torch.no_grad():
                target = self._decode(held_out)
            pixel = (pixels - target).abs().mean()
            loss = loss + self.settings.pixel_loss_weight * pixel
            self.loss_parts["pixel"] = pixel.detach()
        return loss

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames `(B, 3, F, H, W)` of latents `(B, C, F, h, w)`, frame by frame with the frozen VAE (differentiable)."""
        vae = self.components.vae
        batch, channels, frames, height, width = latents.shape
        flat = latents.transpose(1, 2).reshape(batch * frames, channels, height, width)  # (B F, C, h, w)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        images = vae.decode(flat / vae.config.scaling_factor + shift).sample  # (B F, 3, H, W)
        return images.reshape(batch, frames, *images.shape[1:]).transpose(1, 2)

    def save_model(self, folder: Path) -> None:
        """`flow_upsampler/` (a `FlowTemporalUpsampler` folder) and `training_config.json`."""
        self.flow_upsampler.save_pretrained(folder / "flow_upsampler")
        self.config.to_json_file(folder / TRAINING_CONFIG_NAME)


def assemble_pipeline(
    video_folder: str | Path,
    output_dir: str | Path,
    flow_upsampler_folder: str | Path | None = None,
    super_resolution_folder: str | Path | None = None,
    fp16: bool = False,
    image_model_folder: str | Path | None = None,
    vae_folder: str | Path | None = None,
) -> Path:
    """One `VideoGenPipeline` folder from the final folders of VideoGen's runs: the reference-conditioned video model
    (a `VideoGenPipeline` with its image UNet), and optionally a flow upsampler run and a latent super-resolution run,
    which train apart (on unlabeled clips, and at the output size).

    Args:
        video_folder (`str | Path`): The video run's final folder (`videogen.stage` "video"); its flow upsampler and
            super-resolution UNet, if any, are replaced by those given.
        output_dir (`str | Path`): Where the pipeline goes, written atomically (an existing folder is kept if it fails).
        flow_upsampler_folder (`str | Path`, *optional*): A "flow_upsampler" run's final folder (`flow_upsampler/`).
        super_resolution_folder (`str | Path`, *optional*): A "super_resolution" run's final folder (`unet/`,
            `scheduler/`, `training_config.json`); it must share the video folder's VAE and text encoder, weight for
            weight, and its latent channels.
        fp16 (`bool`, defaults to False): Save the UNets' and the flow upsampler's weights in float16 (half the size,
            for committing a demo); `from_pretrained` loads them back in float32.
        image_model_folder (`str | Path`, *optional*): A text-to-image pipeline folder (`unet/`, `scheduler/`, as a
            `StableDiffusionPipeline` saves) whose UNet makes the reference image instead of the video folder's, e.g.
            the stand-in fine-tuned on first frames (`data.image_frame` "first").
        vae_folder (`str | Path`, *optional*): A VAE folder (`AutoencoderKLVideo` or `AutoencoderKL`) to decode with
            instead of the video folder's: VideoGen's enhanced video decoder, e.g. one whose decoder alone was trained
            on clips at the super-resolution stage's size. Its encoder must be the video folder's, weight for weight,
            so the latents every stage trained on stay the same.

    Returns:
        `Path`: `output_dir`, with the video run's `training_config.json`.

    Raises:
        ValueError: A folder that is not the run it should be, or a super-resolution stage that does not fit.
    """
    video_folder = Path(video_folder)
    if read_json(video_folder / "model_index.json", missing_ok=True) is None:
        raise ValueError(f"`video_folder` {str(video_folder)!r} is not a pipeline folder (no model_index.json).")
    pipe = VideoGenPipeline.from_pretrained(video_folder)
    components = dict(pipe.components)
    factor = pipe.config.super_resolution_factor
    if flow_upsampler_folder is not None:
        folder = Path(flow_upsampler_folder)
        if not (folder / "flow_upsampler" / "config.json").is_file():
            raise ValueError(
                f"`flow_upsampler_folder` {str(folder)!r} has no `flow_upsampler/`: pass a flow upsampler run's final "
                "folder."
            )
        components["flow_upsampler"] = FlowTemporalUpsampler.from_pretrained(folder, subfolder="flow_upsampler")
    if super_resolution_folder is not None:
        unet, scheduler, factor = latent_super_resolution_run(
            Path(super_resolution_folder), video_folder, pipe.vae, pipe.text_encoder, pipe.scheduler
        )
        components["super_resolution_unet"], components["super_resolution_scheduler"] = unet, scheduler
    if image_model_folder is not None:
        image_unet, image_scheduler = text_to_image_model(Path(image_model_folder), "unet", "scheduler")
        if image_unet is None:
            raise ValueError(
                f"`image_model_folder` {str(image_model_folder)!r} has no `unet/` of a UNet2DConditionModel: pass a "
                "text-to-image pipeline folder."
            )
        components["image_unet"] = image_unet
        if image_scheduler is not None:
            components["image_scheduler"] = image_scheduler
    if vae_folder is not None:
        components["vae"] = decoder_only_vae(Path(vae_folder), pipe.vae)
    assembled = VideoGenPipeline(**components, super_resolution_factor=factor)  # checks the channels and factor
    if fp16:
        for name in ("unet", "image_unet", "super_resolution_unet", "flow_upsampler"):
            if getattr(assembled, name, None) is not None:
                getattr(assembled, name).to(torch.float16)
    return save_assembled(assembled, output_dir, video_folder)
