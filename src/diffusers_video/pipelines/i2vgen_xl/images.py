"""The input image of I2VGen-XL: its checks, and the two views the models see (VGen's `utils/transforms.py`).

- The VAE sees the image resized (box filter) so that it covers `width` x `height` and centre-cropped to it.
- The CLIP image encoder sees it covering `width` x `width`, centre-cropped, then resized (bilinear) to the
  feature extractor's crop size and normalised with CLIP's statistics.

The arithmetic of the resizing (a floored scale, PIL's BOX then BILINEAR filters) is that of diffusers'
`I2VGenXLPipeline`, so the two pipelines see the same pixels. Tensors and arrays are read as images in [0, 1] and
converted to 8-bit PIL images first, as diffusers does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.image_processor import VaeImageProcessor

__all__ = ["check_image", "clip_pixel_values", "crop_to_cover", "to_pil_images", "vae_pixels"]


def _describe(image: Any) -> str:
    if isinstance(image, (torch.Tensor, np.ndarray)):
        return f"a {type(image).__name__} of shape {tuple(image.shape)}"
    if isinstance(image, PIL.Image.Image):
        return f"a {image.width}x{image.height} PIL image"
    return repr(image) if not isinstance(image, list) else f"a list of {len(image)}"


def check_image(image: Any) -> int:
    """Checks the `image` argument of an image-to-video call and returns the number of images.

    Accepted: a PIL image, a non-empty list of PIL images of one size, a `(3, H, W)` or `(B, 3, H, W)` tensor or a
    `(H, W, 3)` or `(B, H, W, 3)` array with values in [0, 1] (or a list of such 3D tensors or arrays).

    Raises:
        ValueError: No image, an empty list, the wrong number of channels, an empty size, images of different sizes,
            values outside [0, 1].
        TypeError: Anything else.
    """
    if image is None:
        raise ValueError("`image` must be given: I2VGen-XL animates an image, but `image` is None.")
    images = image if isinstance(image, list) else [image]
    if not images:
        raise ValueError("`image` is an empty list: pass at least one image.")
    sizes = set()
    count = 0
    for item in images:
        if isinstance(item, PIL.Image.Image):
            sizes.add((item.width, item.height))
            count += 1
            continue
        if not isinstance(item, (torch.Tensor, np.ndarray)):
            raise TypeError(
                "`image` must be a PIL image, a list of PIL images, a torch.Tensor or a numpy array but is "
                f"{_describe(item) if not isinstance(item, list) else 'a nested list'} ({type(item).__name__})."
            )
        is_tensor = isinstance(item, torch.Tensor)
        if item.ndim not in (3, 4) or (isinstance(image, list) and item.ndim != 3):
            raise ValueError(
                f"`image` must be {'(3, H, W) or (B, 3, H, W)' if is_tensor else '(H, W, 3) or (B, H, W, 3)'} but is "
                f"{_describe(item)}."
            )
        channels = item.shape[-3] if is_tensor else item.shape[-1]
        height, width = (item.shape[-2], item.shape[-1]) if is_tensor else (item.shape[-3], item.shape[-2])
        if channels != 3:
            raise ValueError(f"`image` must have 3 colour channels but is {_describe(item)}.")
        if is_tensor and not item.is_floating_point() or not is_tensor and item.dtype.kind != "f":
            raise TypeError(f"`image` must hold floats in [0, 1] but has dtype {item.dtype}.")
        values = torch.as_tensor(item)
        if values.numel() and (not bool(torch.isfinite(values).all()) or values.min() < 0 or values.max() > 1):
            raise ValueError(
                f"`image` must hold values in [0, 1] but holds values in [{float(values.min())}, "
                f"{float(values.max())}]."
            )
        sizes.add((int(width), int(height)))
        count += item.shape[0] if item.ndim == 4 else 1
    if count == 0:
        raise ValueError(f"`image` holds no image: {_describe(image)}.")
    if any(w < 1 or h < 1 for w, h in sizes):
        raise ValueError(f"`image` must be at least 1x1 pixels but is {_describe(image)}.")
    if len(sizes) > 1:
        raise ValueError(f"The images of `image` must all have one size but have the sizes {sorted(sizes)} (W, H).")
    return count


def to_pil_images(image: Any) -> list[PIL.Image.Image]:
    """A checked `image` argument as RGB PIL images (tensors and arrays in [0, 1] rounded to 8 bits)."""
    images = image if isinstance(image, list) else [image]
    result = []
    for item in images:
        if isinstance(item, PIL.Image.Image):
            result.append(item.convert("RGB") if item.mode != "RGB" else item)
            continue
        if isinstance(item, torch.Tensor):
            item = VaeImageProcessor.pt_to_numpy(item if item.ndim == 4 else item[None])  # (B, H, W, 3)
        elif item.ndim == 3:
            item = item[None]
        result.extend(VaeImageProcessor.numpy_to_pil(np.asarray(item, dtype=np.float32)))
    return result


def crop_to_cover(images: list[PIL.Image.Image], width: int, height: int) -> list[PIL.Image.Image]:
    """Resize (box filter) so that the images cover `width` x `height`, then centre-crop them to it.

    The scale is that of the first image (all have one size); the new size is the floor of the old over the scale,
    as in VGen's `CenterCropWide` and diffusers' `_center_crop_wide`.
    """
    first = images[0]
    scale = min(first.width / width, first.height / height)
    size = (round(first.width // scale), round(first.height // scale))
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return [im.resize(size, resample=PIL.Image.BOX).crop((left, top, left + width, top + height)) for im in images]


def vae_pixels(images: list[PIL.Image.Image], width: int, height: int) -> torch.Tensor:
    """The VAE's view of the images: `(B, 3, height, width)` in [-1, 1]."""
    processor = VaeImageProcessor(do_resize=False)
    return processor.preprocess(crop_to_cover(images, width, height))


def clip_pixel_values(images: list[PIL.Image.Image], width: int, feature_extractor: Any) -> torch.Tensor:
    """The CLIP image encoder's view of the images: a `width` x `width` centre crop, resized (bilinear) to the
    feature extractor's crop size and normalised with its mean and std; `(B, 3, size, size)`."""
    crop = feature_extractor.crop_size
    size = (crop["width"], crop["height"])
    images = [im.resize(size, PIL.Image.BILINEAR) for im in crop_to_cover(images, width, width)]
    pixels = VaeImageProcessor.numpy_to_pt(VaeImageProcessor.pil_to_numpy(images))  # (B, 3, s, s) in [0, 1]
    return feature_extractor(
        images=pixels, do_normalize=True, do_center_crop=False, do_resize=False, do_rescale=False, return_tensors="pt"
    ).pixel_values
