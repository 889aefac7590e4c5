"""Temporal layers that turn an image UNet into a video UNet.

Every layer here works on the spatial layers' layout `(batch * frames, channels, height, width)` and is told
`num_frames`; it mixes information across frames only, and starts as the identity (its output projection is
zero-initialised), so a freshly inflated UNet equals the image UNet frame by frame.

- `TemporalConv`: GroupNorm -> SiLU -> convolution over frames (kernel 3), added as a residual; centred ("same"
  padding), or causal (padded on the left only, so frame i sees frames <= i).
- `TemporalAttention`: self-attention across the frames of each spatial position, with a frame-position
  encoding; bidirectional, or directed (causal: frame i attends to frames <= i, as in MagicVideo).

Their neighbours, re-exported here: the attention layer and processors (`temporal_attention.py`), MagicVideo's
frame adaptors (`frame_adaptors.py`) and the layers of the ModelScope layout (`temporal_modelscope.py`: those of
diffusers' `UNet3DConditionModel`, with its parameter names).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

from .frame_adaptors import (
    FRAME_BASIS,
    AdaptedResnetBlock2D,
    ConvFrameAdaptors,
    FrameAdaptor,
    frame_basis,
    text_frame_modulation,
)
from .temporal_attention import (
    TemporalAttnProcessor2_0,
    TemporalSelfAttention,
    TemporalXFormersAttnProcessor,
    causal_attention_bias,
    self_attention,
)
from .temporal_modelscope import (
    MODELSCOPE_ATTENTION_NORM_EPS,
    MODELSCOPE_CONV_DROPOUT,
    MODELSCOPE_CONV_NORM_EPS,
    MODELSCOPE_INPUT_HEADS,
    FrameConv3d,
    ModelScopeTemporalBlock,
    ModelScopeTemporalConv,
    ModelScopeTemporalTransformer,
)

__all__ = [
    "FRAME_POSITION_ENCODINGS",
    "MODELSCOPE_ATTENTION_NORM_EPS",
    "MODELSCOPE_CONV_DROPOUT",
    "MODELSCOPE_CONV_NORM_EPS",
    "MODELSCOPE_INPUT_HEADS",
    "TEMPORAL_ATTENTION_TYPES",
    "TEMPORAL_CONV_PADDINGS",
    "AdaptedResnetBlock2D",
    "ConvFrameAdaptors",
    "FrameAdaptor",
    "FrameConv3d",
    "ModelScopeTemporalBlock",
    "ModelScopeTemporalConv",
    "ModelScopeTemporalTransformer",
    "TemporalAttention",
    "TemporalAttnProcessor2_0",
    "TemporalConv",
    "TemporalSelfAttention",
    "TemporalXFormersAttnProcessor",
    "causal_attention_bias",
    "frame_basis",
    "self_attention",
    "sinusoidal_frame_encoding",
]

TEMPORAL_ATTENTION_TYPES = ("bidirectional", "directed")
FRAME_POSITION_ENCODINGS = ("sinusoidal", "learned")
TEMPORAL_CONV_PADDINGS = ("same", "causal")


def sinusoidal_frame_encoding(num_frames: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Transformer sinusoidal encoding of frame indices 0..num_frames-1, shape `(num_frames, dim)`.

    The first half of the channels are sines, the second half cosines (an odd last channel stays 0).
    """
    half = dim // 2
    position = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]  # (F, 1)
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angles = position * frequencies[None]  # (F, half)
    encoding = torch.zeros(num_frames, dim, device=device, dtype=torch.float32)
    encoding[:, :half] = torch.sin(angles)
    encoding[:, half : 2 * half] = torch.cos(angles)
    return encoding.to(dtype) if dtype is not None else encoding


