"""Checks of a `UNet3DModel` config: the type and range of every value, and what a saved `config.json` must hold.

`UNet3DModel.__init__` checks every argument here before building a layer, so a config value of the wrong type is a
`TypeError` naming the key and the value (`in_channels: "4"` used to fail deep inside `torch.nn.Conv2d` with "not all
arguments converted during string formatting", and `temporal_text_modulation: "no"` was read as true). Loading a
folder checks its `config.json` the same way and names the file, and refuses unknown keys and missing ones (see
[`check_saved_config`] for the keys that may be missing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from diffusers.models.activations import ACT2CLS

from .temporal import FRAME_POSITION_ENCODINGS, TEMPORAL_ATTENTION_TYPES, TEMPORAL_CONV_PADDINGS
from .unet_3d_blocks import DOWN_BLOCK_TYPES, FRAME_ADAPTORS, MID_BLOCK_TYPES, TEMPORAL_LAYOUTS, UP_BLOCK_TYPES

__all__ = [
    "KEYS_ADDED_LATER",
    "check_config_values",
    "check_saved_config",
    "check_spatial_config",
    "check_temporal_config",
    "check_temporal_layout",
]

KEYS_ADDED_LATER = {
    "temporal_cross_attention": ("8fa82cb", False),
    "temporal_layout": ("dc2b858", "default"),
    "temporal_text_modulation": ("c351964", False),
    "temporal_conv_padding": ("a6b504f", "same"),
    "frame_adaptor_text_modulation": ("a8edb4a", False),
}
"""Config keys added after `UNet3DModel` was first saved (5ee6139), with the commit that added each and its default.

