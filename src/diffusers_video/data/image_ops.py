"""Small vectorised image operations on numpy arrays, used by the moving-shapes scorer."""

from __future__ import annotations

import math

import numpy as np


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of a 1-D sample: the split that maximises the between-class variance."""
    top = float(values.max())
    if top <= 0:
        return 0.0
    hist, edges = np.histogram(values, bins=bins, range=(0.0, top))
    centers = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * centers)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    return float(edges[int(np.argmax(weight0 * weight1 * (mean0 - mean1) ** 2)) + 1])


def dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation of `(T, H, W)` masks."""
    rows = mask.copy()
    rows[:, 1:] |= mask[:, :-1]
    rows[:, :-1] |= mask[:, 1:]
    out = rows.copy()
    out[:, :, 1:] |= rows[:, :, :-1]
    out[:, :, :-1] |= rows[:, :, 1:]
    return out


def masked_median(video: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per-pixel median over time of `(T, H, W, 3)` using only the frames where `keep` `(T, H, W)` is set."""
    ordered = np.sort(np.where(keep[..., None], video, np.inf), axis=0)  # kept values first, ascending
    count = keep.sum(0)[None, ..., None]  # (1, H, W, 1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0), axis=0)
    high = np.take_along_axis(ordered, np.maximum(count // 2, 0), axis=0)
    return np.where(count > 0, (low + high) / 2, 0.0)[0]  # pixels never kept are 0: the caller fills them


def inpaint(image: np.ndarray, known: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Fill the unknown pixels of `(H, W, C)` from their known 4-neighbours, growing inwards ring by ring."""
    image = np.where(known[..., None], image, 0.0)
    known = known.copy()
    if not known.any():
        return np.broadcast_to(fallback, image.shape).copy()
    while not known.all():
        total = np.zeros_like(image)
        count = np.zeros(known.shape)
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
            total += (
                np.roll(image * known[..., None], shift, axis=axis) * _roll_valid(known.shape, axis, shift)[..., None]
            )
            count += np.roll(known, shift, axis=axis) * _roll_valid(known.shape, axis, shift)
        ring = ~known & (count > 0)
        image[ring] = total[ring] / count[ring][:, None]
        known = known | ring
    return image


def _roll_valid(shape: tuple[int, int], axis: int, shift: int) -> np.ndarray:
    """Mask of the pixels that `np.roll` filled from inside the image (not wrapped around)."""
    valid = np.ones(shape, dtype=bool)
    index = [slice(None)] * 2
    index[axis] = slice(0, shift) if shift > 0 else slice(shift, None)
    valid[tuple(index)] = False
    return valid


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of `(N, H, W)` with zero padding."""
    if sigma < 0.2:
        return images
    radius = max(1, int(math.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (1, 2):
        padding = [(0, 0)] * 3
        padding[axis] = (radius, radius)
        padded = np.pad(images, padding)
        length = images.shape[axis]
        out = np.zeros_like(images)
        for offset, weight in enumerate(kernel):
            out += weight * np.take(padded, np.arange(offset, offset + length), axis=axis)
        images = out
    return images


def blur_videos(videos: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (reflect padding) of the height and width axes of `(..., H, W, 3)` videos, as float32.

    Used to degrade ground-truth clips in the scorer's tests and benchmark.
    """
    radius = max(1, math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (-3, -2):
        padding = [(0, 0)] * videos.ndim
        padding[axis] = (radius, radius)
        padded = np.pad(videos, padding, mode="reflect")
        length = videos.shape[axis]
        videos = sum(w * np.take(padded, np.arange(i, i + length), axis=axis) for i, w in enumerate(kernel))
    return videos.astype(np.float32)
