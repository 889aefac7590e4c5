"""Training a temporal-aware VAE decoder (`AutoencoderKLVideo`) on unlabeled clips: a `video_vae` config section.

MagicVideo and VideoGen train their video decoders on unlabeled video but give no loss; ours is a reconstruction
loss plus a temporal one on the differences of consecutive frames,

    L = L1(x_hat, x) + w * L1(x_hat[t] - x_hat[t-1], x[t] - x[t-1]),

averaged over every pixel of every frame (pixels in [-1, 1]). The encoder is frozen and run under `no_grad` on the
clip (the posterior mode), so the latents stay those every Stable Diffusion model of this VAE generates; the decoder
decodes them as one video. `video_vae.train_layers` picks what trains: "temporal" (the layers `from_vae2d` adds;
at the identity initialisation the decoder starts as the image decoder) or "decoder" (the whole decoder).

`VideoVAETrainer` is the generic loop's `Trainer` with another model: it builds its own `__init__` (a VAE, no UNet,
text encoder or noise scheduler, so the UNet checks of `Trainer.__init__` do not apply) and sets the attributes the
loop uses, and reuses `Trainer.train` as it is: the data positions, per-step seeding, logging, checkpoints every
`checkpointing_steps`, `--resume latest` (exact), EMA and the atomic final folder. It overrides `training_loss`,
`trainable_parameters`, `build_denoiser` and `save_model`; the final folder is the `AutoencoderKLVideo` folder
(`config.json`, `diffusion_pytorch_model.safetensors`) plus `training_config.json`, which
`AutoencoderKLVideo.from_pretrained` loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from torch import nn
from torch.nn import functional as F

from ..folders import TRAINING_CONFIG_NAME, read_json
from ..models.video_vae import AutoencoderKLVideo, temporal_parameter_names
from .components import TrainingComponents
from .config import TrainingConfig
from .data import per_process_batch_size
from .registry import register_trainer
from .trainer import Trainer

__all__ = ["VideoVAETrainer", "load_video_vae", "video_vae_loss"]


def load_video_vae(config: TrainingConfig) -> AutoencoderKLVideo:
    """The `AutoencoderKLVideo` a `video_vae` run starts from.

    `model.pretrained_model_name_or_path` (with `video_vae.subfolder`) is an `AutoencoderKL` folder, inflated with
    `from_pretrained_2d` and the `video_vae.temporal` options, or an `AutoencoderKLVideo` folder, loaded as it is
    (then `video_vae.temporal` must be empty: the folder's config already says its temporal layers).
    """
    source, section = config.model.pretrained_model_name_or_path, config.video_vae
    if source is None:
        raise ValueError("A `video_vae` run needs `model.pretrained_model_name_or_path`: the folder of the image VAE.")
    folder = Path(source) / section.subfolder if section.subfolder else Path(source)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"'{folder}' holds no VAE (no `config.json`); set `video_vae.subfolder` to the VAE's folder.")
    if read_json(config_file).get("_class_name") == AutoencoderKLVideo.__name__:
        if section.temporal:
            raise ValueError(
                f"'{folder}' is an AutoencoderKLVideo already: `video_vae.temporal` ({section.temporal}) must be "
                "empty."
            )
        return AutoencoderKLVideo.from_pretrained(str(folder))
    return AutoencoderKLVideo.from_pretrained_2d(str(folder), **section.temporal)


def video_vae_loss(decoded: torch.Tensor, target: torch.Tensor, temporal_weight: float) -> dict[str, torch.Tensor]:
    """The reconstruction and temporal L1 losses of decoded clips `(B, C, F, H, W)` against the clips.

    Returns:
        `dict`: "reconstruction" (`L1(x_hat, x)`), "temporal" (`L1` of the frame differences) and "loss"
        (`reconstruction + temporal_weight * temporal`), each a scalar mean over all elements.
    """
    reconstruction = (decoded - target).abs().mean()
    temporal = (decoded.diff(dim=2) - target.diff(dim=2)).abs().mean()
    return {
        "loss": reconstruction + temporal_weight * temporal,
        "reconstruction": reconstruction,
        "temporal": temporal,
    }


def half_size(clips: torch.Tensor) -> torch.Tensor:
    """Clips `(B, C, F, H, W)` area-downsampled x2 in height and width (2x2 means, frame by frame)."""
    batch, channels, frames, height, width = clips.shape
    if height % 2 or width % 2:
        raise ValueError(
            f"`video_vae.half_size_fraction` needs an even frame size but the clips are {height}x{width}."
        )
    flat = clips.transpose(1, 2).reshape(batch * frames, channels, height, width)
    small = F.avg_pool2d(flat, 2)
    return small.reshape(batch, frames, channels, height // 2, width // 2).transpose(1, 2)


class _Decoding(nn.Module):
    """The VAE's decoder behind one forward call (what accelerate prepares): latents `(B, L, F, h, w)` -> clips."""

    def __init__(self, vae: AutoencoderKLVideo):
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).sample


