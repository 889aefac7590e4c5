"""Progressive distillation (Salimans & Ho 2022) with classifier-free guidance distilled in (Meng et al. 2023).

A v-prediction teacher sampled with `N` deterministic DDIM steps teaches a student, initialised from the teacher, to
land in one step `t -> s` where two teacher steps `t -> mid -> s` land (`distillation_target`, Salimans & Ho
Algorithm 2). The student then teaches the next student, halving the steps each round down to `student_steps`, as
Imagen Video (https://huggingface.co/papers/2210.02303) distils its models to 8 steps.

With `guidance_scale_range` set, the teacher's two steps use the guided prediction `uncond + w * (cond - uncond)` at a
weight `w` drawn for every sample, and the student takes `w` as a scalar condition of `UNet3DModel`
("guidance_scale", fed as `100 * w`; see `distillation_sampling`). The condition is added to the first student with a
zero-initialised embedding, so that student starts as the teacher's conditional model; later rounds' teachers are
students and take `w` directly.

Every round is an ordinary `Trainer` run (accelerate, EMA, checkpoints, exact `--resume latest`) whose loss is the
distillation loss; its student is saved atomically as `output_dir/student-<n>-steps`, with a `VDistilledScheduler` on
the distillation grid and `distillation.json` (round, step count, guidance condition). See the README, "Progressive distillation".

A model with a conditioning video (a super-resolution stage of an Imagen Video cascade, `imagen_video` section) is
distilled the same way: teacher and student see the same conditioning (`Trainer.conditioning`, at the fixed
`imagen_video.noise_aug_level`) concatenated to their noisy samples; see `training.imagen_video`. Such a paper's round
trainer is registered for its config section (`@register_distillation_trainer`, `training.registry`), and `distill`
runs the one registered for the section the config sets; this module imports no paper's trainer.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.logging import get_logger

from ..folders import DISTILLATION_NAME, INDEX_NAME, class_name_of, read_json
from ..guidance import (
    GUIDANCE_CONDITION,
    GUIDANCE_CONDITION_SCALE,
    guidance_condition,
    guided_prediction,
    takes_guidance,
)
from ..models.unet_3d import UNet3DModel
from ..pipelines.checks import check_int_at_least
from ..schedulers.diffusion_math import ddim_step, distillation_step_counts, distillation_target
from ..schedulers.scheduling_v_distilled import VDistilledScheduler
from . import checkpointing
from .components import TrainingComponents, load_components
from .config import ModelConfig, TrainingConfig
from .data import sample_generator
from .distillation_sampling import as_distillation_scheduler
from .objectives import mean_over_samples, per_sample_mse, sample_training_noise
from .registry import DISTILLATION_TRAINERS, registered_class
from .trainer import Trainer

logger = get_logger(__name__)

DISTILL_CONFIG_NAME = "distill_config.json"


def student_step_counts(teacher_steps: int, student_steps: int) -> list[int]:
    """The step count of each round's student: `teacher_steps / 2`, `/ 4`, ..., `student_steps`.

    Raises:
        ValueError: `student_steps` is not `teacher_steps` halved one or more times.
    """
    check_int_at_least(teacher_steps, "teacher_steps", 2)
    check_int_at_least(student_steps, "student_steps", 1)
    halvings = distillation_step_counts(teacher_steps)[1:]
    if student_steps not in halvings:
        raise ValueError(
            f"`student_steps` must be `teacher_steps` ({teacher_steps}) halved one or more times, one of {halvings}, "
            f"but is {student_steps}."
        )
    return halvings[: halvings.index(student_steps) + 1]


def student_folder_name(num_steps: int) -> str:
    """`student-<n>-steps`: the folder of the student that samples with `n` steps."""
    return f"student-{num_steps}-steps"


@dataclass
class DistillationConfig(TrainingConfig):
    """A progressive distillation: every `TrainingConfig` setting (each round is one training run), plus these.

    The `model` settings that say where a model comes from (`pretrained_model_name_or_path`, `unet_config`,
    `temporal`, `noise_scheduler`, `unet_class`) and `snr_gamma` must stay unset: the models come from `teacher`.

    With an `imagen_video` section the teacher is a stage of an Imagen Video cascade (`imagen_video.stage` must be
    the teacher's, from its `stage.json`); a super-resolution stage is distilled with its conditioning noised at the
    fixed `imagen_video.noise_aug_level`.

    Args:
        teacher (`str | None`, defaults to None): The teacher folder: `unet/` (a v-prediction `UNet3DModel`),
            `text_encoder/`, `tokenizer/`, `scheduler/`, optional `vae/`, e.g. the `final/` of `diffusers-video train`
            or a student of an earlier distillation. Required unless `distill` is given the teacher in memory.
        teacher_steps (`int`, defaults to 64): DDIM steps of the teacher `N`; round 1's student samples with `N / 2`.
        student_steps (`int`, defaults to 8): Steps of the last student: `teacher_steps` halved one or more times.
        guidance_scale_range (`list[float] | None`, defaults to [1.0, 7.0]): Distil classifier-free guidance in: every
            sample draws `w` uniformly from `[low, high]` (diffusers' convention, 1 = no guidance) and the student takes
            it as its "guidance_scale" condition. None distils the conditional model without guidance.
        output_dir (`str`, defaults to "distill_output"): Holds `distill_config.json`, one `round-<k>/` folder per
            round (its checkpoints and `train_log.jsonl`) and the students, `student-<n>-steps/`.
        max_train_steps (`int`, defaults to 1000): Optimizer steps of each round.
        resume_from_checkpoint (`str | None`, defaults to None): "latest" keeps the finished rounds and resumes the
            interrupted one from its newest complete checkpoint (a fresh start when there is none); None starts over.
        model.pipeline_class (`str | None`, defaults to None): Pipeline class of the student folders (their
            `model_index.json`); None takes the class named in the teacher folder's `model_index.json`, if any.
        prediction_type (`str`, defaults to "v_prediction"): Must be "v_prediction" (the students predict v).
        condition_dropout (`float`, defaults to 0.0): Probability that a caption is replaced by "" for teacher and
            student alike (keeps the student's unconditional prediction trained).
    """

    output_dir: str = "distill_output"
    prediction_type: str = "v_prediction"
    condition_dropout: float = 0.0
    teacher: str | None = None
    teacher_steps: int = 64
    student_steps: int = 8
    guidance_scale_range: list[float] | None = field(default_factory=lambda: [1.0, 7.0])

    def __post_init__(self):
        if self.videofusion is not None:
            raise ValueError(
                "`videofusion` must be unset for distillation: the teacher is a plain v-prediction video model."
            )
        super().__post_init__()
        if self.prediction_type != "v_prediction":
            raise ValueError(
                f"`prediction_type` must be 'v_prediction' for distillation (students predict v) but is "
                f"{self.prediction_type!r}."
            )
        student_step_counts(self.teacher_steps, self.student_steps)
        if self.guidance_scale_range is not None:
            values = self.guidance_scale_range
            numbers = all(not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) for v in values)
            if len(values) != 2 or not numbers or not 0 <= values[0] <= values[1]:
                raise ValueError(
                    f"`guidance_scale_range` must be [low, high] with 0 <= low <= high, or None, but is {values!r}."
                )
            self.guidance_scale_range = [float(v) for v in values]
        if self.resume_from_checkpoint not in (None, "latest"):
            raise ValueError(
                f"`resume_from_checkpoint` must be None or 'latest' for distillation (each round resumes from its own "
                f"checkpoints) but is {self.resume_from_checkpoint!r}."
            )
        if self.snr_gamma is not None:
            raise ValueError(
                f"`snr_gamma` must be None for distillation (the loss is the MSE of v, Salimans & Ho's 'SNR+1' "
                f"weighting) but is {self.snr_gamma}."
            )
        model = self.model
        for name in ("pretrained_model_name_or_path", "unet_config", "noise_scheduler"):
            if getattr(model, name) is not None:
                raise ValueError(f"`model.{name}` must be unset for distillation: the models come from `teacher`.")
        if model.temporal or model.unet_class != "UNet3DModel":
            raise ValueError(
                "Distillation trains the teacher's UNet3DModel: leave `model.temporal` and `model.unet_class` unset."
            )


# ---------------------------------------------------------------------------------------------------- the models


def with_guidance_condition(unet: UNet3DModel, seed: int = 0) -> UNet3DModel:
    """A copy of `unet` with an extra "guidance_scale" scalar condition whose embedding starts at zero.

    Every weight of `unet` is copied strictly; the only new weights are the condition's embedding, whose output layer
    is zero, so the result equals `unet` for any guidance value until it is trained.

    Args:
        unet (`UNet3DModel`): The teacher.
        seed (`int`, defaults to 0): Seeds the (random) input layer of the new embedding.
    """
    if not isinstance(unet, UNet3DModel):
        raise ValueError(f"The guidance condition needs a UNet3DModel but the teacher is a {type(unet).__name__}.")
    if takes_guidance(unet):
        raise ValueError(f"The UNet already has a `{GUIDANCE_CONDITION}` scalar condition.")
    config = {key: value for key, value in unet.config.items() if not key.startswith("_")}
    config["scalar_conditions"] = (*tuple(unet.config.scalar_conditions), GUIDANCE_CONDITION)
    torch.manual_seed(seed)
    student = UNet3DModel(**config)
    state = student.state_dict()
    new_keys = {key for key in state if key.startswith(f"scalar_embeddings.{GUIDANCE_CONDITION}.")}
    for key, value in unet.state_dict().items():
        if key not in state or key in new_keys or state[key].shape != value.shape:
            raise ValueError(f"The teacher's weight `{key}` has no place in the student.")
        state[key] = value
    missing = set(state) - set(unet.state_dict()) - new_keys
    if missing:
        raise ValueError(f"The student has weights the teacher lacks: {sorted(missing)}.")
    student.load_state_dict(state, strict=True)
    if student.device != unet.device or student.dtype != unet.dtype:
        student = student.to(device=unet.device, dtype=unet.dtype)
    return student


def check_teacher(teacher: TrainingComponents) -> None:
    """Raise a `ValueError` unless the teacher is a `UNet3DModel` with a v-prediction scheduler."""
    if not isinstance(teacher.unet, UNet3DModel):
        raise ValueError(f"The teacher's UNet must be a UNet3DModel but is a {type(teacher.unet).__name__}.")
    as_distillation_scheduler(teacher.noise_scheduler)  # raises for a teacher that is not v-prediction


def load_teacher(folder: str | Path, seed: int = 0) -> TrainingComponents:
    """Load a teacher (or student) folder as `TrainingComponents`, checked with `check_teacher`.

    Raises:
        FileNotFoundError: The folder or one of its required sub-folders does not exist.
        ValueError: It is not a v-prediction `UNet3DModel`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"The teacher folder `teacher`='{folder}' does not exist.")
    unet_class = (read_json(folder / "unet" / "config.json", missing_ok=True) or {}).get("_class_name")
    if unet_class != "UNet3DModel":
        raise ValueError(f"The teacher's `unet/` must hold a UNet3DModel but '{folder}/unet' holds {unet_class!r}.")
    teacher = load_components(ModelConfig(pretrained_model_name_or_path=str(folder)), seed)
    check_teacher(teacher)
    return teacher


# ------------------------------------------------------------------------------------------------------ the loss


@dataclass
class DistillationBatch:
    """One batch part's distillation inputs and target (all on the training device).

    Args:
        x_t (`torch.Tensor`): Noisy inputs `(B, C, F, H, W)` at the student's timesteps `t`.
        timesteps (`torch.Tensor`): `(B, 3)`: each sample's `(t, mid, s)` in model units.
        text (`torch.Tensor`): Caption embeddings `(B, tokens, dim)` that teacher and student see.
        unet_kwargs (`dict`): The student's extra UNet arguments (its scalar conditions).
        x_s (`torch.Tensor`): Where two teacher steps `t -> mid -> s` landed.
        target (`torch.Tensor`): The student's v target: one DDIM step `t -> s` with it lands on `x_s`.
        guidance_scale (`torch.Tensor | None`): `(B,)` the guidance weight of each sample (None without guidance).
        condition (`torch.Tensor | None`, defaults to None): The conditioning video that teacher and student see next
            to their noisy samples (`Trainer.conditioning`); None for a plain text-to-video model.
    """

    x_t: torch.Tensor
    timesteps: torch.Tensor
    text: torch.Tensor
    unet_kwargs: dict[str, Any]
    x_s: torch.Tensor
    target: torch.Tensor
    guidance_scale: torch.Tensor | None
    condition: torch.Tensor | None = None


class DistillationTrainer(Trainer):
    """One round of progressive distillation: trains `student` (whose `noise_scheduler` is the round's
    `VDistilledScheduler`) to take `num_student_steps` steps where the frozen `teacher_unet` takes twice as many.

    Args:
        config (`DistillationConfig`): The round's config (its `output_dir` is the round folder).
        student (`TrainingComponents`): The student, the text encoder, tokenizer, VAE and the scheduler to save.
        teacher_unet (`UNet3DModel`): The teacher (frozen here).
        num_student_steps (`int`): Steps of the student.
        student_folder (`str | Path | None`): Where the student is saved; None: `output_dir/final`.
        info (`dict | None`): Facts written to the student folder's `distillation.json`.
    """

    def __init__(
        self,
        config: DistillationConfig,
        student: TrainingComponents,
        teacher_unet: UNet3DModel,
        num_student_steps: int,
        student_folder: str | Path | None = None,
        info: dict[str, Any] | None = None,
    ):
        if not isinstance(config, DistillationConfig):
            raise ValueError(f"`config` must be a DistillationConfig but is a {type(config).__name__}.")
        if not isinstance(student.noise_scheduler, VDistilledScheduler):
            raise ValueError(
                "The student's `noise_scheduler` must be a VDistilledScheduler (see `as_distillation_scheduler`)."
            )
        self.guided = config.guidance_scale_range is not None
        if takes_guidance(teacher_unet) and not self.guided:
            raise ValueError(
                f"The teacher takes a `{GUIDANCE_CONDITION}` condition (it is a guidance-distilled student): set "
                "`guidance_scale_range`."
            )
        if self.guided != takes_guidance(student.unet):
            raise ValueError(
                f"With `guidance_scale_range`={config.guidance_scale_range} the student must "
                f"{'' if self.guided else 'not '}have a `{GUIDANCE_CONDITION}` scalar condition (see "
                "with_guidance_condition)."
            )
        # the class's own computed conditions (a stage's "noise_aug_level"), and the guidance weight
        guidance = (GUIDANCE_CONDITION,) if self.guided else ()
        self.computed_scalar_conditions = (*self.computed_scalar_conditions, *guidance)
        super().__init__(config, student)
        teacher_conds = set(teacher_unet.config.scalar_conditions) - set(self.computed_scalar_conditions)
        if teacher_conds != set(config.model.scalar_conditions):
            raise ValueError(
                f"`model.scalar_conditions` must give a value for exactly the teacher's scalar conditions "
                f"{sorted(teacher_conds)} but gives {sorted(config.model.scalar_conditions)}."
            )
        self.teacher = teacher_unet.requires_grad_(False).eval().to(self.accelerator.device)
        self.num_student_steps = num_student_steps
        self.step_triples = self.components.noise_scheduler.distillation_timesteps(num_student_steps)  # (n, 3)
        self.student_folder = None if student_folder is None else Path(student_folder)
        self.info = dict(info or {})

    @torch.no_grad()
    def distillation_batch(self, part: dict[str, Any]) -> DistillationBatch:
        """Noisy inputs, two teacher steps and the student's target for a batch part.

        Each sample's step of the student grid (uniform), caption dropout, guidance weight and noise come from its
        own generator `(seed, position)`, so a resumed round sees what the uninterrupted one saw.
        """
        config, scheduler = self.config, self.components.noise_scheduler
        device = self.accelerator.device
        clean = self.model_inputs(part)  # (B, C, F, H, W)
        batch = clean.shape[0]
        generators = [sample_generator(config.seed, int(p)) for p in part["positions"]]
        index = torch.cat([torch.randint(0, self.num_student_steps, (1,), generator=g) for g in generators])
        dropped = torch.cat([torch.rand(1, generator=g) for g in generators]) < config.condition_dropout
        uniform = torch.cat([torch.rand(1, generator=g) for g in generators])
        noise = sample_training_noise(scheduler, tuple(clean.shape), generators).noise.to(device, clean.dtype)
        triples = self.step_triples[index]  # (B, 3)
        t, mid, s = (triples[:, i].to(device) for i in range(3))
        level_t, level_mid, level_s = (scheduler.alpha_sigma(x) for x in (t, mid, s))  # ((B,), (B,)) each
        x_t = scheduler.add_noise(clean, noise, t)
        condition = self.conditioning(part, clean)  # None for a text-to-video model

        captions = ["" if drop else caption for drop, caption in zip(dropped.tolist(), part["captions"])]
        two_pass = self.guided and not takes_guidance(self.teacher)
        text = self.encode_prompts(captions + [""] * batch if two_pass else captions)
        text, uncond = (text[:batch], text[batch:]) if two_pass else (text, None)
        weight = None
        # constants of `model.scalar_conditions` (and a stage's "noise_aug_level"), for teacher and student
        constants = self.unet_kwargs(part, batch).get("scalar_conds", {})
        kwargs = {"scalar_conds": dict(constants)} if constants or self.guided else {}
        if self.guided:
            low, high = self.config.guidance_scale_range
            weight = (low + (high - low) * uniform).to(device)  # (B,)
            kwargs["scalar_conds"][GUIDANCE_CONDITION] = guidance_condition(weight, device)

        # two deterministic DDIM steps of the (guided) teacher, t -> mid -> s (Salimans & Ho, Algorithm 2)
        # (a conditioned teacher sees its conditioning video next to the sample, `unet_sample`)
        v_t = guided_prediction(self.teacher, self.unet_sample(x_t, condition), t, text, uncond, weight, constants)
        x_mid = ddim_step(x_t, v_t, level_t, level_mid)
        v_mid = guided_prediction(
            self.teacher, self.unet_sample(x_mid, condition), mid, text, uncond, weight, constants
        )
        x_s = ddim_step(x_mid, v_mid, level_mid, level_s)
        target = distillation_target(x_t, level_t, x_s, level_s, prediction_type="v_prediction")
        return DistillationBatch(x_t, triples.to(device), text, kwargs, x_s, target, weight, condition)

    def training_loss(self, parts: dict[str, dict[str, Any]]) -> torch.Tensor:
        """The distillation loss of a micro-batch: each sample's MSE to its v target, averaged over all samples.

        The MSE of v is the x-space error weighted by `1 + SNR` (Salimans & Ho's "SNR+1" weighting).
        """
        batches = [self.distillation_batch(part) for part in parts.values()]
        inputs = [
            {
                "sample": self.unet_sample(b.x_t, b.condition),
                "timesteps": b.timesteps[:, 0],
                "text": b.text,
                "kwargs": b.unet_kwargs,
            }
            for b in batches
        ]
        predictions = self.model(inputs)
        return mean_over_samples([per_sample_mse(p, b.target) for p, b in zip(predictions, batches)])

    def final_folder(self) -> Path:
        return self.student_folder if self.student_folder is not None else super().final_folder()

    def save_model(self, folder: Path) -> None:
        """The student's components, `training_config.json` and `distillation.json`."""
        super().save_model(folder)
        (folder / DISTILLATION_NAME).write_text(json.dumps(self.info, indent=2) + "\n")

    @classmethod
    def check_teacher_folder(cls, folder: Path, config: DistillationConfig) -> None:
        """Checks, before anything is trained, that a teacher folder is distilled as what it is.

        `distill` asks every registered round trainer (`training.registry.DISTILLATION_TRAINERS`), whatever section
        `config` sets: a paper's trainer refuses its own kind of folder distilled without its section, or with
        another setting than the folder's. Nothing is checked here.

        Raises:
            ValueError: The folder does not fit `config`.
        """


# ---------------------------------------------------------------------------------------------------- the rounds


def distill(config: DistillationConfig, teacher: TrainingComponents | None = None) -> list[Path]:
    """Distil `config.teacher` (or `teacher`) round by round down to `config.student_steps` steps.

    Round `k` trains a student for `teacher_steps / 2**k` steps, initialised from (and taught by) the previous round's
    student, the first by the teacher. With `resume_from_checkpoint="latest"` finished rounds (their student folder
    exists) are skipped and the interrupted round resumes from its newest checkpoint.

    Args:
        config (`DistillationConfig`): The distillation.
        teacher (`TrainingComponents | None`): A teacher built in memory (its UNet is frozen); None loads
            `config.teacher`.

    Returns:
        `list[Path]`: The student folders, one per round, the last one with `student_steps` steps.
    """
    if not isinstance(config, DistillationConfig):
        raise ValueError(f"`config` must be a DistillationConfig but is a {type(config).__name__}.")
    if teacher is None and config.teacher is None:
        raise ValueError("`teacher` is required: the folder of a v-prediction UNet3DModel to distil.")
    counts = student_step_counts(config.teacher_steps, config.student_steps)
    teacher_folder = None if config.teacher is None else Path(config.teacher)
    if teacher is None and not teacher_folder.is_dir():
        raise FileNotFoundError(f"The teacher folder `teacher`='{teacher_folder}' does not exist.")
    if teacher is not None:
        check_teacher(teacher)
    trainer_class = registered_class(config, DISTILLATION_TRAINERS, DistillationTrainer)
    if teacher_folder is not None:
        for registered in DISTILLATION_TRAINERS.values():
            registered.check_teacher_folder(teacher_folder, config)
    output_dir, state = Path(config.output_dir), PartialState()
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        temporary = checkpointing.temporary_path(output_dir, DISTILL_CONFIG_NAME)
        config.to_json_file(temporary)
        os.replace(temporary, output_dir / DISTILL_CONFIG_NAME)
    pipeline_class = config.model.pipeline_class
    if pipeline_class is None and teacher_folder is not None:
        index = read_json(teacher_folder / INDEX_NAME, missing_ok=True)
        pipeline_class = class_name_of(index, teacher_folder / INDEX_NAME) if index else None

    students, source = [], teacher_folder
    for round_index, num_steps in enumerate(counts, start=1):
        folder = output_dir / student_folder_name(num_steps)
        if config.resume_from_checkpoint == "latest" and _is_student(folder, num_steps):
            logger.info(f"Round {round_index}: {folder} is complete; skipping it.", main_process_only=True)
            students.append(folder)
            source = folder
            continue
        taught_by = teacher if round_index == 1 and teacher is not None else load_teacher(source, config.seed)
        scheduler = as_distillation_scheduler(taught_by.noise_scheduler, config.teacher_steps)
        # the student's scheduler knows its own step count: pipelines sample it there by default
        scheduler = VDistilledScheduler.from_config(scheduler.config, default_num_inference_steps=num_steps)
        if config.guidance_scale_range is not None and not takes_guidance(taught_by.unet):
            student_unet = with_guidance_condition(taught_by.unet, config.seed)  # round 1: add the condition
        else:
            student_unet = copy.deepcopy(taught_by.unet)
        student = TrainingComponents(
            student_unet, taught_by.text_encoder, taught_by.tokenizer, scheduler, taught_by.vae
        )  # fmt: skip
        info = {
            "round": round_index,
            "num_rounds": len(counts),
            "num_inference_steps": num_steps,
            "teacher_steps": 2 * num_steps,
            "teacher": str(source) if round_index > 1 or teacher is None else "(in memory)",
            "distillation_base_steps": scheduler.config.distillation_base_steps,
            "guidance_scale_range": config.guidance_scale_range,
            "guidance_condition": GUIDANCE_CONDITION if config.guidance_scale_range is not None else None,
            "guidance_condition_scale": GUIDANCE_CONDITION_SCALE,
        }
        round_config = config.with_overrides(
            {"output_dir": str(output_dir / f"round-{round_index}"), "model.pipeline_class": pipeline_class}
        )
        logger.info(
            f"Round {round_index} of {len(counts)}: {2 * num_steps} teacher steps -> {num_steps} student steps.",
            main_process_only=True,
        )
        trainer = trainer_class(round_config, student, taught_by.unet, num_steps, folder, info)
        trainer.train()
        del trainer, student, taught_by
        students.append(folder)
        source = folder
    return students


def _is_student(folder: Path, num_steps: int) -> bool:
    """Whether `folder` is a finished student for `num_steps` steps (student folders are written atomically)."""
    return (read_json(folder / DISTILLATION_NAME, missing_ok=True) or {}).get("num_inference_steps") == num_steps
