"""`diffusers-video distill`: progressive distillation of a v-prediction video model, guidance included.

    diffusers-video distill --teacher FOLDER --output_dir OUT --student_steps 8 [--KEY VALUE ...] [--resume latest]

The teacher (a folder with unet/ (a v-prediction UNet3DModel), text_encoder/, tokenizer/, scheduler/ and optionally
vae/, e.g. the final/ folder of `diffusers-video train`) sampled with --teacher_steps DDIM steps (default 64) teaches
a student to take one step where it takes two (Salimans & Ho 2022); each round halves the steps, down to
--student_steps. Classifier-free guidance is distilled in (Meng et al. 2023): each sample draws a weight w from
--guidance_scale_range (default [1, 7]) and the student takes w as its "guidance_scale" scalar condition (fed to the
UNet as 100 * w); `--guidance_scale_range null` distils the conditional model alone.

Each round is a training run in OUT/round-<k>/ (checkpoints, train_log.jsonl); its student is saved atomically as
OUT/student-<n>-steps/ (unet/, scheduler/ a VDistilledScheduler on the distillation grid, text_encoder/, tokenizer/,
vae/, training_config.json, distillation.json). `--resume latest` keeps the finished rounds and resumes the
interrupted one from its newest checkpoint, repeating the uninterrupted run exactly.

Every DistillationConfig key (all `diffusers-video train` keys, plus those below) can be set in --config or on the
command line, nested keys dotted (`--data.height 32`), values read as JSON where they parse. Without --config, the
frame size and count (`data`), the constant scalar conditions (`model.scalar_conditions`) and an Imagen Video stage
(`imagen_video`: its conditioning is distilled at the fixed `imagen_video.noise_aug_level`) default to those in the
teacher's training_config.json. `--max_train_steps` counts optimizer steps per round. Examples:

    diffusers-video distill --teacher runs/video/final --output_dir runs/distilled --student_steps 8
    diffusers-video distill --teacher runs/video/final --output_dir runs/distilled --max_train_steps 500 \\
        --learning_rate 1e-4 --train_batch_size 16 --checkpointing_steps 100 --guidance_scale_range '[1, 8]'
    diffusers-video distill --teacher runs/video/final --output_dir runs/distilled --resume latest
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from accelerate import PartialState

from ..folders import TRAINING_CONFIG_NAME, check_writable, read_json
from ..training.config import DataConfig, ImagenVideoConfig, ModelConfig, TrainingConfig, config_fields
from ..training.distillation import DistillationConfig, distill
from .train import parse_value

_RESUME_KEY = "resume_from_checkpoint"
# Settings that distillation requires unset (the models come from the teacher): not offered on the command line.
_UNSET_KEYS = (
    "prediction_type",
    "snr_gamma",
    "model.pretrained_model_name_or_path",
    "model.unet_class",
    "model.unet_config",
    "model.temporal",
    "model.noise_scheduler",
    "videofusion",
)
_ARGUMENT = re.compile(r"^ {8}([\w.]+) \(`[^`]*`(?:, defaults to (.*?))?\): (.*)$")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="progressive distillation of a v-prediction model (guidance distilled in)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=None, metavar="CONFIG.json", help="a DistillationConfig file (optional)")
    helps = field_help()
    main_keys = ("teacher", "output_dir", "teacher_steps", "student_steps", "guidance_scale_range", "max_train_steps")
    fields = config_fields(DistillationConfig)
    groups = {
        True: parser.add_argument_group("distillation"),
        False: parser.add_argument_group(
            "training settings of every round (see the README, 'Training'; `data` defaults to the teacher's)"
        ),
    }
    fields = {
        key: hint for key, hint in fields.items() if key.split(".")[0] not in _UNSET_KEYS and key not in _UNSET_KEYS
    }
    for key in (*main_keys, *(key for key in fields if key not in main_keys)):
        names = [f"--{key}"] + (["--resume"] if key == _RESUME_KEY else [])
        text = f"{helps.get(key, '')} [{_hint_text(fields[key])}]".strip().replace("%", "%%")
        groups[key in main_keys].add_argument(*names, dest=key, default=None, metavar="VALUE", help=text)
    parser.set_defaults(func=run)


def _hint_text(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _docstring_arguments(cls) -> dict[str, str]:
    """`{name: "description (default: value)"}` from the `Args:` section of a Google-style class docstring."""
    found, current = {}, None
    for line in (cls.__doc__ or "").splitlines():
        match = _ARGUMENT.match(line)
        if match:
            name, default, text = match.groups()
            current = name
            found[name] = [text, default]
        elif current is not None and line.startswith(" " * 12) and line.strip():
            found[current][0] += " " + line.strip()
        else:
            current = None
    return {name: text + (f" (default: {default})" if default else "") for name, (text, default) in found.items()}


def field_help() -> dict[str, str]:
    """The help text of every config key, from the config dataclasses' docstrings."""
    helps = {}
    for cls, prefix in (
        (TrainingConfig, ""),
        (DataConfig, "data."),
        (ModelConfig, "model."),
        (ImagenVideoConfig, "imagen_video."),
        (DistillationConfig, ""),  # last: its entries override the training ones
    ):
        helps.update({prefix + name: text for name, text in _docstring_arguments(cls).items()})
    return helps


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config values given on the command line, parsed as `diffusers-video train` parses them."""
    values = vars(args)
    fields = config_fields(DistillationConfig)
    return {key: parse_value(key, values[key], hint) for key, hint in fields.items() if values.get(key) is not None}


def teacher_defaults(teacher: str | None) -> dict[str, Any]:
    """`data`, `model.scalar_conditions` and `imagen_video` of the teacher's `training_config.json` ({} without
    one)."""
    if teacher is None:
        return {}
    saved = read_json(Path(teacher) / TRAINING_CONFIG_NAME, missing_ok=True) or {}
    defaults = {}
    if isinstance(saved.get("data"), dict):
        defaults["data"] = saved["data"]
    scalar_conditions = (saved.get("model") or {}).get("scalar_conditions")
    if isinstance(scalar_conditions, dict):
        defaults["model"] = {"scalar_conditions": scalar_conditions}
    if isinstance(saved.get("imagen_video"), dict):
        defaults["imagen_video"] = saved["imagen_video"]
    return defaults


def run(args: argparse.Namespace) -> int:
    overrides = overrides_from_args(args)
    if args.config is not None:
        config = DistillationConfig.from_json_file(args.config).with_overrides(overrides)
    else:
        config = DistillationConfig.from_dict(teacher_defaults(overrides.get("teacher"))).with_overrides(overrides)
    if config.teacher is None:
        raise ValueError("`--teacher` is required: the folder of the v-prediction UNet3DModel to distil.")
    check_writable(config.output_dir)  # before the teacher is loaded
    students = distill(config)
    if PartialState().is_main_process:
        for folder in students:
            print(f"Saved student {folder}")
    return 0
