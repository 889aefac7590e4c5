"""Down, mid and up blocks of `UNet3DModel`.

The spatial layers of each block (`resnets`, `attentions`, `downsamplers`, `upsamplers`) are built with exactly the
arguments diffusers' `CrossAttnDownBlock2D`, `DownBlock2D`, `UNetMidBlock2DCrossAttn`, `UNetMidBlock2D`,
`UpBlock2D` and `CrossAttnUpBlock2D` use, so their parameter names and shapes match `UNet2DConditionModel` and Stable
Diffusion weights load without renaming. The temporal layers sit beside them under their own names:
`temp_convs` (one after each resnet), `temp_attentions` (one after each spatial transformer) and `frame_adaptors`
(one after each resnet; with `frame_adaptor="conv"` the resnets are `AdaptedResnetBlock2D`s instead, whose own
`frame_adaptors` follow each of their two convolutions). Everything runs on `(batch * frames, channels, height, width)`; temporal layers are told `num_frames`
and are skipped when it is 1 (still images in joint image-video training).

Temporal layouts: "default" runs each spatial transformer, then its temporal attention (`z -> T(S(z))`); "parallel"
runs both on the same input and sums them, `z + (S(z) - z) + (T(z) - z)` (MagicVideo's `S-Attn(z) + T-Attn(z)`,
where both layers here include their residual); "modelscope" is described below.

With `TemporalOptions.layout == "modelscope"` the temporal layers are those of diffusers' `UNet3DConditionModel`
(`ModelScopeTemporalConv`, `ModelScopeTemporalTransformer`) in its order (resnet, temp_conv, attention,
temp_attention), with its head counts (heads of `attention_head_dim` channels), and they run on single frames too, as
diffusers' do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from .temporal import (
    AdaptedResnetBlock2D,
    FrameAdaptor,
    ModelScopeTemporalConv,
    ModelScopeTemporalTransformer,
    TemporalAttention,
    TemporalConv,
)

DOWN_BLOCK_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_BLOCK_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")
MID_BLOCK_TYPES = ("UNetMidBlock2DCrossAttn", "UNetMidBlock2D")
TEMPORAL_LAYOUTS = ("default", "modelscope", "parallel")
FRAME_ADAPTORS = (False, True, "conv")


@dataclass(frozen=True)
class TemporalOptions:
    """The temporal part of a `UNet3DModel` config, handed to every block."""

    conv: bool = True
    conv_kernel_size: int = 3
    attention: str | None = "bidirectional"
    attention_head_dim: int = 64
    position_encoding: str | None = "sinusoidal"
    max_frames: int = 32
    frame_adaptor: bool | str = False  # False, True (after each resnet) or "conv" (after each resnet convolution)
    conv_padding: str = "same"  # of the temporal convolutions: "same" or "causal"
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    upcast_attention: bool = False
    layout: str = "default"
    cross_attention_dim: int | None = None  # text width of the temporal cross-attention; None: no text there
    conv_cond_dim: int | None = None  # text width of the text-modulated temporal convolutions; None: plain ones
    adaptor_cond_dim: int | None = None  # text width of text-modulated frame adaptors; None: plain ones

    def num_heads(self, channels: int) -> int:
        if self.layout == "modelscope":
            return channels // self.attention_head_dim  # UNet3DConditionModel: heads of exactly head_dim channels
        return max(1, channels // self.attention_head_dim)


def _temporal_conv(options: TemporalOptions, channels: int) -> nn.Module:
    if options.layout == "modelscope":
        return ModelScopeTemporalConv(channels, options.conv_kernel_size, options.norm_num_groups)
    return TemporalConv(
        channels,
        options.conv_kernel_size,
        options.norm_num_groups,
        options.norm_eps,
        cond_dim=options.conv_cond_dim,
        padding=options.conv_padding,
    )


def _temporal_attention(options: TemporalOptions, channels: int) -> nn.Module:
    if options.layout == "modelscope":
        return ModelScopeTemporalTransformer(
            channels,
            options.num_heads(channels),
            options.attention_head_dim,
            norm_num_groups=options.norm_num_groups,
            upcast_attention=options.upcast_attention,
        )
    return TemporalAttention(
        channels,
        options.num_heads(channels),
        attention_type=options.attention,
        position_encoding=options.position_encoding,
        max_frames=options.max_frames,
        eps=options.norm_eps,
        upcast_attention=options.upcast_attention,
        cross_attention_dim=options.cross_attention_dim,
    )


def _spatial_resnet(options: TemporalOptions, **kwargs) -> ResnetBlock2D:
    """diffusers' `ResnetBlock2D`, or with `frame_adaptor="conv"` the same resnet with MagicVideo's adaptors after its
    convolutions (`AdaptedResnetBlock2D`: same parameter names, plus `frame_adaptors`)."""
    if options.frame_adaptor == "conv":
        return AdaptedResnetBlock2D(max_frames=options.max_frames, cond_dim=options.adaptor_cond_dim, **kwargs)
    return ResnetBlock2D(**kwargs)


def _temporal_layers(options: TemporalOptions, channels: int, num_resnets: int, num_attentions: int) -> dict:
    """The temporal ModuleLists of one block (empty lists are left out so no empty keys reach the config)."""
    layers = {}
    if options.conv:
        layers["temp_convs"] = nn.ModuleList(_temporal_conv(options, channels) for _ in range(num_resnets))
    if options.attention is not None and num_attentions > 0:
        layers["temp_attentions"] = nn.ModuleList(
            _temporal_attention(options, channels) for _ in range(num_attentions)
        )
    if options.frame_adaptor is True:  # "conv": the adaptors live in the resnets (`_spatial_resnet`)
        layers["frame_adaptors"] = nn.ModuleList(
            FrameAdaptor(channels, options.max_frames, options.adaptor_cond_dim) for _ in range(num_resnets)
        )
    return layers


class _VideoBlock(nn.Module):
    """Shared forward pieces: a resnet with its temporal layers, and a transformer with its temporal attention."""

    resnets: nn.ModuleList
    attentions: nn.ModuleList | None

    def _init_temporal(self, options: TemporalOptions, channels: int, num_resnets: int) -> None:
        num_attentions = len(self.attentions) if self.attentions is not None else 0
        for name, layers in _temporal_layers(options, channels, num_resnets, num_attentions).items():
            setattr(self, name, layers)
        # The default layout skips temporal layers on single frames; diffusers' (ModelScope) layout runs them.
        self.single_frame_temporal = options.layout == "modelscope"
        self.parallel_attention = options.layout == "parallel"
        self.conv_adaptors = options.frame_adaptor == "conv"
        self.gradient_checkpointing = False

    def _call(self, module: nn.Module, *args):
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(module, *args)
        return module(*args)

    def _resnet(
        self,
        i: int,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        num_frames: int,
        pooled_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        temporal = num_frames > 1 or self.single_frame_temporal
        if temporal and self.conv_adaptors:  # MagicVideo: an adaptor after each of the resnet's convolutions
            hidden_states = self._call(self.resnets[i], hidden_states, temb, num_frames, pooled_text)
        else:
            hidden_states = self._call(self.resnets[i], hidden_states, temb)
        if temporal:
            if hasattr(self, "frame_adaptors"):
                hidden_states = self._call(self.frame_adaptors[i], hidden_states, num_frames, pooled_text)
            if hasattr(self, "temp_convs"):
                conv = self.temp_convs[i]
                if getattr(conv, "cond_dim", None) is not None:
                    hidden_states = self._call(conv, hidden_states, num_frames, pooled_text)
                else:
                    hidden_states = self._call(conv, hidden_states, num_frames)
        return hidden_states

    def _attention(
        self,
        i: int,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        num_frames: int,
        attention_mask: torch.Tensor | None,
        encoder_attention_mask: torch.Tensor | None,
        cross_attention_kwargs: dict[str, Any] | None,
    ) -> torch.Tensor:
        spatial = self.attentions[i](
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
            encoder_attention_mask=encoder_attention_mask,
            cross_attention_kwargs=cross_attention_kwargs,
            return_dict=False,
        )[0]  # z + S(z): the spatial transformer includes its residual
        if not ((num_frames > 1 or self.single_frame_temporal) and hasattr(self, "temp_attentions")):
            return spatial
        temporal = self.temp_attentions[i]
        # parallel: both branches read z; default (sequential): the temporal attention reads z + S(z)
        temporal_input = hidden_states if self.parallel_attention else spatial
        if getattr(temporal, "cross_attention_dim", None) is not None:
            # The UNet repeated the text once per frame; the temporal cross-attention takes it once per video.
            video_text = encoder_hidden_states[::num_frames] if encoder_hidden_states is not None else None
            out = self._call(temporal, temporal_input, num_frames, video_text)
        else:
            out = self._call(temporal, temporal_input, num_frames)
        if self.parallel_attention:
            # z + S(z) + T(z): T(z) = out - z is exactly 0 at init, so the sum is then exactly the image model's
            return spatial + (out - hidden_states)
        return out


def _transformer(
    channels: int,
    num_attention_heads: int,
    num_layers: int,
    cross_attention_dim: int,
    norm_num_groups: int,
    use_linear_projection: bool,
    upcast_attention: bool,
    only_cross_attention: bool = False,
) -> Transformer2DModel:
    return Transformer2DModel(
        num_attention_heads,
        channels // num_attention_heads,
        in_channels=channels,
        num_layers=num_layers,
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=norm_num_groups,
        use_linear_projection=use_linear_projection,
        only_cross_attention=only_cross_attention,
        upcast_attention=upcast_attention,
    )


class VideoDownBlock(_VideoBlock):
    """`CrossAttnDownBlock2D` (`has_attention=True`) or `DownBlock2D` plus temporal layers."""

    def __init__(
        self,
        *,
        has_attention: bool,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int,
        transformer_layers_per_block: int | tuple[int, ...],
        resnet_eps: float,
        resnet_act_fn: str,
        resnet_groups: int,
        resnet_time_scale_shift: str,
        num_attention_heads: int,
        cross_attention_dim: int,
        downsample_padding: int,
        add_downsample: bool,
        use_linear_projection: bool,
        only_cross_attention: bool,
        upcast_attention: bool,
        dropout: float,
        temporal: TemporalOptions,
    ):
        super().__init__()
        self.has_cross_attention = has_attention
        if isinstance(transformer_layers_per_block, int):
            transformer_layers_per_block = [transformer_layers_per_block] * num_layers
        self.resnets = nn.ModuleList(
            _spatial_resnet(
                temporal,
                in_channels=in_channels if i == 0 else out_channels,
                out_channels=out_channels,
                temb_channels=temb_channels,
                eps=resnet_eps,
                groups=resnet_groups,
                dropout=dropout,
                time_embedding_norm=resnet_time_scale_shift,
                non_linearity=resnet_act_fn,
            )
            for i in range(num_layers)
        )
        self.attentions = None
        if has_attention:
            self.attentions = nn.ModuleList(
                _transformer(
                    out_channels,
                    num_attention_heads,
                    transformer_layers_per_block[i],
                    cross_attention_dim,
                    resnet_groups,
                    use_linear_projection,
                    upcast_attention,
                    only_cross_attention,
                )
                for i in range(num_layers)
            )
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.ModuleList(
                [
                    Downsample2D(
                        out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding, name="op"
                    )
                ]
            )
        self._init_temporal(temporal, out_channels, num_layers)

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        num_frames: int,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        pooled_text: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        output_states = ()
        for i in range(len(self.resnets)):
            hidden_states = self._resnet(i, hidden_states, temb, num_frames, pooled_text)
            if self.attentions is not None:
                hidden_states = self._attention(
                    i,
                    hidden_states,
                    encoder_hidden_states,
                    num_frames,
                    attention_mask,
                    encoder_attention_mask,
                    cross_attention_kwargs,
                )
            output_states += (hidden_states,)
        if self.downsamplers is not None:
            hidden_states = self.downsamplers[0](hidden_states)
            output_states += (hidden_states,)
        return hidden_states, output_states


class VideoMidBlock(_VideoBlock):
    """`UNetMidBlock2DCrossAttn` (`has_attention=True`) or attention-free `UNetMidBlock2D` plus temporal layers."""

    def __init__(
        self,
        *,
        has_attention: bool,
        in_channels: int,
        temb_channels: int,
        transformer_layers_per_block: int,
        resnet_eps: float,
        resnet_act_fn: str,
        resnet_groups: int,
        resnet_time_scale_shift: str,
        num_attention_heads: int,
        cross_attention_dim: int,
        output_scale_factor: float,
        use_linear_projection: bool,
        upcast_attention: bool,
        dropout: float,
        temporal: TemporalOptions,
    ):
        super().__init__()
        self.has_cross_attention = has_attention
        # diffusers builds UNetMidBlock2DCrossAttn with one (attention, resnet) layer and UNetMidBlock2D with none.
        num_layers = 1 if has_attention else 0
        self.resnets = nn.ModuleList(
            _spatial_resnet(
                temporal,
                in_channels=in_channels,
                out_channels=in_channels,
                temb_channels=temb_channels,
                eps=resnet_eps,
                groups=resnet_groups,
                dropout=dropout,
                time_embedding_norm=resnet_time_scale_shift,
                non_linearity=resnet_act_fn,
                output_scale_factor=output_scale_factor,
            )
            for _ in range(num_layers + 1)
        )
        self.attentions = None
        if has_attention:
            self.attentions = nn.ModuleList(
                _transformer(
                    in_channels,
                    num_attention_heads,
                    transformer_layers_per_block,
                    cross_attention_dim,
                    resnet_groups,
                    use_linear_projection,
                    upcast_attention,
                )
                for _ in range(num_layers)
            )
        self._init_temporal(temporal, in_channels, num_layers + 1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        num_frames: int,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        pooled_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden_states = self._resnet(0, hidden_states, temb, num_frames, pooled_text)
        for i in range(1, len(self.resnets)):
            hidden_states = self._attention(
                i - 1,
                hidden_states,
                encoder_hidden_states,
                num_frames,
                attention_mask,
                encoder_attention_mask,
                cross_attention_kwargs,
            )
            hidden_states = self._resnet(i, hidden_states, temb, num_frames, pooled_text)
        return hidden_states


class VideoUpBlock(_VideoBlock):
    """`CrossAttnUpBlock2D` (`has_attention=True`) or `UpBlock2D` plus temporal layers."""

    def __init__(
        self,
        *,
        has_attention: bool,
        in_channels: int,
        out_channels: int,
        prev_output_channel: int,
        temb_channels: int,
        num_layers: int,
        transformer_layers_per_block: int | tuple[int, ...],
        resnet_eps: float,
        resnet_act_fn: str,
        resnet_groups: int,
        resnet_time_scale_shift: str,
        num_attention_heads: int,
        cross_attention_dim: int,
        add_upsample: bool,
        use_linear_projection: bool,
        only_cross_attention: bool,
        upcast_attention: bool,
        dropout: float,
        temporal: TemporalOptions,
    ):
        super().__init__()
        self.has_cross_attention = has_attention
        if isinstance(transformer_layers_per_block, int):
            transformer_layers_per_block = [transformer_layers_per_block] * num_layers
        self.resnets = nn.ModuleList(
            _spatial_resnet(
                temporal,
                in_channels=(prev_output_channel if i == 0 else out_channels)
                + (in_channels if i == num_layers - 1 else out_channels),
                out_channels=out_channels,
                temb_channels=temb_channels,
                eps=resnet_eps,
                groups=resnet_groups,
                dropout=dropout,
                time_embedding_norm=resnet_time_scale_shift,
                non_linearity=resnet_act_fn,
            )
            for i in range(num_layers)
        )
        self.attentions = None
        if has_attention:
            self.attentions = nn.ModuleList(
                _transformer(
                    out_channels,
                    num_attention_heads,
                    transformer_layers_per_block[i],
                    cross_attention_dim,
                    resnet_groups,
                    use_linear_projection,
                    upcast_attention,
                    only_cross_attention,
                )
                for i in range(num_layers)
            )
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])
        self._init_temporal(temporal, out_channels, num_layers)

    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_tuple: tuple[torch.Tensor, ...],
        temb: torch.Tensor,
        num_frames: int,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        upsample_size: tuple[int, int] | None = None,
        pooled_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for i in range(len(self.resnets)):
            skip = res_hidden_states_tuple[-1 - i]
            hidden_states = torch.cat([hidden_states, skip], dim=1)  # (B*F, C + C_skip, H, W)
            hidden_states = self._resnet(i, hidden_states, temb, num_frames, pooled_text)
            if self.attentions is not None:
                hidden_states = self._attention(
                    i,
                    hidden_states,
                    encoder_hidden_states,
                    num_frames,
                    attention_mask,
                    encoder_attention_mask,
                    cross_attention_kwargs,
                )
        if self.upsamplers is not None:
            hidden_states = self.upsamplers[0](hidden_states, upsample_size)
        return hidden_states
