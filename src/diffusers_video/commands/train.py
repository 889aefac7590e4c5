"""`diffusers-video train`: train a video (or image) diffusion model from a JSON config.

    diffusers-video train --config CONFIG.json [--KEY VALUE ...] [--resume latest]

Every config key can be overridden on the command line, nested keys dotted (`--data.height 32`); values are read
as JSON where they parse (`--ema_decay 0.999`, `--model.temporal '{"frame_adaptor": true}'`, `--snr_gamma null`)
and as text otherwise. Several processes or GPUs: `accelerate launch -m diffusers_video.cli train --config ...`.
A `videofusion` section (or any `--videofusion.KEY`) trains VideoFusion's base and residual generators jointly and
saves a `VideoFusionPipeline` (recipe: pipelines/videofusion/train_demo.json). An `imagen_video` section trains one
stage of an Imagen Video cascade in pixel space (recipes: pipelines/imagen_video/).
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from typing import Any

from accelerate import PartialState

from ..folders import check_writable
from ..training import TrainingConfig, train
from ..training.config import config_fields
from ..training.config_checks import _matches

_RESUME_KEY = "resume_from_checkpoint"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (accelerate training loop)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="CONFIG.json", help="the training config file")
    overrides = parser.add_argument_group('config overrides (see the README, "Training")')
    for key, hint in config_fields().items():
        names = [f"--{key}"] + (["--resume"] if key == _RESUME_KEY else [])
        overrides.add_argument(*names, dest=key, default=None, metavar="VALUE", help=_hint_text(hint))
    parser.set_defaults(func=run)


def _hint_text(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def parse_value(key: str, raw: str, hint: Any) -> Any:
    """A command-line value for a config key of type `hint`: JSON when that fits the type, else the raw text."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if _matches(value, hint):
        return value
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if str in allowed:
        return raw
    raise ValueError(f"`--{key}` must be of type {_hint_text(hint)} but is {raw!r}.")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides given on the command line, parsed."""
    values = vars(args)
    return {
        key: parse_value(key, values[key], hint)
        for key, hint in config_fields().items()
        if values.get(key) is not None
    }


def run(args: argparse.Namespace) -> int:
    config = TrainingConfig.from_json_file(args.config).with_overrides(overrides_from_args(args))
    check_writable(config.output_dir)  # before any model is loaded
    final = train(config)
    if PartialState().is_main_process:
        print(f"Saved the trained model to {final}")
    return 0
