"""VideoFusion's joint training of a base and a residual generator, in the accelerate training loop.

VideoFusion (Luo et al. 2023, https://huggingface.co/papers/2303.08320) decomposes the noise of frame `i` of a clip of
`F` frames as `eps_i = sqrt(lambda_i) b + sqrt(1 - lambda_i) r_i`, one base noise `b` shared by the clip. The key frame
`k = floor(F / 2)` has `lambda_k = 1`, so `x_t^k = alpha_t x_0^k + sigma_t b` is an ordinary image-diffusion sample:

- the base generator (an image `UNet2DConditionModel`, e.g. Stable Diffusion) sees the key frame and is trained with
  its own objective on it: target `b` for an epsilon model, `v = alpha_t b - sigma_t x_0^k` for a v-prediction one;
- its estimate `b_hat` is taken out of every frame, `x'_t^i = x_t^i - sigma_t sqrt(lambda_i) b_hat`, behind a
  stop-gradient, and the residual generator (a `UNet3DModel`) estimates `r_i` from `x'_t` with the loss
  `||r_i - r_hat_i||^2` over the frames other than the key frame (which has no residual). The residual loss thus never
  reaches the base generator: its image prior is trained by the key frame alone (paper, Sec. 3).

Both generators sit in the one module that accelerate prepares, the optimizer and the EMA cover both, and the loss is
`base loss + residual loss` (min-SNR weighted each by its own objective; `train_log.jsonl` shows both parts as
`base_loss` and `residual_loss`). Without a base generator (`videofusion.base_model` None) the residual UNet learns the
whole decomposed noise (constant `lambda`, no key frame), which is the ordinary training loop with a
`DecomposedNoiseScheduler`. Either way the final folder is a `VideoFusionPipeline` folder.

Run it with a `videofusion` section in the training config (see `VideoFusionConfig` and
`pipelines/videofusion/train_demo.json`): `diffusers-video train --config pipelines/videofusion/train_demo.json`;
`VideoFusionTrainer` is registered for that section (`training.registry`). `diffusers-video videofusion export`
saves a trained pipeline for committing (`export_videofusion_pipeline`).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate.logging import get_logger
from diffusers import UNet2DConditionModel
from torch import nn

from ..folders import INDEX_NAME, TRAINING_CONFIG_NAME, read_json
from ..models.unet_3d import UNet3DModel
from ..schedulers.decomposed_noise import (
    frame_ratios,
    key_frame_index,
    remove_base_noise,
    residual_velocity,
    sample_decomposed_noise,
    with_key_frame,
)
from ..schedulers.diffusion_math import prediction_to_x0_eps, velocity
from ..schedulers.scheduling_decomposed import DecomposedNoiseScheduler
from .checkpointing import atomic_folder
from .components import TrainingComponents, load_components, resolve_class, resolve_pipeline_class
from .config import PREDICTION_TYPES, TrainingConfig
from .data import sample_generator
from .lora import add_lora
from .objectives import (
    mean_over_samples,
    per_sample_mse,
    sample_timesteps,
    snr_loss_weights,
    v_equivalent_loss_weights,
)
from .registry import register_trainer
from .trainer import Trainer

logger = get_logger(__name__)

PIPELINE_CLASS = "VideoFusionPipeline"


@dataclasses.dataclass
class VideoFusionComponents(TrainingComponents):
    """The models of a VideoFusion run: `TrainingComponents` (whose `unet` is the residual generator) plus the base.

    Args:
        base_unet (`UNet2DConditionModel | None`, defaults to None): The base generator; None trains none.
        base_prediction_type (`str | None`, defaults to None): How the base generator's output reads ("epsilon" or
            "v_prediction"), as its own scheduler says; `videofusion.base_prediction_type` overrides it.
    """

    base_unet: UNet2DConditionModel | None = None
    base_prediction_type: str | None = None


# ------------------------------------------------------------------------------------------------------ the models


def load_videofusion_components(config: TrainingConfig) -> VideoFusionComponents:
    """Load the residual generator and its companions as `config.model` says, and the base from
    `config.videofusion.base_model`.

    Raises:
        FileNotFoundError: A folder or a required file of it does not exist.
        ValueError: The base folder does not hold a `UNet2DConditionModel`, or its noise schedule is not the
            residual's.
    """
    videofusion = _videofusion_section(config)
    source = config.model.pretrained_model_name_or_path
    if source is not None and _is_videofusion_folder(Path(source)):
        return _components_of_pipeline(Path(source), videofusion)
    root = None if videofusion.base_model is None else Path(videofusion.base_model)
    if root is not None:  # checked before the (slower) residual loads
        if not root.is_dir():
            raise FileNotFoundError(f"The base model folder `videofusion.base_model`='{root}' does not exist.")
        unet_config = root / "unet" / "config.json"
        if not unet_config.is_file():
            raise FileNotFoundError(
                f"The base model folder `videofusion.base_model`='{root}' has no `unet/config.json`."
            )
        saved = read_json(unet_config).get("_class_name")
        if saved != "UNet2DConditionModel":
            raise ValueError(
                f"The base generator must be a UNet2DConditionModel but '{root}/unet' holds {saved!r} "
                "(`videofusion.base_model`)."
            )
    residual = load_components(config.model, config.seed)
    values = {f.name: getattr(residual, f.name) for f in dataclasses.fields(TrainingComponents)}
    if root is None:
        return VideoFusionComponents(**values)
    base_unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    prediction_type = None
    scheduler_config = root / "scheduler" / "scheduler_config.json"
    if scheduler_config.is_file():
        cls = resolve_class(read_json(scheduler_config)["_class_name"], "scheduler class")
        base_scheduler = cls.from_pretrained(root, subfolder="scheduler")
        prediction_type = base_scheduler.config.get("prediction_type")
        _check_same_schedule(
            base_scheduler, residual.noise_scheduler, f"'{root}/scheduler'", trains_base=videofusion.train_base
        )
    return VideoFusionComponents(**values, base_unet=base_unet, base_prediction_type=prediction_type)


def _is_videofusion_folder(folder: Path) -> bool:
    index = folder / INDEX_NAME
    return index.is_file() and read_json(index).get("_class_name") in (PIPELINE_CLASS, ["pipeline", PIPELINE_CLASS])


def _components_of_pipeline(folder: Path, videofusion) -> VideoFusionComponents:
    """The models of a saved `VideoFusionPipeline` folder, to train further (e.g. the committed demo, fine-tuned).

    Its residual and base UNets, text encoder, tokenizer, VAE and scheduler are those of the folder; the `model`
    section's `temporal`, `unet_config` and `noise_scheduler` options do not apply, and `videofusion.base_model` must be
    unset or the folder itself.
    """
    if videofusion.base_model is not None and Path(videofusion.base_model).resolve() != folder.resolve():
        raise ValueError(
            f"`model.pretrained_model_name_or_path`='{folder}' is a VideoFusionPipeline folder, whose base generator "
            f"is trained further, but `videofusion.base_model` is {videofusion.base_model!r}: leave it unset."
        )
    pipe = resolve_pipeline_class(PIPELINE_CLASS).from_pretrained(folder, torch_dtype=torch.float32)
    return VideoFusionComponents(
        unet=pipe.residual_unet,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        noise_scheduler=pipe.scheduler,
        vae=pipe.vae,
        base_unet=pipe.base_unet,
        base_prediction_type=pipe.config.base_prediction_type if pipe.base_unet is not None else None,
    )


def _check_same_schedule(base_scheduler, noise_scheduler, base_name: str, trains_base: bool = True) -> None:
    """Both generators train on one noise schedule: the base's own must be the residual's.

    One difference is allowed for a base that trains with the residual: the run's schedule may be the base's rescaled
    to zero terminal SNR (Lin et al. 2024), onto which the base is then fine-tuned, as they fine-tune Stable Diffusion.
    """
    base_levels = getattr(base_scheduler, "alphas_cumprod", None)
    levels = getattr(noise_scheduler, "alphas_cumprod", None)
    if base_levels is None or levels is None:
        return  # nothing to compare; `decomposed_training_scheduler` checks the residual's
    zero_snr = bool(noise_scheduler.config.get("rescale_betas_zero_snr"))
    if zero_snr != bool(base_scheduler.config.get("rescale_betas_zero_snr")):
        if not trains_base:
            raise ValueError(
                f"The run's noise schedule has `rescale_betas_zero_snr`={zero_snr} but the base model's ({base_name}) "
                f"has {not zero_snr}; a frozen base generator (`videofusion.train_base` false) cannot change schedule."
            )
        base_scheduler = type(base_scheduler).from_config(base_scheduler.config, rescale_betas_zero_snr=zero_snr)
        base_levels = base_scheduler.alphas_cumprod
    if base_levels.shape != levels.shape or not torch.allclose(base_levels, levels, rtol=1e-5, atol=1e-7):
        raise ValueError(
            f"The base model's noise schedule ({base_name}: {_describe_schedule(base_scheduler)}) differs from the "
            f"residual generator's ({_describe_schedule(noise_scheduler)}): VideoFusion trains both on one schedule."
        )


def _describe_schedule(scheduler) -> dict[str, Any]:
    names = (
        "num_train_timesteps",
        "beta_schedule",
        "beta_start",
        "beta_end",
        "trained_betas",
        "rescale_betas_zero_snr",
    )
    return {name: scheduler.config.get(name) for name in names}


def decomposed_training_scheduler(
    noise_scheduler, base_noise_ratio: float, prediction_type: str = "epsilon"
) -> DecomposedNoiseScheduler:
    """`noise_scheduler`'s noise schedule as a `DecomposedNoiseScheduler` with ratio `base_noise_ratio` and the run's
    `prediction_type` (what the two generators' estimates combine into: epsilon, or v with the residual generator
    predicting `residual_velocity`): the training scheduler and the one the pipeline samples with.

    Raises:
        ValueError: `noise_scheduler` has no discrete noise schedule to carry over, or is a `DecomposedNoiseScheduler`
            with another ratio.
    """
    if isinstance(noise_scheduler, DecomposedNoiseScheduler):
        ratio = noise_scheduler.config.base_noise_ratio
        if ratio != base_noise_ratio:
            raise ValueError(
                f"The noise scheduler's `base_noise_ratio` ({ratio}) differs from `videofusion.base_noise_ratio` "
                f"({base_noise_ratio}); leave the scheduler's unset or make them equal."
            )
    levels = getattr(noise_scheduler, "alphas_cumprod", None)
    if levels is None:
        raise ValueError(
            f"The noise scheduler {type(noise_scheduler).__name__} has no discrete noise schedule (`alphas_cumprod`) "
            "for VideoFusion's DecomposedNoiseScheduler."
        )
    scheduler = DecomposedNoiseScheduler.from_config(
        noise_scheduler.config, prediction_type=prediction_type, base_noise_ratio=base_noise_ratio
    )
    if scheduler.alphas_cumprod.shape != levels.shape or not torch.allclose(scheduler.alphas_cumprod, levels):
        raise ValueError(
            f"The noise schedule of {type(noise_scheduler).__name__} cannot be carried over to a "
            "DecomposedNoiseScheduler (its `alphas_cumprod` differ)."
        )
    return scheduler


def base_generator_target(
    key_frame: torch.Tensor, base_noise: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The base generator's target on the key frame `x_0^k` `(B, C, H, W)`: `b` (epsilon) or `alpha_t b - sigma_t
    x_0^k` (v-prediction), `alpha`, `sigma` of shape `(B,)`."""
    if prediction_type == "epsilon":
        return base_noise
    if prediction_type == "v_prediction":
        return velocity(key_frame, base_noise, alpha, sigma)
    raise ValueError(f"`base_prediction_type` must be one of {PREDICTION_TYPES} but is {prediction_type!r}.")


