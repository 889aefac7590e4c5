"""The input checks of `UNet3DModel.forward`: every bad argument is a `ValueError` or `TypeError` naming it, raised
before any layer runs."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["check_forward_inputs", "check_text", "scalar_tensor"]


def check_forward_inputs(
    unet: Any,
    sample: Any,
    timestep: Any,
    encoder_hidden_states: Any,
    scalar_conds: Any,
    timestep_cond: Any,
    encoder_attention_mask: Any,
    cross_attention_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """The checks of `UNet3DModel.forward`, before any layer runs.

    Raises a `ValueError` (a `TypeError` for a wrong type) naming the argument; returns the timestep and the scalar
    conditions as `(1,)` or `(batch,)` tensors, by name ("timestep" for the first).

    Args:
        unet (`UNet3DModel`): The model (its config, `conv_in`, blocks and `downsample_factor` are read).
        sample, timestep, encoder_hidden_states, scalar_conds, timestep_cond, encoder_attention_mask,
            cross_attention_kwargs: The arguments of `forward`.
    """
    if not isinstance(sample, torch.Tensor) or sample.ndim != 5:
        shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
        error = ValueError if isinstance(sample, torch.Tensor) else TypeError
        raise error(f"`sample` must be a 5D tensor (batch, channels, frames, height, width) but is {shape}.")
    batch, channels, num_frames, height, width = sample.shape
    if 0 in sample.shape:
        raise ValueError(
            f"`sample` must have a batch, frames, height and width of at least 1 but has shape {tuple(sample.shape)}"
            " (batch, channels, frames, height, width)."
        )
    # the dtype the first layer computes in: layerwise casting stores the weights in another one
    registry = getattr(unet.conv_in, "_diffusers_hook", None)
    casting = registry.get_hook("layerwise_casting") if registry is not None else None
    weight_dtype = casting.compute_dtype if casting is not None else unet.conv_in.weight.dtype
    if not sample.is_floating_point() or (
        sample.dtype != weight_dtype
        and weight_dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        and not torch.is_autocast_enabled(sample.device.type)
    ):
        raise TypeError(
            f"`sample` has dtype {sample.dtype} but the UNet's weights have dtype {weight_dtype}: pass a sample "
            "of the weights' dtype (or run under torch.autocast)."
        )
    if channels != unet.config.in_channels:
        raise ValueError(
            f"`sample` has {channels} channels but the UNet expects `in_channels`={unet.config.in_channels}."
        )
    factor = unet.downsample_factor
    if height % factor or width % factor:
        raise ValueError(
            f"The `sample`'s `height` and `width` have to be divisible by {factor} but are {height} and {width}."
        )
    config = unet.config
    if config.frame_position_encoding == "learned" and num_frames > config.max_frames:
        raise ValueError(
            f"`sample` has {num_frames} frames but the learned frame-position encoding supports at most "
            f"{config.max_frames} frames (`max_frames`)."
        )
    if config.frame_adaptor and num_frames > config.max_frames:
        raise ValueError(
            f"`sample` has {num_frames} frames but the frame adaptor has parameters for at most {config.max_frames} "
            "frames (`max_frames`)."
        )
    check_text(unet, encoder_hidden_states, encoder_attention_mask, batch)
    if timestep_cond is not None:
        expected = (batch, config.time_cond_proj_dim)
        if config.time_cond_proj_dim is None:
            raise ValueError("`timestep_cond` was given but the UNet has no `time_cond_proj_dim` to read it.")
        if not isinstance(timestep_cond, torch.Tensor) or tuple(timestep_cond.shape) != expected:
            shape = tuple(timestep_cond.shape) if isinstance(timestep_cond, torch.Tensor) else timestep_cond
            raise ValueError(f"`timestep_cond` must have shape {expected} but is {shape}.")
    if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
        raise TypeError(f"`cross_attention_kwargs` must be a dict or None but is {cross_attention_kwargs!r}.")
    expected = set(config.scalar_conditions)
    if scalar_conds is not None and not isinstance(scalar_conds, dict):
        raise TypeError(f"`scalar_conds` must be a dict of conditions by name but is {scalar_conds!r}.")
    given = set(scalar_conds or {})
    if given != expected:
        raise ValueError(
            f"`scalar_conds` must give exactly the conditions {sorted(expected)} but gives {sorted(given)}."
        )
    scalars = {"timestep": scalar_tensor(timestep, batch, sample.device, "timestep")}
    for name in config.scalar_conditions:
        scalars[name] = scalar_tensor(scalar_conds[name], batch, sample.device, f"scalar_conds['{name}']")
    return scalars


def check_text(unet: Any, encoder_hidden_states: Any, encoder_attention_mask: Any, batch: int) -> None:
    """`encoder_hidden_states` `(batch, tokens >= 1, cross_attention_dim)` (required with cross-attention) and
    `encoder_attention_mask` `(batch, tokens)`."""
    dim = unet.config.cross_attention_dim
    if encoder_hidden_states is None:
        if any(getattr(b, "has_cross_attention", False) for b in [*unet.down_blocks, unet.mid_block]):
            raise ValueError("`encoder_hidden_states` is required: the UNet has cross-attention layers.")
        if unet.config.temporal_text_modulation or unet.config.frame_adaptor_text_modulation:
            raise ValueError(
                "`encoder_hidden_states` is required: the UNet has text-modulated temporal layers "
                "(`temporal_text_modulation=True` or `frame_adaptor_text_modulation=True`)."
            )
        if encoder_attention_mask is not None:
            raise ValueError("`encoder_attention_mask` was given without `encoder_hidden_states`.")
        return
    if not isinstance(encoder_hidden_states, torch.Tensor):
        raise TypeError(
            f"`encoder_hidden_states` must be a (batch, tokens, {dim}) tensor but is a "
            f"{type(encoder_hidden_states).__name__}."
        )
    shape = tuple(encoder_hidden_states.shape)
    if encoder_hidden_states.ndim != 3 or shape[-1] != dim:
        raise ValueError(f"`encoder_hidden_states` must be (batch, tokens, {dim}) but is {shape}.")
    if shape[0] != batch:
        raise ValueError(f"`encoder_hidden_states` has batch size {shape[0]} but `sample` has {batch}.")
    if shape[1] == 0:
        raise ValueError(f"`encoder_hidden_states` must have at least one token but has shape {shape}.")
    if encoder_attention_mask is not None and (
        not isinstance(encoder_attention_mask, torch.Tensor) or tuple(encoder_attention_mask.shape) != shape[:2]
    ):
        mask = (
            tuple(encoder_attention_mask.shape)
            if isinstance(encoder_attention_mask, torch.Tensor)
            else encoder_attention_mask
        )
        raise ValueError(
            f"`encoder_attention_mask` must have shape (batch, tokens) = {shape[:2]}, one entry per token of "
            f"`encoder_hidden_states`, but is {mask}."
        )


def scalar_tensor(value: Any, batch: int, device: torch.device, name: str) -> torch.Tensor:
    """A timestep-like value (number, 0-d, `(1,)` or `(batch,)` tensor) as a finite `(1,)` or `(batch,)` tensor."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.ndarray, torch.Tensor)):
        raise TypeError(f"`{name}` must be a number or a (batch,) tensor but is {value!r}.")
    if isinstance(value, numbers.Real):  # as diffusers' UNets do: `torch.compile` traces a changing number once
        value = torch.tensor([value], device=device)
    else:
        value = torch.as_tensor(value, device=device)
    if value.ndim == 0:
        value = value[None]
    if value.ndim != 1 or value.shape[0] not in (1, batch):
        raise ValueError(
            f"`{name}` must be a number or a (batch,) tensor (batch {batch}) but has shape {tuple(value.shape)}."
        )
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"`{name}` must hold real numbers but has dtype {value.dtype}.")
    # reading the values is a data-dependent branch, which `torch.compile(fullgraph=True)` cannot trace: checked in
    # eager mode only
    if value.is_floating_point() and not torch.compiler.is_compiling() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"`{name}` must be finite but is {value.tolist()}.")
    return value
