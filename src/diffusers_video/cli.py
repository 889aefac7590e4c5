"""The ``diffusers-video`` command.

Each sub-command lives in its module of ``diffusers_video.commands`` and registers itself through a
``register(subparsers)`` function; the modules are listed in ``_COMMAND_MODULES``. ``main`` turns user mistakes
(``ValueError``, ``TypeError``, ``FileNotFoundError``) into one clear line and exit status 1
(``commands.run_command_line``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .commands import build_parser as build_command_parser
from .commands import run_command_line

# Modules that define sub-commands. Each has `register(subparsers) -> None` and sets `func` on its parser.
_COMMAND_MODULES = [
    "diffusers_video.commands.demo",
    "diffusers_video.commands.bench",
    "diffusers_video.commands.train",
    "diffusers_video.commands.distill",
    "diffusers_video.commands.convert",
    "diffusers_video.commands.generate",
    "diffusers_video.commands.push",
    "diffusers_video.commands.imagen_video",
    "diffusers_video.commands.i2vgen_xl",
    "diffusers_video.commands.magicvideo",
    "diffusers_video.commands.videogen",
    "diffusers_video.commands.videofusion",
    "diffusers_video.commands.stand_in",
    "diffusers_video.commands.stand_in_image",
    "diffusers_video.commands.app",
]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command of `_COMMAND_MODULES`."""
    return build_command_parser(
        (importlib.import_module(name).register for name in _COMMAND_MODULES),
        description="Video diffusion for Hugging Face diffusers: generate, train, distil, convert, benchmark, share.",
    )


def main(argv: list[str] | None = None) -> int:
    """Run `diffusers-video` with `argv` (default: the process's arguments); returns the exit status."""
    return run_command_line(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
