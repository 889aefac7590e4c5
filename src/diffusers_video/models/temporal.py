"""Temporal layers that turn an image UNet into a video UNet.

Every layer here works on the spatial layers' layout `(batch * frames, channels, height, width)` and is told
`num_frames`; it mixes information across frames only, and starts as the identity (its output projection is
zero-initialised), so a freshly inflated UNet equals the image UNet frame by frame.

- `TemporalConv`: GroupNorm -> SiLU -> convolution over frames (kernel 3), added as a residual.
- `TemporalAttention`: self-attention across the frames of each spatial position, with a frame-position
  encoding; bidirectional, or directed (causal: frame i attends to frames <= i, as in MagicVideo).
- `FrameAdaptor`: a learned per-frame scale and shift (MagicVideo's frame-wise adaptor).

The ModelScope layout (`UNet3DModel(temporal_layout="modelscope")`) has the layers of diffusers'
`UNet3DConditionModel` instead, with its parameter names, so converted ModelScope text-to-video weights load as they
are: `ModelScopeTemporalConv` (diffusers' `TemporalConvLayer`) and `ModelScopeTemporalTransformer` (diffusers'
`TransformerTemporalModel`). They compute the same functions as diffusers' layers with fewer layout copies; unlike
the layers above they normalise over all frames of a video and also run on a single frame, as diffusers' do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
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


# Functions of the frame position that text-modulated temporal convolutions combine (see `frame_basis`).
FRAME_BASIS = 3


def frame_basis(num_frames: int, device=None, dtype=None) -> torch.Tensor:
    """`(num_frames, 3)`: 1, the centred position `u` in [-1, 1] and `u**2 - 1/3` (zero mean over [-1, 1]) of each
    frame. A single frame has `u = 0`."""
    if num_frames > 1:
        u = torch.linspace(-1.0, 1.0, num_frames, device=device, dtype=torch.float32)
    else:
        u = torch.zeros(1, device=device, dtype=torch.float32)
    return torch.stack([torch.ones_like(u), u, u**2 - 1.0 / 3.0], dim=1).to(dtype)


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
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        norm_num_groups: int = 32,
        eps: float = 1e-5,
        dropout: float = 0.0,
        cond_dim: int | None = None,
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
        self.cond_dim = cond_dim
        # (scale, shift) for each of the FRAME_BASIS functions of the frame position
        self.cond_proj = nn.Linear(cond_dim, 2 * channels * FRAME_BASIS) if cond_dim is not None else None

    def forward(self, hidden_states: torch.Tensor, num_frames: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        """`hidden_states` `(B*F, C, H, W)`; `cond` `(B, cond_dim)`, one per video (only with `cond_dim`)."""
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        h = self.norm(hidden_states)  # (B*F, C, H, W): the norm is per frame
        if self.cond_proj is not None:
            if cond is None or cond.shape != (batch, self.cond_dim):
                shape = None if cond is None else tuple(cond.shape)
                raise ValueError(
                    f"This temporal convolution is text-modulated: `cond` must be `(batch={batch}, {self.cond_dim})`, "
                    f"one per video, but is {shape}."
                )
            coefficients = self.cond_proj(cond.to(h.dtype)).reshape(batch, 2 * channels, FRAME_BASIS)
            basis = frame_basis(num_frames, h.device, h.dtype)  # (F, FRAME_BASIS)
            modulation = torch.einsum("bcp,fp->bfc", coefficients, basis).reshape(batch_frames, 2 * channels)
            scale, shift = modulation.chunk(2, dim=1)  # (B*F, C) each
            h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        h = F.silu(h)
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


def _self_attention(attn: Attention, tokens: torch.Tensor, causal: bool) -> torch.Tensor:
    """Self-attention of `(N, frames, C)` tokens over frames, causal or not, with whatever processor `attn` has."""
    if isinstance(attn.processor, _TEMPORAL_PROCESSORS):
        return attn(tokens, causal=causal)
    # A generic diffusers processor (set through `set_attn_processor`) gets the causal mask as a bias.
    mask = None
    if causal:
        mask = causal_attention_bias(tokens.shape[1], tokens.device, tokens.dtype).expand(tokens.shape[0], -1, -1)
    return attn(tokens, attention_mask=mask)


class TemporalSelfAttention(Attention):
    """diffusers `Attention` whose xformers switch installs the temporal (causal-aware) xformers processor.

    Being an `Attention`, it shows up in `attn_processors`, accepts `set_attn_processor`, and is found by peft
    through its `to_q`, `to_k`, `to_v`, `to_out.0` projections like every other attention layer.
    """

    def set_attention_slice(self, slice_size: int | None) -> None:
        """`slice_size` heads at a time (diffusers' `SlicedAttnProcessor`, given the causal mask as a bias), or the
        temporal SDPA processor again for None."""
        if slice_size is None:
            self.set_processor(TemporalAttnProcessor2_0())
            return
        super().set_attention_slice(slice_size)

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
        out = _self_attention(self.attn, tokens, self.causal)
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


# ------------------------------------------------------------- ModelScope layout (diffusers' UNet3DConditionModel)

# Constants of diffusers' `UNet3DConditionModel`, which its config does not expose.
MODELSCOPE_CONV_DROPOUT = 0.1  # dropout of `TemporalConvLayer` as its blocks build it
MODELSCOPE_CONV_NORM_EPS = 1e-5  # `TemporalConvLayer`'s GroupNorms keep torch's default eps
MODELSCOPE_ATTENTION_NORM_EPS = 1e-6  # `TransformerTemporalModel`'s GroupNorm
MODELSCOPE_INPUT_HEADS = 8  # heads of `transformer_in`, each of `attention_head_dim` channels
# Inference runs the temporal feed-forward over chunks of rows, `_FEED_FORWARD_CHUNK_ELEMENTS // (GEGLU width)` rows
# each: the chunk's GEGLU activations then stay in cache, and out of the peak memory.
_FEED_FORWARD_CHUNK_ELEMENTS = 2**22


class FrameConv3d(nn.Conv3d):
    """An `nn.Conv3d` with kernel `(k, 1, 1)` (over frames only) that also takes `(B, C, F, L)` input.

    On 4D input it runs as the equivalent `(k, 1)` 2D convolution over `(frames, pixels)`, which is several times
    faster than a 3D convolution on CPU. The weight keeps Conv3d's shape (checkpoints load as they are), and the layer
    is still called as a module, so diffusers' hooks (layerwise casting, group offloading) see it.
    """

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.ndim == 5:
            return super().forward(hidden_states)
        weight = self.weight.flatten(3)  # (C_out, C_in, k, 1)
        return F.conv2d(hidden_states, weight, self.bias, padding=(self.padding[0], 0))


class ModelScopeTemporalConv(nn.Module):
    """diffusers' `TemporalConvLayer` (ModelScope): four `GroupNorm -> SiLU -> (Dropout) -> Conv over frames` stages
    added to the input; the last convolution starts at zero.

    Parameter names are those of `TemporalConvLayer` (`conv1.0.weight` is the first GroupNorm, `conv1.2.weight` the
    first convolution, `conv2.3.weight` the second, ...). The GroupNorms normalise over all frames of a video.

    Args:
        channels (`int`): Feature channels.
        kernel_size (`int`, defaults to 3): Kernel size over frames (odd).
        norm_num_groups (`int`, defaults to 32): Groups of the GroupNorms.
        dropout (`float`, defaults to 0.1): Dropout before the last three convolutions (diffusers' value).
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, norm_num_groups: int = 32, dropout: float = MODELSCOPE_CONV_DROPOUT
    ):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` of a temporal convolution must be a positive odd number but is {kernel_size}."
            )

        def stage(with_dropout: bool) -> nn.Sequential:
            layers = [nn.GroupNorm(norm_num_groups, channels, eps=MODELSCOPE_CONV_NORM_EPS), nn.SiLU()]
            if with_dropout:
                layers.append(nn.Dropout(dropout))
            layers.append(FrameConv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0)))
            return nn.Sequential(*layers)

        self.conv1 = stage(with_dropout=False)
        self.conv2 = stage(with_dropout=True)
        self.conv3 = stage(with_dropout=True)
        self.conv4 = stage(with_dropout=True)
        # Zero output: the layer starts as the identity.
        nn.init.zeros_(self.conv4[-1].weight)
        nn.init.zeros_(self.conv4[-1].bias)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        frames = hidden_states.reshape(batch, num_frames, channels, height * width)  # (B, F, C, HW)
        h = frames.transpose(1, 2).contiguous()  # (B, C, F, HW): the one layout copy in
        for stage in (self.conv1, self.conv2, self.conv3, self.conv4):
            h = stage(h)  # GroupNorm over (C/G, F, HW), SiLU, dropout, (k, 1) conv over frames
        out = frames + h.transpose(1, 2)  # (B, F, C, HW): residual and layout copy out in one pass
        return out.reshape(batch_frames, channels, height, width)


def _is_plain(*modules: nn.Module) -> bool:
    """True when the modules are exactly torch's or diffusers' own (not wrapped by peft) and carry no hooks
    (offloading, layerwise casting, caching), so that their weights may be used directly."""
    for module in modules:
        if type(module) not in (nn.Linear, nn.LayerNorm, TemporalSelfAttention):
            return False
        if module._forward_hooks or module._forward_pre_hooks:
            return False
        if getattr(module, "_diffusers_hook", None) is not None or getattr(module, "_hf_hook", None) is not None:
            return False
    return True


class ModelScopeTemporalBlock(nn.Module):
    """diffusers' `BasicTransformerBlock` as `TransformerTemporalModel` builds it: two self-attentions over frames
    and a GEGLU feed-forward, each after a LayerNorm and added to its input. Same parameter names.

    Args:
        dim (`int`): Token channels.
        num_heads (`int`): Attention heads.
        head_dim (`int`): Channels per head (`num_heads * head_dim == dim`).
        upcast_attention (`bool`, defaults to False): Compute attention scores in float32.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, upcast_attention: bool = False):
        super().__init__()

        def attention() -> TemporalSelfAttention:
            return TemporalSelfAttention(
                query_dim=dim,
                heads=num_heads,
                dim_head=head_dim,
                bias=False,
                out_bias=True,
                upcast_attention=upcast_attention,
                processor=TemporalAttnProcessor2_0(),
            )

        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = attention()
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = attention()
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")

    def forward(
        self,
        hidden_states: torch.Tensor,
        projected_from: tuple[torch.Tensor, nn.Module] | None = None,
        project_to: nn.Module | None = None,
    ) -> torch.Tensor:
        """`(N, F, dim)` -> `(N, F, dim)`, or `project_to` of it; the input is not modified.

        In inference the two projections that surround the block in `ModelScopeTemporalTransformer` are folded into
        it where that saves work (wide blocks on narrow features: `transformer_in`); the result is the same.

        Args:
            hidden_states (`torch.Tensor`): `(N, F, dim)` tokens, one sequence of frames per row.
            projected_from (`tuple[torch.Tensor, nn.Linear] | None`): `(x, proj)` with `hidden_states == proj(x)`:
                the first attention may compute its queries, keys and values from `x` (`_first_attention_from`).
            project_to (`nn.Linear | None`): A projection applied to the block's output: the result is then
                `project_to(block(hidden_states))`, and the feed-forward's last layer may be merged with it
                (`_merged_output_projection`).
        """
        attention = None
        if projected_from is not None and not torch.is_grad_enabled():
            attention = self._first_attention_from(hidden_states, *projected_from)
        if attention is None:
            attention = _self_attention(self.attn1, self.norm1(hidden_states), causal=False)
        hidden_states = hidden_states + attention
        out = _self_attention(self.attn2, self.norm2(hidden_states), causal=False)
        if torch.is_grad_enabled():
            hidden_states = hidden_states + out
            hidden_states = hidden_states + self.ff(self.norm3(hidden_states))
            return hidden_states if project_to is None else project_to(hidden_states)

        # Inference: residuals in place, and the feed-forward a cache-sized chunk of rows at a time.
        hidden_states = hidden_states.add_(out).contiguous()
        rows = hidden_states.view(-1, hidden_states.shape[-1])  # (N*F, dim), a view: chunks update it in place
        step = max(1, _FEED_FORWARD_CHUNK_ELEMENTS // (8 * hidden_states.shape[-1]))  # GEGLU width: 2 * 4 * dim
        merged = self._merged_output_projection(project_to, rows.dtype)
        if merged is None:
            for start in range(0, rows.shape[0], step):
                chunk = rows[start : start + step]
                chunk.add_(self.ff(self.norm3(chunk)))
            return hidden_states if project_to is None else project_to(hidden_states)
        # project_to(h + ff(h)) = project_to(h) + ff_inner(h) @ (W_proj W_ff)^T + W_proj b_ff: never `dim` wide.
        weight, bias = merged
        projected = rows.new_empty(rows.shape[0], weight.shape[0])  # (N*F, out)
        geglu, dropout = self.ff.net[0], self.ff.net[1]
        for start in range(0, rows.shape[0], step):
            chunk = rows[start : start + step]
            piece = project_to(chunk)  # (rows, out)
            piece.addmm_(dropout(geglu(self.norm3(chunk))), weight.t()).add_(bias)
            projected[start : start + step] = piece
        return projected.view(*hidden_states.shape[:-1], weight.shape[0])

    def _merged_output_projection(
        self, project_to: nn.Module | None, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(W_proj W_ff, W_proj b_ff)` for the feed-forward's last layer followed by `project_to`, when merging them
        is possible (plain layers, no active dropout) and saves work (`project_to` narrows); else None."""
        if project_to is None or len(self.ff.net) != 3 or not _is_plain(project_to, self.ff.net[2]):
            return None
        last, dropout = self.ff.net[2], self.ff.net[1]
        if project_to.out_features >= project_to.in_features or last.bias is None:
            return None
        if not isinstance(dropout, nn.Dropout) or (dropout.training and dropout.p > 0):
            return None
        compute_dtype = torch.promote_types(dtype, torch.float32)
        proj_weight = project_to.weight.to(compute_dtype)
        weight = proj_weight @ last.weight.to(compute_dtype)  # (out, 4 * dim)
        bias = proj_weight @ last.bias.to(compute_dtype)  # (out,)
        return weight.to(dtype), bias.to(dtype)

    def _first_attention_from(
        self, hidden_states: torch.Tensor, x: torch.Tensor, proj: nn.Module
    ) -> torch.Tensor | None:
        """`attn1(norm1(hidden_states))` for `hidden_states = proj(x)`, with queries, keys and values from `x`.

        `norm1(proj(x)) = g * (A x + c) / s + b` with `A = W - mean_rows(W)`, `c = proj.bias - mean(proj.bias)`, `s`
        the LayerNorm's per-token standard deviation and `g, b` its affine weights, so each projection `P` of it is
        `[P diag(g) A, P diag(g) c, P b] @ [x / s, 1 / s, 1]`: a matmul over `x`'s channels (+2) instead of
        `hidden_states`'s. `transformer_in` (64-320 channels widened to 512) needs far fewer operations this way.

        Returns:
            `torch.Tensor | None`: The attention output, or None when this does not apply (a custom processor,
            wrapped or hooked layers, or no saving) and the caller should compute it as usual.
        """
        attn = self.attn1
        width, dim = x.shape[-1], hidden_states.shape[-1]
        plain = _is_plain(proj, self.norm1, attn, attn.to_q, attn.to_k, attn.to_v)
        if not plain or type(attn.processor) is not TemporalAttnProcessor2_0 or width + 2 >= dim:
            return None
        if proj.bias is None or not self.norm1.elementwise_affine or self.norm1.bias is None:
            return None
        if any(layer.bias is not None for layer in (attn.to_q, attn.to_k, attn.to_v)):  # never, as built here
            return None
        # The folded weights, in float32 at least (they are small: 3 * inner x (width + 1)).
        dtype = torch.promote_types(x.dtype, torch.float32)
        weights = [attn.to_q, attn.to_k, attn.to_v]
        qkv_weight = torch.cat([layer.weight for layer in weights]).to(dtype)  # (3 * inner, dim)
        proj_weight, proj_bias = proj.weight.to(dtype), proj.bias.to(dtype)
        centred = proj_weight - proj_weight.mean(0, keepdim=True)  # A: (dim, width)
        offset = proj_bias - proj_bias.mean()  # c: (dim,)
        scaled = qkv_weight * self.norm1.weight.to(dtype)  # P diag(g)
        bias = qkv_weight @ self.norm1.bias.to(dtype)  # P b
        folded = torch.cat([scaled @ centred, (scaled @ offset)[:, None], bias[:, None]], dim=1)  # (3*inner, width+2)
        # The LayerNorm's 1 / std per token, from torch's fast kernel (its normalised output is not needed).
        inv_std = torch.native_layer_norm(hidden_states, (dim,), None, None, self.norm1.eps)[2]  # (N, F, 1)
        inv_std = inv_std.to(x.dtype)
        inputs = torch.cat([x * inv_std, inv_std, torch.ones_like(inv_std)], dim=-1)  # (N, F, width + 2)
        qkv = F.linear(inputs, folded.to(x.dtype))  # (N, F, 3 * inner); the bias is the last column
        batch, frames, _ = qkv.shape
        heads = attn.heads
        query, key, value = (
            t.view(batch, frames, heads, -1).transpose(1, 2) for t in qkv.chunk(3, dim=-1)
        )  # (N, heads, F, d)
        out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch, frames, -1)  # (N, F, inner)
        return attn.to_out[1](attn.to_out[0](out))


class ModelScopeTemporalTransformer(nn.Module):
    """diffusers' `TransformerTemporalModel` (ModelScope), one block: GroupNorm over each video, `proj_in`, a
    `ModelScopeTemporalBlock` over the frames of every pixel, `proj_out`, added to the input. Same parameter names.

    It computes the same function as diffusers' layer with one layout copy in (the GroupNorm is applied to the tokens)
    and the way out fused with the residual. Unlike diffusers, `proj_out` starts at zero (the layer starts as the
    identity, like every temporal layer here); converted weights overwrite it.

    Args:
        channels (`int`): Feature channels.
        num_heads (`int`): Attention heads.
        head_dim (`int`): Channels per head; the block works on `num_heads * head_dim` channels.
        norm_num_groups (`int`, defaults to 32): Groups of the GroupNorm.
        upcast_attention (`bool`, defaults to False): Compute attention scores in float32.
    """

    def __init__(
        self, channels: int, num_heads: int, head_dim: int, norm_num_groups: int = 32, upcast_attention: bool = False
    ):
        super().__init__()
        if num_heads < 1 or head_dim < 1:
            raise ValueError(
                f"A temporal transformer needs at least one head of at least one channel but has {num_heads} heads "
                f"of {head_dim} channels."
            )
        inner_dim = num_heads * head_dim
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=MODELSCOPE_ATTENTION_NORM_EPS)
        self.proj_in = nn.Linear(channels, inner_dim)
        self.transformer_blocks = nn.ModuleList(
            [ModelScopeTemporalBlock(inner_dim, num_heads, head_dim, upcast_attention)]
        )
        self.proj_out = nn.Linear(inner_dim, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def _group_norm(self, frames: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """`self.norm` of the video `frames` `(B, F, C, HW)`, applied to the same values laid out as `tokens`
        `(B, L, C)`: statistics per video and channel group over all frames and pixels, as diffusers' GroupNorm of
        `(B, C, F, H, W)`; computed in float32 at least."""
        batch, num_frames, channels, pixels = frames.shape
        groups = self.norm.num_groups
        compute_dtype = torch.promote_types(frames.dtype, torch.float32)
        # Per frame and group, with torch's fast GroupNorm kernel, then pooled over the frames (all equally large):
        # variance = mean of the variances + variance of the means.
        _, mean, rstd = torch.native_group_norm(
            frames.to(compute_dtype).reshape(batch * num_frames, channels, pixels),
            None, None, batch * num_frames, channels, pixels, groups, 0.0,
        )  # fmt: skip
        mean, var = mean.view(batch, num_frames, groups), rstd.view(batch, num_frames, groups).pow(-2)
        video_mean = mean.mean(1)  # (B, G)
        video_var = var.mean(1) + (mean - video_mean[:, None]).square().mean(1)
        scale = torch.rsqrt(video_var + self.norm.eps).repeat_interleave(channels // groups, dim=1)  # (B, C)
        shift = -video_mean.repeat_interleave(channels // groups, dim=1) * scale
        if self.norm.affine:
            weight, bias = self.norm.weight.to(compute_dtype), self.norm.bias.to(compute_dtype)
            scale, shift = scale * weight, shift * weight + bias
        out = torch.addcmul(shift[:, None], tokens.to(compute_dtype), scale[:, None])  # tokens * scale + shift
        return out.to(tokens.dtype)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = hidden_states.shape
        batch, pixels = batch_frames // num_frames, height * width
        frames = hidden_states.reshape(batch, num_frames, channels, pixels)  # (B, F, C, HW)
        tokens = frames.permute(0, 3, 1, 2).reshape(batch, pixels * num_frames, channels)  # (B, HW*F, C)
        tokens = self._group_norm(frames, tokens.contiguous())
        tokens = tokens.view(batch * pixels, num_frames, channels)  # (B*HW, F, C)
        hidden = self.proj_in(tokens)  # (B*HW, F, inner): one sequence of frames per pixel
        # Each block may fold its neighbouring projections in (see ModelScopeTemporalBlock.forward).
        last = len(self.transformer_blocks) - 1
        for i, block in enumerate(self.transformer_blocks):
            hidden = block(
                hidden,
                projected_from=(tokens, self.proj_in) if i == 0 else None,
                project_to=self.proj_out if i == last else None,
            )  # the last one returns proj_out of its output: (B*HW, F, C)
        out = frames + hidden.reshape(batch, pixels, num_frames, channels).permute(0, 2, 3, 1)  # (B, F, C, HW)
        return out.reshape(batch_frames, channels, height, width)
