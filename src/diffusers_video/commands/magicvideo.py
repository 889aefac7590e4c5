r"""`diffusers-video magicvideo`: the folders of MagicVideo's training.

    diffusers-video magicvideo assemble --keyframes pipelines/magicvideo/demo \
        --interpolation runs/magicvideo_interpolation/final \
        [--super_resolution runs/videogen_super_resolution/final] [--vae pipelines/i2vgen_xl/demo/vae] \
        --output_dir runs/magicvideo_cascade [--fp16]

`assemble` puts an interpolation run and a latent super-resolution run (each trains apart from the keyframe model)
behind the keyframe pipeline folder, optionally with a video decoder: one `MagicVideoPipeline` folder, written
atomically. See `diffusers_video.training.magicvideo_assemble` and docs/magicvideo.md. Also runs as
`python -m diffusers_video.commands.magicvideo ...`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..training.magicvideo_assemble import assemble_pipeline
from . import action_subparsers, standalone_main

NAME = "magicvideo"


def register(subparsers) -> None:
    sub = action_subparsers(subparsers, NAME, "assemble the folders of a MagicVideo pipeline", __doc__, run)
    assemble = sub.add_parser("assemble", help="the keyframe folder and the other stages' runs as one folder")
    assemble.add_argument("--keyframes", required=True, help="the keyframe MagicVideoPipeline folder")
    assemble.add_argument("--interpolation", default=None, help="an interpolation run's final folder")
    assemble.add_argument("--super_resolution", default=None, help="a latent super-resolution run's final folder")
    assemble.add_argument(
        "--vae", default=None, help="a VAE folder to decode with: the keyframe folder's encoder, another decoder"
    )
    assemble.add_argument("--output_dir", required=True)
    assemble.add_argument("--fp16", action="store_true", help="save the UNets' weights in float16")


def run(args: argparse.Namespace) -> int:
    """Run `magicvideo` from parsed arguments; returns the exit code."""
    written = assemble_pipeline(
        args.keyframes, args.output_dir, interpolation_folder=args.interpolation,
        super_resolution_folder=args.super_resolution, vae_folder=args.vae, fp16=args.fp16,
    )  # fmt: skip
    print(f"Wrote {written}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m diffusers_video.commands.magicvideo ACTION ...`: `diffusers-video magicvideo ACTION ...`."""
    return standalone_main(NAME, register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
