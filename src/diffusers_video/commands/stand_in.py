"""`diffusers-video stand-in`: build, score and export the tiny stand-in for Stable Diffusion 2.1.

    diffusers-video stand-in base --output_dir runs/shapes_sd_base [--vae_steps 1200]
    diffusers-video stand-in eval runs/shapes_sd/checkpoint-2000 --num_samples 64
    diffusers-video stand-in export runs/shapes_sd/final --output_dir pipelines/shapes_sd

`base` writes everything but the UNet (tokenizer/, text_encoder/ and vae/ trained here, scheduler/); `eval` samples
single frames with diffusers' StableDiffusionPipeline and scores colour and shape; `export` saves a trained pipeline
for committing (fp16 safetensors, DDIM scheduler). `eval` and `export` take a pipeline folder or a
`checkpoint-<step>` folder of `diffusers-video train` (its EMA weights). See `diffusers_video.training.stand_in` and
pipelines/shapes_sd/README.md. Also runs as `python -m diffusers_video.commands.stand_in ...`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..folders import INDEX_NAME, TRAINING_CONFIG_NAME
from ..training.stand_in import (
    build_base_folder,
    evaluate_pipeline,
    export_pipeline,
    format_result,
    pipeline_from_checkpoint,
)
from . import action_subparsers, standalone_main

NAME = "stand-in"


def register(subparsers) -> None:
    sub = action_subparsers(
        subparsers, NAME, "build, score and export the Stable Diffusion 2.1 stand-in", __doc__, run
    )
    base = sub.add_parser("base", help="write tokenizer/, text_encoder/, vae/ (trained here) and scheduler/")
    base.add_argument("--output_dir", required=True)
    base.add_argument("--height", type=int, default=32)
    base.add_argument("--width", type=int, default=32)
    base.add_argument("--text_hidden_size", type=int, default=64)
    base.add_argument("--text_layers", type=int, default=2)
    base.add_argument("--text_steps", type=int, default=600, help="contrastive text-encoder steps (0: random)")
    base.add_argument("--text_num_clips", type=int, default=8000)
    base.add_argument("--vae_steps", type=int, default=1000)
    base.add_argument("--vae_batch_size", type=int, default=32)
    base.add_argument("--vae_learning_rate", type=float, default=1e-3)
    base.add_argument("--vae_num_frames", type=int, default=4096)
    base.add_argument("--seed", type=int, default=0)
    ev = sub.add_parser("eval", help="sample single frames with StableDiffusionPipeline and score colour and shape")
    ev.add_argument("folder")
    ev.add_argument("--num_samples", type=int, default=64)
    ev.add_argument("--split", default="all", choices=("all", "train", "heldout"))
    ev.add_argument("--guidance_scale", type=float, default=4.0)
    ev.add_argument("--steps", type=int, default=25)
    ev.add_argument("--seed", type=int, default=0)
    ex = sub.add_parser("export", help="save a trained pipeline for committing (fp16 safetensors, DDIM scheduler)")
    ex.add_argument("source", help="a pipeline folder (runs/shapes_sd/final) or a checkpoint-<step> folder")
    ex.add_argument("--output_dir", default="pipelines/shapes_sd")
    ex.add_argument("--fp32", action="store_true", help="keep float32 weights")


def _pipeline_folder(folder: Path):
    """A pipeline folder as it is, or a `checkpoint-<step>` folder (with its EMA weights) as a pipeline."""
    if (folder / INDEX_NAME).is_file():
        return folder
    if (folder / TRAINING_CONFIG_NAME).is_file():
        return pipeline_from_checkpoint(folder)
    raise FileNotFoundError(
        f"'{folder}' is neither a pipeline folder (model_index.json) nor a training checkpoint (training_config.json)."
    )


def run(args: argparse.Namespace) -> int:
    """Run `stand-in` from parsed arguments; returns the exit code."""
    if args.action == "base":
        summary = build_base_folder(
            args.output_dir,
            height=args.height,
            width=args.width,
            text_hidden_size=args.text_hidden_size,
            text_layers=args.text_layers,
            vae_steps=args.vae_steps,
            vae_batch_size=args.vae_batch_size,
            vae_learning_rate=args.vae_learning_rate,
            vae_num_frames=args.vae_num_frames,
            text_steps=args.text_steps,
            text_num_clips=args.text_num_clips,
            seed=args.seed,
        )
        print(json.dumps(summary, indent=2))
        return 0
    if args.action == "export":
        print(export_pipeline(_pipeline_folder(Path(args.source)), args.output_dir, fp16=not args.fp32))
        return 0
    result = evaluate_pipeline(
        _pipeline_folder(Path(args.folder)),
        args.num_samples,
        args.split,
        args.guidance_scale,
        args.steps,
        seed=args.seed,
        dtype=torch.float32,
    )
    print(format_result(result))
    print(json.dumps(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m diffusers_video.commands.stand_in ACTION ...`: `diffusers-video stand-in ACTION ...`."""
    return standalone_main(NAME, register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
