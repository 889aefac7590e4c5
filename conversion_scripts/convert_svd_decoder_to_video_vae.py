#!/usr/bin/env python
"""Convert SVD's temporal VAE (a diffusers `AutoencoderKLTemporalDecoder` folder) into an `AutoencoderKLVideo`.

    python conversion_scripts/convert_svd_decoder_to_video_vae.py \\
        --checkpoint ./stable-video-diffusion-img2vid-xt --output_dir ./video-vae

`--checkpoint` is the VAE folder or an SVD pipeline folder (its `vae/` is used). The conversion itself, a strict
renaming of the weights plus an identity `post_quant_conv`, is `diffusers_video.conversion.svd_decoder`; the result
decodes the frames SVD's decoder decodes. Works offline.
"""

from __future__ import annotations

import argparse
import sys

from diffusers_video.conversion.svd_decoder import convert_svd_decoder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convert_svd_decoder_to_video_vae.py",
        description="Convert SVD's AutoencoderKLTemporalDecoder into a diffusers-video AutoencoderKLVideo.",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="AutoencoderKLTemporalDecoder folder or SVD pipeline folder."
    )
    parser.add_argument("--output_dir", required=True, help="Folder to save the AutoencoderKLVideo in (new or empty).")
    parser.add_argument("--subfolder", help="The VAE's folder inside --checkpoint (default: the folder or its vae/).")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit code (1 with a one-line message on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        summary = convert_svd_decoder(args.checkpoint, args.output_dir, subfolder=args.subfolder)
    except (ValueError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