def _frames_to_tokens(hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """`(B*F, C, H, W)` -> `(B*H*W, F, C)`: one sequence of frames per spatial position."""
    batch_frames, channels, height, width = hidden_states.shape
    batch = batch_frames // num_frames
    tokens = hidden_states.reshape(batch, num_frames, channels, height * width)  # (B, F, C, HW)
    tokens = tokens.permute(0, 3, 1, 2)  # (B, HW, F, C)
    return tokens.reshape(batch * height * width, num_frames, channels)  # (B*HW, F, C)


def _tokens_to_frames(tokens: torch.Tensor, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `_frames_to_tokens`: `(B*H*W, F, C)` -> `(B*F, C, H, W)`."""
    channels = tokens.shape[-1]
    batch = tokens.shape[0] // (height * width)
    frames = tokens.reshape(batch, height * width, num_frames, channels)  # (B, HW, F, C)
    frames = frames.permute(0, 2, 3, 1)  # (B, F, C, HW)
    return frames.reshape(batch * num_frames, channels, height, width)  # (B*F, C, H, W)


class TemporalConv(nn.Module):
    """Residual convolution over frames: `x + Conv_t(SiLU(GroupNorm(x)))`.

    Args:
        channels (`int`): Feature channels.
        kernel_size (`int`, defaults to 3): Kernel size over frames (odd; zero padding keeps the frame count).
        norm_num_groups (`int`, defaults to 32): Groups of the GroupNorm.
        eps (`float`, defaults to 1e-5): GroupNorm epsilon.
        dropout (`float`, defaults to 0.0): Dropout before the convolution.
        cond_dim (`int | None`, defaults to None): Width of a per-video condition vector `c` (the pooled text) that
            scales and shifts the normalised features of each frame before the convolution, `x + Conv_t(SiLU(
            GroupNorm(x) * (1 + scale(c, f)) + shift(c, f)))`, where `scale` and `shift` are linear in `c` and
            combine the `frame_basis` functions of the frame position `f` (constant, linear, quadratic). The
            projection starts random, not at zero (the convolution is what starts at zero, so the layer is still the
            identity at init): a product of the text and the frame position then multiplies features that know
            where they are in the frame, which is the form of what a motion word changes (for "right", a shape
            further right in later frames), reachable at first order. Additive text features (spatial or temporal
            cross-attention) reach it only through products formed deeper in the network.
        padding (`str`, defaults to "same"): "same" pads `kernel_size // 2` zero frames on both sides (frame i sees
            frames i - k//2 ... i + k//2); "causal" pads `kernel_size - 1` zero frames before the first frame only,
            so that frame i sees frames i - k + 1 ... i and never a later one (with directed temporal attention the
            whole UNet is then causal over frames). The weights have the same shape either way.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        norm_num_groups: int = 32,
        eps: float = 1e-5,
        dropout: float = 0.0,
        cond_dim: int | None = None,
        padding: str = "same",
    ):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` of a temporal convolution must be a positive odd number but is {kernel_size}."
            )
        if padding not in TEMPORAL_CONV_PADDINGS:
            raise ValueError(f"`temporal_conv_padding` must be one of {TEMPORAL_CONV_PADDINGS} but is {padding!r}.")
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        # causal: the convolution pads nothing; `forward` puts the kernel_size - 1 zero frames in front
        self.causal_padding = kernel_size - 1 if padding == "causal" else 0
        same = kernel_size // 2 if padding == "same" else 0
        # a Conv3d (checkpoints keep its weight shape) that runs as a (k, 1) 2D convolution on (B, C, F, H*W)
        self.conv = FrameConv3d(channels, channels, (kernel_size, 1, 1), padding=(same, 0, 0))
        # Zero output: the layer starts as the identity, so an inflated UNet equals its image UNet.
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.cond_dim = cond_dim
        # (scale, shift) for each of the FRAME_BASIS functions of the frame position
        self.cond_proj = nn.Linear(cond_dim, 2 * channels * FRAME_BASIS) if cond_dim is not None else None

    def forward(self, hidden_states: torch.Tensor, num_frames: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        """`hidden_states` `(B*F, C, H, W)`; `cond` `(B, cond_dim)`, one per video (only with `cond_dim`)."""
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        h = self.norm(hidden_states)  # (B*F, C, H, W): the norm is per frame
        if self.cond_proj is not None:
            modulation = text_frame_modulation(self.cond_proj, cond, batch, num_frames, h, "temporal convolution")
            modulation = modulation.reshape(batch_frames, 2 * channels)
            scale, shift = modulation.chunk(2, dim=1)  # (B*F, C) each
            h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        h = F.silu(h)
        h = self.dropout(h)
        h = h.reshape(batch, num_frames, channels, height * width).transpose(1, 2)  # (B, C, F, H*W)
        if self.causal_padding:
            h = F.pad(h, (0, 0, self.causal_padding, 0))  # (B, C, k - 1 + F, H*W): zero frames in front
        h = self.conv(h)
        h = h.transpose(1, 2).reshape(batch_frames, channels, height, width)  # (B*F, C, H, W)
        return hidden_states + h


class TemporalAttention(nn.Module):
    """Self-attention across frames at every spatial position, with a frame-position encoding.

    Computes `x + Attn(LayerNorm(x) + pos)` over the frame axis; the output projection starts at zero. With
    `cross_attention_dim`, a cross-attention to the text follows: every token of the video (each frame at each
    position, frame-position encoding added to its query) attends to the video's text tokens, `x + CrossAttn(
    LayerNorm(x) + pos, text)`, its output projection also starting at zero. Spatial cross-attention sees one frame
    at a time, so motion words reach the temporal layers only through features that the image model learned for
    still frames; this path gives the temporal layers the text directly.

    Args:
        channels (`int`): Feature channels.
        num_heads (`int`): Attention heads (`channels` must be divisible by it).
        attention_type (`str`, defaults to "bidirectional"): "bidirectional", or "directed" (causal).
        position_encoding (`str | None`, defaults to "sinusoidal"): "sinusoidal" (any number of frames),
            "learned" (initialised to the sinusoidal values; at most `max_frames` frames) or None.
        max_frames (`int`, defaults to 32): Frames a learned encoding supports.
        eps (`float`, defaults to 1e-5): LayerNorm epsilon.
        upcast_attention (`bool`, defaults to False): Compute attention scores in float32.
        cross_attention_dim (`int | None`, defaults to None): Width of the text embeddings for the cross-attention
            to text; None for none.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        attention_type: str = "bidirectional",
        position_encoding: str | None = "sinusoidal",
        max_frames: int = 32,
        eps: float = 1e-5,
        upcast_attention: bool = False,
        cross_attention_dim: int | None = None,
    ):
        super().__init__()
        if attention_type not in TEMPORAL_ATTENTION_TYPES:
            raise ValueError(
                f"`temporal_attention` must be one of {TEMPORAL_ATTENTION_TYPES} or None but is {attention_type!r}."
            )
        if position_encoding is not None and position_encoding not in FRAME_POSITION_ENCODINGS:
            raise ValueError(
                f"`frame_position_encoding` must be one of {FRAME_POSITION_ENCODINGS} or None but is {position_encoding!r}."
            )
        if channels % num_heads != 0:
            raise ValueError(
                f"`channels` ({channels}) must be divisible by the number of temporal heads ({num_heads})."
            )
        self.causal = attention_type == "directed"
        self.position_encoding = position_encoding
        self.max_frames = max_frames
        self.norm = nn.LayerNorm(channels, eps=eps)
        if position_encoding == "learned":
            self.pos_embed = nn.Parameter(sinusoidal_frame_encoding(max_frames, channels))
        else:
            self.pos_embed = None
        self.attn = TemporalSelfAttention(
            query_dim=channels,
            heads=num_heads,
            dim_head=channels // num_heads,
            bias=False,
            out_bias=True,
            upcast_attention=upcast_attention,
            processor=TemporalAttnProcessor2_0(),
        )
        # Zero output projection: the layer starts as the identity.
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)
        self.cross_attention_dim = cross_attention_dim
        if cross_attention_dim is not None:
            self.norm_cross = nn.LayerNorm(channels, eps=eps)
            self.cross_attn = Attention(
                query_dim=channels,
                cross_attention_dim=cross_attention_dim,
                heads=num_heads,
                dim_head=channels // num_heads,
                bias=False,
                out_bias=True,
                upcast_attention=upcast_attention,
            )
            nn.init.zeros_(self.cross_attn.to_out[0].weight)
            nn.init.zeros_(self.cross_attn.to_out[0].bias)

    def frame_encoding(self, num_frames: int, device, dtype) -> torch.Tensor | None:
        """The `(num_frames, channels)` encoding added to the normalised tokens."""
        if self.position_encoding is None:
            return None
        if self.pos_embed is not None:
            if num_frames > self.max_frames:
                raise ValueError(
                    f"`num_frames` is {num_frames} but the learned frame-position encoding supports at most "
                    f"{self.max_frames} frames (`max_frames`)."
                )
            return self.pos_embed[:num_frames].to(dtype)
        return sinusoidal_frame_encoding(num_frames, self.norm.normalized_shape[0], device=device, dtype=dtype)

    def forward(
        self, hidden_states: torch.Tensor, num_frames: int, encoder_hidden_states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`hidden_states` `(B*F, C, H, W)`; `encoder_hidden_states` `(B, tokens, dim)` (one per video), used only
        by the cross-attention to text."""
        batch_frames, channels, height, width = hidden_states.shape
        tokens = _frames_to_tokens(hidden_states, num_frames)  # (B*H*W, F, C)
        tokens = self.norm(tokens)
        encoding = self.frame_encoding(num_frames, tokens.device, tokens.dtype)
        if encoding is not None:
            tokens = tokens + encoding  # broadcast over (B*H*W)
        out = self_attention(self.attn, tokens, self.causal)
        hidden_states = hidden_states + _tokens_to_frames(out, num_frames, height, width)
        if self.cross_attention_dim is None:
            return hidden_states
        batch = batch_frames // num_frames
        if encoder_hidden_states is None or encoder_hidden_states.shape[0] != batch:
            shape = None if encoder_hidden_states is None else tuple(encoder_hidden_states.shape)
            raise ValueError(
                f"This temporal attention attends to text: `encoder_hidden_states` must be `(batch={batch}, tokens, "
                f"dim)`, one per video, but is {shape}."
            )
        video = hidden_states.reshape(batch, num_frames, channels, height * width).permute(0, 1, 3, 2)  # (B,F,HW,C)
        queries = self.norm_cross(video)
        if encoding is not None:
            queries = queries + encoding[:, None]  # (F, 1, C)
        out = self.cross_attn(queries.reshape(batch, -1, channels), encoder_hidden_states=encoder_hidden_states)
        out = out.reshape(batch, num_frames, height * width, channels).permute(0, 1, 3, 2)  # (B, F, C, HW)
        return hidden_states + out.reshape(batch_frames, channels, height, width)
