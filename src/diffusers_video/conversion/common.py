"""What the conversions share: the error they raise for a bad input, how they name keys in it, reading the safetensors
weights of a diffusers model folder, a pipeline folder converted in memory ([`ConvertedPipeline`]: what the folder
writers save and what `from_pretrained` loads), and the atomic write of their output folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..folders import INDEX_NAME, read_json

__all__ = [
    "ConversionError",
    "ConvertedPipeline",
    "first_keys",
    "read_safetensors",
    "safetensors_files",
    "write_atomically",
]


class ConversionError(ValueError):
    """A problem with the user's input (paths, flags, a checkpoint that does not fit): reported as one line."""


@dataclass
class ConvertedPipeline:
    """A diffusers pipeline folder converted in memory into one of this package's pipelines.

    The folder converters (`diffusers-video convert ...`) save it with [`write`]; `from_pretrained` of our pipelines
    loads the copied components from the source folder and takes `models` as they are (`pipelines.foreign_folders`):
    one conversion, two destinations.

    Args:
        source (`Path`): The source pipeline folder.
        source_class (`str`): Its pipeline class (`model_index.json`'s `_class_name`), e.g. "TextToVideoSDPipeline".
        index (`dict`): The converted pipeline's `model_index.json`.
        models (`dict[str, Any]`): The converted components (models on the CPU in the source's dtype, schedulers), by
            their names in `index`.
        copied (`list[str]`): The components taken from the source folder as they are (same name, same files).
        tensors (`dict[str, int]`): Number of converted tensors per converted model, for the summaries.
    """

    source: Path
    source_class: str
    index: dict[str, Any]
    models: dict[str, Any]
    copied: list[str]
    tensors: dict[str, int] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        """Saves the converted pipeline into the (empty) `folder`: the converted models as safetensors, the copied
        components' folders byte for byte, and `model_index.json`."""
        for name, model in self.models.items():
            if hasattr(model, "state_dict"):
                model.save_pretrained(folder / name, safe_serialization=True)
            else:
                model.save_pretrained(folder / name)
        for name in self.copied:
            shutil.copytree(self.source / name, folder / name)
        (folder / INDEX_NAME).write_text(json.dumps(self.index, indent=2, sort_keys=True) + "\n")

    def description(self) -> str:
        """One line: what was converted into what, and what was taken as it is."""
        target = self.index["_class_name"]
        converted = ", ".join(
            f"{name} -> {type(model).__name__}" + (f" ({self.tensors[name]} tensors)" if name in self.tensors else "")
            for name, model in self.models.items()
        )
        return (
            f"Converted {self.source_class} -> {target} in memory: {converted}; as they are: {', '.join(self.copied)}."
        )


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
