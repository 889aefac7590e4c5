"""Convert SVD's temporal VAE (diffusers' `AutoencoderKLTemporalDecoder`) into an `AutoencoderKLVideo`.

Both models have `AutoencoderKL`'s encoder and `quant_conv`, and a decoder whose resnets are each followed by a
`TemporalResnetBlock` mixed in by an `AlphaBlender`, then a `time_conv_out`. The conversion is a renaming:

    decoder.{mid_block | up_blocks.i}.resnets.j.spatial_res_block.*   -> decoder.{mid_block | up_blocks.i}.resnets.j.*
    decoder.mid_block.resnets.j.{temporal_res_block | time_mixer}.*   -> decoder.mid_block_temporal.j.{...}.*
    decoder.up_blocks.i.resnets.j.{temporal_res_block | time_mixer}.* -> decoder.up_blocks_temporal.i.j.{...}.*
    everything else (encoder, quant_conv, decoder.conv_in, mid_block.attentions.0, upsamplers, conv_norm_out,
    conv_out, time_conv_out)                                          -> unchanged

plus a `post_quant_conv`, which SVD does not have, set to the identity. The result (`temporal_attention=None`)
decodes what SVD's `decode(z, num_frames)` decodes. Keys are checked strictly: an unexpected key, a missing one or
a shape that does not fit is a `ConversionError` (a `ValueError`) that names it.

SVD's mid block holds `layers_per_block` resnets but runs only the first two (around its attention), as
`AutoencoderKL`'s mid block, which always has two; only `layers_per_block=2` (SVD's) therefore converts.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLTemporalDecoder
from huggingface_hub import snapshot_download

from ..folders import read_json
from ..models.video_vae import AutoencoderKLVideo
from .common import ConversionError, first_keys, read_safetensors, safetensors_files, write_atomically

SVD_CLASS_NAME = "AutoencoderKLTemporalDecoder"
# `AutoencoderKLTemporalDecoder.__init__`'s arguments.
SVD_CONFIG_KEYS = (
    "in_channels",
    "out_channels",
    "down_block_types",
    "block_out_channels",
    "layers_per_block",
    "latent_channels",
    "sample_size",
    "scaling_factor",
    "force_upcast",
)
WEIGHTS_NAME = "diffusion_pytorch_model"
_SPATIO_TEMPORAL_KEY = re.compile(
    r"^decoder\.(?:mid_block|up_blocks\.(?P<block>\d+))\.resnets\.(?P<resnet>\d+)\."
    r"(?P<part>spatial_res_block|temporal_res_block|time_mixer)\.(?P<rest>.+)$"
)


def svd_decoder_config_to_video_vae(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `AutoencoderKLVideo` config of an `AutoencoderKLTemporalDecoder` config.

    Args:
        config (`Mapping`): The SVD VAE's config (its `config.json`; keys starting with "_" are ignored).

    Returns:
        `dict`: Arguments of `AutoencoderKLVideo`: the same spatial settings, SVD's fixed ones (32 groups, SiLU, mid
        block attention), both quantisation convolutions and no temporal attention.
    """
    class_name = config.get("_class_name", SVD_CLASS_NAME)
    if class_name != SVD_CLASS_NAME:
        raise ConversionError(f"The config describes a {class_name!r}, not an {SVD_CLASS_NAME!r}.")
    unknown = sorted(key for key in config if not key.startswith("_") and key not in SVD_CONFIG_KEYS)
    if unknown:
        raise ConversionError(
            f"Unexpected {SVD_CLASS_NAME} config keys {unknown}; expected only {list(SVD_CONFIG_KEYS)}."
        )
    parameters = inspect.signature(AutoencoderKLTemporalDecoder.__init__).parameters
    settings = {key: parameters[key].default for key in SVD_CONFIG_KEYS}
    settings.update({key: config[key] for key in SVD_CONFIG_KEYS if key in config})
    if settings["layers_per_block"] != 2:
        raise ConversionError(
            f"Only an {SVD_CLASS_NAME} with `layers_per_block=2` (SVD's) converts: its mid block runs two resnets "
            f"whatever it holds, as AutoencoderKL's mid block has; this one has `layers_per_block="
            f"{settings['layers_per_block']!r}`."
        )
    num_blocks = len(settings["block_out_channels"])
    return {
        "in_channels": settings["in_channels"],
        "out_channels": settings["out_channels"],
        "down_block_types": list(settings["down_block_types"]),
        "up_block_types": ["UpDecoderBlock2D"] * num_blocks,
        "block_out_channels": list(settings["block_out_channels"]),
        "layers_per_block": settings["layers_per_block"],
        "act_fn": "silu",
        "latent_channels": settings["latent_channels"],
        "norm_num_groups": 32,
        "sample_size": settings["sample_size"],
        "scaling_factor": settings["scaling_factor"],
        "force_upcast": settings["force_upcast"],
        "use_quant_conv": True,
        "use_post_quant_conv": True,
        "mid_block_add_attention": True,
        "temporal_attention": None,
    }


