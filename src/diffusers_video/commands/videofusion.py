"""`diffusers-video videofusion`: the folders of VideoFusion's training.

    diffusers-video videofusion export SOURCE --output_dir pipelines/videofusion/demo [--fp32]

`export` saves a trained `VideoFusionPipeline` folder (the `final/` of a run with a `videofusion` section, or a
checkpoint turned into a folder by `export_checkpoint`) for committing: fp16 safetensors, the run's
training_config.json kept. See `diffusers_video.training.videofusion`. Also runs as
`python -m diffusers_video.commands.videofusion ...`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..training.videofusion import export_videofusion_pipeline
from . import action_subparsers, standalone_main

NAME = "videofusion"


def register(subparsers) -> None:
    sub = action_subparsers(subparsers, NAME, "export a trained VideoFusion pipeline", __doc__, run)
    export = sub.add_parser("export", help="save a trained VideoFusion pipeline for committing (fp16 safetensors)")
    export.add_argument("source")
    export.add_argument("--output_dir", required=True)
    export.add_argument("--fp32", action="store_true", help="keep float32 weights")


def run(args: argparse.Namespace) -> int:
    """Run `videofusion` from parsed arguments; returns the exit code."""
    print(export_videofusion_pipeline(args.source, args.output_dir, fp16=not args.fp32))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m diffusers_video.commands.videofusion ACTION ...`: `diffusers-video videofusion ACTION ...`."""
    return standalone_main(NAME, register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