A `config.json` saved before a key existed does not have it, and the key's default is exactly the model such a folder
holds (no temporal cross-attention, the default temporal layout, no text-modulated temporal convolutions, centred
temporal convolutions), so a
missing key of this table takes its default. Every other key has been written by every `save_pretrained` since the
class exists: its absence means a damaged or hand-made config, which is refused.
"""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _one_or_per_block(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: check(value) or (_is_sequence(value) and len(value) > 0 and all(map(check, value)))


def _sequence_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: _is_sequence(value) and all(map(check, value))


_is_bool = lambda value: isinstance(value, bool)  # noqa: E731
_is_str = lambda value: isinstance(value, str)  # noqa: E731
_is_size = lambda value: _is_int(value) or (_is_sequence(value) and len(value) == 2 and all(map(_is_int, value)))  # noqa: E731

# key -> (what it must be, type check); every argument of `UNet3DModel.__init__`
_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "sample_size": ("None, an integer or a pair of integers", _optional(_is_size)),
    "in_channels": ("an integer", _is_int),
    "out_channels": ("an integer", _is_int),
    "center_input_sample": ("True or False", _is_bool),
    "flip_sin_to_cos": ("True or False", _is_bool),
    "freq_shift": ("an integer", _is_int),
    "down_block_types": ("a list of block names", _sequence_of(_is_str)),
    "mid_block_type": ("a block name or None", _optional(_is_str)),
    "up_block_types": ("a list of block names", _sequence_of(_is_str)),
    "only_cross_attention": ("True or False, or one per block", _one_or_per_block(_is_bool)),
    "block_out_channels": ("a list of integers", _sequence_of(_is_int)),
    "layers_per_block": ("an integer or one per block", _one_or_per_block(_is_int)),
    "downsample_padding": ("an integer", _is_int),
    "mid_block_scale_factor": ("a number", _is_number),
    "dropout": ("a number", _is_number),
    "act_fn": ("an activation name", _is_str),
    "norm_num_groups": ("an integer", _is_int),
    "norm_eps": ("a number", _is_number),
    "cross_attention_dim": ("an integer", _is_int),
    "transformer_layers_per_block": ("an integer or one per block", _one_or_per_block(_is_int)),
    "attention_head_dim": ("an integer or one per block", _one_or_per_block(_is_int)),
    "num_attention_heads": ("None, an integer or one per block", _optional(_one_or_per_block(_is_int))),
    "use_linear_projection": ("True or False", _is_bool),
    "upcast_attention": ("True or False", _is_bool),
    "resnet_time_scale_shift": ("a string", _is_str),
    "time_embedding_dim": ("None or an integer", _optional(_is_int)),
    "timestep_post_act": ("None or an activation name", _optional(_is_str)),
    "time_cond_proj_dim": ("None or an integer", _optional(_is_int)),
    "conv_in_kernel": ("an integer", _is_int),
    "conv_out_kernel": ("an integer", _is_int),
    "temporal_conv": ("True or False", _is_bool),
    "temporal_conv_kernel_size": ("an integer", _is_int),
    "temporal_attention": ("None or a string", _optional(_is_str)),
    "temporal_attention_head_dim": ("an integer", _is_int),
    "frame_position_encoding": ("None or a string", _optional(_is_str)),
    "max_frames": ("an integer", _is_int),
    "frame_adaptor": ("True, False or 'conv'", lambda value: _is_bool(value) or _is_str(value)),
    "temporal_cross_attention": ("True or False", _is_bool),
    "scalar_conditions": ("a list of names", _sequence_of(_is_str)),
    "temporal_layout": ("a string", _is_str),
    "temporal_text_modulation": ("True or False", _is_bool),
    "frame_adaptor_text_modulation": ("True or False", _is_bool),
    "temporal_conv_padding": ("a string", _is_str),
}


def _values(value: Any) -> list:
    return list(value) if _is_sequence(value) else [value]


def _names(keys: list[str]) -> str:
    return ", ".join(f"`{key}`" for key in keys)


def _where(source: str | None) -> str:
    return f" (in {source})" if source else ""


def check_config_values(config: Mapping[str, Any], source: str | None = None) -> None:
    """Raises naming the key and the value (and `source`, e.g. the config file) when a `UNet3DModel` config value has
    the wrong type or a value no model can be built with.

    Keys not in `config` are not checked (their defaults are valid). Block types, attention kinds and layouts are
    checked by `UNet3DModel` itself, once the types are right.

    Raises:
        TypeError: A value of the wrong type, e.g. `in_channels: "4"` or `temporal_text_modulation: "no"`.
        ValueError: A count below 1, an even kernel size, a dropout outside [0, 1), `norm_num_groups` that does not
            divide every block's channels, an unknown activation.
    """
    for key, (what, check) in _TYPES.items():
        if key in config and not check(config[key]):
            value = config[key]
            raise TypeError(f"`{key}` must be {what} but is {value!r} (a {type(value).__name__}){_where(source)}.")

    def refuse(key: str, what: str) -> None:
        raise ValueError(f"`{key}` must be {what} but is {config[key]!r}{_where(source)}.")

    for key in ("in_channels", "out_channels", "norm_num_groups", "cross_attention_dim", "max_frames",
                "temporal_attention_head_dim", "block_out_channels", "layers_per_block",
                "transformer_layers_per_block", "attention_head_dim", "num_attention_heads", "time_embedding_dim",
                "time_cond_proj_dim"):  # fmt: skip
        if config.get(key) is not None and any(value < 1 for value in _values(config[key])):
            refuse(key, "at least 1" if not _is_sequence(config[key]) else "integers of at least 1")
    for key in ("conv_in_kernel", "conv_out_kernel", "temporal_conv_kernel_size"):
        if key in config and (config[key] < 1 or config[key] % 2 == 0):
            refuse(key, "a positive odd number")
    if config.get("downsample_padding", 0) < 0:
        refuse("downsample_padding", "at least 0")
    if not 0 <= config.get("dropout", 0.0) < 1:
        refuse("dropout", "in [0, 1)")
    if config.get("norm_eps", 1.0) <= 0:
        refuse("norm_eps", "a number > 0")
    for key in ("act_fn", "timestep_post_act"):
        if config.get(key) is not None and config[key] not in ACT2CLS:
            refuse(key, f"one of {sorted(ACT2CLS)}")
    groups, channels = config.get("norm_num_groups"), config.get("block_out_channels")
    if groups is not None and channels is not None and any(c % groups for c in channels):
        raise ValueError(
            f"`norm_num_groups` ({groups}) must divide every entry of `block_out_channels` {list(channels)}"
            f"{_where(source)}."
        )


def check_saved_config(config: Mapping[str, Any], expected: set[str], source: str) -> None:
    """Checks a `config.json` read from `source` before a `UNet3DModel` is built from it.

    Args:
        config (`Mapping[str, Any]`): The file's contents.
        expected (`set[str]`): The arguments of `UNet3DModel.__init__`.
        source (`str`): The file, for the messages.

    Raises:
        ValueError: An unknown key (a typo would otherwise be ignored with a warning and load another model), or a
            missing key other than those of `KEYS_ADDED_LATER` (which take their defaults: what folders saved before
            they existed meant).
        TypeError: A value of the wrong type (see [`check_config_values`]).
    """
    unknown = sorted(key for key in config if not key.startswith("_") and key not in expected)
    if unknown:
        raise ValueError(
            f"{_names(unknown)} in {source} {'is not a config key' if len(unknown) == 1 else 'are not config keys'}"
            " of `UNet3DModel` (a misspelt key would otherwise be ignored and its default used)."
        )
    missing = sorted(expected - set(config) - set(KEYS_ADDED_LATER))
    if missing:
        raise ValueError(
            f"{_names(missing)} {'is' if len(missing) == 1 else 'are'} missing from {source}, which every saved "
            "`UNet3DModel` config has: the file is damaged or was not written by `save_pretrained`."
        )
    check_config_values(config, source)


def check_spatial_config(
    down_block_types, up_block_types, mid_block_type, block_out_channels, cross_attention_dim,
    resnet_time_scale_shift,
) -> None:  # fmt: skip
    """The spatial block layout: known block types, matching lengths, one cross-attention width."""
    for block_type in down_block_types:
        if block_type not in DOWN_BLOCK_TYPES:
            raise ValueError(f"`down_block_types` may contain {DOWN_BLOCK_TYPES} but contains {block_type!r}.")
    for block_type in up_block_types:
        if block_type not in UP_BLOCK_TYPES:
            raise ValueError(f"`up_block_types` may contain {UP_BLOCK_TYPES} but contains {block_type!r}.")
    if mid_block_type is not None and mid_block_type not in MID_BLOCK_TYPES:
        raise ValueError(f"`mid_block_type` must be one of {MID_BLOCK_TYPES} or None but is {mid_block_type!r}.")
    if not (len(down_block_types) == len(up_block_types) == len(block_out_channels)):
        raise ValueError(
            f"`down_block_types` ({len(down_block_types)}), `up_block_types` ({len(up_block_types)}) and "
            f"`block_out_channels` ({len(block_out_channels)}) must have the same length."
        )
    if not isinstance(cross_attention_dim, int):
        raise ValueError(f"`cross_attention_dim` must be one int for all blocks but is {cross_attention_dim!r}.")
    if resnet_time_scale_shift not in ("default", "scale_shift"):
        raise ValueError(
            f"`resnet_time_scale_shift` must be 'default' or 'scale_shift' but is {resnet_time_scale_shift!r}."
        )


def check_temporal_config(
    temporal_attention, frame_position_encoding, max_frames, scalar_conditions, frame_adaptor=False,
    temporal_conv_padding="same",
) -> None:  # fmt: skip
    """The temporal options: known attention types, encodings, frame adaptors and temporal convolution paddings,
    `max_frames` >= 1, scalar condition names."""
    if frame_adaptor not in FRAME_ADAPTORS:
        raise ValueError(f"`frame_adaptor` must be one of {FRAME_ADAPTORS} but is {frame_adaptor!r}.")
    if temporal_conv_padding not in TEMPORAL_CONV_PADDINGS:
        raise ValueError(
            f"`temporal_conv_padding` must be one of {TEMPORAL_CONV_PADDINGS} but is {temporal_conv_padding!r}."
        )
    if temporal_attention is not None and temporal_attention not in TEMPORAL_ATTENTION_TYPES:
        raise ValueError(
            f"`temporal_attention` must be one of {TEMPORAL_ATTENTION_TYPES} or None but is {temporal_attention!r}."
        )
    if frame_position_encoding is not None and frame_position_encoding not in FRAME_POSITION_ENCODINGS:
        raise ValueError(
            f"`frame_position_encoding` must be one of {FRAME_POSITION_ENCODINGS} or None but is "
            f"{frame_position_encoding!r}."
        )
    if max_frames < 1:
        raise ValueError(f"`max_frames` must be at least 1 but is {max_frames}.")
    for name in scalar_conditions:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"`scalar_conditions` must be Python identifiers but contains {name!r}.")
    if len(set(scalar_conditions)) != len(scalar_conditions):
        raise ValueError(f"`scalar_conditions` has duplicate names: {list(scalar_conditions)}.")


def check_temporal_layout(
    temporal_layout, frame_position_encoding, temporal_attention, temporal_attention_head_dim,
    block_out_channels, temporal_conv_padding="same",
) -> None:  # fmt: skip
    """The temporal layout and, for ModelScope's, the options it can take."""
    if temporal_layout not in TEMPORAL_LAYOUTS:
        raise ValueError(f"`temporal_layout` must be one of {TEMPORAL_LAYOUTS} but is {temporal_layout!r}.")
    if temporal_layout != "modelscope":
        return
    if temporal_conv_padding != "same":
        raise ValueError(
            "`temporal_conv_padding` must be 'same' with `temporal_layout='modelscope'` (diffusers' temporal "
            f"convolutions are centred) but is {temporal_conv_padding!r}."
        )
    if frame_position_encoding is not None:
        raise ValueError(
            "`frame_position_encoding` must be None with `temporal_layout='modelscope'` (diffusers' temporal "
            f"transformers have no frame-position encoding) but is {frame_position_encoding!r}."
        )
    if temporal_attention not in ("bidirectional", None):
        raise ValueError(
            "`temporal_attention` must be 'bidirectional' or None with `temporal_layout='modelscope'` (its "
            f"GroupNorms pool all frames, so no frame could ignore later ones) but is {temporal_attention!r}."
        )
    if temporal_attention is not None and not 1 <= temporal_attention_head_dim <= min(block_out_channels):
        raise ValueError(
            "`temporal_attention_head_dim` must be between 1 and the smallest of `block_out_channels` "
            f"({min(block_out_channels)}) with `temporal_layout='modelscope'` but is "
            f"{temporal_attention_head_dim}."
        )
