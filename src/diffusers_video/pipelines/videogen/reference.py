"""VideoGen's reference image: what a user may pass as `reference_image`, its checks, and its pixels for the VAE.

Accepted (the issue's list): a PIL image or a list of them; a `(3, H, W)` or `(B, 3, H, W)` tensor or a `(H, W, 3)` or
`(B, H, W, 3)` array with values in [0, 1] (diffusers' "pt" and "np" image outputs); or the output of any diffusers
text-to-image pipeline (an object with `images`, e.g. `StableDiffusionPipelineOutput` or `ImagePipelineOutput`), as
any of those. Tensors and arrays are used at full precision (no 8-bit rounding), so a reference that is the decoded
frame of a video is encoded from exactly those values.

A reference has the pixel size of the base stage's frames (the latent size times the VAE's scale factor), or that of
the output (`height` x `width`) when the super-resolution stage runs, in which case it is area-downsampled to the base
size. One reference goes with every prompt, or one per prompt, or one per video.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

__all__ = ["check_reference_image", "reference_pixels"]


def _describe(image: Any) -> str:
    if isinstance(image, (torch.Tensor, np.ndarray)):
        return f"a {type(image).__name__} of shape {tuple(image.shape)}"
    if isinstance(image, PIL.Image.Image):
        return f"a {image.width}x{image.height} PIL image"
    if isinstance(image, list):
        return f"a list of {len(image)}"
    return f"a {type(image).__name__}"


def _unwrap(image: Any) -> Any:
    """The images of a diffusers pipeline output (anything with an `images` field), else `image` itself."""
    if not isinstance(image, (torch.Tensor, np.ndarray, PIL.Image.Image, list)) and hasattr(image, "images"):
        return image.images
    return image


def _as_tensor(item: Any) -> torch.Tensor:
    """One item as a float `(B, 3, H, W)` tensor in [0, 1] (not yet range-checked)."""
    if isinstance(item, PIL.Image.Image):
        array = np.asarray(item.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
        return torch.from_numpy(array).permute(2, 0, 1)[None]
    if isinstance(item, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(item))
        tensor = tensor[None] if tensor.ndim == 3 else tensor
        return tensor.permute(0, 3, 1, 2)  # (B, H, W, 3) -> (B, 3, H, W)
    return item[None] if item.ndim == 3 else item


def check_reference_image(reference_image: Any, sizes: list[tuple[int, int]], batch_sizes: tuple[int, ...]) -> int:
    """Checks a `reference_image` argument; returns the number of images.

    Args:
        reference_image: The argument (see the module docstring).
        sizes (`list[tuple[int, int]]`): The accepted `(height, width)` in pixels.
        batch_sizes (`tuple[int, ...]`): The accepted numbers of images (1, the prompts, the videos).

    Raises:
        TypeError: Not an image, a list of images, a tensor, an array or a pipeline output of those; or integers.
        ValueError: The wrong number of channels or dimensions, values outside [0, 1], a size or a count not accepted.
    """
    described = _describe(reference_image)
    image = _unwrap(reference_image)
    items = image if isinstance(image, list) else [image]
    if not items:
        raise ValueError("`reference_image` is an empty list: pass at least one image.")
    tensors = []
    for item in items:
        if isinstance(item, PIL.Image.Image):
            tensors.append(_as_tensor(item))
            continue
        if not isinstance(item, (torch.Tensor, np.ndarray)):
            raise TypeError(
                "`reference_image` must be a PIL image, a list of them, a torch.Tensor, a numpy array or a diffusers "
                f"pipeline output with `images` but is {_describe(item)}."
            )
        is_tensor = isinstance(item, torch.Tensor)
        if item.ndim not in (3, 4) or (isinstance(image, list) and item.ndim != 3):
            layout = "(3, H, W) or (B, 3, H, W)" if is_tensor else "(H, W, 3) or (B, H, W, 3)"
            raise ValueError(f"`reference_image` must be {layout} but is {_describe(item)}.")
        channels = item.shape[-3] if is_tensor else item.shape[-1]
        if channels != 3:
            raise ValueError(
                f"`reference_image` must have 3 colour channels but is {_describe(item)} (latents are not accepted: "
                "pass the image pipeline's decoded output)."
            )
        if (is_tensor and not item.is_floating_point()) or (not is_tensor and item.dtype.kind != "f"):
            raise TypeError(f"`reference_image` must hold floats in [0, 1] but has dtype {item.dtype}.")
        tensors.append(_as_tensor(item))
    shapes = {tuple(t.shape[-2:]) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"The images of `reference_image` must all have one size but have {sorted(shapes)} (H, W).")
    (size,) = shapes
    if size not in sizes:
        accepted = " or ".join(f"{h}x{w}" for h, w in sizes)
        raise ValueError(
            f"`reference_image` must be {accepted} pixels (height x width) but is {size[0]}x{size[1]} ({described})."
        )
    for tensor in tensors:
        if tensor.numel() and (not bool(torch.isfinite(tensor).all()) or tensor.min() < 0 or tensor.max() > 1):
            raise ValueError(
                f"`reference_image` must hold values in [0, 1] but holds values in [{float(tensor.min())}, "
                f"{float(tensor.max())}]."
            )
    count = sum(t.shape[0] for t in tensors)
    if count not in batch_sizes:
        raise ValueError(
            f"`reference_image` holds {count} images but must hold {' or '.join(map(str, batch_sizes))} (one for "
            f"all videos, one per prompt, or one per video)."
        )
    return count


def reference_pixels(reference_image: Any, size: tuple[int, int]) -> torch.Tensor:
    """A checked `reference_image` as float32 `(B, 3, h, w)` pixels in [-1, 1] at the base size `size` (area
    downsampling from the output size)."""
    image = _unwrap(reference_image)
    items = image if isinstance(image, list) else [image]
    pixels = torch.cat([_as_tensor(item).float().cpu() for item in items])  # (B, 3, H, W) in [0, 1]
    if tuple(pixels.shape[-2:]) != tuple(size):
        pixels = F.interpolate(pixels, size=size, mode="area")
    return (pixels * 2 - 1).contiguous()  # arrays arrive channels-last: one memory layout, one result