class VideoFusionDenoiser(nn.Module):
    """Both generators behind one forward call per micro-batch (one forward per backward, as DDP expects).

    Args:
        base_unet (`UNet2DConditionModel`): The base generator, on the key frame.
        residual_unet (`UNet3DModel`): The residual generator.
        base_prediction_type (`str`): How the base generator's output reads ("epsilon" or "v_prediction").
    """

    def __init__(self, base_unet: UNet2DConditionModel, residual_unet: UNet3DModel, base_prediction_type: str):
        super().__init__()
        self.base_unet, self.residual_unet = base_unet, residual_unet
        self.base_prediction_type = base_prediction_type

    def forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        alpha: torch.Tensor,
        sigma: torch.Tensor,
        ratios: torch.Tensor,
        unet_kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The base generator's output on the key frame `(B, C, H, W)` and the residual estimate `(B, C, F, H, W)`.

        Args:
            sample (`torch.Tensor`): The noisy video `x_t`, `(B, C, F, H, W)`.
            timesteps (`torch.Tensor`): `(B,)`.
            text (`torch.Tensor`): Caption embeddings `(B, tokens, dim)`, for both generators.
            alpha (`torch.Tensor`): `alpha_t`, `(B,)`.
            sigma (`torch.Tensor`): `sigma_t`, `(B,)`.
            ratios (`torch.Tensor`): `lambda_i` with 1 at the key frame, `(F,)`.
            unet_kwargs (`dict`): Extra arguments of the residual UNet (its scalar conditions).
        """
        key_frame = sample[:, :, key_frame_index(sample.shape[2])]  # (B, C, H, W)
        base_output = self.base_unet(key_frame, timesteps, encoder_hidden_states=text).sample  # (B, C, H, W)
        _, base_noise = prediction_to_x0_eps(base_output, key_frame, alpha, sigma, self.base_prediction_type)
        # stop-gradient: the residual loss must not train the base generator (the paper's sg[.])
        residual_input = remove_base_noise(sample, base_noise.detach(), sigma, ratios)  # (B, C, F, H, W)
        residual_output = self.residual_unet(residual_input, timesteps, encoder_hidden_states=text, **unet_kwargs)
        return base_output, residual_output.sample


# ----------------------------------------------------------------------------------------------------- the trainer


@register_trainer("videofusion")
class VideoFusionTrainer(Trainer):
    """The training loop for a config with a `videofusion` section (what `train(config)` runs for one).

    Args:
        config (`TrainingConfig`): The run; `config.videofusion` must be set.
        components (`TrainingComponents | None`): Models built in memory: a `VideoFusionComponents` with a
            `base_unet` trains the base generator too (then `config.videofusion.base_model` is not read, and
            `videofusion.base_prediction_type` or the components' `base_prediction_type` must say how the base reads);
            plain `TrainingComponents` train no base. None loads them as `config.model` and `config.videofusion` say.
    """

    def __init__(self, config: TrainingConfig, components: TrainingComponents | None = None):
        videofusion = _videofusion_section(config)
        if components is None:
            components = load_videofusion_components(config)
        else:
            if not isinstance(components, TrainingComponents):
                raise TypeError(
                    f"`components` must be TrainingComponents or VideoFusionComponents but is "
                    f"{type(components).__name__}."
                )
            if not isinstance(components, VideoFusionComponents):
                values = {f.name: getattr(components, f.name) for f in dataclasses.fields(TrainingComponents)}
                components = VideoFusionComponents(**values)
            if videofusion.base_model is not None and components.base_unet is None:
                raise ValueError(
                    f"`videofusion.base_model` is {videofusion.base_model!r} but the given components have no "
                    "`base_unet`: pass VideoFusionComponents with the base generator, or no components."
                )
        self.base_prediction_type = None
        if components.base_unet is not None:
            self.base_prediction_type = _resolve_base_prediction_type(
                videofusion.base_prediction_type, components.base_prediction_type
            )
        if videofusion.key_frame_residual and (
            components.base_unet is None or config.prediction_type != "v_prediction"
        ):
            raise ValueError(
                "`videofusion.key_frame_residual` needs a base generator and `prediction_type` 'v_prediction' (the "
                f"key frame has no residual noise to predict) but `prediction_type` is {config.prediction_type!r} and "
                f"the base generator is {'missing' if components.base_unet is None else 'given'}."
            )
        scheduler = decomposed_training_scheduler(
            components.noise_scheduler, videofusion.base_noise_ratio, config.prediction_type
        )
        super().__init__(config, dataclasses.replace(components, noise_scheduler=scheduler))
        self.base_unet = self.components.base_unet

    # --------------------------------------------------------------------------------------------------- setup

    def _check_components(self) -> None:
        super()._check_components()
        self._check_base()
        # the final folder's class and its own checks, before any training
        videofusion_pipeline(self.components, self.base_prediction_type or "epsilon")

    def _check_base(self) -> None:
        base, residual = self.components.base_unet, self.components.unet
        if base is None:
            return
        if not isinstance(base, UNet2DConditionModel):
            raise ValueError(f"`base_unet` must be a UNet2DConditionModel but is {type(base).__name__}.")
        for name in ("in_channels", "out_channels"):
            if base.config[name] != residual.config.in_channels:
                raise ValueError(
                    f"The base generator's `{name}` ({base.config[name]}) must equal the residual generator's latent "
                    f"channels (`in_channels` {residual.config.in_channels})."
                )
        if base.config.cross_attention_dim != residual.config.cross_attention_dim:
            raise ValueError(
                f"The base generator's `cross_attention_dim` ({base.config.cross_attention_dim}) must equal the "
                f"residual generator's ({residual.config.cross_attention_dim}): both read the same text embeddings."
            )

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The residual generator's trainable parameters, and the base generator's with `videofusion.train_base`."""
        trainable = super().trainable_parameters()
        base = self.components.base_unet
        if base is None:
            return trainable
        if not self.config.videofusion.train_base:
            base.requires_grad_(False).eval()
            return trainable
        if self.config.gradient_checkpointing:
            base.enable_gradient_checkpointing()
        base.train()
        if self.config.lora is not None:  # adapters on the base generator too (it draws the key frame), where an
            # image UNet has the layers: its spatial attention, not the temporal group
            image_targets = [name for name in self.config.lora.target_modules if name != "temporal_attention"]
            if not image_targets:
                base.requires_grad_(False).eval()
                return trainable
            return trainable + add_lora(base, dataclasses.replace(self.config.lora, target_modules=image_targets))
        base.requires_grad_(True)
        return trainable + list(base.parameters())

    def lora_models(self) -> dict[str, nn.Module]:
        """The residual generator's adapters under `lora.prefix` ("unet" loads into a pipeline's video UNet), and
        the base generator's as `base_unet` when it trains."""
        models = super().lora_models()
        base = self.components.base_unet
        if base is not None and self.config.videofusion.train_base and getattr(base, "peft_config", None):
            models["base_unet"] = base
        return models

    def build_denoiser(self) -> nn.Module:
        if self.components.base_unet is None:
            return super().build_denoiser()
        return VideoFusionDenoiser(self.components.base_unet, self.components.unet, self.base_prediction_type)

    # ---------------------------------------------------------------------------------------------------- loss

    def videofusion_losses(self, parts: dict[str, dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(base loss, residual loss)` of a micro-batch, each averaged over the samples (min-SNR weighted when
        `snr_gamma` is set, each by its own objective).

        Each sample's timestep, caption dropout and noise (residual, then base) come from its own generator
        `(seed, position)`, in the order `Trainer.training_loss` draws them, so a resumed run repeats the
        uninterrupted one.
        """
        if set(parts) != {"video"}:
            raise ValueError(f"VideoFusion trains on videos only, but the batch has parts {sorted(parts)}.")
        config, scheduler, part = self.config, self.components.noise_scheduler, parts["video"]
        device = self.accelerator.device
        clean = self.model_inputs(part)  # (B, C, F, H, W)
        batch, frames = clean.shape[0], clean.shape[2]
        key = key_frame_index(frames)
        ratios = with_key_frame(frame_ratios(config.videofusion.base_noise_ratio, frames))  # (F,), 1 at the key

        generators = [sample_generator(config.seed, int(p)) for p in part["positions"]]
        num_timesteps = scheduler.config.num_train_timesteps
        timesteps = sample_timesteps(num_timesteps, generators, self.timestep_weights).to(device)
        dropped = torch.cat([torch.rand(1, generator=g) for g in generators]) < config.condition_dropout
        noise, base, residual = (
            t.to(device, clean.dtype) for t in sample_decomposed_noise(tuple(clean.shape), ratios, generators)
        )  # (B, C, F, H, W), (B, C, 1, H, W), (B, C, F, H, W)
        captions = ["" if drop else caption for drop, caption in zip(dropped.tolist(), part["captions"])]
        alpha, sigma = (level.to(clean.dtype) for level in scheduler.alpha_sigma(timesteps))  # (B,) each

        base_output, residual_output = self.model(
            sample=scheduler.add_noise(clean, noise, timesteps),
            timesteps=timesteps,
            text=self.encode_prompts(captions),
            alpha=alpha,
            sigma=sigma,
            ratios=ratios.to(device),
            unet_kwargs=self.unet_kwargs(part, batch),
        )
        base_target = base_generator_target(clean[:, :, key], base[:, :, 0], alpha, sigma, self.base_prediction_type)
        residual_type = scheduler.config.prediction_type  # the residual's own parameterisation
        if residual_type == "v_prediction":
            residual_target = residual_velocity(clean, residual, alpha, sigma, ratios.to(device))
        else:
            residual_target = residual
        if config.videofusion.key_frame_residual:  # v of the key frame's x_0 (lambda 1): -sigma_t x_0^k
            learned = list(range(frames))
        else:
            learned = [i for i in range(frames) if i != key]  # the key frame has no residual
        base_loss = per_sample_mse(base_output, base_target)  # (B,)
        residual_loss = per_sample_mse(residual_output[:, :, learned], residual_target[:, :, learned])  # (B,)
        if config.snr_gamma is not None:
            base_loss = base_loss * snr_loss_weights(scheduler, timesteps, config.snr_gamma, self.base_prediction_type)
            residual_loss = residual_loss * snr_loss_weights(scheduler, timesteps, config.snr_gamma, residual_type)
        if config.loss_weighting == "v_equivalent":  # the residual generator predicts (residual) noise
            residual_loss = residual_loss * v_equivalent_loss_weights(scheduler, timesteps)
        return mean_over_samples([base_loss]), mean_over_samples([residual_loss])

    def training_loss(self, parts: dict[str, dict[str, Any]]) -> torch.Tensor:
        """Base loss + residual loss (both logged); without a base generator, `Trainer`'s loss on the decomposed
        noise."""
        if self.components.base_unet is None:
            return super().training_loss(parts)
        base_loss, residual_loss = self.videofusion_losses(parts)
        self.loss_parts = {"base_loss": base_loss.detach(), "residual_loss": residual_loss.detach()}
        return base_loss + residual_loss

    # --------------------------------------------------------------------------------------------------- final

    def save_model(self, folder: Path) -> None:
        """A `VideoFusionPipeline` folder and `training_config.json`."""
        videofusion_pipeline(
            self.components,
            self.base_prediction_type or "epsilon",
            key_frame_estimate="residual" if self.config.videofusion.key_frame_residual else "base",
            num_frames=self.config.data.num_frames,
        ).save_pretrained(folder)
        self.config.to_json_file(folder / TRAINING_CONFIG_NAME)


def videofusion_pipeline(
    components: VideoFusionComponents,
    base_prediction_type: str = "epsilon",
    key_frame_estimate: str = "base",
    num_frames: int | None = None,
):
    """The `VideoFusionPipeline` of the components (the trained models themselves, not copies; the scheduler copied).

    Its `save_pretrained` writes the final folder: `model_index.json` (with `base_prediction_type`,
    `key_frame_estimate` and `num_frames`, the clip length trained on: the pipeline's default), `vae/`,
    `text_encoder/`, `tokenizer/`, `base_unet/` (absent without a base generator), `residual_unet/`, `scheduler/`.
    """
    scheduler = components.noise_scheduler
    return resolve_pipeline_class(PIPELINE_CLASS)(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        residual_unet=components.unet,
        scheduler=type(scheduler).from_config(scheduler.config),  # a copy: a pipeline may rewrite its scheduler
        base_unet=components.base_unet,
        base_prediction_type=base_prediction_type,
        key_frame_estimate=key_frame_estimate if components.base_unet is not None else "base",
        num_frames=num_frames,
    )


# ---------------------------------------------------------------------------------------------------------- helpers


def _videofusion_section(config: TrainingConfig):
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"`config` must be a TrainingConfig but is {type(config).__name__}.")
    if config.videofusion is None:
        raise ValueError("`config.videofusion` is None: VideoFusion training needs a `videofusion` section.")
    return config.videofusion


def _resolve_base_prediction_type(configured: str | None, loaded: str | None) -> str:
    """`videofusion.base_prediction_type` when set, else the base model's own (from its scheduler)."""
    if configured is not None:
        if loaded is not None and loaded != configured:
            logger.warning(
                f"`videofusion.base_prediction_type` is {configured!r} but the base model's scheduler says "
                f"{loaded!r}; training the base generator as {configured!r}.",
                main_process_only=True,
            )
        return configured
    if loaded is None:
        raise ValueError(
            "`videofusion.base_prediction_type` is None and the base model has no scheduler to read it from: set it "
            f"to one of {PREDICTION_TYPES}."
        )
    if loaded not in PREDICTION_TYPES:
        raise ValueError(
            f"The base model's scheduler has `prediction_type` {loaded!r}; VideoFusion's base generator must be one "
            f"of {PREDICTION_TYPES} (set `videofusion.base_prediction_type`)."
        )
    return loaded


# ------------------------------------------------------------------------------------------------- demo export


def export_videofusion_pipeline(source: str | Path, output_dir: str | Path, fp16: bool = True) -> Path:
    """Save a trained `VideoFusionPipeline` folder for committing (e.g. `pipelines/videofusion/demo`).

    Args:
        source (`str | Path`): a folder written by a `videofusion` training run (`<output_dir>/final`, or a checkpoint
            turned into a folder by `export_checkpoint`).
        output_dir (`str | Path`): where to write it; written atomically (a temporary folder, then a rename), and
            an existing folder is replaced only once the new one is complete.
        fp16 (`bool`, defaults to `True`): store the two UNets and the VAE in float16 (the text encoder stays float32,
            since transformers 5 would load float16 weights as float16); `VideoFusionPipeline.from_pretrained(folder,
            torch_dtype=torch.float32)` loads everything back in float32.

    The run's `training_config.json` is kept next to `model_index.json` (the clip length the model was trained on).
    """
    source, output_dir = Path(source), Path(output_dir)
    if not (source / INDEX_NAME).is_file():
        raise FileNotFoundError(f"`source` {str(source)!r} is not a pipeline folder (no model_index.json).")
    pipe = resolve_pipeline_class(PIPELINE_CLASS).from_pretrained(source, torch_dtype=torch.float32)
    if fp16:
        for model in (pipe.residual_unet, pipe.base_unet, pipe.vae):
            if model is not None:
                model.to(torch.float16)
    with atomic_folder(output_dir) as temporary:
        pipe.save_pretrained(temporary, safe_serialization=True)
        if (source / TRAINING_CONFIG_NAME).is_file():
            shutil.copy2(source / TRAINING_CONFIG_NAME, temporary / TRAINING_CONFIG_NAME)
    return output_dir
