"""The decoder of `AutoencoderKLVideo`: diffusers' image `Decoder` with temporal layers interleaved.

`VideoDecoder` subclasses diffusers' `Decoder`, so its spatial layers are built by diffusers and keep their names
(`conv_in`, `mid_block.resnets.k`, `mid_block.attentions.0`, `up_blocks.i.resnets.j`, `up_blocks.i.upsamplers.0`,
`conv_norm_out`, `conv_out`); the temporal layers sit beside them under their own names:

- `mid_block_temporal.k`, `up_blocks_temporal.i.j`: a `TemporalResnetMix` after every spatial resnet: diffusers'
  `TemporalResnetBlock` (`temporal_res_block`) blended with the resnet's output by an `AlphaBlender`
  (`time_mixer`), the temporal half of SVD's `SpatioTemporalResBlock`;
- `mid_block_temporal_attention`: a `TemporalAttention` (bidirectional or directed) after the mid block, and
  `up_blocks_temporal_attention.i` one after the resnets of each up block (before its upsampler), if configured;
- `time_conv_out`: a `Conv3d` with kernel (3, 1, 1) on the output frames, as in SVD's `TemporalDecoder`.

`initialize_temporal_weights` makes them all the identity. Chunked evaluation (`chunk_size`) is described in
`VideoDecoder.forward`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from diffusers.models.autoencoders.vae import Decoder
from diffusers.models.resnet import AlphaBlender, TemporalResnetBlock
from torch import nn

from .temporal import TEMPORAL_ATTENTION_TYPES, TemporalAttention

# diffusers' temporal blocks normalise with this epsilon (SVD's `temporal_eps`).
TEMPORAL_NORM_EPS = 1e-5


class GroupedTemporalResnetBlock(TemporalResnetBlock):
    """diffusers' `TemporalResnetBlock` without a time embedding, with `norm_num_groups` groups in its GroupNorms.

    diffusers builds 32 groups, which channel counts that are not multiples of 32 cannot have; this constructor
    builds the attributes that diffusers' `forward` (reused as it is) reads, with the same names, shapes and
    defaults, and any number of groups.

    Args:
        channels (`int`): Feature channels (in and out).
        norm_num_groups (`int`, defaults to 32): Groups of the two GroupNorms.
        eps (`float`, defaults to 1e-5): Their epsilon (SVD's `temporal_eps`).
    """

    def __init__(self, channels: int, norm_num_groups: int = 32, eps: float = TEMPORAL_NORM_EPS):
        nn.Module.__init__(self)
        self.in_channels = self.out_channels = channels
        self.norm1 = nn.GroupNorm(norm_num_groups, channels, eps=eps, affine=True)
        self.conv1 = nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), stride=1, padding=(1, 0, 0))
        self.time_emb_proj = None
        self.norm2 = nn.GroupNorm(norm_num_groups, channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), stride=1, padding=(1, 0, 0))
        self.nonlinearity = nn.SiLU()
        self.use_in_shortcut = False
        self.conv_shortcut = None


class TemporalResnetMix(nn.Module):
    """The temporal half of SVD's `SpatioTemporalResBlock`, applied after a spatial resnet.

    `mix(x, x + Conv3d(SiLU(GN(Conv3d(SiLU(GN(x)))))))` with diffusers' `TemporalResnetBlock` (kernels (3, 1, 1);
    its GroupNorms normalise over all frames of a video; see `GroupedTemporalResnetBlock`) and `AlphaBlender(
    merge_strategy="learned", switch_spatial_to_temporal_mix=True)`: `sigmoid(m) * temporal + (1 - sigmoid(m)) *
    spatial`, with `m` (`time_mixer.mix_factor`) starting at 0.

    Args:
        channels (`int`): Feature channels.
        norm_num_groups (`int`, defaults to 32): Groups of the two GroupNorms (32 in SD's and SVD's VAEs).
    """

    def __init__(self, channels: int, norm_num_groups: int = 32):
        super().__init__()
        self.temporal_res_block = GroupedTemporalResnetBlock(channels, norm_num_groups)
        self.time_mixer = AlphaBlender(alpha=0.0, merge_strategy="learned", switch_spatial_to_temporal_mix=True)

    def forward(self, hidden_states: torch.Tensor, num_frames: int, chunk_size: int | None = None) -> torch.Tensor:
        """`(B*F, C, H, W)` -> `(B*F, C, H, W)`; `chunk_size` frames at a time (all videos of the batch together)
        gives the same result (see `_chunked`), and then, without gradients, overwrites `hidden_states` with it."""
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        frames = hidden_states.reshape(batch, num_frames, channels, height, width)  # (B, F, C, H, W)
        video = frames.permute(0, 2, 1, 3, 4)  # (B, C, F, H, W), a view
        if chunk_size is None or chunk_size >= num_frames:
            temporal = self.temporal_res_block(video, None)  # (B, C, F, H, W)
            mixed = self.time_mixer(x_spatial=video, x_temporal=temporal)  # (B, C, F, H, W)
            return mixed.permute(0, 2, 1, 3, 4).reshape(batch_frames, channels, height, width)  # (B*F, C, H, W)
        # Without gradients the result overwrites the input, once no later chunk reads those frames.
        out = frames if not torch.is_grad_enabled() else torch.empty_like(frames)  # (B, F, C, H, W)
        self._chunked(video, chunk_size, out)
        return out.reshape(batch_frames, channels, height, width)  # (B*F, C, H, W), a view

    def _chunked(self, video: torch.Tensor, chunk_size: int, out: torch.Tensor) -> None:
        """`TemporalResnetBlock` then the mix, computed for `chunk_size` frames at a time, equal to the whole-clip
        result: each Conv3d reads one frame beyond its chunk on each side (its zero padding is used only at the ends
        of the clip, as in the whole-clip call), and each GroupNorm uses statistics over all frames, gathered in a
        pass over the chunks before it is applied (the first convolution is therefore computed twice).

        Args:
            video (`torch.Tensor`): `(B, C, F, H, W)`.
            chunk_size (`int`): Frames per chunk.
            out (`torch.Tensor`): `(B, F, C, H, W)` to write the result to; it may be `video`'s storage: a chunk's
                result is written only when no later chunk reads its input frames (two frames before it).
        """
        block = self.temporal_res_block
        num_frames = video.shape[2]
        chunks = [(start, min(start + chunk_size, num_frames)) for start in range(0, num_frames, chunk_size)]
        norm1 = _group_statistics((video[:, :, start:end] for start, end in chunks), block.norm1)

        def first_conv(start: int, end: int) -> torch.Tensor:
            """conv1(SiLU(norm1(x))) at frames [start, end): `(B, C, end - start, H, W)`."""
            low, high = max(start - 1, 0), min(end + 1, num_frames)
            h = block.nonlinearity(_group_normalise(video[:, :, low:high], norm1, block.norm1))  # (B, C, n, H, W)
            return block.conv1(h)[:, :, start - low : end - low]  # (B, C, end - start, H, W)

        norm2 = _group_statistics((first_conv(start, end) for start, end in chunks), block.norm2)
        pending = []  # (start, end, result) not yet written
        for index, (start, end) in enumerate(chunks):
            low, high = max(start - 1, 0), min(end + 1, num_frames)
            h = _group_normalise(first_conv(low, high), norm2, block.norm2)  # (B, C, high - low, H, W)
            h = block.conv2(block.dropout(block.nonlinearity(h)))[:, :, start - low : end - low]  # (B, C, n, H, W)
            spatial = video[:, :, start:end]  # (B, C, n, H, W)
            pending.append((start, end, self.time_mixer(x_spatial=spatial, x_temporal=spatial + h)))
            # The next chunk reads input frames from two before its start on.
            first_read = chunks[index + 1][0] - 2 if index + 1 < len(chunks) else num_frames
            while pending and pending[0][1] <= first_read:
                done_start, done_end, result = pending.pop(0)
                out[:, done_start:done_end] = result.transpose(1, 2)  # (B, n, C, H, W)


def _group_statistics(pieces: Iterable[torch.Tensor], norm: nn.GroupNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and `1 / sqrt(var + eps)` per video and group, `(B, G)` each in float32, of the concatenation over
    frames of `pieces` `(B, C, n, H, W)`: what `norm` computes for the whole clip. The pieces' statistics are
    combined with Chan et al.'s parallel update (no sum of squares, which would lose precision)."""
    count, mean, m2 = 0, None, None
    for piece in pieces:
        grouped = piece.unflatten(1, (norm.num_groups, -1)).float()  # (B, G, C/G, n, H, W)
        size = grouped[0, 0].numel()
        var_piece, mean_piece = torch.var_mean(grouped, dim=(2, 3, 4, 5), correction=0)  # (B, G) each
        if mean is None:
            count, mean, m2 = size, mean_piece, var_piece * size
            continue
        delta, total = mean_piece - mean, count + size
        mean = mean + delta * (size / total)
        m2 = m2 + var_piece * size + delta.square() * (count * size / total)
        count = total
    return mean, torch.rsqrt(m2 / count + norm.eps)


