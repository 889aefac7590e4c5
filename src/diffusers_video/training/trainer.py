"""The accelerate training loop: `train(config)` and the `Trainer` it runs.

One loop trains a `UNet3DModel` on videos (and, jointly, on still images as single-frame videos) or a
`UNet2DConditionModel` on still images, in pixel space or in a frozen VAE's latent space, with a frozen text
encoder. It runs unchanged on one CPU, one GPU or many processes (`accelerate launch`), and its data and noise are a
function of (seed, sample position) (see `training.data`), so a resumed run repeats the uninterrupted one exactly.

Subclasses (distillation, VideoFusion's base/residual training, Imagen Video's stages) override `training_loss`,
`unet_kwargs` or `conditioning`, and `trainable_parameters` and `build_denoiser` to train more than one model.

`train(config)` runs the trainer registered for the config section that is set (`training.registry`), `Trainer`
itself when none is; this module never imports a paper's trainer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration
from diffusers import UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import nn
from tqdm.auto import tqdm

from ..folders import TRAINING_CONFIG_NAME, read_json
from ..models.unet_3d import UNet3DModel, temporal_parameter_names
from . import checkpointing, state_files
from .components import (
    TrainingComponents,
    caption_token_ids,
    encode_token_ids,
    load_components,
    resolve_pipeline_class,
    save_components,
    with_prediction_type,
)
from .config import TrainingConfig
from .data import (
    MicroBatchSampler,
    TrainingItems,
    build_datasets,
    collate,
    encode_frames,
    per_process_batch_size,
    sample_generator,
    sample_seed,
    split_batch,
)
from .lora import add_lora, save_lora
from .objectives import (
    OBJECTIVES,
    mean_over_samples,
    per_sample_mse,
    sample_timesteps,
    sample_training_noise,
    snr_loss_weights,
    timestep_weights,
    v_equivalent_loss_weights,
)
from .registry import TRAINERS, registered_class
from .run_log import LOG_NAME, TrainingState, truncate_log

logger = get_logger(__name__)

FINAL_NAME = "final"
DATA_REPORT_NAME = "data_report.json"


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path) -> Path:
    """Save a training checkpoint as the run's final folder would be (EMA weights when the run has EMA).

    The run is rebuilt from the checkpoint's `training_config.json` (the same trainer class, models and config), the
    checkpoint is loaded into it and the model saved to `output_dir` atomically, so a mid-run checkpoint can be
    sampled, evaluated or distilled like a finished run. No data is read or cached.

    Args:
        checkpoint (`str | Path`): A `checkpoint-<step>` folder written by `diffusers-video train`.
        output_dir (`str | Path`): The folder to write; must not exist yet.

    Returns:
        `Path`: `output_dir`.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    if checkpointing.read_marker(checkpoint) is None:
        raise ValueError(f"'{checkpoint}' is not a complete training checkpoint (no valid `checkpoint.json`).")
    if output_dir.exists():
        raise ValueError(f"The export folder '{output_dir}' already exists; choose a new one.")
    config = TrainingConfig.from_dict(read_json(checkpoint / TRAINING_CONFIG_NAME))
    # the same models and config hash; only where it writes and how much data it prepares differ
    config.output_dir, config.resume_from_checkpoint = str(output_dir.parent), None
    config.data.cache_latents = False
    trainer = registered_class(config, TRAINERS, Trainer)(config)
    trainer.load_checkpoint(checkpoint)
    return trainer.save_final(output_dir)


def train(config: TrainingConfig, components: TrainingComponents | None = None) -> Path:
    """Train a model as `config` says and save it; returns the final folder (`output_dir/final`).

    Args:
        config (`TrainingConfig`): The run.
        components (`TrainingComponents | None`): Models built in memory; None loads them as `config.model` says.

    Returns:
        `Path`: The final folder: `unet/` (EMA weights when `ema_decay` is set), `text_encoder/`, `tokenizer/`,
        `vae/`, `scheduler/`, `training_config.json`, and `model_index.json` when `model.pipeline_class` is set.
        With `config.videofusion` set, a `VideoFusionPipeline` folder (see `training.videofusion`); with
        `config.imagen_video` set, a cascade stage folder (`stage.json` added, see `training.imagen_video`): the
        trainer registered for the section that is set (`training.registry.TRAINERS`) runs.
    """
    return registered_class(config, TRAINERS, Trainer)(config, components).train()


