"""`UNet3DModel`: a video UNet whose spatial layers are those of diffusers' `UNet2DConditionModel`.

The spatial layers keep the parameter names and shapes of `UNet2DConditionModel` for the same config (Stable
Diffusion 2.1 options included), so image weights load with no renaming. Temporal layers (see `temporal.py`) follow
every spatial resnet and spatial transformer and start as the identity: `UNet3DModel.from_unet2d(unet)` equals `unet`
applied frame by frame until it is trained.

`temporal_layout="modelscope"` swaps the temporal layers for those of diffusers' `UNet3DConditionModel` (ModelScope
text-to-video), with its parameter names, so that its weights load unrenamed (see
`conversion_scripts/convert_modelscope_to_videofusion.py`) and the model computes what `UNet3DConditionModel` does.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.activations import get_activation
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import AttnProcessor
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..folders import publisher
from .saving import SafeFolderMixin
from .temporal import (
    MODELSCOPE_INPUT_HEADS,
    ModelScopeTemporalTransformer,
    TemporalAttnProcessor2_0,
    TemporalSelfAttention,
)
from .unet_3d_blocks import (
    TemporalOptions,
    VideoDownBlock,
    VideoMidBlock,
    VideoUpBlock,
)
from .unet_3d_config import (
    KEYS_ADDED_LATER,
    check_config_values,
    check_saved_config,
    check_spatial_config,
    check_temporal_config,
    check_temporal_layout,
)
from .unet_3d_inputs import check_forward_inputs

# Config arguments that only concern the temporal layers; `from_unet2d` accepts these (plus `in_channels`).
TEMPORAL_CONFIG_KEYS = (
    "temporal_conv",
    "temporal_conv_kernel_size",
    "temporal_attention",
    "temporal_attention_head_dim",
    "frame_position_encoding",
    "max_frames",
    "frame_adaptor",
    "temporal_cross_attention",
    "temporal_text_modulation",
    "scalar_conditions",
    "temporal_layout",
)


# Frames per chunk of the automatic feed-forward chunking in inference (see `UNet3DModel.enable_forward_chunking`).
AUTO_CHUNK_FRAMES = 4


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


class UNet3DModel(SafeFolderMixin, ModelMixin, AttentionMixin, ConfigMixin, PeftAdapterMixin):
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
        frame_adaptor (`bool`, defaults to False): MagicVideo's per-frame learned scale and shift after each resnet.
        temporal_cross_attention (`bool`, defaults to False): Each temporal attention layer also attends to the text
            (`encoder_hidden_states`), with a zero-initialised output, so that motion words reach the temporal layers
            directly rather than only through per-frame spatial features (see `TemporalAttention`). Needs
            `temporal_attention` and the default layout.
        scalar_conditions (`tuple[str, ...]`, defaults to ()): Names of extra scalar conditions (e.g. "fps",
            "noise_aug_level", "guidance_scale"), each embedded like a timestep and added to the time embedding
            (zero-initialised). Values are embedded with timestep frequencies, so pass them on a timestep-like scale
            (e.g. a noise level in [0, 1] times 1000).
        temporal_layout (`str`, defaults to "default"): "default" (the layers above) or "modelscope": the temporal
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
            additive text features give only at second order. Needs `temporal_conv` and the default layout.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = [
        "BasicTransformerBlock",
        "ResnetBlock2D",
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
        frame_adaptor: bool = False,
        temporal_cross_attention: bool = False,
        scalar_conditions: tuple[str, ...] = (),
        temporal_layout: str = "default",
        temporal_text_modulation: bool = False,
    ):
        check_config_values({name: value for name, value in locals().items() if name != "self"})
        super().__init__()
        num_blocks = len(down_block_types)
        check_spatial_config(
            down_block_types, up_block_types, mid_block_type, block_out_channels, cross_attention_dim,
            resnet_time_scale_shift,
        )  # fmt: skip
        check_temporal_config(temporal_attention, frame_position_encoding, max_frames, scalar_conditions)
        if temporal_cross_attention and (temporal_attention is None or temporal_layout != "default"):
            raise ValueError(
                "`temporal_cross_attention=True` needs temporal attention layers of the default layout, but "
                f"`temporal_attention` is {temporal_attention!r} and `temporal_layout` is {temporal_layout!r}."
            )
        if temporal_text_modulation and (not temporal_conv or temporal_layout != "default"):
            raise ValueError(
                "`temporal_text_modulation=True` needs temporal convolutions of the default layout, but "
                f"`temporal_conv` is {temporal_conv!r} and `temporal_layout` is {temporal_layout!r}."
            )
        check_temporal_layout(
            temporal_layout, frame_position_encoding, temporal_attention, temporal_attention_head_dim,
            block_out_channels,
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
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            upcast_attention=upcast_attention,
            layout=temporal_layout,
            cross_attention_dim=cross_attention_dim if temporal_cross_attention else None,
            conv_cond_dim=cross_attention_dim if temporal_text_modulation else None,
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

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> UNet3DModel:
        """Loads a saved `UNet3DModel` as `ModelMixin.from_pretrained` does, strictly.

        Its `config.json` is checked first (see `unet_3d_config.check_saved_config`): an unknown key, a value of the
        wrong type, or a missing key is an error naming it and the file. The exception are the keys added after the
        class was first saved (`KEYS_ADDED_LATER`: `temporal_cross_attention`, `temporal_layout`,
        `temporal_text_modulation`), which take their defaults: that is the model a folder saved before they existed
        holds. The weights must then be exactly those of the config's model: diffusers only warns about weights it
        does not use, so a config that lost `"temporal_text_modulation": true` would silently load a model without
        the text modulation; here it is a `ValueError` naming the weights, the key and the file.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): A folder or Hub repo id.
            kwargs: Those of `ModelMixin.from_pretrained` (`subfolder`, `torch_dtype`, `output_loading_info`, ...).
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        unexpected, missing = sorted(info["unexpected_keys"]), sorted(info["missing_keys"])
        if unexpected or missing:
            config_file = os.path.join(
                os.fspath(pretrained_model_name_or_path), kwargs.get("subfolder") or "", cls.config_name
            )
            defaulted = [key for key in KEYS_ADDED_LATER if key in (model.config.get("_use_default_values") or ())]
            hint = ""
            if defaulted:
                values = ", ".join(f"`{key}`={model.config[key]!r}" for key in defaulted)
                hint = (
                    f" The config has no {', '.join(f'`{key}`' for key in defaulted)}, so it loaded as {values}, what "
                    "folders saved before these keys existed hold; these weights come from a model with another "
                    f"value: write it into {config_file}."
                )
            raise ValueError(
                f"The weights of {config_file} do not fit the model it describes: unexpected weights "
                f"{unexpected[:4]}{' ...' if len(unexpected) > 4 else ''} ({len(unexpected)}), missing weights "
                f"{missing[:4]}{' ...' if len(missing) > 4 else ''} ({len(missing)}).{hint}"
            )
        return (model, info) if output_loading_info else model

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict[str, Any]:
        # every config.json `load_config` reads (from a folder or the Hub cache) is checked here, naming the file
        config = super()._dict_from_json_file(json_file)
        check_saved_config(config, set(inspect.signature(cls.__init__).parameters) - {"self"}, os.fspath(json_file))
        return config

    # ------------------------------------------------------------------ inflation

    @classmethod
    def from_unet2d(cls, unet: UNet2DConditionModel, **temporal_config: Any) -> UNet3DModel:
        """Inflate an image UNet: copy every spatial weight and add identity-initialised temporal layers.

        Args:
            unet (`UNet2DConditionModel`): The image UNet, e.g. Stable Diffusion 2.1's.
            **temporal_config: Any of the temporal config arguments of `UNet3DModel` (see the class docstring),
                and `in_channels` to add input channels for concatenated conditioning; the extra input channels
                of `conv_in` start at zero.

        Returns:
            `UNet3DModel` on the image UNet's device and dtype that equals `unet` frame by frame.
        """
        if not isinstance(unet, UNet2DConditionModel):
            raise TypeError(f"`unet` must be a `UNet2DConditionModel` but is a {type(unet).__name__}.")
        allowed = set(TEMPORAL_CONFIG_KEYS) | {"in_channels"}
        unknown = sorted(set(temporal_config) - allowed)
        if unknown:
            raise TypeError(f"`from_unet2d` got unknown arguments {unknown}; allowed are {sorted(allowed)}.")
        config = cls._config_from_unet2d(unet.config)
        in_channels = temporal_config.get("in_channels", config["in_channels"])
        if in_channels < config["in_channels"]:
            raise ValueError(
                f"`in_channels` ({in_channels}) cannot be smaller than the image UNet's ({config['in_channels']})."
            )
        config.update(temporal_config)
        model = cls(**config)

        # Start from the new model's own (identity) temporal weights and overwrite every spatial weight strictly.
        state = model.state_dict()
        for key, value in unet.state_dict().items():
            if key not in state:
                raise ValueError(f"The image UNet's weight `{key}` has no place in UNet3DModel.")
            if key == "conv_in.weight" and value.shape[1] < state[key].shape[1]:
                padded = torch.zeros_like(state[key], dtype=value.dtype)
                padded[:, : value.shape[1]] = value  # extra conditioning channels start at zero
                value = padded
            if state[key].shape != value.shape:
                raise ValueError(f"Shape mismatch for `{key}`: {tuple(value.shape)} vs {tuple(state[key].shape)}.")
            state[key] = value
        model.load_state_dict(state, strict=True)
        if unet.dtype != model.dtype or unet.device != model.device:
            model = model.to(device=unet.device, dtype=unet.dtype)
        return model

    @classmethod
    def from_pretrained_2d(
        cls,
        pretrained_model_name_or_path: str,
        subfolder: str | None = "unet",
        torch_dtype: torch.dtype | None = None,
        **temporal_config: Any,
    ) -> UNet3DModel:
        """Load an image UNet (a diffusers folder or Hub repo, e.g. Stable Diffusion 2.1) and inflate it.

        Args:
            pretrained_model_name_or_path (`str`): Pipeline folder or repo id.
            subfolder (`str | None`, defaults to "unet"): Folder of the UNet inside it (None for a UNet folder).
            torch_dtype (`torch.dtype | None`): dtype to load the weights in.
            **temporal_config: As in `from_unet2d`; `allow_pickle=True` also loads pickle-only weights.
        """
        unet, temporal_config = cls._load_2d(
            UNet2DConditionModel, pretrained_model_name_or_path, subfolder, torch_dtype, **temporal_config
        )
        return cls.from_unet2d(unet, **temporal_config)

    @classmethod
    def _config_from_unet2d(cls, config2d) -> dict[str, Any]:
        """The spatial part of our config from a `UNet2DConditionModel` config; refuses what cannot be inflated."""
        ours = set(inspect.signature(cls.__init__).parameters) - {"self"} - set(TEMPORAL_CONFIG_KEYS)
        defaults2d = {
            name: p.default for name, p in inspect.signature(UNet2DConditionModel.__init__).parameters.items()
        }
        config = {}
        for key, value in config2d.items():
            if key.startswith("_"):
                continue
            if key in ours:
                config[key] = list(value) if isinstance(value, tuple) else value
            elif key in defaults2d and not _same(value, defaults2d[key]):
                raise ValueError(f"A UNet2DConditionModel with `{key}={value!r}` cannot be inflated to UNet3DModel.")
        if config.get("num_attention_heads") is None:
            config.pop("num_attention_heads", None)
        if isinstance(config.get("cross_attention_dim"), (list, tuple)):
            dims = set(config["cross_attention_dim"])
            if len(dims) != 1:
                raise ValueError(
                    f"A UNet2DConditionModel with per-block `cross_attention_dim={config['cross_attention_dim']}` "
                    "cannot be inflated to UNet3DModel."
                )
            config["cross_attention_dim"] = dims.pop()
        check_spatial_config(
            config.get("down_block_types", ()), config.get("up_block_types", ()), config.get("mid_block_type"),
            config.get("block_out_channels", ()), config.get("cross_attention_dim", 0),
            config.get("resnet_time_scale_shift", "default"),
        )  # fmt: skip
        return config

    # ------------------------------------------------------------------ diffusers conveniences

    # Adapted from diffusers.models.unets.unet_3d_condition.UNet3DConditionModel.set_attention_slice (the argument
    # checks raise ValueError with the value; the temporal attention layers are sliced too and keep their causality)
    def set_attention_slice(self, slice_size: str | int | list[int] | None) -> None:
        r"""Computes attention in slices of heads to save memory, as diffusers' `UNet3DConditionModel` does.

        Every attention layer (spatial self- and cross-attention, temporal attention) runs `slice_size` heads at a
        time through diffusers' `SlicedAttnProcessor`; a directed temporal layer still gets its causal mask.

        Args:
            slice_size (`str`, `int`, `list[int]` or None): "auto" halves each layer's heads, "max" runs one head at a
                time, a number runs that many heads per slice in every layer, a list gives one number per attention
                layer (in `self.modules()` order), None switches slicing off (the default processors).
        """
        layers = [module for module in self.modules() if hasattr(module, "set_attention_slice") and module is not self]
        heads = [layer.sliceable_head_dim for layer in layers]
        if slice_size == "auto":
            sizes = [max(dim // 2, 1) for dim in heads]
        elif slice_size == "max":
            sizes = [1] * len(layers)
        elif isinstance(slice_size, list):
            sizes = slice_size
        elif slice_size is None or (isinstance(slice_size, int) and not isinstance(slice_size, bool)):
            sizes = [slice_size] * len(layers)
        else:
            raise ValueError(f"`slice_size` must be 'auto', 'max', an integer, a list or None but is {slice_size!r}.")
        if len(sizes) != len(layers):
            raise ValueError(
                f"`slice_size` has {len(sizes)} entries but the model has {len(layers)} attention layers: pass one per"
                " layer, or one number for all."
            )
        for size, dim in zip(sizes, heads):
            if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= dim):
                raise ValueError(
                    f"`slice_size` entries must be integers in [1, {dim}] (the layer's heads) or None but is {size!r}."
                )
        for layer, size in zip(layers, sizes):
            layer.set_attention_slice(size)

    def set_default_attn_processor(self) -> None:
        """Classic (non-SDPA) processor on spatial attention, the SDPA temporal processor on temporal attention."""
        temporal = {
            f"{name}.processor" for name, module in self.named_modules() if isinstance(module, TemporalSelfAttention)
        }
        processors = {
            name: TemporalAttnProcessor2_0() if name in temporal else AttnProcessor() for name in self.attn_processors
        }
        self.set_attn_processor(processors)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        *,
        base_model: str | list[str] | None = None,
    ):
        """Uploads the model to the Hub in one commit with a full model card (`diffusers_video.hub.make_model_card`:
        library, tags, `base_model`, parameters, a usage snippet) instead of diffusers' generic one.

        The upload is `diffusers_video.hub.push_folder`, reached through `diffusers_video.folders.publisher()`: the Hub
        layer sits above the models and registers it there when `diffusers_video` is imported.

        Args:
            repo_id (`str`): "namespace/name"; created if it does not exist.
            commit_message, private, token, create_pr: As in diffusers' `ModelMixin.push_to_hub`.
            safe_serialization, variant: As in `save_pretrained`.
            base_model (`str` or `list[str]`, *optional*): Hub id(s) the model was made from, e.g.
                "stabilityai/stable-diffusion-2-1" for a model inflated from it.

        Returns:
            `huggingface_hub.CommitInfo`: The commit.
        """
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, safe_serialization=safe_serialization, variant=variant)
            return publisher()(
                folder, repo_id, private=private, token=token, commit_message=commit_message, create_pr=create_pr,
                base_model=base_model,
            )  # fmt: skip

    # Adapted from diffusers.models.unets.unet_3d_condition.UNet3DConditionModel.enable_forward_chunking
    def enable_forward_chunking(self, chunk_size: int | None = None, dim: int = 0) -> None:
        """Run the spatial transformers' feed-forward layers in chunks of `chunk_size` along `dim` to save memory.

        By default the model already chunks them in inference, over at most `AUTO_CHUNK_FRAMES` frames; this sets a
        fixed chunking instead, and `disable_forward_chunking` switches chunking off.

        Args:
            chunk_size (`int | None`): Chunk size (1 if None).
            dim (`int`, defaults to 0): 0 (batch of frames) or 1 (sequence of pixels).
        """
        if dim not in (0, 1):
            raise ValueError(f"`dim` must be 0 or 1 but is {dim}.")
        self._forward_chunking = "explicit"
        self._set_chunk_feed_forward(chunk_size or 1, dim)

    def disable_forward_chunking(self) -> None:
        """Run the feed-forward layers unchunked (the automatic inference chunking included)."""
        self._forward_chunking = None
        self._set_chunk_feed_forward(None, 0)

    def _set_chunk_feed_forward(self, chunk_size: int | None, dim: int) -> None:
        for module in self.modules():
            if hasattr(module, "set_chunk_feed_forward"):
                module.set_chunk_feed_forward(chunk_size=chunk_size, dim=dim)

    def _auto_chunk(self, rows: int) -> None:
        """In inference, chunk the spatial feed-forward over at most `AUTO_CHUNK_FRAMES` frames of the batch.

        diffusers' chunked feed-forward needs a chunk size that divides the rows, so take the largest such divisor.
        """
        chunk = None
        if not torch.is_grad_enabled():
            chunk = max(d for d in range(1, min(rows, AUTO_CHUNK_FRAMES) + 1) if rows % d == 0)
        if chunk != self._auto_chunk_size:
            self._set_chunk_feed_forward(chunk, 0)
            self._auto_chunk_size = chunk

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
                "This UNet has text-modulated temporal convolutions (`temporal_text_modulation=True`): "
                "`encoder_hidden_states` must be given."
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
        if self.config.temporal_text_modulation:
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

        # 2. frames into the batch for the spatial layers
        sample = sample.permute(0, 2, 1, 3, 4).reshape(batch * num_frames, channels, height, width)  # (B*F, C, H, W)
        sample = self.conv_in(sample)
        if self.transformer_in is not None:  # ModelScope layout; like all its temporal layers, also on one frame
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                sample = self._gradient_checkpointing_func(self.transformer_in, sample, num_frames)
            else:
                sample = self.transformer_in(sample, num_frames)

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


def _same(a, b) -> bool:
    """Config equality that treats lists and tuples alike."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def temporal_parameter_names(model: UNet3DModel) -> list[str]:
    """Names of the parameters that `from_unet2d` adds (temporal layers, adaptors, scalar-condition embeddings)."""
    temporal_modules = ("temp_convs.", "temp_attentions.", "frame_adaptors.", "scalar_embeddings.", "transformer_in.")
    return [name for name, _ in model.named_parameters() if any(part in name for part in temporal_modules)]
