"""Temporal layers that turn an image UNet into a video UNet.

Every layer here works on the spatial layers' layout `(batch * frames, channels, height, width)` and is told
`num_frames`; it mixes information across frames only, and starts as the identity (its output projection is
zero-initialised), so a freshly inflated UNet equals the image UNet frame by frame.

- `TemporalConv`: GroupNorm -> SiLU -> convolution over frames (kernel 3), added as a residual.
- `TemporalAttention`: self-attention across the frames of each spatial position, with a frame-position
  encoding; bidirectional, or directed (causal: frame i attends to frames <= i, as in MagicVideo).
- `FrameAdaptor`: a learned per-frame scale and shift (MagicVideo's frame-wise adaptor).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.utils.import_utils import is_xformers_available
from torch import nn

if is_xformers_available():
    import xformers
    import xformers.ops
else:
    xformers = None

TEMPORAL_ATTENTION_TYPES = ("bidirectional", "directed")
FRAME_POSITION_ENCODINGS = ("sinusoidal", "learned")


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


def causal_attention_bias(num_frames: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Additive `(num_frames, num_frames)` bias that lets frame i attend only to frames <= i."""
    future = torch.ones(num_frames, num_frames, device=device, dtype=torch.bool).triu(diagonal=1)
    return torch.zeros(num_frames, num_frames, device=device, dtype=dtype).masked_fill(future, float("-inf"))


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
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, norm_num_groups: int = 32, eps: float = 1e-5, dropout: float = 0.0
    ):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` of a temporal convolution must be a positive odd number but is {kernel_size}."
            )
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0))
        # Zero output: the layer starts as the identity, so an inflated UNet equals its image UNet.
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        h = F.silu(self.norm(hidden_states))  # (B*F, C, H, W): the norm is per frame
        h = self.dropout(h)
        h = h.reshape(batch, num_frames, channels, height, width).transpose(1, 2)  # (B, C, F, H, W)
        h = self.conv(h)
        h = h.transpose(1, 2).reshape(batch_frames, channels, height, width)  # (B*F, C, H, W)
        return hidden_states + h


class TemporalAttnProcessor2_0:
    """Attention processor for `TemporalSelfAttention`: PyTorch scaled-dot-product attention.

    Accepts `causal=True` and then runs SDPA with `is_causal`, which needs no materialised mask.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        query, key, value = _project_qkv(attn, hidden_states, encoder_hidden_states)
        head_dim = query.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)  # (N, heads, F, d)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attention_mask is not None:
            attention_mask = attention_mask.to(query.dtype)
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, is_causal=causal and attention_mask is None, scale=attn.scale
        )
        out = out.transpose(1, 2).reshape(batch, length, attn.heads * head_dim).to(query.dtype)  # (N, F, C)
        return attn.to_out[1](attn.to_out[0](out))


class TemporalXFormersAttnProcessor:
    """Attention processor for `TemporalSelfAttention` with xformers' memory-efficient attention."""

    def __init__(self, attention_op=None):
        self.attention_op = attention_op

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        query, key, value = _project_qkv(attn, hidden_states, encoder_hidden_states)
        head_dim = query.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim)  # (N, F, heads, d): xformers' BMHK layout
        key = key.view(batch, -1, attn.heads, head_dim)
        value = value.view(batch, -1, attn.heads, head_dim)
        bias = xformers.ops.LowerTriangularMask() if causal else None
        if attention_mask is not None:
            bias = attention_mask.to(query.dtype).expand(batch, attn.heads, length, length)
        out = xformers.ops.memory_efficient_attention(
            query, key, value, attn_bias=bias, op=self.attention_op, scale=attn.scale
        )
        out = out.reshape(batch, length, attn.heads * head_dim).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](out))


def _project_qkv(attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None):
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    return attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)


_TEMPORAL_PROCESSORS = (TemporalAttnProcessor2_0, TemporalXFormersAttnProcessor)


class TemporalSelfAttention(Attention):
    """diffusers `Attention` whose xformers switch installs the temporal (causal-aware) xformers processor.

    Being an `Attention`, it shows up in `attn_processors`, accepts `set_attn_processor`, and is found by peft
    through its `to_q`, `to_k`, `to_v`, `to_out.0` projections like every other attention layer.
    """

    def set_use_memory_efficient_attention_xformers(self, valid: bool, attention_op=None) -> None:
        if not valid:
            self.set_processor(TemporalAttnProcessor2_0())
            return
        if not is_xformers_available():
            raise ModuleNotFoundError("xformers is not installed: `pip install diffusers-video[xformers]`.")
        if not torch.cuda.is_available():
            raise ValueError("xformers' memory-efficient attention needs a CUDA device, but CUDA is not available.")
        self.set_processor(TemporalXFormersAttnProcessor(attention_op))


class TemporalAttention(nn.Module):
    """Self-attention across frames at every spatial position, with a frame-position encoding.

    Computes `x + Attn(LayerNorm(x) + pos)` over the frame axis; the output projection starts at zero.

    Args:
        channels (`int`): Feature channels.
        num_heads (`int`): Attention heads (`channels` must be divisible by it).
        attention_type (`str`, defaults to "bidirectional"): "bidirectional", or "directed" (causal).
        position_encoding (`str | None`, defaults to "sinusoidal"): "sinusoidal" (any number of frames),
            "learned" (initialised to the sinusoidal values; at most `max_frames` frames) or None.
        max_frames (`int`, defaults to 32): Frames a learned encoding supports.
        eps (`float`, defaults to 1e-5): LayerNorm epsilon.
        upcast_attention (`bool`, defaults to False): Compute attention scores in float32.
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

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        _, _, height, width = hidden_states.shape
        tokens = _frames_to_tokens(hidden_states, num_frames)  # (B*H*W, F, C)
        tokens = self.norm(tokens)
        encoding = self.frame_encoding(num_frames, tokens.device, tokens.dtype)
        if encoding is not None:
            tokens = tokens + encoding  # broadcast over (B*H*W)
        if isinstance(self.attn.processor, _TEMPORAL_PROCESSORS):
            out = self.attn(tokens, causal=self.causal)
        else:
            # A generic diffusers processor (set through `set_attn_processor`) gets the causal mask as a bias.
            mask = None
            if self.causal:
                mask = causal_attention_bias(num_frames, tokens.device, tokens.dtype).expand(tokens.shape[0], -1, -1)
            out = self.attn(tokens, attention_mask=mask)
        return hidden_states + _tokens_to_frames(out, num_frames, height, width)


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
