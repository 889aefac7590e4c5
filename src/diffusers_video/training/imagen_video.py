"""Training and distilling the stages of an Imagen Video cascade in the accelerate training loop.

Imagen Video (Ho et al. 2022, https://huggingface.co/papers/2210.02303) is a cascade of pixel-space video diffusion
models: a base text-to-video stage, then temporal ("tsr") and spatial ("ssr") super-resolution stages, each a
v-prediction `UNet3DModel` reading frozen T5 embeddings of the caption. Every stage is trained on its own, on clips
of its *output* size (`data.height`, `data.width`, `data.num_frames`):

- base: plain text-to-video, the ordinary training loop in pixel space;
- tsr / ssr: the clip is the target; its conditioning is what the previous stage would have made of it, brought to
  this stage's size, `upsample_condition(downsample_for_condition(clip, stage), stage)`, then noised to a level `u`
  drawn uniformly from `[0, noise_aug_max]` per sample (noise-conditioning augmentation, paper Section 2.4, after
  Ho et al. 2021's cascaded diffusion models) with `augment_condition`. The UNet takes `[x_t, condition]` along
  channels (`in_channels` 6) and is told `u` through its "noise_aug_level" scalar condition (`1000 u`).

Each sample's augmentation level and noise come from a generator of its own, `(seed, position, 1)`, next to the
`(seed, position)` one of its timestep, caption dropout and diffusion noise, so a killed and resumed run repeats the
uninterrupted one exactly, and a distillation's teacher and student see the same conditioning.

Joint image-video training (`image_fraction`) trains a base or ssr stage on still images too, as single-frame videos;
a tsr stage cannot (an image has no frames to interpolate). Classifier-free guidance is trained as in the loop:
captions are dropped with probability `condition_dropout`; the conditioning video is never dropped.

Progressive distillation (`diffusers-video distill` with an `imagen_video` section) distils a stage like any
v-prediction video model, with the conditioning at the fixed level `imagen_video.noise_aug_level`, the level at which
the stage is sampled in the cascade.

The final folder of a stage (and every student folder) holds `unet/`, `scheduler/`, `text_encoder/`, `tokenizer/`,
`training_config.json` and `stage.json` (`STAGE_CONFIG_NAME`: the stage spec, its sampling level and output size).

`assemble_cascade` puts stage folders (teachers or distilled students) together as one `ImagenVideoPipeline`;
`extract_stage` takes one stage back out of a cascade as a stage folder (to distil a committed cascade's stage).

The folder that the stage recipes (`pipelines/imagen_video/`) start from, `model.pretrained_model_name_or_path`,
holds the frozen T5 stand-in and the training scheduler (`write_text_encoder_folder`). The command line
(`commands/imagen_video.py`)::

    diffusers-video imagen-video text-encoder --output_dir runs/imagen_video_t5
    diffusers-video imagen-video assemble STAGE_FOLDER ... --output_dir runs/imagen_video/cascade
    diffusers-video imagen-video extract CASCADE --stage 3 --output_dir runs/imagen_video/ssr64/final

`ImagenVideoTrainer` and `ImagenVideoDistillationTrainer` are registered for the `imagen_video` config section
(`training.registry`), so `train` and `distill` run them for a config that sets it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor
from transformers import AutoTokenizer

from ..folders import STAGE_CONFIG_NAME, read_json
from ..models.unet_3d import UNet3DModel
from ..pipelines.imagen_video import ImagenVideoPipeline
from ..pipelines.imagen_video.cascade import (
    NOISE_AUG_CONDITION,
    StageSpec,
    augment_condition,
    downsample_for_condition,
    noise_aug_condition_value,
    stage_model_input,
    upsample_condition,
)
from ..schedulers.scheduling_v_distilled import VDistilledScheduler
from .checkpointing import atomic_folder
from .components import load_text_encoder, resolve_class
from .config import ImagenVideoConfig, TrainingConfig
from .data import sample_generator
from .distillation import DistillationConfig, DistillationTrainer
from .registry import register_distillation_trainer, register_trainer
from .stand_in_text import build_t5_text_encoder, build_t5_tokenizer, train_text_encoder
from .trainer import Trainer

AUGMENTATION_STREAM = 1
"""Third key of the per-sample generator `(seed, position, AUGMENTATION_STREAM)` of the augmentation level and noise."""

PIXEL_CHANNELS = 3


# ---------------------------------------------------------------------------------------------- pure functions


def augmentation_generators(seed: int, positions: torch.Tensor | list[int]) -> list[torch.Generator]:
    """One CPU generator per sample for its conditioning augmentation, apart from its diffusion noise's generator."""
    return [sample_generator(seed, int(p), AUGMENTATION_STREAM) for p in positions]


