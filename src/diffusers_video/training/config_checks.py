"""The type and range checks of the training config sections, shared by `training.config` and the sections kept in
modules of their own (`videogen_config`, ...), so a wrongly typed JSON value fails with its key's name."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

__all__ = ["PREDICTION_TYPES", "_check_types"]

PREDICTION_TYPES = ("epsilon", "v_prediction")


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a (simple) type hint; ints pass as floats, bools never pass as numbers."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return isinstance(value, origin or hint)


def _hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


def _check_types(obj, prefix: str) -> None:
    """Type-check every field of one config dataclass so that a wrongly typed JSON value fails with its name."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not _matches(value, hints[f.name]):
            raise ValueError(f"`{prefix}{f.name}` must be of type {_hint_name(hints[f.name])} but is {value!r}.")
        numbers = typing.get_args(hints[f.name]) or (hints[f.name],)
        if float in numbers and isinstance(value, int) and not isinstance(value, bool):
            setattr(obj, f.name, float(value))  # JSON `1` for a float field