class _Denoiser(nn.Module):
    """The UNet behind one forward call per micro-batch, whatever parts (videos, images) it has.

    A joint image-video batch needs two UNet calls (frames F and 1); making them one module call keeps one
    forward per backward, as DistributedDataParallel expects. Inputs and outputs are 5D; a 2D UNet sees frame 0.
    """

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self.is_2d = isinstance(unet, UNet2DConditionModel)

    def forward(self, parts: list[dict[str, Any]]) -> list[torch.Tensor]:
        outputs = []
        for part in parts:
            sample = part["sample"][:, :, 0] if self.is_2d else part["sample"]  # (B, C, H, W) | (B, C, F, H, W)
            out = self.unet(sample, part["timesteps"], encoder_hidden_states=part["text"], **part["kwargs"]).sample
            outputs.append(out.unsqueeze(2) if self.is_2d else out)  # (B, C, F, H, W)
        return outputs


class Trainer:
    """Builds everything a run needs from a `TrainingConfig` and runs it (see `train`)."""

    # Scalar conditions whose values a subclass computes per sample (distillation's "guidance_scale"): the config's
    # `model.scalar_conditions` gives no constant for them.
    computed_scalar_conditions: tuple[str, ...] = ()
    # The config section this class trains (set by `register_trainer`); a config that sets another registered
    # section is refused.
    config_section: str | None = None

    def __init__(self, config: TrainingConfig, components: TrainingComponents | None = None):
        for section, trainer in TRAINERS.items():
            if getattr(config, section) is not None and self.config_section != section:
                article = "an" if section[0] in "aeiou" else "a"
                where = trainer.__module__.removeprefix("diffusers_video.")
                raise ValueError(
                    f"{type(self).__name__} cannot train a config with {article} `{section}` section: use "
                    f"`train(config)` or `{where}.{trainer.__name__}`."
                )
        self.config = config
        self.output_dir = Path(config.output_dir)
        ddp_kwargs = DistributedDataParallelKwargs()
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir)),
            kwargs_handlers=[ddp_kwargs],
        )
        self.per_process_batch = per_process_batch_size(config.train_batch_size, self.accelerator.num_processes)
        self.num_videos, self.num_images = split_batch(
            self.per_process_batch, config.image_fraction, config.data.num_frames
        )
        components = components if components is not None else load_components(config.model, config.seed)
        noise_scheduler = with_prediction_type(components.noise_scheduler, config.prediction_type)
        self.components = dataclasses.replace(components, noise_scheduler=noise_scheduler)
        self.timestep_weights = timestep_weights(
            noise_scheduler.config.num_train_timesteps,
            config.timestep_bias_strategy,
            config.timestep_bias_portion,
            config.timestep_bias_multiplier,
        )
        self._check_components()
        if config.model.pipeline_class is not None:
            resolve_pipeline_class(config.model.pipeline_class)  # fail now, not after training

        unet = self.components.unet
        # temporal layers get no gradient when every sample is an image: DDP must expect unused parameters
        ddp_kwargs.find_unused_parameters = isinstance(unet, UNet3DModel) and self.num_videos == 0
        device = self.accelerator.device
        for frozen in (self.components.text_encoder, self.components.vae):
            if frozen is not None:
                frozen.requires_grad_(False).eval().to(device)
        self.trainable = self.trainable_parameters()

        self.unet = unet
        self._prepare_training()
        if config.data.cache_latents:
            for dataset in self.datasets.values():
                dataset.cache_latents(self.components.vae)

    def _prepare_training(self) -> None:
        """What every trainer's `__init__` ends with, once `self.trainable` is set: the optimizer, the learning-rate
        schedule, the model accelerate prepares (`build_denoiser`), the EMA, the loop state and what a checkpoint
        stores, the datasets, and the run's log state."""
        config = self.config
        optimizer = torch.optim.AdamW(
            self.trainable,
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            eps=config.adam_epsilon,
            weight_decay=config.adam_weight_decay,
        )
        # stepped by hand once per optimizer step (not prepared: accelerate would step it once per process)
        self.lr_scheduler = get_scheduler(
            config.lr_scheduler,
            optimizer,
            num_warmup_steps=config.lr_warmup_steps,
            num_training_steps=config.max_train_steps,
        )
        self.model, self.optimizer = self.accelerator.prepare(self.build_denoiser(), optimizer)
        self.ema = None
        if config.ema_decay is not None:
            self.ema = EMAModel(self.trainable, decay=config.ema_decay)
            self.ema.to(self.accelerator.device)
        self.state = TrainingState()
        self.checkpointed = {"lr_scheduler": self.lr_scheduler, "loop_state": self.state}  # JSON + safetensors
        self.checkpointed.update({"ema": self.ema} if self.ema is not None else {})  # not accelerate's pickles
        self.datasets = build_datasets(config.data, config.seed, self.num_videos, self.num_images)
        # unreadable files of a video folder (`training.video_files`): skipped, and reported in `data_report.json`
        self.skipped_files = sorted({line for d in self.datasets.values() for line in getattr(d, "skipped", [])})
        self.run_id = uuid.uuid4().hex[:12]
        self.steps_per_second: float | None = None
        # Parts of the loss a `training_loss` reports (detached scalars, e.g. VideoFusion's base and residual
        # losses); logged next to `loss`, averaged like it.
        self.loss_parts: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------------ checks

    def _check_components(self) -> None:
        config, c = self.config, self.components
        unet, is_3d = c.unet, isinstance(c.unet, UNet3DModel)
        if not is_3d and not isinstance(unet, UNet2DConditionModel):
            raise ValueError(f"`unet` must be a UNet3DModel or a UNet2DConditionModel but is {type(unet).__name__}.")
        if not is_3d and config.data.num_frames != 1:
            raise ValueError(
                f"A UNet2DConditionModel trains on still images: set `data.num_frames` to 1 (it is "
                f"{config.data.num_frames})."
            )
        if config.freeze_spatial and not is_3d:
            raise ValueError("`freeze_spatial` needs a UNet3DModel (it trains its temporal layers); the UNet is 2D.")
        channels = c.vae.config.latent_channels if c.vae is not None else 3
        space = "latent space" if c.vae is not None else "pixel space, no VAE"
        if unet.config.out_channels != channels:
            raise ValueError(
                f"The UNet's `out_channels` ({unet.config.out_channels}) must equal the channels of the training data "
                f"({channels}: {space})."
            )
        extra = self.conditioning_channels()
        if unet.config.in_channels != channels + extra:
            conditioning = f" plus {extra} of the conditioning video" if extra else ""
            raise ValueError(
                f"The UNet's `in_channels` ({unet.config.in_channels}) must equal the channels of the training data "
                f"({channels}: {space}){conditioning}."
            )
        if config.data.cache_latents and c.vae is None:
            raise ValueError("`data.cache_latents` needs a VAE (latent space); this run is in pixel space.")
        text_dim = getattr(c.text_encoder.config, "hidden_size", None) or getattr(c.text_encoder.config, "d_model", 0)
        cross = unet.config.cross_attention_dim
        if isinstance(cross, int) and text_dim and cross != text_dim:
            raise ValueError(
                f"The UNet's `cross_attention_dim` ({cross}) must equal the text encoder's width ({text_dim})."
            )
        expected = set(unet.config.scalar_conditions) - set(self.computed_scalar_conditions) if is_3d else set()
        if set(config.model.scalar_conditions) != expected:
            raise ValueError(
                f"`model.scalar_conditions` must give a value for exactly the UNet's scalar conditions "
                f"{sorted(expected)} but gives {sorted(config.model.scalar_conditions)}."
            )
        scheduler = c.noise_scheduler
        needed = ["add_noise"] + (["get_velocity"] if config.prediction_type == "v_prediction" else [])
        needed += ["alphas_cumprod"] if config.snr_gamma is not None else []
        missing = [name for name in needed if not hasattr(scheduler, name)]
        if missing:
            raise ValueError(
                f"The noise scheduler {type(scheduler).__name__} cannot train this run: it lacks {missing}."
            )

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer and the EMA cover; sets up the trained models (gradients, train mode).

        Subclasses that train more models (VideoFusion's base generator) add theirs.
        """
        unet = self.components.unet
        trainable = self._select_trainable(unet)
        if self.config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        return trainable

    def build_denoiser(self) -> nn.Module:
        """The module that accelerate prepares: every trained model inside it, one forward call per micro-batch."""
        return _Denoiser(self.components.unet)

    def _select_trainable(self, unet: nn.Module) -> list[nn.Parameter]:
        if self.config.lora is not None:  # the adapters alone (`training.lora`)
            return add_lora(unet, self.config.lora)
        if not self.config.freeze_spatial:
            unet.requires_grad_(True)
            return list(unet.parameters())
        names = set(temporal_parameter_names(unet))
        if not names:
            raise ValueError("`freeze_spatial` is set but the UNet has no temporal parameters to train.")
        for name, parameter in unet.named_parameters():
            parameter.requires_grad_(name in names)
        return [p for name, p in unet.named_parameters() if name in names]

    # ------------------------------------------------------------------------------------------------- inputs

    @torch.no_grad()
    def encode_prompts(self, captions: list[str]) -> torch.Tensor:
        """Text embeddings `(B, tokens, dim)` of the frozen text encoder.

        Not cached across steps on purpose: a caption's embedding may differ in the last bits with the batch it is
        encoded in, and a resumed run must see exactly the numbers of the uninterrupted one.
        """
        tokenizer, text_encoder = self.components.tokenizer, self.components.text_encoder
        ids = caption_token_ids(tokenizer, text_encoder, captions)
        return encode_token_ids(text_encoder, ids.to(self.accelerator.device))[0]

    def model_inputs(self, part: dict[str, Any]) -> torch.Tensor:
        """The clean sample `x_0` of a batch part in the UNet's space: `(B, C, F, H, W)` float32 on the device."""
        x = part["x"].to(self.accelerator.device)
        if self.components.vae is not None and not part["latent"]:
            x = encode_frames(self.components.vae, x)
        return x.float()

    def conditioning_channels(self) -> int:
        """Channels of the conditioning video that `conditioning` gives the UNet next to its sample (0: none)."""
        return 0

    def conditioning(self, part: dict[str, Any], clean: torch.Tensor) -> torch.Tensor | None:
        """A conditioning video of a batch part, concatenated to the noisy sample by `unet_sample`; None here.

        Imagen Video's super-resolution stages (`training.imagen_video`) return the noise-augmented low-resolution
        clip; it depends only on `clean` `(B, C, F, H, W)` and the samples' positions, so teacher and student of a
        distillation see the same one.
        """
        return None

    def unet_sample(self, noisy: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """The UNet's input: the noisy sample `(B, C, F, H, W)`, and the conditioning video (if any) along channels."""
        return noisy if condition is None else torch.cat([noisy, condition.to(noisy.dtype)], dim=1)

    def unet_kwargs(self, part: dict[str, Any], batch_size: int) -> dict[str, Any]:
        """Extra UNet arguments of a batch part: the constant scalar conditions of `model.scalar_conditions`."""
        if not self.config.model.scalar_conditions:
            return {}
        device = self.accelerator.device
        conds = {
            name: torch.full((batch_size,), float(v), device=device)
            for name, v in self.config.model.scalar_conditions.items()
        }
        return {"scalar_conds": conds}

    # --------------------------------------------------------------------------------------------------- loss

    def training_loss(self, parts: dict[str, dict[str, Any]]) -> torch.Tensor:
        """The loss of one micro-batch: every sample's (min-SNR weighted) MSE, averaged over all samples.

        Each sample's timestep, caption dropout and noise come from its own generator `(seed, position)`.
        """
        config, scheduler = self.config, self.components.noise_scheduler
        device = self.accelerator.device
        num_timesteps = scheduler.config.num_train_timesteps
        inputs, targets, timesteps_of_parts = [], [], []
        for part in parts.values():
            clean = self.model_inputs(part)
            generators = [sample_generator(config.seed, int(p)) for p in part["positions"]]
            timesteps = sample_timesteps(num_timesteps, generators, self.timestep_weights)
            dropped = torch.cat([torch.rand(1, generator=g) for g in generators]) < config.condition_dropout
            noise = sample_training_noise(scheduler, tuple(clean.shape), generators).to(device, clean.dtype)
            timesteps = timesteps.to(device)
            captions = ["" if drop else caption for drop, caption in zip(dropped.tolist(), part["captions"])]
            condition = self.conditioning(part, clean)
            inputs.append(
                {
                    "sample": self.unet_sample(scheduler.add_noise(clean, noise.noise, timesteps), condition),
                    "timesteps": timesteps,
                    "text": self.encode_prompts(captions),
                    "kwargs": self.unet_kwargs(part, clean.shape[0]),
                }
            )
            targets.append(OBJECTIVES[config.prediction_type](scheduler, clean, noise, timesteps))
            timesteps_of_parts.append(timesteps)
        predictions = self.model(inputs)
        return self.weighted_loss(predictions, targets, timesteps_of_parts)

    def weighted_loss(
        self, predictions: list[torch.Tensor], targets: list[torch.Tensor], timesteps_of_parts: list[torch.Tensor]
    ) -> torch.Tensor:
        """Each part's per-sample MSE, weighted as the config says (min-SNR `snr_gamma`, `loss_weighting`), averaged
        over all samples."""
        config, scheduler = self.config, self.components.noise_scheduler
        losses = []
        for prediction, target, timesteps in zip(predictions, targets, timesteps_of_parts):
            loss = per_sample_mse(prediction, target)
            if config.snr_gamma is not None:
                loss = loss * snr_loss_weights(scheduler, timesteps, config.snr_gamma, config.prediction_type)
            if config.loss_weighting == "v_equivalent":
                loss = loss * v_equivalent_loss_weights(scheduler, timesteps)
            losses.append(loss)
        return mean_over_samples(losses)

    # ------------------------------------------------------------------------------------------------- loop

    def _data_loader(self) -> torch.utils.data.DataLoader:
        config, accelerator = self.config, self.accelerator
        remaining = (config.max_train_steps - self.state.global_step) * config.gradient_accumulation_steps
        sampler = MicroBatchSampler(
            self.state.position,
            config.train_batch_size,
            self.num_videos,
            self.num_images,
            accelerator.process_index,
            max(remaining, 0),
        )
        return torch.utils.data.DataLoader(
            TrainingItems(self.datasets, config.seed),
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=config.data.num_workers,
        )

    def train(self) -> Path:
        """Run (or resume) the training and save the final model; returns its folder."""
        config, accelerator = self.config, self.accelerator
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            checkpointing.remove_temporary_folders(self.output_dir)
            if config.data.path is not None:
                used = {kind: len(dataset) for kind, dataset in self.datasets.items()}
                report = {"path": config.data.path, "items": used, "skipped": self.skipped_files}
                (self.output_dir / DATA_REPORT_NAME).write_text(json.dumps(report, indent=1) + "\n")
                if self.skipped_files:
                    logger.warning(
                        f"Skipped {len(self.skipped_files)} unreadable data files (see {DATA_REPORT_NAME})."
                    )
        accelerator.wait_for_everyone()
        resume = checkpointing.resolve_resume(config.resume_from_checkpoint, self.output_dir)
        if resume is not None:
            self.load_checkpoint(resume)
        elif config.resume_from_checkpoint == "latest":
            logger.info(f"No complete checkpoint in {self.output_dir}: starting a new run.", main_process_only=True)
        if accelerator.is_main_process:
            truncate_log(self.output_dir, self.state.global_step)

        loader = self._data_loader()
        progress = tqdm(
            total=config.max_train_steps,
            initial=self.state.global_step,
            desc="train",
            unit="step",
            disable=not accelerator.is_local_main_process,
        )
        start_step, start_time = self.state.global_step, time.perf_counter()
        micro_batches = iter(loader)
        while self.state.global_step < config.max_train_steps:
            step_loss = torch.zeros((), device=accelerator.device)
            step_parts: dict[str, torch.Tensor] = {}
            lr = self.lr_scheduler.get_last_lr()[0]  # the rate this step uses
            for micro in range(config.gradient_accumulation_steps):
                parts = next(micro_batches)
                # model-internal randomness (dropout) also depends only on where the run is
                torch.manual_seed(sample_seed(config.seed, self.state.global_step, micro, accelerator.process_index))
                with accelerator.accumulate(self.model):
                    self.loss_parts = {}
                    loss = self.training_loss(parts)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(self.trainable, config.max_grad_norm)
                    self.optimizer.step()
                    if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                        self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                step_loss += loss.detach() / config.gradient_accumulation_steps
                for name, value in self.loss_parts.items():
                    step_parts[name] = step_parts.get(name, 0) + value.detach() / config.gradient_accumulation_steps
                self.state.position += config.train_batch_size
            if self.ema is not None:
                self.ema.step(self.trainable)
            self.state.global_step += 1
            step_loss = accelerator.reduce(step_loss, reduction="mean").item()
            parts_logged = {k: accelerator.reduce(v, reduction="mean").item() for k, v in sorted(step_parts.items())}
            self._log_step(step_loss, lr, progress, parts_logged)
            if config.checkpointing_steps and self.state.global_step % config.checkpointing_steps == 0:
                self.save_checkpoint()
        progress.close()
        elapsed = time.perf_counter() - start_time
        if self.state.global_step > start_step:
            self.steps_per_second = (self.state.global_step - start_step) / elapsed
            logger.info(
                f"Trained steps {start_step + 1}-{self.state.global_step} in {elapsed:.1f} s "
                f"({self.steps_per_second:.2f} steps/s).",
                main_process_only=True,
            )
        return self.save_final()  # no `end_training`: it would end the caller's process group too

    def _log_step(self, loss: float, lr: float, progress, parts: dict[str, float] | None = None) -> None:
        if not math.isfinite(loss):
            raise FloatingPointError(f"The training loss is {loss} at step {self.state.global_step}.")
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if self.accelerator.is_main_process:
            line = {"step": self.state.global_step, "loss": loss, **(parts or {}), "lr": lr, "run": self.run_id}
            with open(self.output_dir / LOG_NAME, "a") as handle:
                handle.write(json.dumps(line) + "\n")

    # -------------------------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> Path:
        """Write `checkpoint-<step>` atomically (every process takes part) and rotate old checkpoints."""
        accelerator, step = self.accelerator, self.state.global_step
        name = checkpointing.checkpoint_name(step)
        temporary = checkpointing.temporary_path(self.output_dir, name)
        if accelerator.is_main_process and temporary.exists():
            shutil.rmtree(temporary)
        accelerator.wait_for_everyone()
        target = self.output_dir / name
        with checkpointing.naming_write_errors(target):  # a full disk: an OSError naming the folder
            accelerator.save_state(str(temporary))
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                state_files.save_objects(temporary, self.checkpointed)
                self.config.to_json_file(temporary / TRAINING_CONFIG_NAME)
                checkpointing.write_marker(
                    temporary, step, self.config.hash(), position=self.state.position,
                    num_processes=accelerator.num_processes,
                )  # fmt: skip
                checkpointing.commit_folder(temporary, target)
        if accelerator.is_main_process:
            for removed in checkpointing.rotate_checkpoints(self.output_dir, self.config.checkpoints_total_limit):
                logger.info(f"Removed old checkpoint {removed}.")
        accelerator.wait_for_everyone()
        return target

    def load_checkpoint(self, folder: Path) -> None:
        """Restore model, optimizer, lr schedule, EMA, RNG states and data position from a checkpoint folder."""
        marker = checkpointing.verified_marker(folder)  # every file checked before anything is unpickled
        if marker["config_hash"] != self.config.hash():
            saved = folder / TRAINING_CONFIG_NAME
            changed = self.config.changed_keys(read_json(saved)) if saved.exists() else ["?"]
            logger.warning(f"Resuming {folder} with a changed config: {changed}.", main_process_only=True)
        self.accelerator.load_state(str(folder))
        state_files.load_objects(folder, self.checkpointed)
        if self.ema is not None:
            self.ema.to(self.accelerator.device)
        logger.info(f"Resumed from {folder} at step {self.state.global_step}.", main_process_only=True)

    # ------------------------------------------------------------------------------------------------- final

    def final_folder(self) -> Path:
        """Where `save_final` writes the trained model: `output_dir/final` (subclasses may choose another)."""
        return self.output_dir / FINAL_NAME

    def lora_models(self) -> dict[str, nn.Module]:
        """The models whose adapters `lora` trains, by the prefix their keys are saved under."""
        return {self.config.lora.prefix: self.components.unet}

    def save_model(self, folder: Path) -> None:
        """Write the model into `folder` (the temporary final folder): its components and `training_config.json`."""
        save_components(folder, self.components, self.config.model.pipeline_class)
        self.config.to_json_file(folder / TRAINING_CONFIG_NAME)

    def save_final(self, target: Path | None = None) -> Path:
        """Save the (EMA) UNet and the other components in `target` (default `final_folder()`), atomically (main
        process); with `lora`, the adapter as `pytorch_lora_weights.safetensors` and `training_config.json`."""
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        target = self.final_folder() if target is None else Path(target)
        if accelerator.is_main_process:
            if self.ema is not None:
                self.ema.store(self.trainable)
                self.ema.copy_to(self.trainable)
            try:
                with checkpointing.naming_write_errors(target), checkpointing.atomic_folder(target) as temporary:
                    if self.config.lora is not None:
                        save_lora(temporary, self.lora_models())
                        self.config.to_json_file(temporary / TRAINING_CONFIG_NAME)
                    else:
                        self.save_model(temporary)
            finally:
                if self.ema is not None:
                    self.ema.restore(self.trainable)
        accelerator.wait_for_everyone()
        return target
