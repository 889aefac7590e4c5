"""MagicVideo's frame adaptors: per-frame learned scales and shifts that adapt an image UNet to video.

MagicVideo (Zhou et al. 2022, https://huggingface.co/papers/2211.11018) shares every 2D convolution of the image
model across the frames of a clip and follows it with "a unique adaptor for each 2D convolution to learn
frame-specific features", `z^i = S^i * Conv2d(z^i) + B^i` for frame `i`; frames of a clip are semantically similar,
so a few per-frame parameters that move the features' mean and variance take the place of a 1D temporal convolution.
Whether `S` and `B` are scalars or per channel the paper does not say; here they are per frame and channel.

- `FrameAdaptor`: one such modulation, `x_f * (1 + scale_f) + shift_f`, identity at init (`scale = shift = 0`).
- `ConvFrameAdaptors`: the two adaptors of one spatial resnet, after its `conv1` and after its `conv2`
  (`UNet3DModel(frame_adaptor="conv")`), with the resnet's forward written out so that the resnet keeps the
  parameter names of diffusers' `ResnetBlock2D` (Stable Diffusion weights load unrenamed). `frame_adaptor=True` is
  the coarser variant that existed first: one adaptor after each whole resnet.
"""

from __future__ import annotations

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

__all__ = ["ConvFrameAdaptors", "FrameAdaptor"]


class FrameAdaptor(nn.Module):
    """Per-frame learned modulation `x_f * (1 + scale_f) + shift_f` (MagicVideo), identity at init.

    Args:
        channels (`int`): Feature channels.
        max_frames (`int`, defaults to 32): Frames the adaptor has parameters for.
    """

    def __init__(self, channels: int, max_frames: int = 32):
        super().__init__()
        self.max_frames = max_frames
        self.scale = nn.Parameter(torch.zeros(max_frames, channels))
        self.shift = nn.Parameter(torch.zeros(max_frames, channels))

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        if num_frames > self.max_frames:
            raise ValueError(
                f"`num_frames` is {num_frames} but the frame adaptor has parameters for at most {self.max_frames} "
                "frames (`max_frames`)."
            )
        batch_frames, channels, height, width = hidden_states.shape
        h = hidden_states.reshape(batch_frames // num_frames, num_frames, channels, height * width)  # (B, F, C, HW)
        scale = self.scale[:num_frames, :, None].to(h.dtype)  # (F, C, 1)
        shift = self.shift[:num_frames, :, None].to(h.dtype)
        return (h * (1 + scale) + shift).reshape(batch_frames, channels, height, width)


class ConvFrameAdaptors(nn.Module):
    """A `FrameAdaptor` after each 2D convolution of one spatial resnet (`conv1` and `conv2`), and that resnet's
    forward with them.

    The 1x1 `conv_shortcut` (a channel projection of the skip path, only where the channel count changes) has no
    adaptor: it is not one of the resnet's spatial convolutions.

    Args:
        channels (`int`): The resnet's output channels (those of both convolutions' outputs).
        max_frames (`int`, defaults to 32): Frames the adaptors have parameters for.
    """

    def __init__(self, channels: int, max_frames: int = 32):
        super().__init__()
        self.max_frames = max_frames
        self.conv1 = FrameAdaptor(channels, max_frames)
        self.conv2 = FrameAdaptor(channels, max_frames)

    # Adapted from diffusers.models.resnet.ResnetBlock2D.forward (diffusers 0.42.1), with `self.conv1` and
    # `self.conv2` applied after the resnet's convolutions of the same names; without the up/down-sampling branches
    # (the video blocks never build resnets with them) and the deprecated `scale` argument
    def forward(
        self, resnet: ResnetBlock2D, input_tensor: torch.Tensor, temb: torch.Tensor | None, num_frames: int
    ) -> torch.Tensor:
        """`resnet(input_tensor, temb)` with an adaptor after each convolution; `(B*F, C, H, W)` in and out."""
        if resnet.upsample is not None or resnet.downsample is not None:
            raise ValueError("Convolution frame adaptors support resnets without up- or down-sampling.")
        hidden_states = resnet.norm1(input_tensor)
        hidden_states = resnet.nonlinearity(hidden_states)
        hidden_states = resnet.conv1(hidden_states)
        hidden_states = self.conv1(hidden_states, num_frames)  # S * Conv2d(z) + B, per frame

        if resnet.time_emb_proj is not None:
            if not resnet.skip_time_act:
                temb = resnet.nonlinearity(temb)
            temb = resnet.time_emb_proj(temb)[:, :, None, None]

        if resnet.time_embedding_norm == "default":
            if temb is not None:
                hidden_states = hidden_states + temb
            hidden_states = resnet.norm2(hidden_states)
        elif resnet.time_embedding_norm == "scale_shift":
            if temb is None:
                raise ValueError(
                    f" `temb` should not be None when `time_embedding_norm` is {resnet.time_embedding_norm}"
                )
            time_scale, time_shift = torch.chunk(temb, 2, dim=1)
            hidden_states = resnet.norm2(hidden_states)
            hidden_states = hidden_states * (1 + time_scale) + time_shift
        else:
            hidden_states = resnet.norm2(hidden_states)

        hidden_states = resnet.nonlinearity(hidden_states)
        hidden_states = resnet.dropout(hidden_states)
        hidden_states = resnet.conv2(hidden_states)
        hidden_states = self.conv2(hidden_states, num_frames)  # S * Conv2d(z) + B, per frame

        if resnet.conv_shortcut is not None:
            if resnet.training:
                input_tensor = input_tensor.contiguous()
            input_tensor = resnet.conv_shortcut(input_tensor)
        return (input_tensor + hidden_states) / resnet.output_scale_factor