def noise_aug_levels(
    generators: list[torch.Generator], noise_aug_max: float, fixed_level: float | None = None
) -> torch.Tensor:
    """Each sample's augmentation level `(B,)`: uniform in `[0, noise_aug_max]`, or `fixed_level` for all.

    The uniform draw is made either way (the first draw of each generator), so the noise that follows is the same.
    """
    uniform = torch.cat([torch.rand(1, generator=g) for g in generators])  # (B,)
    if fixed_level is not None:
        return torch.full_like(uniform, float(fixed_level))
    return uniform * noise_aug_max


def stage_condition(
    clean: torch.Tensor, spec: StageSpec, levels: torch.Tensor, generators: list[torch.Generator]
) -> torch.Tensor:
    """The conditioning of a super-resolution stage for clean clips at its output size: what the previous stage
    would make of them, upsampled back and noise-augmented at `levels`.

    Args:
        clean (`torch.Tensor`): `(B, C, F, H, W)` in [-1, 1], the stage's output size.
        spec (`StageSpec`): The stage ("tsr" or "ssr").
        levels (`torch.Tensor`): `(B,)` augmentation levels in [0, 1].
        generators (`list[torch.Generator]`): One per sample, for the augmentation noise (drawn on the CPU).

    Returns:
        `torch.Tensor`: `(B, C, F, H, W)`, like `clean`.
    """
    condition = upsample_condition(downsample_for_condition(clean, spec), spec)  # (B, C, F, H, W)
    noise = randn_tensor(tuple(condition.shape), generator=generators).to(condition.device, condition.dtype)
    return augment_condition(condition, levels.to(condition.device), noise)


def read_stage(folder: str | Path) -> dict[str, Any] | None:
    """A stage folder's `stage.json` (None when the folder has none or it is empty)."""
    return read_json(Path(folder) / STAGE_CONFIG_NAME, missing_ok=True) or None


def check_teacher_stage(folder: str | Path, imagen_video: ImagenVideoConfig | None) -> None:
    """A distillation teacher folder must be distilled as the stage it is (its `stage.json`), and only then.

    Raises:
        ValueError: The folder is a cascade stage and `imagen_video` is unset, or the stages differ.
    """
    saved = read_stage(folder)
    if saved is None:
        return
    spec = StageSpec.from_dict({"kind": saved.get("kind"), "factor": saved.get("factor", 1)})
    if imagen_video is None:
        raise ValueError(
            f"The teacher '{folder}' is an Imagen Video stage ({spec.to_dict()}, its `{STAGE_CONFIG_NAME}`): set the "
            f"`imagen_video` section (e.g. `--imagen_video.stage '{json.dumps(spec.to_dict())}'`)."
        )
    if imagen_video.stage_spec() != spec:
        raise ValueError(
            f"`imagen_video.stage` is {imagen_video.stage} but the teacher '{folder}' is the stage {spec.to_dict()} "
            f"(its `{STAGE_CONFIG_NAME}`)."
        )


# ------------------------------------------------------------------------------------------------------ trainers


