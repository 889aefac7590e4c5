"""The `diffusers-video` sub-commands, one module per command; every `main` of the package lives in this folder.

Each command module has `register(subparsers)`, which adds its parser and sets `func` on it (called with the parsed
arguments, it returns the exit status). `diffusers_video.cli` builds the whole command line from the modules it lists;
the tools of one paper's training (`imagen_video`, `videofusion`, `stand_in`) also run alone as
`python -m diffusers_video.commands.<name>`, through [`standalone_main`].

User mistakes and failing disks are errors of the types in [`USER_ERRORS`]: [`run_command_line`] prints them as one line,
`diffusers-video <command>: error: <message>`, and exits with status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "PROG",
    "USER_ERRORS",
    "OneLineArgumentParser",
    "UsageError",
    "action_subparsers",
    "build_parser",
    "run_command_line",
    "standalone_main",
]

PROG = "diffusers-video"
USER_ERRORS = (ValueError, TypeError, OSError)
"""The errors a command raises for a user's mistake or the machine's state (a bad value, a missing file, a read-only
folder, a full disk): one line naming the path and the cause, exit status 1."""


class UsageError(ValueError):
    """A command line that does not parse (an unknown option, a value of the wrong type or not among the choices)."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class OneLineArgumentParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose parsing errors are [`UsageError`]s, which [`run_command_line`] prints as one line with
    exit status 1 like every other user mistake (argparse alone prints the usage and exits with status 2). Its
    sub-command parsers are of this class too (argparse gives them the class of their parent)."""

    def error(self, message: str):
        raise UsageError(self.prog, message)


def action_subparsers(subparsers, name: str, help: str, description: str | None, func: Callable):
    """Add the command `name`, whose first argument is an ACTION (`diffusers-video videogen assemble ...`), its module
    docstring as the description (kept as written) and `func` run with the parsed arguments; returns the
    subparsers on which each action adds its own parser."""
    parser = subparsers.add_parser(
        name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(func=func)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def build_parser(registers: Iterable[Callable], description: str | None = None) -> argparse.ArgumentParser:
    """The `diffusers-video` parser with the sub-commands that `registers` (`register(subparsers)` functions) add."""
    parser = OneLineArgumentParser(prog=PROG, description=description)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in registers:
        register(subparsers)
    return parser


def run_command_line(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: the process's arguments) and run the chosen command; returns the exit status.

    No command prints the help (status 2); a user mistake ([`USER_ERRORS`]) is one line on stderr (status 1).
    """
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(f"{error.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except USER_ERRORS as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 1
    return int(result or 0)


def standalone_main(name: str, register: Callable, argv: Sequence[str] | None = None) -> int:
    """Run the command `name` alone (`python -m diffusers_video.commands.<module> ...`), as `diffusers-video name ...`
    runs it; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command_line(build_parser([register]), [name, *argv])
