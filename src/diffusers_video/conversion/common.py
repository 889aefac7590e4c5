"""What the conversions share: the error they raise for a bad input, and how they name keys in it."""

from __future__ import annotations

__all__ = ["ConversionError", "first_keys"]


class ConversionError(ValueError):
    """A problem with the user's input (paths, flags, a checkpoint that does not fit): reported as one line."""


def first_keys(keys: list[str]) -> str:
    """`key` or `key` (and N more), for error messages."""
    return f"`{keys[0]}`" + (f" (and {len(keys) - 1} more)" if len(keys) > 1 else "")
