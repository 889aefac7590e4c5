#!/usr/bin/env python
"""Convert a Stable Diffusion image UNet into a diffusers-video `UNet3DModel` (inflated, equal frame by frame).

The source is either a diffusers folder (a pipeline folder with `unet/`, or a UNet folder with `config.json`) or an
original single-file checkpoint (`.safetensors`; pickled `.ckpt`/`.pt`/`.pth`/`.bin` only with `--allow_pickle`).
Nothing is downloaded: the UNet config of a single file comes from `--config DIR` (a diffusers UNet or pipeline
folder), from `--original_config YAML` (the LDM yaml), or is inferred from the checkpoint's own tensor shapes.

    python conversion_scripts/convert_sd_to_unet3d.py --checkpoint ./stable-diffusion-2-1 --output_dir ./unet3d
    python conversion_scripts/convert_sd_to_unet3d.py --checkpoint v2-1_768-ema-pruned.safetensors \\
        --output_dir ./unet3d --temporal_attention directed --frame_adaptor --scalar_conditions fps

Steps, each a small function below:
    1. read the 2D UNet weights (`load_single_file_unet`, `load_diffusers_unet_weights`) and its config
       (`load_unet_config`, `unet_config_from_original_config`, `infer_unet_config`);
    2. rename original (LDM) weights with diffusers' own `convert_ldm_unet_checkpoint` (`convert_ldm_state_dict`) and
       build a `UNet2DConditionModel` strictly (`empty_unet2d`, `load_weights_strictly`): a missing, unexpected or
       mis-shaped key is an error;
    3. inflate with `UNet3DModel.from_unet2d` and save with `save_pretrained` (safetensors).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm
from safetensors import SafetensorError, safe_open

from diffusers_video import UNet3DModel
from diffusers_video.models.temporal import FRAME_POSITION_ENCODINGS, TEMPORAL_ATTENTION_TYPES
from diffusers_video.models.unet_3d import temporal_parameter_names

LDM_UNET_PREFIX = "model.diffusion_model."
# Top-level module names of an original (LDM) UNet state dict; `label_emb` is the class / SDXL embedding.
LDM_UNET_MODULES = ("input_blocks", "middle_block", "output_blocks", "time_embed", "out", "label_emb")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
WEIGHTS_NAME = "diffusion_pytorch_model"
UNET_CLASS_NAME = "UNet2DConditionModel"


class ConversionError(ValueError):
    """A problem with the user's input (paths, flags, a checkpoint that does not fit): reported as one line."""


@dataclass
class ConversionSummary:
    """What `convert` did, for the CLI to print and tests to check."""

    source: str
    source_format: str
    config_source: str
    output_dir: str
    dtype: str
    copied_parameters: int
    copied_tensors: int
    temporal_parameters: int
    temporal_tensors: int
    config: dict[str, Any]
    ignored_keys: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        shown = (
            "in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
            "up_block_types", "attention_head_dim", "cross_attention_dim", "use_linear_projection", "upcast_attention",
            "temporal_conv", "temporal_attention", "frame_position_encoding", "max_frames", "frame_adaptor",
            "scalar_conditions",
        )  # fmt: skip
        lines = [
            f"Converted {self.source} ({self.source_format}) -> {self.output_dir}",
            f"  UNet config: {self.config_source}",
        ]
        if self.ignored_keys:
            groups = ", ".join(f"{name}: {count}" for name, count in sorted(self.ignored_keys.items()))
            lines.append(f"  ignored {sum(self.ignored_keys.values())} non-UNet keys ({groups})")
        lines += [
            f"  copied {self.copied_parameters:,} parameters ({self.copied_tensors} tensors) from the 2D UNet",
            f"  added {self.temporal_parameters:,} temporal parameters ({self.temporal_tensors} tensors)",
            f"  saved as {self.dtype} safetensors",
            "  config: " + ", ".join(f"{key}={_plain(self.config.get(key))}" for key in shown),
        ]
        return lines


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _first(keys: list[str]) -> str:
    """`key` or `key` (and N more), for error messages."""
    return f"`{keys[0]}`" + (f" (and {len(keys) - 1} more)" if len(keys) > 1 else "")


