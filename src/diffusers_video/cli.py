"""The ``diffusers-video`` command.

Each sub-command lives in the module that owns its feature and registers itself through a
``register(subparsers)`` function listed in ``_COMMAND_MODULES``; ``main`` turns user mistakes
(``ValueError``, ``TypeError``, ``FileNotFoundError``) into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that define sub-commands. Each has `register(subparsers) -> None` and sets `func` on its parser.
_COMMAND_MODULES = [
    "diffusers_video.commands.demo",
    "diffusers_video.commands.bench",
    "diffusers_video.commands.train",
    "diffusers_video.commands.distill",
    "diffusers_video.commands.convert",
    "diffusers_video.commands.generate",
    "diffusers_video.commands.push",
]


class UserError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusers-video",
        description="Video diffusion for Hugging Face diffusers: generate, train, distil, convert, benchmark, share.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except (UserError, ValueError, TypeError, FileNotFoundError) as error:
        print(f"diffusers-video {args.command}: error: {error}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    # `python -m diffusers_video.cli` runs this file as `__main__`: run the package module's `main`, so that the
    # `UserError` that commands import (`diffusers_video.cli.UserError`) is the class caught there
    from diffusers_video.cli import main as package_main

    sys.exit(package_main())
