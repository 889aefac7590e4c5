"""MagicVideo's frame adaptors: per-frame learned scales and shifts that adapt an image UNet to video.

MagicVideo (Zhou et al. 2022, https://huggingface.co/papers/2211.11018) shares every 2D convolution of the image
model across the frames of a clip and follows it with "a unique adaptor for each 2D convolution to learn
frame-specific features", `z^i = S^i * Conv2d(z^i) + B^i` for frame `i`; frames of a clip are semantically similar,
so a few per-frame parameters that move the features' mean and variance take the place of a 1D temporal convolution.
Whether `S` and `B` are scalars or per channel the paper does not say; here they are per frame and channel.

- `FrameAdaptor`: one such modulation, `x_f * (1 + scale_f) + shift_f`, identity at init (`scale = shift = 0`).
- `AdaptedResnetBlock2D`: diffusers' `ResnetBlock2D` with the two adaptors of `ConvFrameAdaptors`, after its
  `conv1` and after its `conv2` (`UNet3DModel(frame_adaptor="conv")`); the resnet keeps the parameter names of
  `ResnetBlock2D` (Stable Diffusion weights load unrenamed), and being the module that is called, it keeps working
  with diffusers' and accelerate's hooks (offloading, device maps, layerwise casting). `frame_adaptor=True` is the
  coarser variant that existed first: one adaptor after each whole resnet.
"""

from __future__ import annotations

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

__all__ = [
    "FRAME_BASIS",
    "AdaptedResnetBlock2D",
    "ConvFrameAdaptors",
    "FrameAdaptor",
    "frame_basis",
    "text_frame_modulation",
]

# Functions of the frame position that text-modulated temporal convolutions and frame adaptors combine (see
# `frame_basis`).
FRAME_BASIS = 3


def frame_basis(num_frames: int, device=None, dtype=None) -> torch.Tensor:
    """`(num_frames, 3)`: 1, the centred position `u` in [-1, 1] and `u**2 - 1/3` (zero mean over [-1, 1]) of each
    frame. A single frame has `u = 0`."""
    if num_frames > 1:
        u = torch.linspace(-1.0, 1.0, num_frames, device=device, dtype=torch.float32)
    else:
        u = torch.zeros(1, device=device, dtype=torch.float32)
    return torch.stack([torch.ones_like(u), u, u**2 - 1.0 / 3.0], dim=1).to(dtype)


def text_frame_modulation(
    cond_proj: nn.Linear, cond: torch.Tensor | None, batch: int, num_frames: int, like: torch.Tensor, layer: str
) -> torch.Tensor:
    """`(B, F, 2C)`: the per-frame `(scale, shift)` of a text-modulated layer, `cond_proj(cond)` combined with the
    `frame_basis` of the frame positions (`cond_proj` maps `(B, D)` to `2 C FRAME_BASIS`; `like` gives the dtype and
    device). Raises a `ValueError` naming `layer` when `cond` is not `(batch, D)`."""
    cond_dim = cond_proj.in_features
    if cond is None or cond.shape != (batch, cond_dim):
        shape = None if cond is None else tuple(cond.shape)
        raise ValueError(
            f"This {layer} is text-modulated: `cond` must be `(batch={batch}, {cond_dim})`, one per video, but is "
            f"{shape}."
        )
    coefficients = cond_proj(cond.to(like.dtype)).reshape(batch, -1, FRAME_BASIS)  # (B, 2C, FRAME_BASIS)
    basis = frame_basis(num_frames, like.device, like.dtype)  # (F, FRAME_BASIS)
    return torch.einsum("bcp,fp->bfc", coefficients, basis)


