"""`UNet3DModel`: a video UNet whose spatial layers are those of diffusers' `UNet2DConditionModel`.

The spatial layers keep the parameter names and shapes of `UNet2DConditionModel` for the same config (Stable
Diffusion 2.1 options included), so image weights load with no renaming. Temporal layers (see `temporal.py`) follow
every spatial resnet and spatial transformer and start as the identity: `UNet3DModel.from_unet2d(unet)` equals `unet`
applied frame by frame until it is trained.

MagicVideo's options (`frame_adaptor="conv"`, `temporal_layout="parallel"`, `temporal_attention="directed"` with
`temporal_conv_padding="causal"`, an "fps" scalar condition) are described in the class docstring and in
`docs/magicvideo.md`. Loading, inflation and diffusers' conveniences live in `unet_3d_mixins.py`.

`temporal_layout="modelscope"` swaps the temporal layers for those of diffusers' `UNet3DConditionModel` (ModelScope
text-to-video), with its parameter names, so that its weights load unrenamed (see
`conversion_scripts/convert_modelscope_to_videofusion.py`) and the model computes what `UNet3DConditionModel` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.activations import get_activation
from diffusers.models.attention import AttentionMixin
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .saving import SafeFolderMixin
from .temporal import MODELSCOPE_INPUT_HEADS, ModelScopeTemporalTransformer
from .unet_3d_blocks import (
    TemporalOptions,
    VideoDownBlock,
    VideoMidBlock,
    VideoUpBlock,
)
from .unet_3d_config import (
    check_config_values,
    check_spatial_config,
    check_temporal_config,
    check_temporal_layout,
)
from .unet_3d_inputs import check_forward_inputs
from .unet_3d_mixins import AUTO_CHUNK_FRAMES, TEMPORAL_CONFIG_KEYS, UNet3DConveniencesMixin, UNet3DLoadingMixin

__all__ = [
    "AUTO_CHUNK_FRAMES",
    "TEMPORAL_CONFIG_KEYS",
    "UNet3DModel",
    "UNet3DModelOutput",
    "temporal_parameter_names",
]


@dataclass
class UNet3DModelOutput(BaseOutput):
    """Output of `UNet3DModel`.

    Args:
        sample (`torch.Tensor` of shape `(batch_size, channels, num_frames, height, width)`): The prediction.
    """

    sample: torch.Tensor


def _per_block(value, num_blocks: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != num_blocks:
            raise ValueError(f"`{name}` must have one value per down block ({num_blocks}) but is {list(value)}.")
        return list(value)
    return [value] * num_blocks


class UNet3DModel(
    UNet3DLoadingMixin,
    UNet3DConveniencesMixin,
    SafeFolderMixin,
    ModelMixin,
    AttentionMixin,
    ConfigMixin,
    PeftAdapterMixin,
):
    r"""A conditional video UNet: `UNet2DConditionModel`'s spatial layers plus temporal layers.

    Input and output are `(batch, channels, frames, height, width)`; `encoder_hidden_states` `(batch, tokens, dim)`
    is shared by all frames of a video. With `frames == 1` every temporal layer is skipped, so the model is an image
    model for still images (joint image-video training); the "modelscope" temporal layout runs them on one frame too,
    as diffusers' `UNet3DConditionModel` does.

    Spatial arguments have the meaning they have in `UNet2DConditionModel` (including its naming quirk:
    `attention_head_dim` is the number of attention heads of each block unless `num_attention_heads` is given).
    Supported block types: `CrossAttnDownBlock2D`, `DownBlock2D`, `UNetMidBlock2DCrossAttn`, `UNetMidBlock2D` (no
    attention), `None` (no mid block), `UpBlock2D`, `CrossAttnUpBlock2D`. A UNet built only from `DownBlock2D`,
    `UpBlock2D`, `UNetMidBlock2D` and without temporal attention is fully convolutional (Imagen Video's
    super-resolution stages) and runs at any size divisible by its downsampling factor.

    Temporal arguments:
        temporal_conv (`bool`, defaults to True): A residual convolution over frames after each spatial resnet.
        temporal_conv_kernel_size (`int`, defaults to 3): Its kernel size over frames.
        temporal_attention (`str | None`, defaults to "bidirectional"): Temporal self-attention after each spatial
            transformer: "bidirectional", "directed" (causal, frame i sees frames <= i; MagicVideo) or None.
        temporal_attention_head_dim (`int`, defaults to 64): Channels per temporal attention head.
        frame_position_encoding (`str | None`, defaults to "sinusoidal"): Frame-position encoding of temporal
            attention: "sinusoidal", "learned" (at most `max_frames` frames) or None.
        max_frames (`int`, defaults to 32): Frames supported by learned encodings and frame adaptors.
        frame_adaptor (`bool | str`, defaults to False): MagicVideo's per-frame learned scales and shifts (see
            `frame_adaptors.py`), identity at init: True puts one after each spatial resnet; "conv" one after each of
            the two 2D convolutions of every spatial resnet (`z_f = S_f * Conv2d(z_f) + B_f`, the paper's placement),
            with the resnets' parameter names unchanged.
        temporal_cross_attention (`bool`, defaults to False): Each temporal attention layer also attends to the text
            (`encoder_hidden_states`), with a zero-initialised output, so that motion words reach the temporal layers
            directly rather than only through per-frame spatial features (see `TemporalAttention`). Needs
            `temporal_attention` and the default layout.
        scalar_conditions (`tuple[str, ...]`, defaults to ()): Names of extra scalar conditions (e.g. "fps",
            "noise_aug_level", "guidance_scale"), each embedded like a timestep and added to the time embedding
            (zero-initialised). Values are embedded with timestep frequencies, so pass them on a timestep-like scale
            (e.g. a noise level in [0, 1] times 1000).
        temporal_layout (`str`, defaults to "default"): "default" (the layers above, each temporal attention after
            its spatial transformer: `z -> T(S(z))`), "parallel" (MagicVideo's `S-Attn(z) + T-Attn(z)`: the spatial
            transformer and the temporal attention read the same `z` and their changes are summed, `z + (S(z) - z) +
            (T(z) - z)`) or "modelscope": the temporal
            layers of diffusers' `UNet3DConditionModel`, with its parameter names and computation: a temporal
            transformer `transformer_in` after `conv_in` (8 heads of `temporal_attention_head_dim` channels),
            four-stage temporal convolutions (`TemporalConvLayer`, dropout 0.1) and temporal transformers
            (`TransformerTemporalModel`: GroupNorm over the video, `proj_in`, two self-attentions over frames and a
            GEGLU feed-forward, `proj_out`) whose heads have `temporal_attention_head_dim` channels each, normalised
            over all frames and run on single frames too. It needs `frame_position_encoding=None` and a
            bidirectional (or no) `temporal_attention`; `max_frames` only concerns frame adaptors. A
            `UNet3DConditionModel` with `attention_head_dim=d` has `num_attention_heads=[c // d for c in
            block_out_channels]` spatial heads and `temporal_attention_head_dim=d` here (the converter writes that
            config).
        temporal_text_modulation (`bool`, defaults to False): Each temporal convolution scales and shifts its
            normalised input by a projection of the pooled text (the mean of `encoder_hidden_states` over its tokens,
            masked tokens left out), one per video; see `TemporalConv`. The projections start random and the
            convolutions at zero, so an inflated model still equals its image model. This is the path by which a
            motion word can choose *how* neighbouring frames are combined (a multiplicative interaction), which
            additive text features give only at second order. Needs `temporal_conv` and the default or parallel
            layout.
        frame_adaptor_text_modulation (`bool`, defaults to False): The frame adaptors' per-frame scales and shifts
            also depend on the pooled text (ours; MagicVideo's adaptors do not read the text): `x_f * (1 + scale_f +
            scale(c, f)) + shift_f + shift(c, f)`, linear in the pooled text `c` and combining the same functions of
            the frame position as `temporal_text_modulation`, the projection starting at zero (identity at init).
            The text-times-frame-position path a motion word needs, for a model without temporal convolutions. Needs
            `frame_adaptor`.
        temporal_conv_padding (`str`, defaults to "same"): Padding of the temporal convolutions over frames: "same"
            (centred: frame i sees frames i +- k//2) or "causal" (frame i sees frames i - k + 1 ... i). With
            "causal" and `temporal_attention="directed"` no layer mixes a later frame into an earlier one, so the
            output at frame i depends only on input frames <= i (MagicVideo's directed model). Not with the
            ModelScope layout.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = [
        "BasicTransformerBlock",
        "ResnetBlock2D",
        "AdaptedResnetBlock2D",
        "TemporalConv",
        "TemporalAttention",
        "ModelScopeTemporalConv",
        "ModelScopeTemporalTransformer",
        "VideoUpBlock",
    ]
    _skip_layerwise_casting_patterns = ["norm", "pos_embed", "frame_adaptors"]

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        center_input_sample: bool = False,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        mid_block_type: str | None = "UNetMidBlock2DCrossAttn",
        up_block_types: tuple[str, ...] = (
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        only_cross_attention: bool | tuple[bool, ...] = False,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int | tuple[int, ...] = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        dropout: float = 0.0,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 1280,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        attention_head_dim: int | tuple[int, ...] = 8,
        num_attention_heads: int | tuple[int, ...] | None = None,
        use_linear_projection: bool = False,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        time_embedding_dim: int | None = None,
        timestep_post_act: str | None = None,
        time_cond_proj_dim: int | None = None,
        conv_in_kernel: int = 3,
        conv_out_kernel: int = 3,
        temporal_conv: bool = True,
        temporal_conv_kernel_size: int = 3,
        temporal_attention: str | None = "bidirectional",
        temporal_attention_head_dim: int = 64,
        frame_position_encoding: str | None = "sinusoidal",
        max_frames: int = 32,
        frame_adaptor: bool | str = False,
        temporal_cross_attention: bool = False,
        scalar_conditions: tuple[str, ...] = (),
        temporal_layout: str = "default",
        temporal_text_modulation: bool = False,
        temporal_conv_padding: str = "same",
        frame_adaptor_text_modulation: bool = False,
    ):
        check_config_values({name: value for name, value in locals().items() if name != "self"})
        super().__init__()
        num_blocks = len(down_block_types)
        check_spatial_config(
            down_block_types, up_block_types, mid_block_type, block_out_channels, cross_attention_dim,
            resnet_time_scale_shift,
        )  # fmt: skip
        check_temporal_config(
            temporal_attention, frame_position_encoding, max_frames, scalar_conditions, frame_adaptor,
            temporal_conv_padding,
        )  # fmt: skip
        if temporal_cross_attention and (temporal_attention is None or temporal_layout == "modelscope"):
            raise ValueError(
                "`temporal_cross_attention=True` needs temporal attention layers of the default or parallel layout, "
                f"but `temporal_attention` is {temporal_attention!r} and `temporal_layout` is {temporal_layout!r}."
            )
        if temporal_text_modulation and (not temporal_conv or temporal_layout == "modelscope"):
            raise ValueError(
                "`temporal_text_modulation=True` needs temporal convolutions of the default or parallel layout, but "
                f"`temporal_conv` is {temporal_conv!r} and `temporal_layout` is {temporal_layout!r}."
            )
        if frame_adaptor_text_modulation and not frame_adaptor:
            raise ValueError(
                "`frame_adaptor_text_modulation=True` needs frame adaptors (`frame_adaptor` True or 'conv') but "
                f"`frame_adaptor` is {frame_adaptor!r}."
            )
        check_temporal_layout(
            temporal_layout, frame_position_encoding, temporal_attention, temporal_attention_head_dim,
            block_out_channels, temporal_conv_padding,
        )  # fmt: skip
        heads = _per_block(num_attention_heads or attention_head_dim, num_blocks, "attention_head_dim")
        layers = _per_block(layers_per_block, num_blocks, "layers_per_block")
        transformer_layers = _per_block(transformer_layers_per_block, num_blocks, "transformer_layers_per_block")
        only_cross = _per_block(only_cross_attention, num_blocks, "only_cross_attention")
        temporal = TemporalOptions(
            conv=temporal_conv,
            conv_kernel_size=temporal_conv_kernel_size,
            attention=temporal_attention,
            attention_head_dim=temporal_attention_head_dim,
            position_encoding=frame_position_encoding,
            max_frames=max_frames,
            frame_adaptor=frame_adaptor,
            conv_padding=temporal_conv_padding,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            upcast_attention=upcast_attention,
            layout=temporal_layout,
            cross_attention_dim=cross_attention_dim if temporal_cross_attention else None,
            conv_cond_dim=cross_attention_dim if temporal_text_modulation else None,
            adaptor_cond_dim=cross_attention_dim if frame_adaptor_text_modulation else None,
        )

        # input and time embedding, as in UNet2DConditionModel
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], conv_in_kernel, padding=(conv_in_kernel - 1) // 2)
        time_embed_dim = time_embedding_dim or block_out_channels[0] * 4
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(
            block_out_channels[0], time_embed_dim, act_fn=act_fn, post_act_fn=timestep_post_act,
            cond_proj_dim=time_cond_proj_dim,
        )  # fmt: skip
        # diffusers' UNet3DConditionModel: a temporal transformer right after conv_in.
        self.transformer_in = None
        if temporal_layout == "modelscope" and temporal_attention is not None:
            self.transformer_in = ModelScopeTemporalTransformer(
                block_out_channels[0],
                MODELSCOPE_INPUT_HEADS,
                temporal_attention_head_dim,
                norm_num_groups=norm_num_groups,
                upcast_attention=upcast_attention,
            )
        self.scalar_embeddings = nn.ModuleDict(
            {
                name: TimestepEmbedding(block_out_channels[0], time_embed_dim, act_fn=act_fn)
                for name in scalar_conditions
            }
        )

        common = dict(
            temb_channels=time_embed_dim,
            resnet_eps=norm_eps,
            resnet_act_fn=act_fn,
            resnet_groups=norm_num_groups,
            resnet_time_scale_shift=resnet_time_scale_shift,
            cross_attention_dim=cross_attention_dim,
            use_linear_projection=use_linear_projection,
            upcast_attention=upcast_attention,
            dropout=dropout,
            temporal=temporal,
        )
        self.down_blocks = nn.ModuleList()
        output_channel = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            input_channel, output_channel = output_channel, block_out_channels[i]
            self.down_blocks.append(
                VideoDownBlock(
                    has_attention=block_type == "CrossAttnDownBlock2D",
                    in_channels=input_channel,
                    out_channels=output_channel,
                    num_layers=layers[i],
                    transformer_layers_per_block=transformer_layers[i],
                    num_attention_heads=heads[i],
                    downsample_padding=downsample_padding,
                    add_downsample=i < num_blocks - 1,
                    only_cross_attention=only_cross[i],
                    **common,
                )
            )

        self.mid_block = None
        if mid_block_type is not None:
            self.mid_block = VideoMidBlock(
                has_attention=mid_block_type == "UNetMidBlock2DCrossAttn",
                in_channels=block_out_channels[-1],
                transformer_layers_per_block=transformer_layers[-1],
                num_attention_heads=heads[-1],
                output_scale_factor=mid_block_scale_factor,
                **common,
            )

        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(block_out_channels))
        output_channel = reversed_channels[0]
        for i, block_type in enumerate(up_block_types):
            prev_output_channel, output_channel = output_channel, reversed_channels[i]
            self.up_blocks.append(
                VideoUpBlock(
                    has_attention=block_type == "CrossAttnUpBlock2D",
                    in_channels=reversed_channels[min(i + 1, num_blocks - 1)],
                    out_channels=output_channel,
                    prev_output_channel=prev_output_channel,
                    num_layers=layers[num_blocks - 1 - i] + 1,
                    transformer_layers_per_block=transformer_layers[num_blocks - 1 - i],
                    num_attention_heads=heads[num_blocks - 1 - i],
                    add_upsample=i < num_blocks - 1,
                    only_cross_attention=only_cross[num_blocks - 1 - i],
                    **common,
                )
            )

        self.conv_norm_out = nn.GroupNorm(norm_num_groups, block_out_channels[0], eps=norm_eps)
        self.conv_act = get_activation(act_fn)
        self.conv_out = nn.Conv2d(
            block_out_channels[0], out_channels, conv_out_kernel, padding=(conv_out_kernel - 1) // 2
        )
        self.initialize_weights()
        self.gradient_checkpointing = False  # for `transformer_in`; the blocks have their own switch
        # Feed-forward chunking: "auto" (the default) runs the spatial feed-forward layers a few frames at a time in
        # inference, which bounds their memory (the largest activations of the UNet) at no measurable speed cost.
        self._forward_chunking: str | None = "auto"
        self._auto_chunk_size: int | None = None

    def initialize_weights(self) -> None:
        """Special initialisation, all in one place.

        Temporal layers zero their own output projections (see `temporal.py`); here the scalar-condition embeddings
        start at zero so that adding a condition does not change the model until it is trained.
        """
        for embedding in self.scalar_embeddings.values():
            nn.init.zeros_(embedding.linear_2.weight)
            nn.init.zeros_(embedding.linear_2.bias)

    @property
    def downsample_factor(self) -> int:
        """Height and width must be divisible by this."""
        return 2 ** (len(self.down_blocks) - 1)

    # ------------------------------------------------------------------ forward

    def _embed_scalar(self, value: torch.Tensor, batch: int, sample: torch.Tensor) -> torch.Tensor:
        """A checked timestep-like `(1,)` or `(batch,)` tensor -> `(batch, block_out_channels[0])` features."""
        return self.time_proj(value.expand(batch)).to(sample.dtype)  # Timesteps returns float32

    @staticmethod
    def _pool_text(
        encoder_hidden_states: torch.Tensor | None, encoder_attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The mean over tokens of `(B, T, D)` text embeddings, `(B, D)`; tokens with mask 0 are left out."""
        if encoder_hidden_states is None:
            raise ValueError(
                "This UNet has text-modulated temporal layers (`temporal_text_modulation=True` or "
                "`frame_adaptor_text_modulation=True`): `encoder_hidden_states` must be given."
            )
        if encoder_attention_mask is None:
            return encoder_hidden_states.mean(dim=1)
        weights = encoder_attention_mask.to(encoder_hidden_states.dtype)[:, :, None]  # (B, T, 1)
        return (encoder_hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        scalar_conds: dict[str, torch.Tensor | float] | None = None,
        timestep_cond: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> UNet3DModelOutput | tuple[torch.Tensor]:
        r"""Predict for a batch of videos.

        Args:
            sample (`torch.Tensor`): Noisy input `(batch, in_channels, frames, height, width)`.
            timestep (`torch.Tensor | float | int`): Diffusion timestep, a number or a `(batch,)` tensor.
            encoder_hidden_states (`torch.Tensor | None`): Text (or image) embeddings `(batch, tokens, dim)`, shared
                by every frame of a video. Required when the UNet has cross-attention.
            scalar_conds (`dict[str, torch.Tensor | float] | None`): One value (number or `(batch,)` tensor) per name
                in `config.scalar_conditions`.
            timestep_cond (`torch.Tensor | None`): Extra time-embedding input when `time_cond_proj_dim` is set.
            encoder_attention_mask (`torch.Tensor | None`): `(batch, tokens)` mask, 1 = keep, 0 = discard.
            cross_attention_kwargs (`dict | None`): Passed to the spatial attention processors.
            return_dict (`bool`, defaults to True): Return a `UNet3DModelOutput` instead of a tuple.

        Returns:
            `UNet3DModelOutput` (or a tuple) with `sample` of shape `(batch, out_channels, frames, height, width)`.
        """
        scalars = check_forward_inputs(
            self,
            sample, timestep, encoder_hidden_states, scalar_conds, timestep_cond, encoder_attention_mask,
            cross_attention_kwargs,
        )  # fmt: skip
        batch, channels, num_frames, height, width = sample.shape
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0

        # 1. time and scalar conditions, one embedding per video, repeated for its frames
        emb = self.time_embedding(self._embed_scalar(scalars["timestep"], batch, sample), timestep_cond)  # (B, D)
        for name, embedding in self.scalar_embeddings.items():
            emb = emb + embedding(self._embed_scalar(scalars[name], batch, sample))
        emb = emb.repeat_interleave(num_frames, dim=0)  # (B*F, D)
        pooled_text = None
        if self.config.temporal_text_modulation or self.config.frame_adaptor_text_modulation:
            pooled_text = self._pool_text(encoder_hidden_states, encoder_attention_mask)  # (B, D)
        if encoder_hidden_states is not None:
            encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_frames, dim=0)  # (B*F, T, D)
        if encoder_attention_mask is not None:
            encoder_attention_mask = (1 - encoder_attention_mask.to(sample.dtype)) * -10000.0
            encoder_attention_mask = encoder_attention_mask.repeat_interleave(num_frames, dim=0).unsqueeze(1)
        text = dict(
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            cross_attention_kwargs=cross_attention_kwargs,
            pooled_text=pooled_text,
        )

        if self._forward_chunking == "auto":
            self._auto_chunk(batch * num_frames)

        # 2. frames into the batch for the spatial layers, through the input layers
        sample = self._input_layers(sample)  # (B*F, C, H, W)

        # 3. down
        skips = (sample,)
        for block in self.down_blocks:
            sample, block_skips = block(sample, emb, num_frames, **text)
            skips += block_skips

        # 4. mid
        if self.mid_block is not None:
            sample = self.mid_block(sample, emb, num_frames, **text)

        # 5. up
        for block in self.up_blocks:
            block_skips, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
            sample = block(sample, block_skips, emb, num_frames, **text)

        # 6. out
        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))  # (B*F, C_out, H, W)
        sample = sample.reshape(batch, num_frames, -1, height, width).permute(0, 2, 1, 3, 4)  # (B, C_out, F, H, W)
        if not return_dict:
            return (sample,)
        return UNet3DModelOutput(sample=sample)

    def _input_layers(self, sample: torch.Tensor) -> torch.Tensor:
        """`conv_in` (and `transformer_in`) of `(B, C, F, H, W)` videos, frames into the batch: `(B*F, C', H, W)`.

        These layers read the sample alone (no timestep, no text), so in inference a video that repeats in the batch
        (classifier-free guidance passes the same noisy latents twice) goes through them once and is copied; the
        result is the same. This saves most where they are heavy: the ModelScope layout's `transformer_in`.
        """
        batch, channels, num_frames, height, width = sample.shape
        copies = None
        if self.transformer_in is not None and not torch.is_grad_enabled() and not torch.compiler.is_compiling():
            copies = repeated_videos(sample)
        if copies is not None:
            distinct, position = copies
            sample = sample[distinct]
        videos = sample.shape[0]
        sample = sample.permute(0, 2, 1, 3, 4).reshape(videos * num_frames, channels, height, width)
        sample = self.conv_in(sample)
        if self.transformer_in is not None:  # ModelScope layout; like all its temporal layers, also on one frame
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                sample = self._gradient_checkpointing_func(self.transformer_in, sample, num_frames)
            else:
                sample = self.transformer_in(sample, num_frames)
        if copies is not None:
            sample = sample.view(videos, num_frames, *sample.shape[1:])[position].flatten(0, 1)
        return sample


def repeated_videos(sample: torch.Tensor) -> tuple[list[int], list[int]] | None:
    """Finds the videos of a batch that are exact copies of earlier ones.

    Returns:
        `tuple[list[int], list[int]] | None`: `(distinct, position)`: the index of the first copy of each distinct
        video, and for every video of the batch the position of its copy in `distinct` (so `sample[distinct]
        [position]` equals `sample`); None when no video repeats.
    """
    distinct: list[int] = []
    position: list[int] = []
    for i in range(sample.shape[0]):
        for k, j in enumerate(distinct):
            if torch.equal(sample[i], sample[j]):
                position.append(k)
                break
        else:
            position.append(len(distinct))
            distinct.append(i)
    return None if len(distinct) == len(position) else (distinct, position)


def temporal_parameter_names(model: UNet3DModel) -> list[str]:
    """Names of the parameters that `from_unet2d` adds (temporal layers, adaptors, scalar-condition embeddings)."""
    temporal_modules = ("temp_convs.", "temp_attentions.", "frame_adaptors.", "scalar_embeddings.", "transformer_in.")
    return [name for name, _ in model.named_parameters() if any(part in name for part in temporal_modules)]