# ---------------------------------------------------------------------------------------------------- reading weights


def classify_checkpoint_keys(keys: Iterable[str]) -> tuple[str, list[str], dict[str, int]]:
    """Find the UNet in a single-file checkpoint from its key names.

    Args:
        keys (`Iterable[str]`): The checkpoint's keys.

    Returns:
        `(format, unet_keys, ignored)`: format is "ldm" (a full Stable Diffusion checkpoint, `model.diffusion_model.`
        prefix), "ldm_unet" (original UNet names without the prefix) or "diffusers" (diffusers UNet names); ignored
        counts the other keys (VAE, text encoder, EMA copies, ...) by their first name component.
    """
    keys = list(keys)
    key_set = set(keys)
    if any(key.startswith(LDM_UNET_PREFIX) for key in keys):
        fmt, unet_keys = "ldm", [key for key in keys if key.startswith(LDM_UNET_PREFIX)]
    elif "input_blocks.0.0.weight" in key_set:
        fmt, unet_keys = "ldm_unet", [key for key in keys if key.split(".")[0] in LDM_UNET_MODULES]
    elif "conv_in.weight" in key_set and any(key.startswith("down_blocks.") for key in keys):
        fmt, unet_keys = "diffusers", keys
    else:
        return "unknown", [], {}
    unet_set = set(unet_keys)
    ignored = Counter(key.split(".")[0] for key in keys if key not in unet_set)
    return fmt, unet_keys, dict(ignored)


def _load_pickle(path: Path) -> dict[str, Any]:
    # weights_only: torch's restricted unpickler (tensors and plain containers only), as diffusers itself uses.
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure (bad file, forbidden global) is a bad input file
        raise ConversionError(f"Could not read the pickled checkpoint `{path}`: {error}") from error
    # Lightning checkpoints nest the weights under "state_dict".
    while isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"`{path}` does not hold a state dict but a {type(checkpoint).__name__}.")
    return checkpoint


def load_single_file_unet(
    path: Path, allow_pickle: bool = False
) -> tuple[str, dict[str, torch.Tensor], dict[str, int]]:
    """Read only the UNet weights of a single-file checkpoint.

    Args:
        path (`Path`): A `.safetensors` file, or a pickle (`.ckpt`, `.pt`, `.pth`, `.bin`) when `allow_pickle`.
        allow_pickle (`bool`, defaults to False): Allow pickled checkpoints (read with `weights_only=True`).

    Returns:
        `(format, weights, ignored)`: format "ldm" (original names, keys with the `model.diffusion_model.` prefix,
        added where the file lacks it) or "diffusers"; ignored counts the non-UNet keys by group.
    """
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt", device="cpu") as file:
                fmt, unet_keys, ignored = classify_checkpoint_keys(file.keys())
                weights = {key: file.get_tensor(key) for key in unet_keys}
        except (SafetensorError, OSError) as error:
            raise ConversionError(f"`{path}` is not a readable safetensors file: {error}") from error
    elif suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ConversionError(
                f"`{path}` is a pickle checkpoint ({suffix}); pickles can run code when loaded. Convert it to "
                "safetensors, or pass --allow_pickle if you trust the file."
            )
        checkpoint = _load_pickle(path)
        tensors = {key: value for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}
        fmt, unet_keys, ignored = classify_checkpoint_keys(tensors)
        weights = {key: tensors[key] for key in unet_keys}
        skipped = len(checkpoint) - len(tensors)
        if skipped:
            ignored["non-tensor entries"] = skipped
    else:
        raise ConversionError(
            f"`{path}` has an unknown extension {suffix!r}: expected a diffusers folder, a .safetensors file or, "
            f"with --allow_pickle, one of {', '.join(PICKLE_SUFFIXES)}."
        )
    if fmt == "unknown":
        raise ConversionError(
            f"No Stable Diffusion UNet weights found in `{path}`: expected keys starting with `{LDM_UNET_PREFIX}` "
            "(original format) or `conv_in.`/`down_blocks.` (diffusers format)."
        )
    if fmt == "ldm_unet":
        fmt, weights = "ldm", {LDM_UNET_PREFIX + key: value for key, value in weights.items()}
    return fmt, weights, ignored


