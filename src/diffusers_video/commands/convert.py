"""`diffusers-video convert`: run a conversion script of the repository's `conversion_scripts/` folder.

    diffusers-video convert modelscope --checkpoint ./text-to-video-ms-1.7b --output_dir ./videofusion-ms
    diffusers-video convert sd --checkpoint ./stable-diffusion-2-1 --output_dir ./unet3d

Everything after the converter's name goes to the script's own command line (`... convert modelscope --help` shows
its options); the exit code is the script's.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

# The scripts ship with the source repository (`src/diffusers_video/commands/` -> repository root).
SCRIPTS_DIR = Path(__file__).resolve().parents[3] / "conversion_scripts"
CONVERTERS = {
    "modelscope": (
        "convert_modelscope_to_videofusion.py",
        "diffusers' TextToVideoSDPipeline / UNet3DConditionModel (ModelScope) -> VideoFusionPipeline / UNet3DModel",
    ),
    "sd": ("convert_sd_to_unet3d.py", "a Stable Diffusion UNet (diffusers folder or single file) -> UNet3DModel"),
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert checkpoints to diffusers-video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "converter",
        choices=sorted(CONVERTERS),
        help="; ".join(f"{name}: {about}" for name, (_, about) in sorted(CONVERTERS.items())),
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the converter's own arguments (see its --help)")
    parser.set_defaults(func=run)


def load_script(name: str):
    """Import a conversion script of `SCRIPTS_DIR` as a module (its `main(argv)` runs the conversion)."""
    path = SCRIPTS_DIR / CONVERTERS[name][0]
    if not path.is_file():
        raise FileNotFoundError(
            f"The conversion script `{path}` is not there: the converters ship with the diffusers-video source "
            "repository (conversion_scripts/), not with the installed package."
        )
    module_name = path.stem
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look their module up here
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    return sys.modules[module_name]


def run(args: argparse.Namespace) -> int:
    """Run `convert` from parsed arguments; returns the converter's exit code."""
    return load_script(args.converter).main(list(args.args))
