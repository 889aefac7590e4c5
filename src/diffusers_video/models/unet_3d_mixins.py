"""What `UNet3DModel` adds to diffusers' `ModelMixin` besides its layers: strict loading, inflation from an image
UNet (`from_unet2d`, `from_pretrained_2d`), and diffusers' conveniences (attention slicing, default processors,
feed-forward chunking, `push_to_hub` with our model card), as two mixins of the model class.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from typing import Any, TypeVar

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor

from ..folders import publisher
from .temporal import TemporalAttnProcessor2_0, TemporalSelfAttention
from .unet_3d_config import KEYS_ADDED_LATER, check_saved_config, check_spatial_config

__all__ = ["AUTO_CHUNK_FRAMES", "TEMPORAL_CONFIG_KEYS", "UNet3DConveniencesMixin", "UNet3DLoadingMixin"]

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
    "temporal_conv_padding",
    "frame_adaptor_text_modulation",
)

# Frames per chunk of the automatic feed-forward chunking in inference (see `UNet3DModel.enable_forward_chunking`).
AUTO_CHUNK_FRAMES = 4

_Model = TypeVar("_Model", bound="UNet3DLoadingMixin")


class UNet3DLoadingMixin:
    """Strict `from_pretrained` and the inflation of an image UNet, for `UNet3DModel`."""

    @classmethod
    def from_pretrained(cls: type[_Model], pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> _Model:
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
    def from_unet2d(cls: type[_Model], unet: UNet2DConditionModel, **temporal_config: Any) -> _Model:
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
        cls: type[_Model],
        pretrained_model_name_or_path: str,
        subfolder: str | None = "unet",
        torch_dtype: torch.dtype | None = None,
        **temporal_config: Any,
    ) -> _Model:
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


class UNet3DConveniencesMixin:
    """diffusers' conveniences of `UNet3DConditionModel`, for `UNet3DModel`: attention slicing, default processors,
    feed-forward chunking, and `push_to_hub` with our model card."""

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
        Under `torch.compile` nothing is changed: setting module attributes inside a compiled call would make the next
        call fail dynamo's guards and recompile (the compiled graph keeps whatever chunking was set before).
        """
        if torch.compiler.is_compiling():
            return
        chunk = None
        if not torch.is_grad_enabled():
            chunk = max(d for d in range(1, min(rows, AUTO_CHUNK_FRAMES) + 1) if rows % d == 0)
        if chunk != self._auto_chunk_size:
            self._set_chunk_feed_forward(chunk, 0)
            self._auto_chunk_size = chunk


def _same(a, b) -> bool:
    """Config equality that treats lists and tuples alike."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b