def rename_svd_decoder_key(key: str) -> str:
    """Our name for an `AutoencoderKLTemporalDecoder` parameter (see the module docstring)."""
    match = _SPATIO_TEMPORAL_KEY.match(key)
    if match is None:
        return key
    block, resnet, part, rest = match.group("block", "resnet", "part", "rest")
    if part == "spatial_res_block":
        where = "mid_block" if block is None else f"up_blocks.{block}"
        return f"decoder.{where}.resnets.{resnet}.{rest}"
    where = "mid_block_temporal" if block is None else f"up_blocks_temporal.{block}"
    return f"decoder.{where}.{resnet}.{part}.{rest}"


def svd_decoder_state_dict_to_video_vae(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Convert the weights and config of an `AutoencoderKLTemporalDecoder` (a pure function: nothing is loaded).

    Args:
        state_dict (`Mapping[str, torch.Tensor]`): The SVD VAE's weights.
        config (`Mapping`): Its config.

    Returns:
        `(config, state_dict)` of the equivalent `AutoencoderKLVideo`; `post_quant_conv` is the identity, in the
        dtype of the source's `quant_conv`.
    """
    our_config = svd_decoder_config_to_video_vae(config)
    with init_empty_weights():
        shapes = {key: tuple(value.shape) for key, value in AutoencoderKLVideo(**our_config).state_dict().items()}
    added = ("post_quant_conv.weight", "post_quant_conv.bias")
    converted = {}
    for key, value in state_dict.items():
        name = rename_svd_decoder_key(key)
        if name not in shapes or name in added:
            raise ConversionError(
                f"Unexpected key `{key}` in the {SVD_CLASS_NAME} weights: AutoencoderKLVideo has no `{name}`."
            )
        if tuple(value.shape) != shapes[name]:
            raise ConversionError(
                f"The {SVD_CLASS_NAME} weight `{key}` has shape {tuple(value.shape)}, but `{name}` of the "
                f"AutoencoderKLVideo for its config has {shapes[name]}."
            )
        converted[name] = value
    missing = sorted(set(shapes) - set(converted) - set(added))
    if missing:
        raise ConversionError(f"The {SVD_CLASS_NAME} weights lack {first_keys(missing)} (our names).")
    reference = converted["quant_conv.weight"]
    channels = our_config["latent_channels"]
    identity = torch.eye(channels, dtype=reference.dtype, device=reference.device)
    converted["post_quant_conv.weight"] = identity[:, :, None, None]  # (L, L, 1, 1): the identity 1x1 convolution
    converted["post_quant_conv.bias"] = torch.zeros(channels, dtype=reference.dtype, device=reference.device)
    return our_config, converted


# ------------------------------------------------------------------------------------------------------- folders


@dataclass
class SVDDecoderConversion:
    """What `convert_svd_decoder` did."""

    source: str
    output_dir: str
    converted_tensors: int
    config: dict[str, Any]

    def lines(self) -> list[str]:
        return [
            f"Converted {self.source} ({SVD_CLASS_NAME}) -> {self.output_dir} (AutoencoderKLVideo)",
            f"  {self.converted_tensors} tensors renamed; post_quant_conv added as the identity",
        ]


def find_svd_vae_folder(folder: Path, subfolder: str | None = None) -> Path:
    """The VAE folder: `folder/subfolder`, else `folder` itself or its `vae/` (an SVD pipeline folder)."""
    candidates = [folder / subfolder] if subfolder else [folder, folder / "vae"]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    where = " or ".join(f"`{candidate / 'config.json'}`" for candidate in candidates)
    raise ConversionError(f"`{folder}` is not an {SVD_CLASS_NAME} folder or SVD pipeline folder: no {where}.")


def read_svd_vae(folder: Path, variant: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config and weights (single or sharded safetensors, `variant` e.g. "fp16") of a diffusers VAE folder."""
    config = read_json(folder / "config.json")
    stem = f"{WEIGHTS_NAME}.{variant}" if variant else WEIGHTS_NAME
    files = safetensors_files(folder, stem)
    if files is None:
        found = sorted(path.name for path in folder.glob(f"{WEIGHTS_NAME}*"))
        hint = f" (found {found}; pickled weights are not read: save them as safetensors)" if found else ""
        raise ConversionError(f"`{folder}` has no `{stem}.safetensors`{hint}.")
    return config, read_safetensors(files)


def svd_vae_folder_to_video_vae(vae_folder: Path, variant: str | None = None) -> AutoencoderKLVideo:
    """Convert an `AutoencoderKLTemporalDecoder` folder into an `AutoencoderKLVideo` in memory (on the CPU, in the
    weights' dtype); keys are checked strictly (`svd_decoder_state_dict_to_video_vae`)."""
    config, weights = read_svd_vae(vae_folder, variant)
    our_config, state_dict = svd_decoder_state_dict_to_video_vae(weights, config)
    model = AutoencoderKLVideo(**our_config)  # not on the meta device: a buffer outside the state dict stays real
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()  # as diffusers' `from_pretrained` returns models


def load_svd_decoder(
    pretrained_model_name_or_path: str | os.PathLike,
    *,
    subfolder: str | None = None,
    variant: str | None = None,
    torch_dtype: torch.dtype | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
) -> AutoencoderKLVideo:
    """An `AutoencoderKLTemporalDecoder` folder or Hub repo (its `subfolder`, e.g. "vae" of an SVD repo) as an
    `AutoencoderKLVideo`, converted in memory: what `AutoencoderKLVideo.from_pretrained` calls for such a folder.

    A repo id fetches only `config.json` and the safetensors weights of the variant into the Hub cache (as diffusers
    does; `local_files_only=True` reads the cache alone). The model is float32 unless `torch_dtype` says otherwise,
    as diffusers loads models.
    """
    path = Path(pretrained_model_name_or_path)
    if not path.is_dir():
        prefix = f"{subfolder}/" if subfolder else ""
        stem = f"{WEIGHTS_NAME}.{variant}" if variant else WEIGHTS_NAME
        path = Path(
            snapshot_download(
                os.fspath(pretrained_model_name_or_path), revision=revision, cache_dir=cache_dir, token=token,
                local_files_only=bool(local_files_only), force_download=force_download,
                allow_patterns=[f"{prefix}config.json", f"{prefix}{stem}.safetensors", f"{prefix}{stem}.safetensors*"],
            )
        )  # fmt: skip
    model = svd_vae_folder_to_video_vae(path / (subfolder or ""), variant)
    return torch.nn.Module.to(model, torch_dtype or torch.float32)


def convert_svd_decoder(
    folder: str | Path, output_dir: str | Path, subfolder: str | None = None
) -> SVDDecoderConversion:
    """Convert an `AutoencoderKLTemporalDecoder` folder and save the `AutoencoderKLVideo` (safetensors).

    The output is written to a temporary folder next to `output_dir` and renamed at the end, so a failure leaves
    nothing half-written; `output_dir` must not exist or be empty.

    Args:
        folder (`str | Path`): The VAE folder, or an SVD pipeline folder (its `vae/` is used).
        output_dir (`str | Path`): Where to save the converted model.
        subfolder (`str | None`): The VAE's folder inside `folder`, if not `vae/` or `folder` itself.
    """
    folder, output_dir = Path(folder), Path(output_dir)
    if not folder.is_dir():
        raise ConversionError(f"`{folder}` is not a folder.")
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ConversionError(f"`{output_dir}` already exists and is not an empty folder.")
    vae_folder = find_svd_vae_folder(folder, subfolder)
    model = svd_vae_folder_to_video_vae(vae_folder)
    write_atomically(output_dir, lambda folder: model.save_pretrained(folder, safe_serialization=True))
    tensors = len(model.state_dict()) - 2  # post_quant_conv's weight and bias are added, not converted
    return SVDDecoderConversion(str(vae_folder), str(output_dir), tensors, dict(model.config))


# `AutoencoderKLVideo.from_pretrained` converts such folders through this (the models layer cannot import this one)
AutoencoderKLVideo.register_foreign_loader(SVD_CLASS_NAME, load_svd_decoder)
