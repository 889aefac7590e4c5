#!/usr/bin/env python
"""Convert diffusers' `VideoToVideoSDPipeline` (zeroscope-XL, ModelScope video-to-video) into a
`VideoRefinerPipeline`, offline and exactly.

    python conversion_scripts/convert_video_to_video_to_refiner.py --checkpoint ./zeroscope_v2_XL \\
        --output_dir ./video-refiner

The result refines a video into the frames the source pipeline makes for the same arguments. A thin wrapper: the
command line is `diffusers-video convert video-refiner` (`diffusers_video.commands.convert`), the conversion
`diffusers_video.conversion.video_refiner`, whose functions are importable from here too.
"""

from __future__ import annotations

import sys

from diffusers_video.commands.convert import converter_main
from diffusers_video.conversion.common import ConversionError
from diffusers_video.conversion.video_refiner import RefinerConversionSummary, check_refiner_source_folder, convert

__all__ = ["ConversionError", "RefinerConversionSummary", "check_refiner_source_folder", "convert", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit code (1 with a one-line message on bad input)."""
    return converter_main("video-refiner", argv)


if __name__ == "__main__":
    sys.exit(main())
