"""The attention layer of the temporal layers and its processors: self-attention over frames, causal or not.

`TemporalSelfAttention` is a diffusers `Attention` (so it shows up in `attn_processors`, takes `set_attn_processor`,
slicing and peft) whose processors accept `causal=True`: `TemporalAttnProcessor2_0` (PyTorch SDPA with `is_causal`)
and `TemporalXFormersAttnProcessor`. `self_attention` runs any processor, giving a generic diffusers processor the
causal mask as an additive bias. Used by `TemporalAttention` (`temporal.py`) and the ModelScope layers
(`temporal_modelscope.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.utils.import_utils import is_xformers_available

if is_xformers_available():
    import xformers
    import xformers.ops
else:
    xformers = None

__all__ = [
    "SHORT_SEQUENCE_FRAMES",
    "TemporalAttnProcessor2_0",
    "TemporalSelfAttention",
    "TemporalXFormersAttnProcessor",
    "causal_attention_bias",
    "self_attention",
    "temporal_sdpa",
]

# On the CPU, in float32 inference, attention over at most this many frames runs as explicit "matmul, softmax,
# matmul" over cache-sized chunks of rows (`temporal_sdpa`): PyTorch's fused CPU kernel is slower there on short
# sequences, and gains nothing from a second thread (16 frames, 2 threads: 0.4-0.7x its time; one thread: about even).
SHORT_SEQUENCE_FRAMES = 32
_SHORT_SEQUENCE_SCORES = 2**17  # attention scores per chunk (512 KiB in float32)


def causal_attention_bias(num_frames: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Additive `(num_frames, num_frames)` bias that lets frame i attend only to frames <= i."""
    future = torch.ones(num_frames, num_frames, device=device, dtype=torch.bool).triu(diagonal=1)
    return torch.zeros(num_frames, num_frames, device=device, dtype=dtype).masked_fill(future, float("-inf"))


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
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=attn.scale)
        else:
            out = temporal_sdpa(query, key, value, causal=causal, scale=attn.scale)
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


def temporal_sdpa(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    """`F.scaled_dot_product_attention(query, key, value, is_causal=causal, scale=scale)` of `(N, heads, F, d)`
    queries, keys and values (views of any strides), for attention over frames.

    On the CPU, in float32 inference over at most `SHORT_SEQUENCE_FRAMES` frames, it runs as explicit "matmul,
    softmax, matmul" over chunks of `N`, which is faster there (see `SHORT_SEQUENCE_FRAMES`); elsewhere (a GPU, half
    precision, training, `torch.compile`, longer sequences) it is SDPA itself. Either way the result is the same to
    float32 rounding. Returns `(N, heads, F, d)`, a transposed view of an `(N, F, heads, d)` tensor on the short path.
    """
    batch, heads, length, head_dim = query.shape
    short = (
        query.device.type == "cpu"
        and query.dtype == torch.float32
        and length <= SHORT_SEQUENCE_FRAMES
        and key.shape[2] == length
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )
    if not short:
        return F.scaled_dot_product_attention(query, key, value, is_causal=causal, scale=scale)
    scale = head_dim**-0.5 if scale is None else scale
    bias = causal_attention_bias(length, query.device, query.dtype) if causal else None
    out = query.new_empty(batch, length, heads, value.shape[-1])  # the layout the caller merges the heads in
    rows = max(1, _SHORT_SEQUENCE_SCORES // (heads * length * length))
    for start in range(0, batch, rows):
        chunk = slice(start, start + rows)
        scores = torch.matmul(query[chunk], key[chunk].transpose(-1, -2)).mul_(scale)  # (n, heads, F, F)
        if bias is not None:
            scores.add_(bias)
        out[chunk] = torch.matmul(scores.softmax(-1), value[chunk]).transpose(1, 2)
    return out.transpose(1, 2)


_TEMPORAL_PROCESSORS = (TemporalAttnProcessor2_0, TemporalXFormersAttnProcessor)


def self_attention(attn: Attention, tokens: torch.Tensor, causal: bool) -> torch.Tensor:
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