def _group_normalise(x: torch.Tensor, statistics: tuple[torch.Tensor, torch.Tensor], norm: nn.GroupNorm):
    """`norm` applied to frames `x` `(B, C, n, H, W)` of a clip with the clip's `statistics` (`_group_statistics`)."""
    mean, inv_std = statistics  # (B, G) each
    grouped = x.unflatten(1, (norm.num_groups, -1)).float()  # (B, G, C/G, n, H, W)
    out = ((grouped - mean[:, :, None, None, None, None]) * inv_std[:, :, None, None, None, None]).flatten(1, 2)
    if norm.affine:
        out = out * norm.weight.float()[:, None, None, None] + norm.bias.float()[:, None, None, None]
    return out.to(x.dtype)  # (B, C, n, H, W)


class VideoDecoder(Decoder):
    """diffusers' `Decoder` (same spatial layers and parameter names) with temporal layers after its resnets.

    Args:
        in_channels, out_channels, up_block_types, block_out_channels, layers_per_block, norm_num_groups, act_fn,
            mid_block_add_attention: As in diffusers' `Decoder` (group norm only).
        temporal_attention (`str | None`, defaults to "bidirectional"): `TemporalAttention` after the mid block:
            "bidirectional", "directed" (frame i attends to frames <= i) or None.
        temporal_attention_up_blocks (`bool`, defaults to False): Also one after the resnets of each up block.
        temporal_attention_head_dim (`int`, defaults to 64): Channels per head (`max(1, channels // head_dim)` heads).
        frame_position_encoding (`str | None`, defaults to "sinusoidal"): Frame-position encoding of the attention.
        max_frames (`int`, defaults to 32): Frames a learned position encoding supports.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        mid_block_add_attention: bool = True,
        temporal_attention: str | None = "bidirectional",
        temporal_attention_up_blocks: bool = False,
        temporal_attention_head_dim: int = 64,
        frame_position_encoding: str | None = "sinusoidal",
        max_frames: int = 32,
    ):
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn=act_fn,
            norm_type="group",
            mid_block_add_attention=mid_block_add_attention,
        )
        if temporal_attention is not None and temporal_attention not in TEMPORAL_ATTENTION_TYPES:
            raise ValueError(
                f"`temporal_attention` must be one of {TEMPORAL_ATTENTION_TYPES} or None but is "
                f"{temporal_attention!r}."
            )

        def attention(channels: int) -> TemporalAttention:
            return TemporalAttention(
                channels,
                max(1, channels // temporal_attention_head_dim),
                attention_type=temporal_attention,
                position_encoding=frame_position_encoding,
                max_frames=max_frames,
            )

        mid_channels = block_out_channels[-1]
        self.mid_block_temporal = nn.ModuleList(
            TemporalResnetMix(mid_channels, norm_num_groups) for _ in self.mid_block.resnets
        )
        self.mid_block_temporal_attention = attention(mid_channels) if temporal_attention is not None else None
        self.up_blocks_temporal = nn.ModuleList(
            nn.ModuleList(TemporalResnetMix(resnet.out_channels, norm_num_groups) for resnet in block.resnets)
            for block in self.up_blocks
        )
        if temporal_attention is not None and temporal_attention_up_blocks:
            self.up_blocks_temporal_attention = nn.ModuleList(
                attention(block.resnets[-1].out_channels) for block in self.up_blocks
            )
        else:
            self.up_blocks_temporal_attention = None
        self.time_conv_out = nn.Conv3d(out_channels, out_channels, kernel_size=(3, 1, 1), padding=(1, 0, 0))
        self.initialize_temporal_weights()

    def temporal_mixes(self) -> list[TemporalResnetMix]:
        """Every `TemporalResnetMix`, in the order the forward pass uses them."""
        return [*self.mid_block_temporal, *(mix for block in self.up_blocks_temporal for mix in block)]

    def temporal_attentions(self) -> list[TemporalAttention]:
        """Every `TemporalAttention` (mid block first)."""
        found = [self.mid_block_temporal_attention] if self.mid_block_temporal_attention is not None else []
        return found + list(self.up_blocks_temporal_attention or [])

    @torch.no_grad()
    def initialize_temporal_weights(self) -> None:
        """Make every temporal layer the identity, so the decoder equals the image decoder frame by frame.

        - `TemporalResnetBlock`: its second convolution zero, so it returns its input; then the mix is a mix of two
          equal tensors, whatever its factor (SVD's initial factor, sigmoid(0) = 0.5, is kept).
        - `TemporalAttention`: its output projection zero (as it is built).
        - `time_conv_out`: the identity convolution (centre tap the identity matrix, other taps and bias zero).
        """
        for mix in self.temporal_mixes():
            nn.init.zeros_(mix.temporal_res_block.conv2.weight)
            nn.init.zeros_(mix.temporal_res_block.conv2.bias)
        for attention in self.temporal_attentions():
            nn.init.zeros_(attention.attn.to_out[0].weight)
            nn.init.zeros_(attention.attn.to_out[0].bias)
        weight = self.time_conv_out.weight  # (C_out, C_in, 3, 1, 1)
        weight.zero_()
        weight[:, :, 1, 0, 0] = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
        nn.init.zeros_(self.time_conv_out.bias)

    def forward(self, sample: torch.Tensor, num_frames: int, chunk_size: int | None = None) -> torch.Tensor:
        """Decode latent frames `(B*F, C_latent, h, w)` of `B` videos of `num_frames` frames to `(B*F, C_out, H, W)`.

        Each layer runs over the whole clip before the next one starts. With `chunk_size`, each layer computes
        `chunk_size` frames of every video at a time, and sees exactly what it sees in the whole-clip pass: spatial
        layers work frame by frame; a `TemporalResnetMix` reads one frame beyond the chunk per convolution and uses
        whole-clip GroupNorm statistics (`TemporalResnetMix._chunked`); a `TemporalAttention` (per pixel, over all
        frames) runs on a band of rows of all frames holding as many features as a chunk; `time_conv_out` (three
        channels) runs on the whole clip. So the result is the whole-clip result up to float rounding, for every
        temporal option. What is bounded is the working memory of each layer (its intermediates for one chunk):
        without gradients, resnets, attention and temporal mixes write their result over their input, so one
        whole-clip feature tensor is held at a time (two around an upsampler: its input and its output).
        """
        batch_frames = sample.shape[0]
        images_per_chunk = None if chunk_size is None else chunk_size * (batch_frames // num_frames)

        sample = _map_frames(self.conv_in, sample, images_per_chunk)  # (B*F, C_mid, h, w)

        # middle: resnet, then (attention, resnet) pairs as in UNetMidBlock2D; a temporal mix after each resnet
        mid_resnets, mid_mixes = self.mid_block.resnets, self.mid_block_temporal
        sample = self._per_frame(mid_resnets[0], sample, images_per_chunk, None)  # no time embedding
        sample = self._checkpointed(mid_mixes[0], sample, num_frames, chunk_size)
        for attention, resnet, mix in zip(self.mid_block.attentions, mid_resnets[1:], mid_mixes[1:]):
            if attention is not None:
                sample = self._per_frame(attention, sample, images_per_chunk)
            sample = self._per_frame(resnet, sample, images_per_chunk, None)
            sample = self._checkpointed(mix, sample, num_frames, chunk_size)
        if self.mid_block_temporal_attention is not None:
            sample = self._temporal_attention(self.mid_block_temporal_attention, sample, num_frames, chunk_size)

        upscale_dtype = next(iter(self.up_blocks.parameters())).dtype
        sample = sample.to(upscale_dtype)

        # up
        for i, up_block in enumerate(self.up_blocks):
            for resnet, mix in zip(up_block.resnets, self.up_blocks_temporal[i]):
                sample = self._per_frame(resnet, sample, images_per_chunk, None)  # (B*F, C_i, h_i, w_i)
                sample = self._checkpointed(mix, sample, num_frames, chunk_size)
            if self.up_blocks_temporal_attention is not None:
                sample = self._temporal_attention(self.up_blocks_temporal_attention[i], sample, num_frames, chunk_size)
            for upsampler in up_block.upsamplers or []:
                sample = _map_frames(upsampler, sample, images_per_chunk)  # (B*F, C_i, 2 h_i, 2 w_i)

        # post-process, frame by frame, then the temporal convolution on the output frames
        sample = _map_frames(self._post_process, sample, images_per_chunk)  # (B*F, C_out, H, W)
        _, channels, height, width = sample.shape
        video = sample.reshape(-1, num_frames, channels, height, width).permute(0, 2, 1, 3, 4)  # (B, C_out, F, H, W)
        video = self.time_conv_out(video)  # (B, C_out, F, H, W)
        return video.permute(0, 2, 1, 3, 4).reshape(batch_frames, channels, height, width)  # (B*F, C_out, H, W)

    def _post_process(self, sample: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv_act(self.conv_norm_out(sample)))

    def _checkpointed(self, module: nn.Module, *args) -> torch.Tensor:
        """`module(*args)`, under gradient checkpointing when it is enabled and gradients are recorded."""
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(module, *args)
        return module(*args)

    def _per_frame(self, module: nn.Module, sample: torch.Tensor, images_per_chunk: int | None, *args) -> torch.Tensor:
        """`module(frames, *args)` for a spatial resnet or attention, `images_per_chunk` frames at a time, each call
        checkpointed when gradient checkpointing is on (convolutions and upsamplers are not, as in `Decoder`)."""
        run = lambda part: self._checkpointed(module, part, *args)  # noqa: E731
        return _map_frames(run, sample, images_per_chunk, reuse=True)  # `sample` is the decoder's own tensor

    def _temporal_attention(
        self, attention: TemporalAttention, sample: torch.Tensor, num_frames: int, chunk_size: int | None
    ) -> torch.Tensor:
        """`attention` over the whole clip; with `chunk_size`, on bands of rows (each pixel's frames stay together)."""
        height = sample.shape[2]
        if chunk_size is None or chunk_size >= num_frames:
            return self._checkpointed(attention, sample, num_frames)
        rows = max(1, height * chunk_size // num_frames)
        # Without gradients each band's result overwrites its input (a band reads only itself).
        out = sample if not torch.is_grad_enabled() else torch.empty_like(sample)  # (B*F, C, H, W)
        for top in range(0, height, rows):
            out[:, :, top : top + rows] = self._checkpointed(attention, sample[:, :, top : top + rows], num_frames)
        return out


def _map_frames(
    function: Callable[[torch.Tensor], torch.Tensor], frames: torch.Tensor, size: int | None, reuse: bool = False
) -> torch.Tensor:
    """`function` applied to `frames` `(N, ...)` in pieces of `size` along the first axis, into one output.

    With `reuse` and no gradients, a result of the input's shape and dtype overwrites the input, piece by piece
    (`function` must then treat every frame on its own, and the caller must own `frames`)."""
    if size is None or size >= frames.shape[0]:
        return function(frames)
    first = function(frames[:size])
    same = first.shape[1:] == frames.shape[1:] and first.dtype == frames.dtype
    if reuse and same and not torch.is_grad_enabled():
        out = frames
    else:
        out = first.new_empty((frames.shape[0], *first.shape[1:]))
    out[:size] = first
    for start in range(size, frames.shape[0], size):
        out[start : start + size] = function(frames[start : start + size])
    return out