class FrameAdaptor(nn.Module):
    """Per-frame learned modulation `x_f * (1 + scale_f) + shift_f` (MagicVideo), identity at init.

    Args:
        channels (`int`): Feature channels.
        max_frames (`int`, defaults to 32): Frames the adaptor has parameters for.
        cond_dim (`int | None`, defaults to None): Width of a per-video condition vector `c` (the pooled text). With
            it the scale and shift of frame `f` also depend on the text, `x_f * (1 + scale_f + scale(c, f)) + shift_f
            + shift(c, f)`, with `scale` and `shift` linear in `c` and combining the `frame_basis` functions of the
            frame position, as `TemporalConv(cond_dim=...)` modulates its input (ours: the paper's adaptors do not
            read the text). The projection starts at zero, so the adaptor is still the identity at init, and its
            gradient there, `x_f` times `c` times the frame basis, is already the product of the text and the frame
            position that a motion word needs.
    """

    def __init__(self, channels: int, max_frames: int = 32, cond_dim: int | None = None):
        super().__init__()
        self.max_frames = max_frames
        self.scale = nn.Parameter(torch.zeros(max_frames, channels))
        self.shift = nn.Parameter(torch.zeros(max_frames, channels))
        self.cond_proj = None
        if cond_dim is not None:  # (scale, shift) for each of the FRAME_BASIS functions of the frame position
            self.cond_proj = nn.Linear(cond_dim, 2 * channels * FRAME_BASIS)
            nn.init.zeros_(self.cond_proj.weight)
            nn.init.zeros_(self.cond_proj.bias)

    def forward(self, hidden_states: torch.Tensor, num_frames: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        """`hidden_states` `(B*F, C, H, W)`; `cond` `(B, cond_dim)`, one per video (only with `cond_dim`)."""
        if num_frames > self.max_frames:
            raise ValueError(
                f"`num_frames` is {num_frames} but the frame adaptor has parameters for at most {self.max_frames} "
                "frames (`max_frames`)."
            )
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        h = hidden_states.reshape(batch, num_frames, channels, height * width)  # (B, F, C, HW)
        scale = self.scale[:num_frames, :, None].to(h.dtype)  # (F, C, 1)
        shift = self.shift[:num_frames, :, None].to(h.dtype)
        if self.cond_proj is not None:
            modulation = text_frame_modulation(self.cond_proj, cond, batch, num_frames, h, "frame adaptor")[..., None]
            scale = scale + modulation[:, :, :channels]  # (B, F, C, 1)
            shift = shift + modulation[:, :, channels:]
        return (h * (1 + scale) + shift).reshape(batch_frames, channels, height, width)


class ConvFrameAdaptors(nn.Module):
    """The two `FrameAdaptor`s of one spatial resnet: `conv1` after its first convolution, `conv2` after its second.

    Args:
        channels (`int`): The resnet's output channels (those of both convolutions' outputs).
        max_frames (`int`, defaults to 32): Frames the adaptors have parameters for.
        cond_dim (`int | None`, defaults to None): Text width of text-modulated adaptors (see `FrameAdaptor`).
    """

    def __init__(self, channels: int, max_frames: int = 32, cond_dim: int | None = None):
        super().__init__()
        self.max_frames = max_frames
        self.conv1 = FrameAdaptor(channels, max_frames, cond_dim)
        self.conv2 = FrameAdaptor(channels, max_frames, cond_dim)


class AdaptedResnetBlock2D(ResnetBlock2D):
    """diffusers' `ResnetBlock2D` with MagicVideo's frame adaptors after its two convolutions (`frame_adaptors`).

    The resnet's own parameters keep `ResnetBlock2D`'s names (Stable Diffusion weights load unrenamed); the adaptors
    add `frame_adaptors.conv1.{scale,shift}` and `frame_adaptors.conv2.{scale,shift}`. Called without `num_frames`
    (a single frame: still images in joint training) it is exactly `ResnetBlock2D`. The 1x1 `conv_shortcut` (a
    channel projection of the skip path, only where the channel count changes) has no adaptor: it is not one of the
    resnet's spatial convolutions.

    Args:
        max_frames (`int`, defaults to 32): Frames the adaptors have parameters for.
        cond_dim (`int | None`, defaults to None): Text width of text-modulated adaptors (see `FrameAdaptor`).
        **kwargs: The arguments of `ResnetBlock2D` (without up- or down-sampling).
    """

    def __init__(self, *, max_frames: int = 32, cond_dim: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if self.upsample is not None or self.downsample is not None:
            raise ValueError("Convolution frame adaptors support resnets without up- or down-sampling.")
        self.frame_adaptors = ConvFrameAdaptors(self.conv2.out_channels, max_frames, cond_dim)

    # Adapted from diffusers.models.resnet.ResnetBlock2D.forward (diffusers 0.42.1), with the frame adaptors applied
    # after `conv1` and `conv2`; without the up/down-sampling branches (refused above) and the deprecated `scale`
    def forward(
        self,
        input_tensor: torch.Tensor,
        temb: torch.Tensor | None,
        num_frames: int | None = None,
        cond: torch.Tensor | None = None,
    ):
        """`(B*F, C, H, W)` in and out; with `num_frames`, an adaptor after each convolution (text-modulated adaptors
        read `cond`, `(B, cond_dim)`)."""
        if num_frames is None:
            return super().forward(input_tensor, temb)
        hidden_states = self.norm1(input_tensor)
        hidden_states = self.nonlinearity(hidden_states)
        hidden_states = self.conv1(hidden_states)
        hidden_states = self.frame_adaptors.conv1(hidden_states, num_frames, cond)  # S * Conv2d(z) + B, per frame

        if self.time_emb_proj is not None:
            if not self.skip_time_act:
                temb = self.nonlinearity(temb)
            temb = self.time_emb_proj(temb)[:, :, None, None]

        if self.time_embedding_norm == "default":
            if temb is not None:
                hidden_states = hidden_states + temb
            hidden_states = self.norm2(hidden_states)
        elif self.time_embedding_norm == "scale_shift":
            if temb is None:
                raise ValueError(
                    f" `temb` should not be None when `time_embedding_norm` is {self.time_embedding_norm}"
                )
            time_scale, time_shift = torch.chunk(temb, 2, dim=1)
            hidden_states = self.norm2(hidden_states)
            hidden_states = hidden_states * (1 + time_scale) + time_shift
        else:
            hidden_states = self.norm2(hidden_states)

        hidden_states = self.nonlinearity(hidden_states)
        hidden_states = self.dropout(hidden_states)
        hidden_states = self.conv2(hidden_states)
        hidden_states = self.frame_adaptors.conv2(hidden_states, num_frames, cond)  # S * Conv2d(z) + B, per frame

        if self.conv_shortcut is not None:
            if self.training:
                input_tensor = input_tensor.contiguous()
            input_tensor = self.conv_shortcut(input_tensor)
        return (input_tensor + hidden_states) / self.output_scale_factor
