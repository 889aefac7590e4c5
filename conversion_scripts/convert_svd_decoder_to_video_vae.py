#!/usr/bin/env python
"""Convert SVD's temporal VAE (a diffusers `AutoencoderKLTemporalDecoder` folder) into an `AutoencoderKLVideo`.

    python conversion_scripts/convert_svd_decoder_to_video_vae.py \\
        --checkpoint ./stable-video-diffusion-img2vid-xt --output_dir ./video-vae

`--checkpoint` is the VAE folder or an SVD pipeline folder (its `vae/` is used). The conversion itself, a strict
renaming of the weights plus an identity `post_quant_conv`, is `diffusers_video.conversion.svd_decoder`; the result
decodes the frames SVD's decoder decodes. Works offline.

A thin wrapper: the command line is `diffusers-video convert svd-decoder` (`diffusers_video.commands.convert`).
"""

from __future__ import annotations

import sys

from diffusers_video.commands.convert import converter_main
from diffusers_video.conversion.svd_decoder import convert_svd_decoder  # noqa: F401 (importable from here)


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit code (1 with a one-line message on bad input)."""
    return converter_main("svd-decoder", argv)


if __name__ == "__main__":
    sys.exit(main())
