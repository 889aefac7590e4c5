"""The `UNet2DConditionModel` config of a Stable Diffusion UNet: read from a diffusers folder, made from the original
LDM yaml with diffusers' own function, or inferred from an original checkpoint's tensor shapes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

from ..folders import read_json
from .common import ConversionError
from .sd_weights import LDM_UNET_MODULES, LDM_UNET_PREFIX

__all__ = [
    "UNET_CLASS_NAME",
    "infer_unet_config",
    "load_unet_config",
    "read_yaml",
    "resolve_unet_folder",
    "unet_config_from_original_config",
]

UNET_CLASS_NAME = "UNet2DConditionModel"


def resolve_unet_folder(folder: Path, subfolder: str | None = None) -> Path:
    """The UNet folder of a diffusers pipeline folder (`subfolder`, default "unet") or a UNet folder itself."""
    if subfolder:
        candidates = [folder / subfolder]
    else:
        candidates = [folder, folder / "unet"]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    where = " or ".join(f"`{candidate / 'config.json'}`" for candidate in candidates)
    raise ConversionError(f"`{folder}` is not a diffusers UNet or pipeline folder: no {where}.")


def load_unet_config(folder: Path, subfolder: str | None = None) -> tuple[dict[str, Any], Path]:
    """Read a diffusers `UNet2DConditionModel` config.

    Args:
        folder (`Path`): A UNet folder or a pipeline folder.
        subfolder (`str | None`): The UNet's folder inside a pipeline folder (default: the folder itself if it has a
            `config.json`, else "unet").

    Returns:
        `(config, unet_folder)`.
    """
    unet_folder = resolve_unet_folder(folder, subfolder)
    path = unet_folder / "config.json"
    config = read_json(path)
    class_name = config.get("_class_name", UNET_CLASS_NAME)
    if class_name != UNET_CLASS_NAME:
        raise ConversionError(f"`{path}` describes a {class_name}, not a {UNET_CLASS_NAME}; it cannot be inflated.")
    return config, unet_folder


def unet_config_from_original_config(
    original_config: Mapping[str, Any], checkpoint: Mapping[str, torch.Tensor], source: str = "original config"
) -> dict[str, Any]:
    """The diffusers UNet config of an original (LDM) yaml, from diffusers' `create_unet_diffusers_config_from_ldm`.

    `upcast_attention` (absent from the yaml) is set for v-prediction models with linear projections (SD 2.x 768-v),
    as in their diffusers configs.

    Args:
        original_config (`Mapping`): The parsed yaml.
        checkpoint (`Mapping[str, torch.Tensor]`): The UNet weights with the `model.diffusion_model.` prefix.
        source (`str`): Name of the yaml for error messages.
    """
    try:
        config = create_unet_diffusers_config_from_ldm(dict(original_config), checkpoint)
        parameterization = original_config["model"]["params"].get("parameterization", "eps")
    except (KeyError, TypeError, AttributeError) as error:
        raise ConversionError(
            f"`{source}` is not a Stable Diffusion (LDM) config: missing or bad entry {error}."
        ) from error
    config["upcast_attention"] = bool(config.get("use_linear_projection")) and parameterization == "v"
    return config


def _num_children(shapes: Mapping[str, tuple[int, ...]], module: str) -> int:
    """Length of an LDM `nn.ModuleList` (`input_blocks`, ...): its largest index + 1."""
    found = [int(key.split(".")[1]) for key in shapes if key.startswith(module + ".")]
    return max(found) + 1 if found else 0


def _read_resnet(shapes: Mapping[str, tuple[int, ...]], base: str) -> tuple[int, bool]:
    """(output channels, time scale-shift) of the LDM `ResBlock` at `base`."""
    conv, emb = shapes.get(f"{base}.in_layers.2.weight"), shapes.get(f"{base}.emb_layers.1.weight")
    if conv is None or emb is None:
        raise ConversionError(
            f"Unsupported UNet: `{LDM_UNET_PREFIX}{base}` is not a Stable Diffusion resnet block; pass --config."
        )
    return conv[0], emb[0] == 2 * conv[0]


def _read_transformer(shapes: Mapping[str, tuple[int, ...]], base: str) -> tuple[int, bool, int] | None:
    """(depth, linear projection, cross-attention width) of the LDM `SpatialTransformer` at `base`, or None."""
    proj_in = shapes.get(f"{base}.proj_in.weight")
    if proj_in is None:
        return None
    prefix = f"{base}.transformer_blocks."
    depth = len({key[len(prefix) :].split(".")[0] for key in shapes if key.startswith(prefix)})
    to_k = shapes.get(f"{prefix}0.attn2.to_k.weight")
    if to_k is None:
        raise ConversionError(f"Unsupported UNet: `{LDM_UNET_PREFIX}{base}` has no cross-attention; pass --config.")
    return depth, len(proj_in) == 2, to_k[1]


def _one(values: Iterable[Any], what: str) -> Any:
    values = set(values)
    if len(values) != 1:
        raise ConversionError(
            f"Cannot infer the UNet config: {what} differs between blocks ({sorted(values)}); pass --config."
        )
    return values.pop()


def infer_unet_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """Infer a Stable Diffusion 1.x / 2.x `UNet2DConditionModel` config from an original (LDM) UNet's weight shapes.

    Read from the shapes: input/output channels and kernels, block widths, resnets per block, which blocks have
    attention, transformer depth, cross-attention width, linear (2.x) or convolutional (1.x) projections, time
    embedding width and resnet time scale-shift. Not in the shapes, hence Stable Diffusion's values:
    `norm_num_groups=32`; with linear projections (SD 2.x) 64-channel attention heads (`attention_head_dim =
    channels // 64` per block) and `upcast_attention=True` (which 2.x v-models need in float16, harmless otherwise);
    with convolutional projections (SD 1.x) 8 heads. A checkpoint that breaks these rules needs `--config` or
    `--original_config`.

    Args:
        shapes (`Mapping[str, tuple[int, ...]]`): UNet key (without `model.diffusion_model.`) -> tensor shape.

    Returns:
        `dict`: A `UNet2DConditionModel` config.
    """
    unsupported = sorted(key for key in shapes if key.split(".")[0] not in LDM_UNET_MODULES[:-1])
    if unsupported:
        raise ConversionError(
            f"Unsupported UNet: `{LDM_UNET_PREFIX}{unsupported[0]}` (e.g. the class or micro-conditioning embedding "
            "of SDXL or the x4 upscaler) has no place in UNet3DModel."
        )
    for key in ("input_blocks.0.0.weight", "time_embed.0.weight", "out.2.weight"):
        if key not in shapes:
            raise ConversionError(f"Cannot infer the UNet config: `{LDM_UNET_PREFIX}{key}` is missing; pass --config.")
    conv_in, time_embed, conv_out = (
        shapes["input_blocks.0.0.weight"],
        shapes["time_embed.0.weight"],
        shapes["out.2.weight"],
    )

    def read_layer(base: str) -> tuple[int, bool, tuple[int, bool, int] | None]:
        return (*_read_resnet(shapes, f"{base}.0"), _read_transformer(shapes, f"{base}.1"))

    # input blocks: resnets (+ transformers); a downsampler (`op`) closes every block but the last
    down: list[list[tuple]] = [[]]
    for i in range(1, _num_children(shapes, "input_blocks")):
        if f"input_blocks.{i}.0.op.weight" in shapes:
            down.append([])
        else:
            down[-1].append(read_layer(f"input_blocks.{i}"))
    if not all(down):
        raise ConversionError("Unsupported UNet: a down block of the checkpoint has no resnet; pass --config.")
    layers = _one((len(block) for block in down), "the number of resnets per block")
    block_out_channels = [_one((layer[0] for layer in block), "the width within a block") for block in down]
    num_blocks = len(down)

    # middle block: resnet, transformer, resnet (UNetMidBlock2DCrossAttn)
    mid_attention = _read_transformer(shapes, "middle_block.1")
    if _num_children(shapes, "middle_block") != 3 or mid_attention is None:
        raise ConversionError("Unsupported UNet: the middle block is not resnet-attention-resnet; pass --config.")
    mid_resnets = [(*_read_resnet(shapes, f"middle_block.{i}"), mid_attention) for i in (0, 2)]

    # output blocks: layers + 1 resnets (+ transformers) per block, widest first
    num_outputs = _num_children(shapes, "output_blocks")
    if num_outputs != num_blocks * (layers + 1):
        raise ConversionError(
            f"Unsupported UNet: {num_outputs} output blocks for {num_blocks} down blocks of {layers} resnets "
            f"(expected {num_blocks * (layers + 1)}); pass --config."
        )
    up = [[read_layer(f"output_blocks.{j * (layers + 1) + k}") for k in range(layers + 1)] for j in range(num_blocks)]

    def block_type(block: list[tuple], attention: str, plain: str) -> str:
        return attention if _one((layer[2] is not None for layer in block), "attention within a block") else plain

    all_layers = [layer for block in down + up for layer in block] + mid_resnets
    attentions = [layer[2] for layer in all_layers if layer[2] is not None]
    depth = _one((attention[0] for attention in attentions), "the transformer depth")
    linear = _one((attention[1] for attention in attentions), "the projection type (linear or conv)")
    cross_attention_dim = _one((attention[2] for attention in attentions), "the cross-attention width")
    scale_shift = _one((layer[1] for layer in all_layers), "the resnet time embedding")
    if linear:
        if any(channels % 64 for channels in block_out_channels):
            raise ConversionError(
                f"Cannot infer the attention heads: block widths {block_out_channels} are not multiples of Stable "
                "Diffusion 2.x's 64-channel heads; pass --config."
            )
        attention_head_dim: int | list[int] = [channels // 64 for channels in block_out_channels]
    else:
        attention_head_dim = 8
    return {
        "sample_size": 96 if linear else 64,  # diffusers' defaults for SD 2.x (768 px) and 1.x (512 px)
        "in_channels": conv_in[1],
        "out_channels": conv_out[0],
        "down_block_types": [block_type(block, "CrossAttnDownBlock2D", "DownBlock2D") for block in down],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": [block_type(block, "CrossAttnUpBlock2D", "UpBlock2D") for block in up],
        "block_out_channels": block_out_channels,
        "layers_per_block": layers,
        "norm_num_groups": 32,
        "cross_attention_dim": cross_attention_dim,
        "transformer_layers_per_block": depth,
        "attention_head_dim": attention_head_dim,
        "use_linear_projection": linear,
        "upcast_attention": linear,
        "resnet_time_scale_shift": "scale_shift" if scale_shift else "default",
        "time_embedding_dim": None if time_embed[0] == 4 * conv_in[0] else time_embed[0],
        "conv_in_kernel": conv_in[-1],
        "conv_out_kernel": conv_out[-1],
    }


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        original_config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConversionError(f"`{path}` is not valid YAML: {error}") from error
    if not isinstance(original_config, dict):
        raise ConversionError(f"`{path}` is not a Stable Diffusion (LDM) config.")
    return original_config
