"""`FlowTemporalUpsampler`: VideoGen's flow-based temporal upsampling of latent videos, x2 per call.

What is the paper's, and what is ours:

- VideoGen (Li et al. 2023, https://huggingface.co/papers/2309.00398) states that a "flow-based temporal upsampling
  step" raises the frame rate of the latent video before the video decoder, in x2 steps. Its flow estimator, its
  blending and its losses were not available (no public code, the paper body could not be read).
- Ours, after RIFE and Super SloMo: a small coarse-to-fine CNN reads two neighbouring latent frames and estimates the
  two *intermediate* flows `flow_t0`, `flow_t1` (from the middle time to each frame); both frames are backward-warped
  to the middle time with `grid_sample`; a refinement CNN reads the frames, the warped frames and the flows and
  predicts a blend mask `m` and a residual `r`:

      middle = m * warp(x0, flow_t0) + (1 - m) * warp(x1, flow_t1) + r

- All special initialisation is in `initialize_weights`: the flow head, the mask logit and the residual start at
  zero, so a fresh model is linear blending `(x0 + x1) / 2` exactly, and given the true flows (`flows=`) it is exact
  warping: a translated frame pair reproduces the middle frame.

Flows are in latent pixels, channels `(dx, dy)`: `warp(x, flow)(p) = x(p + flow(p))`, bilinear, out-of-frame reads
clamped to the border. Warping is exact for integer flows on frames whose width and height are powers of two (the
normalised `grid_sample` coordinates are then exact binary fractions).

A call on `(B, C, F, h, w)` makes `(B, C, 2F - 1, h, w)`: the given frames stay at the even indices, the made ones go
between them. `upsample(video, factor)` runs `log2(factor)` rounds: `factor` 1, 2, 4 or 8 (VideoGen's "up to 8x").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .saving import SafeFolderMixin

__all__ = [
    "TEMPORAL_UPSAMPLING_FACTORS",
    "FlowTemporalUpsampler",
    "FlowTemporalUpsamplerOutput",
    "backward_warp",
    "check_temporal_upsampling",
    "upsampled_frame_count",
]

TEMPORAL_UPSAMPLING_FACTORS = (1, 2, 4, 8)
"""Temporal upsampling factors: powers of two up to 8 (VideoGen's "up to 8x"); 1 runs no round."""

PADDING_MODES = ("border", "zeros", "reflection")


def check_temporal_upsampling(factor, name: str = "temporal_upsampling") -> int:
    """The number of x2 rounds of a temporal upsampling factor; a `ValueError` naming it unless 1, 2, 4 or 8."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor not in TEMPORAL_UPSAMPLING_FACTORS:
        raise ValueError(
            f"`{name}` must be a power of two up to 8 (one of {TEMPORAL_UPSAMPLING_FACTORS}; x2 per round) but is "
            f"{factor!r}."
        )
    return factor.bit_length() - 1


def upsampled_frame_count(num_frames: int, factor: int) -> int:
    """Frames after upsampling by `factor`: each x2 round makes `2n - 1` from `n`, so `(n - 1) * factor + 1`."""
    return (num_frames - 1) * factor + 1


def backward_warp(frames: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Backward warping: `out(p) = frames(p + flow(p))`, bilinear.

    Args:
        frames (`torch.Tensor`): `(N, C, h, w)`.
        flow (`torch.Tensor`): `(N, 2, h, w)` in pixels, channels `(dx, dy)`.
        padding_mode (`str`, defaults to "border"): `grid_sample`'s reading outside the frame.

    Returns:
        `torch.Tensor`: `(N, C, h, w)`.
    """
    if frames.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[0] != frames.shape[0]:
        raise ValueError(
            f"`frames` must be (N, C, h, w) and `flow` (N, 2, h, w) but have shapes {tuple(frames.shape)} and "
            f"{tuple(flow.shape)}."
        )
    if flow.shape[2:] != frames.shape[2:]:
        raise ValueError(f"`flow` {tuple(flow.shape)} must have the size of `frames` {tuple(frames.shape)}.")
    _, _, height, width = frames.shape
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    x = xs + flow[:, 0]  # (N, h, w) source column of each pixel
    y = ys + flow[:, 1]
    # pixel centres to grid_sample's [-1, 1] (align_corners=False): exact binary fractions for power-of-two sizes
    grid = torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], dim=-1)  # (N, h, w, 2)
    return F.grid_sample(
        frames, grid.to(frames.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False
    )


@dataclass
class FlowTemporalUpsamplerOutput(BaseOutput):
    """The output of [`FlowTemporalUpsampler`].

    Args:
        sample (`torch.Tensor`): `(B, C, 2F - 1, h, w)`: the given frames at even indices, the made ones between.
        middle (`torch.Tensor`): `(B, C, F - 1, h, w)`: the made frames alone.
        flows (`torch.Tensor`): `(B, 4, F - 1, h, w)`: `flow_t0` (channels 0, 1) and `flow_t1` (2, 3) in pixels.
        mask (`torch.Tensor`): `(B, 1, F - 1, h, w)`: the weight of the first frame's warp, in [0, 1].
        residual (`torch.Tensor`): `(B, C, F - 1, h, w)`: added to the blend.
    """

    sample: torch.Tensor
    middle: torch.Tensor
    flows: torch.Tensor
    mask: torch.Tensor
    residual: torch.Tensor


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


class FlowTemporalUpsampler(SafeFolderMixin, ModelMixin, ConfigMixin):
    r"""Flow-based x2 temporal upsampling of latent videos (see the module docstring).

    Args:
        in_channels (`int`, defaults to 4): Channels of the latents (the VAE's `latent_channels`).
        block_out_channels (`tuple[int, ...]`, defaults to (32, 64)): Channels of the flow estimator's levels; level
            `i` runs at `1 / 2**i` of the latent size (coarse to fine, a U-Net without normalisation).
        refine_channels (`int`, defaults to 32): Channels of the refinement CNN (mask and residual).
        padding_mode (`str`, defaults to "border"): How warping reads outside the frame: "border", "zeros" or
            "reflection".
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        block_out_channels: tuple[int, ...] = (32, 64),
        refine_channels: int = 32,
        padding_mode: str = "border",
    ):
        super().__init__()
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"`padding_mode` must be one of {PADDING_MODES} but is {padding_mode!r}.")
        if not block_out_channels or any(int(c) < 1 for c in block_out_channels):
            raise ValueError(f"`block_out_channels` must be positive channel counts but is {block_out_channels!r}.")
        channels = [int(c) for c in block_out_channels]
        self.act = nn.SiLU()
        # flow estimator: [x0, x1] -> (flow_t0, flow_t1)
        self.flow_down = nn.ModuleList()
        previous = 2 * in_channels
        for level, width in enumerate(channels):
            self.flow_down.append(nn.ModuleList([_conv(previous, width, 1 if level == 0 else 2), _conv(width, width)]))
            previous = width
        self.flow_up = nn.ModuleList(
            [
                _conv(channels[level] + channels[level - 1], channels[level - 1])
                for level in range(len(channels) - 1, 0, -1)
            ]
        )
        self.flow_out = _conv(channels[0], 4)
        # refinement: [x0, x1, warped0, warped1, flows] -> (mask logit, residual)
        self.refine_in = _conv(4 * in_channels + 4, refine_channels)
        self.refine_mid = _conv(refine_channels, refine_channels)
        self.refine_out = _conv(refine_channels, 1 + in_channels)
        self.initialize_weights()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' `ModelMixin.from_pretrained`, but strict: a missing or unexpected weight is a `ValueError` that
        names it (diffusers only warns, and would leave a missing head at its zero initialisation)."""
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        for kind in ("unexpected_keys", "missing_keys"):
            keys = sorted(info.get(kind) or [])
            if keys:
                more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
                raise ValueError(
                    f"`{pretrained_model_name_or_path}` does not hold the weights of its FlowTemporalUpsampler config: "
                    f"{kind.replace('_', ' ')} `{keys[0]}`{more}."
                )
        return (model, info) if output_loading_info else model

    def initialize_weights(self) -> None:
        """Zero flow, mask logit and residual: a fresh model is linear blending, and exact warping given the flows."""
        for head in (self.flow_out, self.refine_out):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    # ------------------------------------------------------------------ parts

    def estimate_flows(self, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:
        """The intermediate flows `(N, 4, h, w)` (`flow_t0`, `flow_t1`) of frame pairs `(N, C, h, w)`."""
        x = torch.cat([frame0, frame1], dim=1)  # (N, 2C, h, w)
        skips = []
        for first, second in self.flow_down:
            x = self.act(second(self.act(first(x))))  # (N, c_i, h / 2**i, w / 2**i)
            skips.append(x)
        for conv, skip in zip(self.flow_up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.act(conv(torch.cat([x, skip], dim=1)))  # (N, c_{i-1}, ...) one level finer
        return self.flow_out(x)  # (N, 4, h, w)

    def interpolate(
        self, frame0: torch.Tensor, frame1: torch.Tensor, flows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The middle frames of pairs `(N, C, h, w)`; `flows` `(N, 4, h, w)` bypass the estimator.

        Returns:
            `tuple`: middle frames `(N, C, h, w)`, flows `(N, 4, h, w)`, mask `(N, 1, h, w)`, residual `(N, C, h, w)`.
        """
        if flows is None:
            flows = self.estimate_flows(frame0, frame1)
        flows = flows.to(frame0.dtype)
        padding = self.config.padding_mode
        warped0 = backward_warp(frame0, flows[:, :2], padding)  # (N, C, h, w) at the middle time
        warped1 = backward_warp(frame1, flows[:, 2:], padding)
        x = torch.cat([frame0, frame1, warped0, warped1, flows], dim=1)  # (N, 4C + 4, h, w)
        x = self.refine_out(self.act(self.refine_mid(self.act(self.refine_in(x)))))  # (N, 1 + C, h, w)
        mask, residual = torch.sigmoid(x[:, :1]), x[:, 1:]
        middle = mask * warped0 + (1 - mask) * warped1 + residual
        return middle, flows, mask, residual

    # ------------------------------------------------------------------ video

    def forward(
        self, sample: torch.Tensor, flows: torch.Tensor | None = None, return_dict: bool = True
    ) -> FlowTemporalUpsamplerOutput | tuple:
        r"""One x2 round: a frame between every two neighbouring frames.

        Args:
            sample (`torch.Tensor`): Latent video `(B, C, F, h, w)`, `F >= 2`.
            flows (`torch.Tensor`, *optional*): `(B, 4, F - 1, h, w)` intermediate flows to use instead of the
                estimator's (e.g. the true motion, for an upper bound).
            return_dict (`bool`, defaults to True): Return a [`FlowTemporalUpsamplerOutput`] instead of a tuple.

        Returns:
            [`FlowTemporalUpsamplerOutput`] or `tuple` of its fields in order.
        """
        if sample.ndim != 5 or sample.shape[1] != self.config.in_channels or sample.shape[2] < 2:
            raise ValueError(
                f"`sample` must be a latent video (batch, {self.config.in_channels}, frames >= 2, height, width) but "
                f"has shape {tuple(sample.shape)}."
            )
        batch, channels, frames, height, width = sample.shape
        pairs = frames - 1

        def flat(video: torch.Tensor) -> torch.Tensor:  # (B, C', F - 1, h, w) -> (B (F - 1), C', h, w)
            return video.transpose(1, 2).reshape(batch * pairs, video.shape[1], height, width)

        def unflat(x: torch.Tensor) -> torch.Tensor:  # (B (F - 1), C', h, w) -> (B, C', F - 1, h, w)
            return x.reshape(batch, pairs, x.shape[1], height, width).transpose(1, 2)

        if flows is not None and tuple(flows.shape) != (batch, 4, pairs, height, width):
            raise ValueError(
                f"`flows` must have shape {(batch, 4, pairs, height, width)} but has shape {tuple(flows.shape)}."
            )
        middle, flows, mask, residual = self.interpolate(
            flat(sample[:, :, :-1]), flat(sample[:, :, 1:]), None if flows is None else flat(flows)
        )
        middle, flows, mask, residual = unflat(middle), unflat(flows), unflat(mask), unflat(residual)
        # interleave: given frames at even indices, made ones at odd indices
        video = torch.stack([sample[:, :, :-1], middle], dim=3).reshape(batch, channels, 2 * pairs, height, width)
        video = torch.cat([video, sample[:, :, -1:]], dim=2)  # (B, C, 2F - 1, h, w)
        if not return_dict:
            return video, middle, flows, mask, residual
        return FlowTemporalUpsamplerOutput(sample=video, middle=middle, flows=flows, mask=mask, residual=residual)

    def upsample(self, sample: torch.Tensor, factor: int = 2) -> torch.Tensor:
        """`log2(factor)` x2 rounds: `(B, C, F, h, w)` -> `(B, C, (F - 1) * factor + 1, h, w)`.

        The frames of every round stay at their indices, so `out[:, :, ::factor]` is `sample` unchanged.
        """
        for _ in range(check_temporal_upsampling(factor, "factor")):
            sample = self(sample).sample
        return sample
