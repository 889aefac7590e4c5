#!/usr/bin/env python
"""Convert diffusers' ModelScope text-to-video model into diffusers-video, offline and exactly.

The source is a diffusers `TextToVideoSDPipeline` folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`,
`tokenizer/`, `scheduler/`) or a `UNet3DConditionModel` folder alone (`config.json` and its weights).

    python conversion_scripts/convert_modelscope_to_videofusion.py --checkpoint ./text-to-video-ms-1.7b \\
        --output_dir ./videofusion-ms-1.7b
    python conversion_scripts/convert_modelscope_to_videofusion.py --checkpoint ./text-to-video-ms-1.7b/unet \\
        --output_dir ./unet3d

A UNet folder becomes a `UNet3DModel` folder; a pipeline folder becomes a `VideoFusionPipeline` folder with the
outputs of the source pipeline. A thin wrapper: the command line is `diffusers-video convert modelscope`
(`diffusers_video.commands.convert`), the conversion `diffusers_video.conversion.modelscope`, whose functions are
importable from here too.
"""

from __future__ import annotations

import sys

from diffusers_video.commands.convert import converter_main
from diffusers_video.conversion.common import ConversionError
from diffusers_video.conversion.modelscope import (
    ConversionSummary,
    check_pipeline_folder,
    convert,
    convert_unet3d_condition_state_dict,
    convert_unet_folder,
    ddim_config_to_decomposed,
    expected_unet3d_shapes,
    load_unet_weights,
    unet3d_condition_config_to_unet3d,
    write_atomically,
)

__all__ = [
    "ConversionError",
    "ConversionSummary",
    "check_pipeline_folder",
    "convert",
    "convert_unet3d_condition_state_dict",
    "convert_unet_folder",
    "ddim_config_to_decomposed",
    "expected_unet3d_shapes",
    "load_unet_weights",
    "main",
    "unet3d_condition_config_to_unet3d",
    "write_atomically",
]


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit code (1 with a one-line message on bad input)."""
    return converter_main("modelscope", argv)


if __name__ == "__main__":
    sys.exit(main())
