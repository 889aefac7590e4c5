"""What progressive distillation shares with sampling: the guided prediction, the step grid, and a small sampler.

A teacher (any v-prediction `UNet3DModel`) is guided the usual way, `uncond + w * (cond - uncond)` from two passes. A
student distilled with guidance (Meng et al. 2023, https://huggingface.co/papers/2210.03142) has a "guidance_scale"
scalar condition instead and makes one pass; the UNet receives `GUIDANCE_CONDITION_SCALE * w` (w = 1 -> 100), since
scalar conditions are embedded with timestep frequencies and timesteps run from 0 to 1000. `guided_prediction` hides
the difference, so the distillation loss and `DistillationSampler` call teachers and students alike.

`DistillationSampler` samples a teacher or a student folder with deterministic DDIM on a `VDistilledScheduler` grid
(the grid the students were trained on) and has the call signature that `diffusers_video.data.quality.evaluate_pipeline`
expects, so `benchmarks/bench_distillation.py` scores both with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..folders import DISTILLATION_NAME, TRAINING_CONFIG_NAME, read_json
from ..guidance import guided_prediction, takes_guidance
from ..models.unet_3d import UNet3DModel
from ..schedulers.diffusion_math import distillation_step_counts
from ..schedulers.scheduling_decomposed import DecomposedNoiseScheduler
from ..schedulers.scheduling_v_distilled import VDistilledScheduler
from .components import TrainingComponents, caption_token_ids, encode_token_ids, load_components
from .config import ModelConfig


def as_distillation_scheduler(scheduler, base_steps: int | None = None) -> VDistilledScheduler:
    """The `VDistilledScheduler` with which a v-prediction model is distilled and sampled.

    The noise schedule, clipping and thresholding options come from `scheduler` (a `DDPMScheduler`, `DDIMScheduler` or
    `VDistilledScheduler` config); the spacing becomes "trailing", whose `n`-step grid is every other point of the
    `2 n`-step grid.

    Args:
        scheduler: The model's scheduler.
        base_steps (`int | None`): `distillation_base_steps` to set when `scheduler` has none. A scheduler that already
            has one keeps it, and `base_steps` must then be one of its halvings.

    Raises:
        ValueError: The scheduler is not for v-prediction, uses decomposed noise, or is on another distillation grid.
    """
    if isinstance(scheduler, DecomposedNoiseScheduler):
        raise ValueError("A model trained with decomposed noise (DecomposedNoiseScheduler) cannot be distilled here.")
    config = dict(scheduler.config)
    prediction_type = config.get("prediction_type", "epsilon")
    if prediction_type != "v_prediction":
        raise ValueError(
            f"Progressive distillation needs a v-prediction teacher, but the teacher's scheduler "
            f"({type(scheduler).__name__}) has `prediction_type`={prediction_type!r}; expected 'v_prediction'."
        )
    base = config.get("distillation_base_steps") if isinstance(scheduler, VDistilledScheduler) else None
    if base is None:
        base = base_steps
    elif base_steps is not None and base_steps not in distillation_step_counts(base):
        raise ValueError(
            f"The teacher's scheduler was distilled from {base} steps; `teacher_steps` must be one of "
            f"{distillation_step_counts(base)} but is {base_steps}."
        )
    return VDistilledScheduler.from_config(config, timestep_spacing="trailing", distillation_base_steps=base)


# -------------------------------------------------------------------------------------------------------- sampler


@dataclass
class DistillationSamplerOutput(BaseOutput):
    """Output of `DistillationSampler`.

    Args:
        frames (`np.ndarray | torch.Tensor`): Videos `(batch, frames, height, width, 3)` in [0, 1] ("np" or "pt"), or
            the final latents `(batch, channels, frames, height, width)` ("latent").
    """

    frames: np.ndarray | torch.Tensor


class DistillationSampler:
    """Deterministic DDIM sampling of a distillation teacher or student, with classifier-free guidance.

    A minimal text-to-video pipeline: a teacher is guided by two passes, a student distilled with guidance by its
    `guidance_scale` condition (see `guided_prediction`). Called like a diffusers pipeline, as `evaluate_pipeline`
    does.

    Args:
        unet (`UNet3DModel`): The v-prediction model.
        text_encoder: Frozen text encoder.
        tokenizer: Its tokenizer.
        scheduler (`VDistilledScheduler`): The sampling grid (see `as_distillation_scheduler`).
        vae (`AutoencoderKL`, *optional*): Decoder of a latent-space model; None for pixel space.
        scalar_conds (`dict[str, float] | None`): Constant values of the UNet's other scalar conditions (e.g. fps).
        num_inference_steps (`int`, defaults to 8): Default step count (a student's own).
        height (`int | None`): Default frame height; None uses the UNet's `sample_size`.
        width (`int | None`): Default frame width; as `height`.
        num_frames (`int`, defaults to 8): Default frames per video.
    """

    def __init__(
        self,
        unet: UNet3DModel,
        text_encoder,
        tokenizer,
        scheduler: VDistilledScheduler,
        vae=None,
        scalar_conds: dict[str, float] | None = None,
        num_inference_steps: int = 8,
        height: int | None = None,
        width: int | None = None,
        num_frames: int = 8,
    ):
        self.unet, self.text_encoder, self.tokenizer, self.scheduler, self.vae = (
            unet.eval(), text_encoder.eval(), tokenizer, scheduler, vae.eval() if vae is not None else None
        )  # fmt: skip
        self.scalar_conds = dict(scalar_conds or {})
        self.vae_scale_factor = 1 if vae is None else 2 ** (len(vae.config.block_out_channels) - 1)
        size = unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size or (None, None))
        self.default_steps = num_inference_steps
        self.default_height = height or (size[0] * self.vae_scale_factor if size[0] else None)
        self.default_width = width or (size[-1] * self.vae_scale_factor if size[-1] else None)
        self.default_num_frames = num_frames

    @classmethod
    def from_folder(cls, folder: str | Path, device: str | torch.device | None = None) -> DistillationSampler:
        """Load a teacher folder (`unet/` a v-prediction `UNet3DModel`, `text_encoder/`, `tokenizer/`, `scheduler/`,
        optional `vae/`) or a student folder written by `distill`.

        Defaults (frame size and count, constant scalar conditions) come from the folder's `training_config.json`,
        the step count from a student's `distillation.json` (8 for a teacher).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"The model folder '{folder}' does not exist.")
        unet_class = (read_json(folder / "unet" / "config.json", missing_ok=True) or {}).get("_class_name")
        if unet_class != "UNet3DModel":
            raise ValueError(f"'{folder}/unet' must hold a UNet3DModel but holds {unet_class!r}.")
        parts: TrainingComponents = load_components(ModelConfig(pretrained_model_name_or_path=str(folder)))
        training = read_json(folder / TRAINING_CONFIG_NAME, missing_ok=True) or {}
        data, model = training.get("data") or {}, training.get("model") or {}
        info = read_json(folder / DISTILLATION_NAME, missing_ok=True) or {}
        sampler = cls(
            parts.unet, parts.text_encoder, parts.tokenizer, as_distillation_scheduler(parts.noise_scheduler),
            vae=parts.vae, scalar_conds=model.get("scalar_conditions"),
            num_inference_steps=info.get("num_inference_steps", 8), height=data.get("height"),
            width=data.get("width"), num_frames=data.get("num_frames", 8),
        )  # fmt: skip
        return sampler.to(device) if device is not None else sampler

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device: str | torch.device) -> DistillationSampler:
        for module in (self.unet, self.text_encoder, self.vae):
            if module is not None:
                module.to(device)
        return self

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Caption embeddings `(B, tokens, dim)`, tokenized as in training (`Trainer.encode_prompts`)."""
        ids = caption_token_ids(self.tokenizer, self.text_encoder, prompts)
        return encode_token_ids(self.text_encoder, ids.to(self.device))[0]

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int | None = None,
        guidance_scale: float = 4.0,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
    ) -> DistillationSamplerOutput:
        """Generate videos.

        Args:
            prompt (`str | list[str]`): Captions.
            num_inference_steps (`int`, *optional*): DDIM steps; defaults to the folder's (a student's own count).
            guidance_scale (`float`, defaults to 4.0): Classifier-free guidance weight `w`; 1 disables guidance for a
                teacher.
            height (`int`, *optional*): Frame height in pixels.
            width (`int`, *optional*): Frame width in pixels.
            num_frames (`int`, *optional*): Frames per video.
            generator (`torch.Generator | list[torch.Generator]`, *optional*): One, or one per video.
            output_type (`str`, defaults to "np"): "np", "pt" or "latent".

        Returns:
            `DistillationSamplerOutput`.
        """
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'np', 'pt' or 'latent' but is {output_type!r}.")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        height, width = height or self.default_height, width or self.default_width
        if height is None or width is None:
            raise ValueError("`height` and `width` must be given: the UNet config has no `sample_size`.")
        num_frames = num_frames or self.default_num_frames
        scale, device = self.vae_scale_factor, self.device
        if height % scale or width % scale:
            raise ValueError(f"`height` and `width` have to be divisible by {scale} but are {height} and {width}.")
        self.scheduler.set_timesteps(num_inference_steps or self.default_steps, device=device)
        shape = (len(prompts), self.unet.config.in_channels, num_frames, height // scale, width // scale)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)  # (B, C, F, h, w)
        text = self.encode_prompt(prompts)
        uncond = (
            None if takes_guidance(self.unet) or guidance_scale == 1.0 else self.encode_prompt([""] * len(prompts))
        )
        for t in self.scheduler.timesteps:
            v = guided_prediction(self.unet, latents, t, text, uncond, guidance_scale, self.scalar_conds)
            latents = self.scheduler.step(v, t, latents).prev_sample
        if output_type == "latent":
            return DistillationSamplerOutput(frames=latents)
        videos = self.decode(latents)  # (B, F, H, W, 3) in [0, 1]
        return DistillationSamplerOutput(frames=videos.cpu().numpy() if output_type == "np" else videos)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Samples `(B, C, F, h, w)` -> videos `(B, F, H, W, 3)` in [0, 1] (through the VAE in latent space)."""
        batch, channels, frames, height, width = latents.shape
        x = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)  # (B*F, C, h, w)
        if self.vae is not None:
            shift = getattr(self.vae.config, "shift_factor", None) or 0.0
            x = self.vae.decode(x / self.vae.config.scaling_factor + shift).sample  # (B*F, 3, H, W)
        x = ((x.float().clamp(-1, 1) + 1) / 2).reshape(batch, frames, *x.shape[1:])  # (B, F, 3, H, W)
        return x.permute(0, 1, 3, 4, 2)  # (B, F, H, W, 3)
