"""What the conversions share: the error they raise for a bad input, how they name keys in it, reading the safetensors
weights of a diffusers model folder, and the atomic write of their output folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..folders import read_json

__all__ = ["ConversionError", "first_keys", "read_safetensors", "safetensors_files", "write_atomically"]


class ConversionError(ValueError):
    """A problem with the user's input (paths, flags, a checkpoint that does not fit): reported as one line."""


def first_keys(keys: list[str]) -> str:
    """`key` or `key` (and N more), for error messages."""
    return f"`{keys[0]}`" + (f" (and {len(keys) - 1} more)" if len(keys) > 1 else "")


def safetensors_files(folder: Path, stem: str) -> list[Path] | None:
    """The safetensors files of a diffusers model folder: `<stem>.safetensors`, or the shards its
    `<stem>.safetensors.index.json` names; None when the folder has neither.

    Raises:
        ConversionError: The index names no `weight_map`.
    """
    single, index = folder / f"{stem}.safetensors", folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return [single]
    if not index.is_file():
        return None
    try:
        return [folder / name for name in sorted(set(read_json(index)["weight_map"].values()))]
    except (KeyError, TypeError, AttributeError) as error:
        raise ConversionError(f"`{index}` is not a safetensors index (no `weight_map`).") from error


def read_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    """Every tensor of `files`, on the CPU; a file that cannot be read is a ConversionError naming it."""
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt", device="cpu") as handle:
                weights.update({key: handle.get_tensor(key) for key in handle.keys()})
        except (SafetensorError, OSError) as error:
            raise ConversionError(f"`{file}` is not a readable safetensors file: {error}") from error
    return weights


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
