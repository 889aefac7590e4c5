"""`diffusers-video stand-in-image`: train the stand-in's CLIP image tower against its frozen text tower.

    diffusers-video stand-in-image --text_folder pipelines/shapes_sd --output_dir runs/shapes_sd_image [--steps 1500]

Writes `image_encoder/` (a `CLIPVisionModelWithProjection`), `feature_extractor/` (its `CLIPImageProcessor`) and
`image_encoder_summary.json` (losses, held-out retrieval accuracy against chance) into `--output_dir`: the folder an
I2VGen-XL recipe's `i2vgen_xl.image_encoder` names. See `diffusers_video.training.stand_in_image`. Also runs as
`python -m diffusers_video.commands.stand_in_image ...`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..training.stand_in_image import write_image_encoder_folder
from . import standalone_main

NAME = "stand-in-image"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="train the stand-in's CLIP image tower (for I2VGen-XL) against its frozen text tower",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--text_folder", default="pipelines/shapes_sd", help="a folder with text_encoder/, tokenizer/")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--num_pairs", type=int, default=8000)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--patch_size", type=int, default=4)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `stand-in-image` from parsed arguments; returns the exit code."""
    summary = write_image_encoder_folder(
        args.output_dir, args.text_folder, steps=args.steps, batch_size=args.batch_size,
        learning_rate=args.learning_rate, num_pairs=args.num_pairs, seed=args.seed, image_size=args.image_size,
        patch_size=args.patch_size, hidden_size=args.hidden_size, num_layers=args.num_layers,
    )  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m diffusers_video.commands.stand_in_image ...`: `diffusers-video stand-in-image ...`."""
    return standalone_main(NAME, register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
