r"""`diffusers-video videogen`: the folders of VideoGen's training.

    diffusers-video videogen assemble --video runs/videogen_video/final \
        --flow_upsampler runs/videogen_flow_upsampler/final [--super_resolution runs/videogen_super_resolution/final] \
        [--image_model runs/videogen_reference_image/final] [--vae pipelines/i2vgen_xl/demo/vae] \
        --output_dir pipelines/videogen/demo [--fp16]

`assemble` puts a flow upsampler run and a latent super-resolution run (each trains apart from the video model: on
unlabeled clips, and at the output size) behind the reference-conditioned video model: one `VideoGenPipeline` folder,
written atomically. See `diffusers_video.training.videogen` and docs/videogen.md. Also runs as
`python -m diffusers_video.commands.videogen ...`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..training.videogen import assemble_pipeline
from . import action_subparsers, standalone_main

NAME = "videogen"


def register(subparsers) -> None:
    sub = action_subparsers(subparsers, NAME, "assemble the folders of a VideoGen pipeline", __doc__, run)
    assemble = sub.add_parser("assemble", help="the video model's folder and the other stages' runs as one folder")
    assemble.add_argument("--video", required=True, help="the reference-conditioned video run's final folder")
    assemble.add_argument("--flow_upsampler", default=None, help="a flow upsampler run's final folder")
    assemble.add_argument("--super_resolution", default=None, help="a latent super-resolution run's final folder")
    assemble.add_argument(
        "--image_model", default=None, help="a text-to-image pipeline folder whose UNet makes the reference image"
    )
    assemble.add_argument(
        "--vae",
        default=None,
        help="a VAE folder to decode with: the video folder's encoder, another decoder (VideoGen's enhanced decoder)",
    )
    assemble.add_argument("--output_dir", required=True)
    assemble.add_argument("--fp16", action="store_true", help="save the models' weights in float16")


def run(args: argparse.Namespace) -> int:
    """Run `videogen` from parsed arguments; returns the exit code."""
    written = assemble_pipeline(
        args.video, args.output_dir, flow_upsampler_folder=args.flow_upsampler,
        super_resolution_folder=args.super_resolution, fp16=args.fp16, image_model_folder=args.image_model,
        vae_folder=args.vae,
    )  # fmt: skip
    print(f"Wrote {written}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m diffusers_video.commands.videogen ACTION ...`: `diffusers-video videogen ACTION ...`."""
    return standalone_main(NAME, register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
