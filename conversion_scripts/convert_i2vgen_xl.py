#!/usr/bin/env python
"""Convert diffusers' I2VGen-XL into diffusers-video, offline and exactly.

The source is a diffusers `I2VGenXLPipeline` folder (the public `ali-vilab/i2vgen-xl` layout) or an `I2VGenXLUNet`
folder alone.

    python conversion_scripts/convert_i2vgen_xl.py --checkpoint ./i2vgen-xl --output_dir ./i2vgen-xl-cascade
    python conversion_scripts/convert_i2vgen_xl.py --checkpoint ./i2vgen-xl/unet --output_dir ./i2vgen-xl-unet
    python conversion_scripts/convert_i2vgen_xl.py --checkpoint ./i2vgen-xl --output_dir ./vgen --vgen_image_path

A pipeline folder becomes an `I2VGenXLCascadePipeline` folder with the outputs of the source pipeline; a UNet folder
becomes `unet/` (`UNet3DModel`) and `content_encoder/` (`I2VGenXLContentEncoder`). A thin wrapper: the command line is
`diffusers-video convert i2vgen-xl` (`diffusers_video.commands.convert`), the conversion
`diffusers_video.conversion.i2vgen_xl`, whose functions are importable from here too.
"""

from __future__ import annotations

import sys

from diffusers_video.commands.convert import converter_main
from diffusers_video.conversion.common import ConversionError
from diffusers_video.conversion.i2vgen_xl import (
    I2VGenXLConversionSummary,
    convert,
    convert_i2vgen_xl_unet_folder,
    i2vgen_xl_config_to_content_encoder,
    i2vgen_xl_config_to_unet3d,
    split_i2vgen_xl_state_dict,
)

__all__ = [
    "ConversionError",
    "I2VGenXLConversionSummary",
    "convert",
    "convert_i2vgen_xl_unet_folder",
    "i2vgen_xl_config_to_content_encoder",
    "i2vgen_xl_config_to_unet3d",
    "main",
    "split_i2vgen_xl_state_dict",
]


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit code (1 with a one-line message on bad input)."""
    return converter_main("i2vgen-xl", argv)


if __name__ == "__main__":
    sys.exit(main())
