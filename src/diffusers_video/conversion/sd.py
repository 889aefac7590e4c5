"""Stable Diffusion UNet -> `UNet3DModel` (inflated, equal frame by frame): [`convert`].

The source is either a diffusers folder (a pipeline folder with `unet/`, or a UNet folder with `config.json`) or an
original single-file checkpoint (`.safetensors`; pickled `.ckpt`/`.pt`/`.pth`/`.bin` only with `allow_pickle`).
Nothing is downloaded: the UNet config of a single file comes from `config` (a diffusers UNet or pipeline folder),
from `original_config` (the LDM yaml), or is inferred from the checkpoint's own tensor shapes.

Steps, each a small function:
    1. read the 2D UNet weights (`sd_weights`: `load_single_file_unet`, `load_diffusers_unet_weights`) and its config
       (`sd_config`: `load_unet_config`, `unet_config_from_original_config`, `infer_unet_config`);
    2. rename original (LDM) weights with diffusers' own `convert_ldm_unet_checkpoint` (`convert_ldm_state_dict`) and
       build a `UNet2DConditionModel` strictly (`empty_unet2d`, `load_weights_strictly`): a missing, unexpected or
       mis-shaped key is an error;
    3. inflate with `UNet3DModel.from_unet2d` and save with `save_pretrained` (safetensors).

The command line is `diffusers-video convert sd` (`commands/convert.py`), also run by
`conversion_scripts/convert_sd_to_unet3d.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

from ..models.unet_3d import UNet3DModel, temporal_parameter_names
from .common import ConversionError, first_keys
from .sd_config import infer_unet_config, load_unet_config, read_yaml, unet_config_from_original_config
from .sd_weights import LDM_UNET_PREFIX, load_diffusers_unet_weights, load_single_file_unet

__all__ = [
    "DTYPES",
    "ConversionSummary",
    "check_inflatable",
    "convert",
    "convert_ldm_state_dict",
    "empty_unet2d",
    "load_weights_strictly",
]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
            "scalar_conditions", "temporal_layout", "temporal_conv_padding",
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
        raise ConversionError(f"{first_keys(unused)} in `{source}` has no place in the UNet described by the config.")
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
        raise ConversionError(f"{mismatch}: missing key {first_keys(missing)}.")
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
                read_yaml(Path(original_config)), weights, str(original_config)
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


def _check_output(output_dir: Path, sources: list[Path]) -> None:
    if output_dir.resolve() in {path.resolve() for path in sources}:
        raise ConversionError(f"--output_dir `{output_dir}` is a source folder; it would be overwritten.")
