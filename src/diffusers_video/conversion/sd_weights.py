"""Reading the weights of a Stable Diffusion UNet: an original single-file checkpoint (only its UNet keys) or a
diffusers UNet folder (single or sharded safetensors). Pickles are read only when allowed, with torch's restricted
unpickler."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .common import ConversionError, read_safetensors, safetensors_files

__all__ = [
    "LDM_UNET_MODULES",
    "LDM_UNET_PREFIX",
    "PICKLE_SUFFIXES",
    "WEIGHTS_NAME",
    "classify_checkpoint_keys",
    "load_diffusers_unet_weights",
    "load_single_file_unet",
]

LDM_UNET_PREFIX = "model.diffusion_model."
# Top-level module names of an original (LDM) UNet state dict; `label_emb` is the class / SDXL embedding.
LDM_UNET_MODULES = ("input_blocks", "middle_block", "output_blocks", "time_embed", "out", "label_emb")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHTS_NAME = "diffusion_pytorch_model"


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
    files, pickle = safetensors_files(folder, stem), folder / f"{stem}.bin"
    if files is not None:
        return read_safetensors(files)
    if pickle.is_file():
        if not allow_pickle:
            raise ConversionError(
                f"`{folder}` only has pickled weights `{pickle.name}`; pickles can run code when loaded. Pass "
                "--allow_pickle if you trust them."
            )
        return {key: value for key, value in _load_pickle(pickle).items() if isinstance(value, torch.Tensor)}
    present = sorted(path.name for path in folder.glob(f"{WEIGHTS_NAME}*"))
    raise ConversionError(
        f"`{folder}` has no `{stem}.safetensors`" + (f" (found {present}; see --variant)." if present else ".")
    )
