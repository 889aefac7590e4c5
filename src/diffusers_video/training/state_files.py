"""Training state that a checkpoint stores without pickles: JSON for numbers and text, safetensors for tensors.

accelerate's `register_for_checkpointing` stores each object's `state_dict()` as a pickle
(`custom_checkpoint_<i>.pkl`) and loads it back with `torch.load(..., weights_only=False)`, which runs whatever code
the file holds. The trainer's own objects (the learning-rate schedule, the loop's position, the EMA weights) are stored
here instead: [`save_objects`] writes `<name>.json` (the state with each tensor replaced by a reference) and, when there
are tensors, `<name>.safetensors`; [`load_objects`] reads them back exactly (floats through JSON's shortest round-trip
form, tensors bit for bit).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["load_objects", "read_state", "save_objects"]

_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def _encode(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {_TENSOR: key}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, tensors, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors, where) for v in value]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and k not in (_TENSOR, _TUPLE, _ITEMS) for k in value):
            return {k: _encode(v, tensors, where) for k, v in value.items()}
        return {_ITEMS: [[_encode(k, tensors, where), _encode(v, tensors, where)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"The checkpointed state `{where}` holds a {type(value).__name__}, which is not stored.")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if set(value) == {_TENSOR}:
            return tensors[value[_TENSOR]]
        if set(value) == {_TUPLE}:
            return tuple(_decode(v, tensors) for v in value[_TUPLE])
        if set(value) == {_ITEMS}:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value[_ITEMS]}
        return {k: _decode(v, tensors) for k, v in value.items()}
    return value


def save_objects(folder: str | Path, objects: Mapping[str, Any]) -> list[Path]:
    """Writes each object's `state_dict()` as `<name>.json` (and `<name>.safetensors` for its tensors).

    Args:
        folder (`str` or `Path`): The (temporary) checkpoint folder.
        objects (`Mapping[str, Any]`): Objects with `state_dict()`, by file name.

    Returns:
        `list[Path]`: The files written.
    """
    folder, written = Path(folder), []
    for name, obj in objects.items():
        tensors: dict[str, torch.Tensor] = {}
        encoded = _encode(obj.state_dict(), tensors, name)
        if tensors:
            save_file(tensors, str(folder / f"{name}.safetensors"))
            written.append(folder / f"{name}.safetensors")
        (folder / f"{name}.json").write_text(json.dumps(encoded, indent=1) + "\n")
        written.append(folder / f"{name}.json")
    return written


def read_state(folder: str | Path, name: str) -> Any:
    """The state dict that [`save_objects`] wrote as `name` in `folder`, tensors included.

    Raises:
        FileNotFoundError: The state file is missing; the message names it.
    """
    folder = Path(folder)
    path = folder / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' is missing: the checkpoint does not hold the state `{name}`.")
    weights = folder / f"{name}.safetensors"
    tensors = load_file(str(weights)) if weights.is_file() else {}
    return _decode(json.loads(path.read_text()), tensors)


def load_objects(folder: str | Path, objects: Mapping[str, Any]) -> None:
    """Restores each object with `load_state_dict` from what [`save_objects`] wrote in `folder` ([`read_state`])."""
    for name, obj in objects.items():
        obj.load_state_dict(read_state(folder, name))