def load_diffusers_unet_weights(
    folder: Path, variant: str | None = None, allow_pickle: bool = False
) -> dict[str, torch.Tensor]:
    """Read the weights of a diffusers UNet folder (single or sharded safetensors; `.bin` only with `allow_pickle`).

    Args:
        folder (`Path`): The UNet folder (the one with `config.json`).
        variant (`str | None`): Weights variant, e.g. "fp16" for `diffusion_pytorch_model.fp16.safetensors`.
        allow_pickle (`bool`, defaults to False): Allow `diffusion_pytorch_model.bin`.
    """
    stem = f"{WEIGHTS_NAME}.{variant}" if variant else WEIGHTS_NAME
    single, index, pickle = (
        folder / f"{stem}.safetensors",
        folder / f"{stem}.safetensors.index.json",
        folder / f"{stem}.bin",
    )
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ConversionError(f"`{index}` is not a safetensors index (no `weight_map`).") from error
        files = [folder / name for name in sorted(set(weight_map.values()))]
    elif pickle.is_file():
        if not allow_pickle:
            raise ConversionError(
                f"`{folder}` only has pickled weights `{pickle.name}`; pickles can run code when loaded. Pass "
                "--allow_pickle if you trust them."
            )
        return {key: value for key, value in _load_pickle(pickle).items() if isinstance(value, torch.Tensor)}
    else:
        present = sorted(path.name for path in folder.glob(f"{WEIGHTS_NAME}*"))
        raise ConversionError(
            f"`{folder}` has no `{single.name}`" + (f" (found {present}; see --variant)." if present else ".")
        )
    weights = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt", device="cpu") as handle:
                weights.update({key: handle.get_tensor(key) for key in handle.keys()})
        except (SafetensorError, OSError) as error:
            raise ConversionError(f"`{file}` is not a readable safetensors file: {error}") from error
    return weights


# ------------------------------------------------------------------------------------------------------------- configs


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
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f"`{path}` is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise ConversionError(f"`{path}` is not a config (a JSON object).")
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


# ---------------------------------------------------------------------------------------------- conversion and checks