class _StageTraining:
    """What a cascade stage adds to a `Trainer` (or a `DistillationTrainer`): the pixel-space and v-prediction
    checks, the conditioning video of a super-resolution stage, its "noise_aug_level" condition, and `stage.json`."""

    # computed per sample here, not a constant of `model.scalar_conditions` (a base stage's UNet has no such condition)
    computed_scalar_conditions: tuple[str, ...] = (NOISE_AUG_CONDITION,)
    # None: each sample draws its level from [0, `noise_aug_max`]; distillation fixes it at `noise_aug_level`
    fixed_noise_aug_level: float | None = None

    @cached_property
    def stage(self) -> StageSpec:
        """The stage this run trains."""
        return self.config.imagen_video.stage_spec()

    def _check_components(self) -> None:
        unet, spec = self.components.unet, self.stage
        if self.components.vae is not None:
            raise ValueError(
                f"An Imagen Video stage trains in pixel space, but the components have a VAE "
                f"({type(self.components.vae).__name__}): use a model folder without `vae/`."
            )
        if not isinstance(unet, UNet3DModel):
            raise ValueError(f"An Imagen Video stage's UNet must be a UNet3DModel but is {type(unet).__name__}.")
        conditions = tuple(unet.config.scalar_conditions)
        if spec.is_super_resolution != (NOISE_AUG_CONDITION in conditions):
            need = "needs" if spec.is_super_resolution else "must not have"
            raise ValueError(
                f"A {spec.kind!r} stage's UNet {need} a {NOISE_AUG_CONDITION!r} scalar condition (noise-conditioning "
                f"augmentation is for super-resolution stages), but its `scalar_conditions` are {list(conditions)}."
            )
        super()._check_components()

    def conditioning_channels(self) -> int:
        return PIXEL_CHANNELS if self.stage.is_super_resolution else 0

    def _augmentation(self, part: dict[str, Any]) -> tuple[torch.Tensor, list[torch.Generator]]:
        generators = augmentation_generators(self.config.seed, part["positions"])
        levels = noise_aug_levels(generators, self.config.imagen_video.noise_aug_max, self.fixed_noise_aug_level)
        return levels, generators

    def conditioning(self, part: dict[str, Any], clean: torch.Tensor) -> torch.Tensor | None:
        """The noise-augmented conditioning of a super-resolution stage (None for the base stage)."""
        if not self.stage.is_super_resolution:
            return None
        levels, generators = self._augmentation(part)
        return stage_condition(clean, self.stage, levels, generators)

    def unet_sample(self, noisy: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return stage_model_input(noisy, condition)

    def unet_kwargs(self, part: dict[str, Any], batch_size: int) -> dict[str, Any]:
        """The constant scalar conditions, and a super-resolution stage's "noise_aug_level" (`1000 u`, per sample)."""
        kwargs = super().unet_kwargs(part, batch_size)
        if not self.stage.is_super_resolution:
            return kwargs
        levels, _ = self._augmentation(part)
        conds = dict(kwargs.get("scalar_conds", {}))
        conds[NOISE_AUG_CONDITION] = noise_aug_condition_value(levels).to(self.accelerator.device)
        return {**kwargs, "scalar_conds": conds}

    def stage_info(self) -> dict[str, Any]:
        """What `stage.json` records: the stage spec, the level it is sampled at and its output size."""
        data = self.config.data
        return {
            **self.stage.to_dict(),
            "noise_aug_level": self.config.imagen_video.noise_aug_level if self.stage.is_super_resolution else None,
            "num_frames": data.num_frames,
            "height": data.height,
            "width": data.width,
        }

    def save_model(self, folder: Path) -> None:
        """The stage's components and `training_config.json` (as the base class saves them), and `stage.json`."""
        super().save_model(folder)
        (folder / STAGE_CONFIG_NAME).write_text(json.dumps(self.stage_info(), indent=2) + "\n")


@register_trainer("imagen_video")
class ImagenVideoTrainer(_StageTraining, Trainer):
    """The training loop for a config with an `imagen_video` section (what `train(config)` runs for one).

    Args:
        config (`TrainingConfig`): The run; `config.imagen_video` must be set.
        components (`TrainingComponents | None`): Models built in memory (no VAE; a super-resolution stage's UNet has
            `in_channels` 6 and a "noise_aug_level" scalar condition); None loads them as `config.model` says.
    """

    def __init__(self, config: TrainingConfig, components=None):
        if not isinstance(config, TrainingConfig) or config.imagen_video is None:
            raise ValueError("ImagenVideoTrainer needs a TrainingConfig with an `imagen_video` section.")
        super().__init__(config, components)


@register_distillation_trainer("imagen_video")
class ImagenVideoDistillationTrainer(_StageTraining, DistillationTrainer):
    """One progressive-distillation round of a cascade stage (what `distill` runs for an `imagen_video` config):
    `DistillationTrainer` with the stage's conditioning at the fixed level `imagen_video.noise_aug_level`."""

    @property
    def fixed_noise_aug_level(self) -> float:
        return self.config.imagen_video.noise_aug_level

    @classmethod
    def check_teacher_folder(cls, folder: Path, config: DistillationConfig) -> None:
        """A stage folder (with `stage.json`) is distilled as the stage it is, and only with an `imagen_video`
        section (see [`check_teacher_stage`])."""
        check_teacher_stage(folder, config.imagen_video)


# ------------------------------------------------------------------------------------------- the stage folders


def assemble_cascade(stage_folders: Sequence[str | Path], output_dir: str | Path | None = None, fp16: bool = False):
    """An `ImagenVideoPipeline` from stage folders, base first (the `final/` of stage runs, or distilled students).

    Each folder's `unet/`, `scheduler/` and `stage.json` make one stage; the text encoder and tokenizer are the first
    folder's, and every other folder must hold the same text encoder (the stages read the same embeddings).

    Args:
        stage_folders (`Sequence[str | Path]`): The stage folders in cascade order.
        output_dir (`str | Path | None`, defaults to None): Also save the pipeline there (`save_pretrained`),
            atomically (a temporary folder, then a rename).
        fp16 (`bool`, defaults to False): Round the UNets' weights to float16 and save them so (half the size, for
            committing a demo); `ImagenVideoPipeline.from_pretrained` loads them back in float32. The returned
            pipeline holds the rounded weights in float32, as loaded back. The text encoder stays float32.

    Returns:
        `ImagenVideoPipeline`: the cascade. Sample each super-resolution stage at the `noise_aug_level` of its
        `stage.json` (the pipeline's default, 0.1, is the recipes').

    Raises:
        ValueError: A folder is not a stage folder, the stages' sizes do not chain (each stage's input is the
            previous stage's output), or the text encoders differ.
    """
    if not stage_folders:
        raise ValueError("`stage_folders` is empty: a cascade needs at least its base stage.")
    stages, previous, text_state = [], None, None
    for index, folder in enumerate(Path(f) for f in stage_folders):
        info = read_stage(folder)
        if info is None or not (folder / "unet").is_dir() or not (folder / "scheduler").is_dir():
            raise ValueError(
                f"Stage {index}: '{folder}' is not a stage folder (`{STAGE_CONFIG_NAME}`, `unet/`, `scheduler/`)."
            )
        spec = StageSpec.from_dict({"kind": info["kind"], "factor": info.get("factor", 1)})
        output = (info["num_frames"], info["height"], info["width"])
        if previous is not None and spec.input_size(*output) != previous:
            raise ValueError(
                f"Stage {index} ({spec}, '{folder}') makes (frames, height, width) {output} from "
                f"{spec.input_size(*output)}, but stage {index - 1} makes {previous}."
            )
        previous = output
        unet = UNet3DModel.from_pretrained(folder / "unet")
        scheduler_class = resolve_class(read_json(folder / "scheduler" / "scheduler_config.json")["_class_name"])
        stages.append((spec, unet, scheduler_class.from_pretrained(folder / "scheduler")))
        text_encoder = load_text_encoder(folder / "text_encoder")
        state = text_encoder.state_dict()
        if text_state is None:
            text_state, first = state, (text_encoder, folder)
        elif state.keys() != text_state.keys() or any(not torch.equal(state[k], text_state[k]) for k in state):
            raise ValueError(
                f"Stage {index}: '{folder}/text_encoder' differs from '{first[1]}/text_encoder'; every stage of a "
                "cascade must be trained with the same text encoder."
            )
    tokenizer = AutoTokenizer.from_pretrained(first[1] / "tokenizer")
    pipeline = ImagenVideoPipeline.from_stages(first[0], tokenizer, stages)
    if fp16:
        for _, unet, _ in stages:
            unet.to(torch.float16)
    try:
        if output_dir is not None:
            with atomic_folder(output_dir) as temporary:  # a failed save leaves an existing folder as it was
                pipeline.save_pretrained(temporary)
    finally:
        if fp16:  # also when saving fails: the returned pipeline is float32, as documented
            for _, unet, _ in stages:
                unet.to(torch.float32)
    return pipeline


def extract_stage(
    cascade,
    index: int,
    output_dir: str | Path,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    noise_aug_level: float = 0.1,
) -> Path:
    """Write one stage of a cascade as a stage folder: the inverse of `assemble_cascade`.

    A cascade folder holds no training run, so its stages cannot be distilled or retrained as they are: a stage
    folder (`unet/`, `scheduler/`, `text_encoder/`, `tokenizer/`, `stage.json`) is what `diffusers-video distill
    --teacher` and `assemble_cascade` read. The UNet is saved in float32 (a float16 cascade's weights, upcast), the
    scheduler as the cascade holds it. `stage.json` records the stage's output size for a final video of
    `num_frames` frames of `height` x `width` (the cascade's default size when unset) and, for a super-resolution
    stage, the level it is sampled at.

    Args:
        cascade (`ImagenVideoPipeline | str | Path`): The cascade, or its folder.
        index (`int`): The stage, 0 for the base; negative counts from the last.
        output_dir (`str | Path`): The stage folder to write; written atomically (a temporary folder, then a rename).
        num_frames (`int | None`), height (`int | None`), width (`int | None`): The cascade's final size that the
            stage's size is derived from; all three or none.
        noise_aug_level (`float`, defaults to 0.1): The augmentation level in [0, 1] of a super-resolution stage.

    Returns:
        `Path`: `output_dir`.

    Raises:
        ValueError: `index` is not a stage of the cascade, only some of the sizes are given, a factor does not divide
            them, or `noise_aug_level` is outside [0, 1].
    """
    pipeline = cascade if isinstance(cascade, ImagenVideoPipeline) else ImagenVideoPipeline.from_pretrained(cascade)
    count = pipeline.num_stages
    if isinstance(index, bool) or not isinstance(index, int) or not -count <= index < count:
        raise ValueError(f"`index` must be a stage of the {count}-stage cascade (0 to {count - 1}), but is {index!r}.")
    index %= count
    sizes = (num_frames, height, width)
    if any(v is None for v in sizes) and any(v is not None for v in sizes):
        raise ValueError(f"Give all of `num_frames`, `height` and `width` or none, but they are {sizes}.")
    if isinstance(noise_aug_level, bool) or not isinstance(noise_aug_level, (int, float)):
        raise ValueError(f"`noise_aug_level` must be a number in [0, 1], but is {noise_aug_level!r}.")
    if not 0.0 <= noise_aug_level <= 1.0:
        raise ValueError(f"`noise_aug_level` must be in [0, 1], but is {noise_aug_level!r}.")
    final = pipeline.default_size() if num_frames is None else sizes
    frames, h, w = pipeline.stage_sizes(*final)[index]
    spec, unet, scheduler = pipeline.stages[index]
    info = {
        **spec.to_dict(),
        "noise_aug_level": float(noise_aug_level) if spec.is_super_resolution else None,
        "num_frames": frames,
        "height": h,
        "width": w,
    }
    dtype = unet.dtype
    with atomic_folder(output_dir) as temporary:
        try:
            unet.to(torch.float32).save_pretrained(temporary / "unet")
        finally:
            unet.to(dtype)
        scheduler.save_pretrained(temporary / "scheduler")
        pipeline.text_encoder.save_pretrained(temporary / "text_encoder")
        pipeline.tokenizer.save_pretrained(temporary / "tokenizer")
        (temporary / STAGE_CONFIG_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return Path(output_dir)


# ------------------------------------------------------------------------------------------- the starting folder


def write_text_encoder_folder(
    output_dir: str | Path,
    d_model: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    text_steps: int = 0,
    text_num_clips: int = 8000,
) -> Path:
    """Write what every stage run loads besides its UNet: the T5 stand-in and the training scheduler.

    `tokenizer/` (`build_t5_tokenizer`), `text_encoder/` (a small `T5EncoderModel`, frozen while the stages train:
    the UNets' cross-attention learns to read its word features; `cross_attention_dim` must be `d_model`) and
    `scheduler/` (a v-prediction `VDistilledScheduler` on the paper's continuous cosine schedule). All stages of a
    cascade must share the text encoder, so they are all trained from this one folder.

    T5-XXL was pre-trained on text, so the caption writer's synonyms of a direction or a speed have close features in
    it. A random stand-in gives them unrelated ones, and a small video model then cannot learn the direction of
    motion (main README, "Learning the direction of motion"). `text_steps > 0` pre-trains the stand-in contrastively
    on moving-shapes clips and their captions first (`stand_in.train_text_encoder`, mean-pooled tokens).

    Args:
        output_dir (`str | Path`): The folder to write.
        d_model (`int`, defaults to 64): Width of the text encoder.
        num_layers (`int`, defaults to 2): Its encoder blocks.
        seed (`int`, defaults to 0): Seeds its weights and its contrastive training.
        text_steps (`int`, defaults to 0): Contrastive training steps (0: keep the random encoder).
        text_num_clips (`int`, defaults to 8000): Clips of the contrastive training.

    Returns:
        `Path`: `output_dir`.
    """
    if not isinstance(text_steps, int) or text_steps < 0:
        raise ValueError(f"`text_steps` must be a non-negative integer, but is {text_steps!r}.")
    output_dir = Path(output_dir)
    tokenizer = build_t5_tokenizer()
    text_encoder = build_t5_text_encoder(len(tokenizer), d_model=d_model, num_layers=num_layers, seed=seed)
    if text_steps:
        train_text_encoder(text_encoder, tokenizer, steps=text_steps, num_clips=text_num_clips, seed=seed)
    tokenizer.save_pretrained(output_dir / "tokenizer")
    text_encoder.save_pretrained(output_dir / "text_encoder")
    scheduler = VDistilledScheduler(noise_schedule="continuous_cosine", prediction_type="v_prediction")
    scheduler.save_pretrained(output_dir / "scheduler")
    return output_dir
