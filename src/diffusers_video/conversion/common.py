"""What the conversions share: the error they raise for a bad input, how they name keys in it, and the atomic write
of their output folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["ConversionError", "first_keys", "write_atomically"]


class ConversionError(ValueError):
    """A problem with the user's input (paths, flags, a checkpoint that does not fit): reported as one line."""


def first_keys(keys: list[str]) -> str:
    """`key` or `key` (and N more), for error messages."""
    return f"`{keys[0]}`" + (f" (and {len(keys) - 1} more)" if len(keys) > 1 else "")


def write_atomically(output_dir: Path, write: Callable[[Path], None]) -> None:
    """Run `write(folder)` on a fresh temporary folder next to `output_dir`, then rename it to `output_dir`.

    On any failure the temporary folder is removed and `output_dir` is left as it was.
    """
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ConversionError(f"--output_dir `{output_dir}` already exists and is not an empty folder.")
    parent = output_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".partial", dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o777 & ~umask)  # mkdtemp makes it private; the output is an ordinary folder
        write(temporary)
        if output_dir.exists():
            output_dir.rmdir()  # empty (checked above)
        os.replace(temporary, output_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
