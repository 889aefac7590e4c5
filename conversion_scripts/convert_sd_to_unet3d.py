#!/usr/bin/env python
"""Convert a Stable Diffusion image UNet into a diffusers-video `UNet3DModel` (inflated, equal frame by frame).

The source is either a diffusers folder (a pipeline folder with `unet/`, or a UNet folder with `config.json`) or an
original single-file checkpoint (`.safetensors`; pickled `.ckpt`/`.pt`/`.pth`/`.bin` only with `--allow_pickle`).
Nothing is downloaded: the UNet config of a single file comes from `--config DIR` (a diffusers UNet or pipeline
folder), from `--original_config YAML` (the LDM yaml), or is inferred from the checkpoint's own tensor shapes.

    python conversion_scripts/convert_sd_to_unet3d.py --checkpoint ./stable-diffusion-2-1 --output_dir ./unet3d
    python conversion_scripts/convert_sd_to_unet3d.py --checkpoint v2-1_768-ema-pruned.safetensors \\
        --output_dir ./unet3d --temporal_attention directed --frame_adaptor --scalar_conditions fps

A thin wrapper: the command line is `diffusers-video convert sd` (`diffusers_video.commands.convert`), the conversion
`diffusers_video.conversion.sd` (with `sd_weights` and `sd_config`), whose functions are importable from here too.
"""

from __future__ import annotations

import sys

from diffusers_video.commands.convert import converter_main
from diffusers_video.conversion.common import ConversionError
from diffusers_video.conversion.sd import (
    ConversionSummary,
    check_inflatable,
    convert,
    convert_ldm_state_dict,
    empty_unet2d,
    load_weights_strictly,
)
from diffusers_video.conversion.sd_config import (
    infer_unet_config,
    load_unet_config,
    unet_config_from_original_config,
)
from diffusers_video.conversion.sd_weights import (
    classify_checkpoint_keys,
    load_diffusers_unet_weights,
    load_single_file_unet,
)

__all__ = [
    "ConversionError",
    "ConversionSummary",
    "check_inflatable",
    "classify_checkpoint_keys",
    "convert",
    "convert_ldm_state_dict",
    "empty_unet2d",
    "infer_unet_config",
    "load_diffusers_unet_weights",
    "load_single_file_unet",
    "load_unet_config",
    "load_weights_strictly",
    "main",
    "unet_config_from_original_config",
]


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit code (1 with a one-line message on bad input)."""
    return converter_main("sd", argv)


if __name__ == "__main__":
    sys.exit(main())
