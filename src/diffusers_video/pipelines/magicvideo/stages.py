"""What passes between MagicVideo's stages: keyframes -> interpolation -> super-resolution, as pure functions.

Interpolation (the paper: "a separate frame interpolation network inserts new frames between adjacent keyframes"; its
conditioning is not in the text that could be read, so this is our design, after Make-A-Video's and Video LDM's
masked frame interpolation):

- A round with factor `f` turns `n` frames into `(n - 1) * f + 1`: frame `j` of the input lands at index `j * f`, and
  `f - 1` new frames go between each pair of neighbours.
- Each pair of neighbours is one segment of `f + 1` frames, denoised by the interpolation UNet on its own (all segments
  of all videos in one batch): its input is `[noisy sample, context, mask]` along channels, where `context` holds the
  two given frames at indices 0 and `f` (zeros elsewhere) and `mask` is 1 at those indices (0 elsewhere); the UNet has
  `in_channels = 2 * C + 1`.
- The segments are joined back, and the given frames are put back at their indices unchanged.

Super-resolution reuses Imagen Video's SSR conditioning (`pipelines/imagen_video/cascade.py`): the video upsampled
bilinearly, noised to a fixed level (noise-conditioning augmentation) and concatenated to the noisy sample.
"""

from __future__ import annotations

import torch

__all__ = [
    "INTERPOLATION_FACTORS",
    "STAGES",
    "interpolated_frame_count",
    "interpolation_context",
    "interpolation_model_input",
    "join_segments",
    "keyframe_indices",
]

STAGES = ("keyframes", "interpolation", "super_resolution")
"""The stages of a MagicVideo call, in order."""

INTERPOLATION_FACTORS = (2, 4)
"""Frames per round of interpolation: x2 or x4 (the paper's interpolation network; ours allows either)."""


def interpolated_frame_count(num_frames: int, factors: list[int] | tuple[int, ...]) -> int:
    """Frames after interpolation rounds with `factors` from `num_frames` frames: `(n - 1) * f + 1` per round."""
    for factor in factors:
        num_frames = (num_frames - 1) * factor + 1
    return num_frames


def keyframe_indices(num_keyframes: int, factors: list[int] | tuple[int, ...]) -> list[int]:
    """Where the keyframes end up after the interpolation rounds: index `j * prod(factors)` for keyframe `j`."""
    step = 1
    for factor in factors:
        step *= factor
    return [j * step for j in range(num_keyframes)]


def interpolation_context(frames: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The context and mask of every segment of one interpolation round.

    Args:
        frames (`torch.Tensor`): `(B, C, n, h, w)` given frames (latents), `n >= 2`.
        factor (`int`): Frames per round, `f`.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `context` `(B * (n - 1), C, f + 1, h, w)`, segment `b * (n - 1) + s`
        holding frames `s` and `s + 1` of video `b` at indices 0 and `f` and zeros elsewhere, and `mask`
        `(B * (n - 1), 1, f + 1, h, w)`, 1 at indices 0 and `f`.
    """
    batch, channels, num_frames, height, width = frames.shape
    segments = num_frames - 1
    context = frames.new_zeros(batch, segments, channels, factor + 1, height, width)
    context[:, :, :, 0] = frames[:, :, :-1].transpose(1, 2)  # (B, n - 1, C, h, w): the left neighbours
    context[:, :, :, factor] = frames[:, :, 1:].transpose(1, 2)  # the right neighbours
    context = context.reshape(batch * segments, channels, factor + 1, height, width)
    mask = frames.new_zeros(batch * segments, 1, factor + 1, height, width)
    mask[:, :, [0, factor]] = 1.0
    return context, mask


def interpolation_model_input(sample: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`[sample, context, mask]` along channels: `(N, 2 C + 1, f + 1, h, w)`."""
    return torch.cat([sample, context.to(sample.dtype), mask.to(sample.dtype)], dim=1)


def join_segments(segments: torch.Tensor, frames: torch.Tensor, factor: int) -> torch.Tensor:
    """The video of one interpolation round from its denoised segments, with the given frames put back.

    Args:
        segments (`torch.Tensor`): `(B * (n - 1), C, f + 1, h, w)` denoised segments.
        frames (`torch.Tensor`): `(B, C, n, h, w)`: the round's given frames.
        factor (`int`): `f`.

    Returns:
        `torch.Tensor`: `(B, C, (n - 1) * f + 1, h, w)`; frame `j * f` is exactly `frames[:, :, j]`.
    """
    batch, channels, num_frames, height, width = frames.shape
    segments = segments.reshape(batch, num_frames - 1, channels, factor + 1, height, width)
    inner = segments[:, :, :, :factor].permute(0, 2, 1, 3, 4, 5)  # (B, C, n - 1, f, h, w): each segment but its end
    video = inner.reshape(batch, channels, (num_frames - 1) * factor, height, width)
    video = torch.cat([video, frames[:, :, -1:].to(video.dtype)], dim=2)  # (B, C, (n - 1) f + 1, h, w)
    video[:, :, ::factor] = frames.to(video.dtype)  # the given frames, unchanged
    return video