@register_trainer("video_vae")
class VideoVAETrainer(Trainer):
    """Trains an `AutoencoderKLVideo`'s decoder with the encoder frozen (see the module docstring).

    Args:
        config (`TrainingConfig`): A config with a `video_vae` section.
        components (`TrainingComponents | None`): Ignored but for its `vae`: an `AutoencoderKLVideo` built in memory
            (else loaded as `load_video_vae` says).
    """

    def __init__(self, config: TrainingConfig, components: TrainingComponents | None = None):
        if config.video_vae is None:
            raise ValueError("VideoVAETrainer trains configs with a `video_vae` section; this config has none.")
        # Not `Trainer.__init__`: it builds and checks a UNet, a text encoder and a noise scheduler, none of which a
        # VAE run has. The attributes set here and by `_prepare_training` are those `Trainer.train`, its checkpoints
        # and `save_final` use.
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir)),
        )
        self.per_process_batch = per_process_batch_size(config.train_batch_size, self.accelerator.num_processes)
        self.num_videos, self.num_images = self.per_process_batch, 0
        vae = getattr(components, "vae", None) if components is not None else None
        if vae is None:
            torch.manual_seed(config.seed)
            vae = load_video_vae(config)
        if not isinstance(vae, AutoencoderKLVideo):
            raise TypeError(f"A `video_vae` run trains an AutoencoderKLVideo but was given a {type(vae).__name__}.")
        self.vae = vae.to(self.accelerator.device, torch.float32)
        self.components = components
        self.trainable = self.trainable_parameters()

        self._prepare_training()

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The decoder's temporal layers ("temporal") or the whole decoder and `post_quant_conv` ("decoder");
        everything else (the encoder, `quant_conv`) frozen, the encoder in eval mode."""
        vae = self.vae
        if self.config.video_vae.train_layers == "temporal":
            names = set(temporal_parameter_names(vae))
        else:
            names = {n for n, _ in vae.named_parameters() if n.startswith(("decoder.", "post_quant_conv."))}
        if not names:
            raise ValueError("The VAE has no parameters to train for `video_vae.train_layers`.")
        for name, parameter in vae.named_parameters():
            parameter.requires_grad_(name in names)
        vae.train()
        vae.encoder.eval()
        return [p for name, p in vae.named_parameters() if name in names]

    def build_denoiser(self) -> nn.Module:
        """The module accelerate prepares: the VAE's decoding (`_Decoding`)."""
        return _Decoding(self.vae)

    @torch.no_grad()
    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's posterior mode of clips `(B, 3, F, H, W)`: latents `(B, L, F, h, w)` (unscaled)."""
        return self.vae.encode(clips).latent_dist.mode()

    def training_loss(self, parts: dict[str, dict[str, Any]]) -> torch.Tensor:
        """`L1(x_hat, x) + w * L1(diff(x_hat), diff(x))` of the micro-batch's clips; both parts logged. With
        `video_vae.half_size_fraction`, the first clips are downsampled x2 first and the two sizes' losses are
        averaged by clip count."""
        clips = parts["video"]["x"].to(self.accelerator.device, torch.float32)  # (B, 3, F, H, W) in [-1, 1]
        small = round(self.config.video_vae.half_size_fraction * clips.shape[0])
        groups = [clips[small:]] if small == 0 else [half_size(clips[:small]), clips[small:]]
        total: dict[str, torch.Tensor] = {}
        for group in groups:
            if group.shape[0] == 0:
                continue
            # Latents that require grad: with the spatial layers frozen, torch 2.13's CPU backward crashes (segfault)
            # on this decoder when the first layers' inputs need no gradient; the extra input gradients are cheap.
            decoded = self.model(self.encode(group).requires_grad_(True))
            losses = video_vae_loss(decoded.float(), group, self.config.video_vae.temporal_loss_weight)
            for key, value in losses.items():
                total[key] = total.get(key, 0.0) + value * (group.shape[0] / clips.shape[0])
        self.loss_parts = {"reconstruction": total["reconstruction"].detach(), "temporal": total["temporal"].detach()}
        return total["loss"]

    def save_model(self, folder: Path) -> None:
        """Write the `AutoencoderKLVideo` (safetensors) and `training_config.json` into `folder`."""
        self.accelerator.unwrap_model(self.model).vae.save_pretrained(folder, safe_serialization=True)
        self.config.to_json_file(folder / TRAINING_CONFIG_NAME)