def convert_ldm_state_dict(
    checkpoint: Mapping[str, torch.Tensor], config: Mapping[str, Any], source: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename original (LDM) UNet weights to diffusers names with diffusers' `convert_ldm_unet_checkpoint`.

    diffusers' function silently drops keys it does not recognise; here every original key must land somewhere.

    Args:
        checkpoint (`Mapping[str, torch.Tensor]`): UNet weights with the `model.diffusion_model.` prefix.
        config (`Mapping`): The `UNet2DConditionModel` config.
        source (`str`): The checkpoint's name for error messages.

    Returns:
        `(weights, origin)`: diffusers-named weights, and for each of them the original key it came from.
    """
    layers = config.get("layers_per_block", 2)
    if isinstance(layers, (list, tuple)):
        if len(set(layers)) != 1:
            raise ConversionError(
                f"Original checkpoints convert only with one `layers_per_block` for all blocks, not {list(layers)}."
            )
        layers = layers[0]
    converted = convert_ldm_unet_checkpoint(dict(checkpoint), {**config, "layers_per_block": layers})
    # The conversion moves tensors without copying them, so object identity tells where each one came from.
    original_key = {id(tensor): key for key, tensor in checkpoint.items()}
    origin = {key: original_key.get(id(tensor), "?") for key, tensor in converted.items()}
    used = {id(tensor) for tensor in converted.values()}
    unused = [key for key, tensor in checkpoint.items() if id(tensor) not in used]
    if unused:
        raise ConversionError(f"{_first(unused)} in `{source}` has no place in the UNet described by the config.")
    return converted, origin


def empty_unet2d(config: Mapping[str, Any], config_source: str) -> UNet2DConditionModel:
    """A `UNet2DConditionModel` with this config and its parameters on the meta device (no memory, no init)."""
    try:
        with init_empty_weights():
            return UNet2DConditionModel.from_config(dict(config))
    except (ValueError, TypeError) as error:
        raise ConversionError(f"The UNet config from {config_source} is not valid: {error}") from error


def check_inflatable(unet: UNet2DConditionModel, temporal_config: Mapping[str, Any], config_source: str) -> None:
    """Dry-run `UNet3DModel.from_unet2d` on the meta device, so that bad input fails before any weight is read."""
    try:
        with init_empty_weights():
            UNet3DModel.from_unet2d(unet)
    except (ValueError, TypeError) as error:
        raise ConversionError(f"Unsupported UNet ({config_source}): {error}") from error
    try:
        with init_empty_weights():
            UNet3DModel.from_unet2d(unet, **temporal_config)
    except (ValueError, TypeError) as error:
        raise ConversionError(f"Bad temporal option: {error}") from error


def load_weights_strictly(
    unet: UNet2DConditionModel,
    weights: Mapping[str, torch.Tensor],
    source: str,
    config_source: str,
    origin: Mapping[str, str] | None = None,
) -> UNet2DConditionModel:
    """Put `weights` (float32) into the meta-device `unet`; any missing, unexpected or mis-shaped key is an error.

    Args:
        unet (`UNet2DConditionModel`): From `empty_unet2d`.
        weights (`Mapping[str, torch.Tensor]`): diffusers-named weights.
        source (`str`), config_source (`str`): Where the weights and the config came from, for error messages.
        origin (`Mapping[str, str] | None`): Original key of each weight, for error messages.

    Returns:
        The same `unet`, in eval mode, with the weights.
    """
    expected = unet.state_dict()

    def named(key: str) -> str:
        return f"`{key}`" + (f" (from `{origin[key]}`)" if origin and key in origin else "")

    mismatch = f"The weights in `{source}` do not match the UNet config ({config_source})"
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise ConversionError(f"{mismatch}: unexpected key {named(unexpected[0])}{more}.")
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise ConversionError(f"{mismatch}: missing key {_first(missing)}.")
    for key, tensor in expected.items():
        if weights[key].shape != tensor.shape:
            raise ConversionError(
                f"{mismatch}: shape mismatch for {named(key)}: {tuple(weights[key].shape)} in the checkpoint vs "
                f"{tuple(tensor.shape)} in the config."
            )
    weights = {key: value.float() if value.is_floating_point() else value for key, value in weights.items()}
    unet.load_state_dict(weights, strict=True, assign=True)
    return unet.eval()


# ---------------------------------------------------------------------------------------------------------- the whole


def convert(
    checkpoint: str | Path,
    output_dir: str | Path,
    *,
    config: str | Path | None = None,
    original_config: str | Path | None = None,
    subfolder: str | None = None,
    variant: str | None = None,
    allow_pickle: bool = False,
    dtype: str = "float32",
    temporal_config: Mapping[str, Any] | None = None,
) -> ConversionSummary:
    """Convert a Stable Diffusion UNet into a `UNet3DModel` folder that loads with `UNet3DModel.from_pretrained`.

    Args:
        checkpoint (`str | Path`): A diffusers pipeline or UNet folder, or an original single-file checkpoint.
        output_dir (`str | Path`): Where to save the `UNet3DModel`.
        config (`str | Path | None`): For a single file: a diffusers UNet (or pipeline) folder with its config.
        original_config (`str | Path | None`): For a single file: its original LDM yaml.
        subfolder (`str | None`): The UNet's folder inside a pipeline folder (default "unet").
        variant (`str | None`): Weights variant of a diffusers folder (e.g. "fp16").
        allow_pickle (`bool`, defaults to False): Allow pickled checkpoints (`.ckpt`, `.pt`, `.pth`, `.bin`).
        dtype (`str`, defaults to "float32"): dtype of the saved weights: "float32", "float16" or "bfloat16".
        temporal_config (`Mapping[str, Any] | None`): Arguments of `UNet3DModel.from_unet2d` (temporal options and
            `in_channels`).

    Returns:
        `ConversionSummary`.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    temporal_config = dict(temporal_config or {})
    if config is not None and original_config is not None:
        raise ConversionError("Pass either --config or --original_config, not both.")
    if dtype not in DTYPES:
        raise ConversionError(f"`dtype` must be one of {sorted(DTYPES)} but is {dtype!r}.")
    if not checkpoint.exists():
        raise ConversionError(f"--checkpoint `{checkpoint}` does not exist.")
    for flag, path in (("--config", config), ("--original_config", original_config)):
        if path is not None and not Path(path).exists():
            raise ConversionError(f"{flag} `{path}` does not exist.")
    if output_dir.exists() and not output_dir.is_dir():
        raise ConversionError(f"--output_dir `{output_dir}` exists and is not a folder.")
    sources = [checkpoint]  # folders the output must not overwrite

    ignored: dict[str, int] = {}
    origin = None
    if checkpoint.is_dir():
        if config is not None or original_config is not None:
            raise ConversionError(
                f"`{checkpoint}` is a diffusers folder with its own config: --config and --original_config are for "
                "single-file checkpoints."
            )
        unet_config, unet_folder = load_unet_config(checkpoint, subfolder)
        config_source, source_format, source = f"`{unet_folder / 'config.json'}`", "diffusers folder", unet_folder
        sources.append(unet_folder)
        unet = empty_unet2d(unet_config, config_source)
        check_inflatable(unet, temporal_config, config_source)
        _check_output(output_dir, sources)
        weights = load_diffusers_unet_weights(unet_folder, variant, allow_pickle)
    else:
        fmt, weights, ignored = load_single_file_unet(checkpoint, allow_pickle)
        source, source_format = checkpoint, f"single file, {'original' if fmt == 'ldm' else 'diffusers'} names"
        if config is not None:
            unet_config, config_folder = load_unet_config(Path(config), subfolder)
            config_source = f"`{config_folder / 'config.json'}`"
            sources.append(config_folder)
        elif original_config is not None:
            unet_config = unet_config_from_original_config(
                _read_yaml(Path(original_config)), weights, str(original_config)
            )
            config_source = f"`{original_config}`"
        elif fmt == "ldm":
            try:
                unet_config = infer_unet_config(
                    {key[len(LDM_UNET_PREFIX) :]: tuple(value.shape) for key, value in weights.items()}
                )
            except ConversionError as error:
                raise ConversionError(f"`{checkpoint}`: {error}") from error
            rules = (
                "SD 2.x: 64-channel heads, upcast_attention"
                if unet_config["use_linear_projection"]
                else "SD 1.x: 8 heads"
            )
            config_source = f"inferred from the tensor shapes ({rules}, norm_num_groups=32)"
        else:
            raise ConversionError(
                f"`{checkpoint}` holds diffusers-named UNet weights, whose config is not inferred: pass --config DIR."
            )
        unet = empty_unet2d(unet_config, config_source)
        check_inflatable(unet, temporal_config, config_source)
        _check_output(output_dir, sources)
        if fmt == "ldm":
            weights, origin = convert_ldm_state_dict(weights, unet.config, str(checkpoint))

    unet = load_weights_strictly(unet, weights, str(source), config_source, origin)
    del weights
    model = UNet3DModel.from_unet2d(unet, **temporal_config)
    if DTYPES[dtype] != model.dtype:
        # torch's own cast: diffusers' `ModelMixin.to` warns about float32-only modules that UNet3DModel does not have.
        model = torch.nn.Module.to(model, DTYPES[dtype])
    model.save_pretrained(output_dir, safe_serialization=True)

    temporal = set(temporal_parameter_names(model))
    temporal_parameters = [param for name, param in model.named_parameters() if name in temporal]
    return ConversionSummary(
        source=str(checkpoint),
        source_format=source_format,
        config_source=config_source,
        output_dir=str(output_dir),
        dtype=dtype,
        copied_parameters=sum(param.numel() for param in unet.parameters()),
        copied_tensors=len(unet.state_dict()),
        temporal_parameters=sum(param.numel() for param in temporal_parameters),
        temporal_tensors=len(temporal_parameters),
        config=dict(model.config),
        ignored_keys=ignored,
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        original_config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConversionError(f"`{path}` is not valid YAML: {error}") from error
    if not isinstance(original_config, dict):
        raise ConversionError(f"`{path}` is not a Stable Diffusion (LDM) config.")
    return original_config


def _check_output(output_dir: Path, sources: list[Path]) -> None:
    if output_dir.resolve() in {path.resolve() for path in sources}:
        raise ConversionError(f"--output_dir `{output_dir}` is a source folder; it would be overwritten.")


# ----------------------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convert_sd_to_unet3d.py",
        description=(
            "Convert a Stable Diffusion UNet (diffusers folder or original single file) into a diffusers-video "
            "UNet3DModel that equals it frame by frame. Works offline."
        ),
    )
    parser.add_argument(
        "--checkpoint", required=True, help="Diffusers pipeline/UNet folder, or a single-file checkpoint."
    )
    parser.add_argument("--output_dir", required=True, help="Folder to save the UNet3DModel in.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config", help="For a single file: diffusers UNet (or pipeline) folder with the UNet config."
    )
    source.add_argument("--original_config", help="For a single file: the original LDM yaml.")
    parser.add_argument("--subfolder", help="The UNet's folder inside a pipeline folder (default: unet).")
    parser.add_argument("--variant", help="Weights variant of a diffusers folder, e.g. fp16.")
    parser.add_argument("--allow_pickle", action="store_true", help="Allow pickled .ckpt/.pt/.pth/.bin weights.")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the saved weights.")

    # Temporal options: absent unless given, so UNet3DModel's own defaults apply.
    temporal = parser.add_argument_group("temporal layers (defaults: those of UNet3DModel)")
    none_or = lambda choices: [*choices, "none"]  # noqa: E731
    temporal.add_argument("--temporal_attention", choices=none_or(TEMPORAL_ATTENTION_TYPES), default=argparse.SUPPRESS)
    temporal.add_argument("--temporal_attention_head_dim", type=int, default=argparse.SUPPRESS)
    temporal.add_argument(
        "--no_temporal_conv", dest="temporal_conv", action="store_false", default=argparse.SUPPRESS,
        help="No temporal convolutions.",
    )  # fmt: skip
    temporal.add_argument("--temporal_conv_kernel_size", type=int, default=argparse.SUPPRESS)
    temporal.add_argument(
        "--frame_position_encoding", choices=none_or(FRAME_POSITION_ENCODINGS), default=argparse.SUPPRESS
    )
    temporal.add_argument("--max_frames", type=int, default=argparse.SUPPRESS)
    temporal.add_argument(
        "--frame_adaptor", action="store_true", default=argparse.SUPPRESS, help="MagicVideo's per-frame adaptors."
    )
    temporal.add_argument(
        "--scalar_conditions", nargs="+", metavar="NAME", default=argparse.SUPPRESS,
        help="Extra scalar conditions added to the time embedding, e.g. fps noise_aug.",
    )  # fmt: skip
    temporal.add_argument(
        "--in_channels", type=int, default=argparse.SUPPRESS,
        help="Input channels (more than the 2D UNet's for concatenated conditioning; the extra ones start at zero).",
    )  # fmt: skip
    return parser


TEMPORAL_OPTIONS = (
    "temporal_attention", "temporal_attention_head_dim", "temporal_conv", "temporal_conv_kernel_size",
    "frame_position_encoding", "max_frames", "frame_adaptor", "scalar_conditions", "in_channels",
)  # fmt: skip


def temporal_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `from_unet2d` arguments given on the command line ("none" -> None)."""
    config = {name: getattr(args, name) for name in TEMPORAL_OPTIONS if hasattr(args, name)}
    for name in ("temporal_attention", "frame_position_encoding"):
        if config.get(name) == "none":
            config[name] = None
    if "scalar_conditions" in config:
        config["scalar_conditions"] = tuple(config["scalar_conditions"])
    return config


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit code (1 with a one-line message on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        summary = convert(
            args.checkpoint,
            args.output_dir,
            config=args.config,
            original_config=args.original_config,
            subfolder=args.subfolder,
            variant=args.variant,
            allow_pickle=args.allow_pickle,
            dtype=args.dtype,
            temporal_config=temporal_config_from_args(args),
        )
    except (ValueError, OSError) as error:  # ConversionError is a ValueError
        message = " ".join(str(error).split("\n"))
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
