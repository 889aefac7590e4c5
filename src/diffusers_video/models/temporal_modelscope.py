"""The temporal layers of diffusers' `UNet3DConditionModel` (ModelScope text-to-video), with its parameter names.

`UNet3DModel(temporal_layout="modelscope")` uses these instead of the layers of `temporal.py`, so converted
ModelScope weights load as they are: `ModelScopeTemporalConv` (diffusers' `TemporalConvLayer`) and
`ModelScopeTemporalTransformer` (diffusers' `TransformerTemporalModel`). They compute the same functions as diffusers'
layers with fewer layout copies; unlike the layers of `temporal.py` they normalise over all frames of a video and also
run on a single frame, as diffusers' do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from torch import nn

from .temporal_attention import TemporalAttnProcessor2_0, TemporalSelfAttention, self_attention, temporal_sdpa

__all__ = [
    "MODELSCOPE_ATTENTION_NORM_EPS",
    "MODELSCOPE_CONV_DROPOUT",
    "MODELSCOPE_CONV_NORM_EPS",
    "MODELSCOPE_INPUT_HEADS",
    "FrameConv3d",
    "ModelScopeTemporalBlock",
    "ModelScopeTemporalConv",
    "ModelScopeTemporalTransformer",
]

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
            attention = self_attention(self.attn1, self.norm1(hidden_states), causal=False)
        hidden_states = hidden_states + attention
        out = self_attention(self.attn2, self.norm2(hidden_states), causal=False)
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
        out = temporal_sdpa(query, key, value, scale=attn.scale)
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
            frames.to(compute_dtype).reshape(batch * num_frames, channels, pixels).contiguous(),  # the kernel needs it
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
