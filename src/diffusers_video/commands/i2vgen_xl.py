r"""`diffusers-video i2vgen-xl`: the folders of an I2VGen-XL cascade's training.

    diffusers-video i2vgen-xl assemble --base runs/i2vgen_xl_base/final --refiner runs/i2vgen_xl_refiner/final \
        --output_dir pipelines/i2vgen_xl/demo [--fp16] [--vae runs/i2vgen_xl_vae_decoder64/final]

`assemble` puts a refiner run's `refiner_unet/` and `refiner_scheduler/` behind a finished base stage (the refiner
trains on real clips alone, so it can train at the same time as the base, against an exported base checkpoint): one
`I2VGenXLCascadePipeline` folder, written atomically. See `diffusers_video.training.i2vgen_xl` and docs/i2vgen_xl.md.
Also runs as `python -m diffusers_video.commands.i2vgen_xl ...`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..training.i2vgen_xl import assemble_cascade
from . import action_subparsers, standalone_main

NAME = "i2vgen-xl"


def register(subparsers) -> None:
    sub = action_subparsers(subparsers, NAME, "assemble the folders of an I2VGen-XL cascade", __doc__, run)
    assemble = sub.add_parser("assemble", help="a base-stage folder and a refiner folder as one cascade folder")
    assemble.add_argument("--base", required=True, help="the base stage's final folder")
    assemble.add_argument("--refiner", required=True, help="a refiner run's final folder")
    assemble.add_argument("--output_dir", required=True)
    assemble.add_argument("--fp16", action="store_true", help="save the two UNets' weights in float16")
    assemble.add_argument(
        "--vae",
        default=None,
        help="a VAE folder to decode with (the base's encoder, e.g. a decoder fine-tuned at 64x64)",
    )


def run(args: argparse.Namespace) -> int:
    """Run `i2vgen-xl` from parsed arguments; returns the exit code."""
    written = assemble_cascade(args.base, args.refiner, args.output_dir, fp16=args.fp16, vae_folder=args.vae)
    print(f"Wrote {written}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m diffusers_video.commands.i2vgen_xl ACTION ...`: `diffusers-video i2vgen-xl ACTION ...`."""
    return standalone_main(NAME, register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
