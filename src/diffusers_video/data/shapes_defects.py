"""What a viewer sees wrong in a moving-shapes video, measured per video from the scorer's masks and centres.

The verdicts of `ShapesScorer` (colour, shape, direction, speed) can all be right on a video a viewer calls wrong:
one frame where the shape jumps off its path, a shape that steps back against its motion, a shape that is not
filled with one colour, a grainy background. The world moves every shape at a constant velocity along a straight
line and keeps it inside the frame (no bounce, no wrap; see `ShapeObject.centers`), so one straight line fitted to
the centres of a clip is its true path, and a drawn shape and background are noise-free. The measures:

- `path_deviation`: the distance of each frame's centre from the least-squares line through all visible frames
  (max and mean), and from the line through the *other* frames (leave-one-out: one frame that jumps off drags a
  least-squares fit towards itself, the line through the others does not), in fractions of the frame.
- `backward_jumps`: the largest step between consecutive visible frames against the direction of motion, and the
  number of steps back by more than one pixel.
- `shape_color_std`: the standard deviation of the colour inside the shape's mask eroded by one pixel.
- `background_laplacian`: the mean absolute 4-neighbour Laplacian of the background, away from the shapes.
- `background_flicker`: the mean absolute change of the background between consecutive frames.

`track_shape` turns a shape's soft mask into per-frame centres (the scorer's own motion estimate uses it too), and
`measure_defects` computes every measure of one scored video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .image_ops import dilate
from .metrics import Z95, wilson_interval
from .shapes_captions import DIRECTION_VECTORS

DEFECT_FIELDS: tuple[str, ...] = (
    "path_deviation_max",
    "path_deviation_mean",
    "path_deviation_loo_max",
    "backward_jump_max",
    "backward_steps",
    "shape_color_std",
    "background_laplacian",
)
"""The per-video measures `measure_defects` returns (besides `worst_frame`), in the order reports show them."""


@dataclass(frozen=True)
class ShapeTrack:
    """A shape followed through a clip: the frames it is visible in and its centre there.

    Args:
        frames (`np.ndarray`): `(F,)` indices of the frames in which the shape is visible, ascending.
        centers (`np.ndarray`): `(F, 2)` centroids `(x, y)` in pixels (pixel centres at `i + 0.5`) of the soft mask
            inside a window around the shape.
        window (`np.ndarray`): `(F, H, W)` the soft mask of those frames, zero outside the window.
        area (`np.ndarray`): `(F,)` the mass of `window` per frame, in pixels.
        variance (`np.ndarray`): `(F,)` the second moment `x + y` of `window` about the centroid, in pixels^2.
        binary (`np.ndarray`): `(F, H, W)` the binary mask (soft mask > 0.5) of those frames.
    """

    frames: np.ndarray
    centers: np.ndarray
    window: np.ndarray
    area: np.ndarray
    variance: np.ndarray
    binary: np.ndarray


def as_video_array(video, name: str = "video") -> np.ndarray:
    """Check a video and return it as a `(frames, height, width, 3)` float32 array in [0, 1].

    Accepts a `(frames, height, width, 3)` array, a `(frames, 3, height, width)` tensor (either layout is
    recognised for both types), or a list of frames (arrays or PIL images); uint8 data is divided by 255.

    Raises:
        ValueError: wrong rank or channel count, fewer than 2 frames, frames smaller than 8x8, NaNs, or float
            values outside [0, 1]. The message repeats the offending shape or range.
        TypeError: for anything that is not an array, tensor or list of frames.
    """
    channels_first = isinstance(video, torch.Tensor)
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu()
        video = video.numpy() if video.dtype == torch.uint8 else video.float().numpy()
    elif isinstance(video, (list, tuple)):
        video = np.stack([np.asarray(frame) for frame in video])
    if not isinstance(video, np.ndarray):
        raise TypeError(f"`{name}` must be a numpy array, a torch tensor or a list of frames, not {type(video)}.")
    if video.ndim != 4:
        raise ValueError(
            f"`{name}` must have rank 4, (frames, height, width, 3) or (frames, 3, height, width), but has shape "
            f"{tuple(video.shape)} (rank {video.ndim}); score a batch one video at a time."
        )
    if video.shape[1] == 3 and (channels_first or video.shape[-1] != 3):
        video = video.transpose(0, 2, 3, 1)  # (T, 3, H, W) -> (T, H, W, 3)
    if video.shape[-1] != 3:
        raise ValueError(f"`{name}` must have 3 colour channels, but has shape {tuple(video.shape)}.")
    video = video.astype(np.float32) / 255.0 if video.dtype == np.uint8 else np.asarray(video, dtype=np.float32)
    if video.shape[0] < 2:
        raise ValueError(f"`{name}` has {video.shape[0]} frame(s); at least 2 frames are needed to measure motion.")
    if min(video.shape[1:3]) < 8:
        raise ValueError(f"`{name}` frames must be at least 8x8 pixels, but are {video.shape[1]}x{video.shape[2]}.")
    low, high = float(video.min()), float(video.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"`{name}` values must lie in [0, 1], but range from {low:.3f} to {high:.3f}; map [-1, 1] model "
            "outputs with (x + 1) / 2."
        )
    return np.clip(video, 0.0, 1.0)


def _check_video(name: str, video) -> None:
    if not isinstance(video, np.ndarray) or video.ndim != 4 or video.shape[-1] != 3:
        shape = getattr(video, "shape", None)
        raise ValueError(f"`{name}` must be a (frames, height, width, 3) numpy array, but is {type(video)} {shape}.")
    if not np.issubdtype(video.dtype, np.floating):
        raise ValueError(f"`{name}` must hold floats in [0, 1], but has dtype {video.dtype}.")


def _check_mask(name: str, mask, shape: tuple[int, ...], dtype=None) -> None:
    if not isinstance(mask, np.ndarray) or mask.shape != tuple(shape):
        raise ValueError(
            f"`{name}` must be a numpy array of shape {tuple(shape)}, but has {getattr(mask, 'shape', mask)}."
        )
    if dtype is not None and mask.dtype != dtype:
        raise ValueError(f"`{name}` must have dtype {np.dtype(dtype)}, but has dtype {mask.dtype}.")


def _check_track(frames, centers) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(frames, np.ndarray) or frames.ndim != 1 or not np.issubdtype(frames.dtype, np.integer):
        raise ValueError(f"`frames` must be a 1-D integer numpy array, but is {getattr(frames, 'shape', frames)}.")
    if frames.size > 1 and np.any(np.diff(frames) <= 0):
        raise ValueError(f"`frames` must be strictly increasing, but is {frames.tolist()}.")
    if not isinstance(centers, np.ndarray) or centers.shape != (frames.size, 2):
        raise ValueError(
            f"`centers` must have shape ({frames.size}, 2) (one (x, y) per frame), but has "
            f"{getattr(centers, 'shape', centers)}."
        )
    if not np.isfinite(centers).all():
        raise ValueError("`centers` contains NaN or infinite values.")
    return frames.astype(np.float64), centers.astype(np.float64)


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion of `(T, H, W)` masks; outside the image counts as outside the mask, so a shape cut by the
    border loses its pixels there too (they may be partly covered)."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    return ~dilate(~padded)[:, 1:-1, 1:-1]


def track_shape(mask: np.ndarray) -> ShapeTrack | None:
    """Follow one shape through a clip from its soft mask (0 background, 1 core).

    A frame counts as showing the shape when its binary mask has at least 0.2% of the frame (2 pixels at least) and
    a third of the median area of such frames. In each such frame the centroid is taken over a window around the
    shape, so far-away noise cannot pull it: first a generous window around the binary blob, then one sized by the
    shape's RMS radius there (which, unlike the binary area, does not shrink when the shape is blurred or dim).

    Args:
        mask (`np.ndarray`): `(T, H, W)` soft mask of one shape.

    Returns:
        `ShapeTrack`, or `None` when the shape is visible in no frame.
    """
    if not isinstance(mask, np.ndarray) or mask.ndim != 3:
        raise ValueError(
            f"`mask` must be a (frames, height, width) numpy array, but is {getattr(mask, 'shape', mask)}."
        )
    _, height, width = mask.shape
    binary = mask > 0.5
    pixels = binary.sum((1, 2)).astype(np.float64)  # (T,)
    seen = pixels >= max(2.0, 0.002 * height * width)
    if not seen.any():
        return None
    frames = np.nonzero(seen & (pixels >= 0.35 * np.median(pixels[seen])))[0]
    binary, pixels = binary[frames], pixels[frames]
    ys = (np.arange(height, dtype=np.float64) + 0.5)[None, :, None]  # (1, H, 1)
    xs = (np.arange(width, dtype=np.float64) + 0.5)[None, None, :]  # (1, 1, W)
    cx = (binary * xs).sum((1, 2)) / pixels
    cy = (binary * ys).sum((1, 2)) / pixels
    half = 2.0 * np.sqrt(pixels) + 3.0
    for _ in range(2):
        window = (np.abs(xs - cx[:, None, None]) <= half[:, None, None]) & (
            np.abs(ys - cy[:, None, None]) <= half[:, None, None]
        )
        m = mask[frames] * window  # (F, H, W)
        area = np.maximum(m.sum((1, 2)), 1e-6)
        cx = (m * xs).sum((1, 2)) / area
        cy = (m * ys).sum((1, 2)) / area
        variance = np.maximum(
            (m * ((xs - cx[:, None, None]) ** 2 + (ys - cy[:, None, None]) ** 2)).sum((1, 2)) / area, 0.0
        )
        half = 2.2 * np.sqrt(variance) + 2.0
    return ShapeTrack(frames, np.stack([cx, cy], axis=1), m, area, variance, binary)


def fit_path(frames: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares straight line through the centres, `x` and `y` separately against the frame index.

    Args:
        frames (`np.ndarray`): `(F,)` frame indices, `F >= 2`.
        centers (`np.ndarray`): `(F, 2)` centres `(x, y)`.

    Returns:
        `tuple`: coefficients `(2, 2)` (row 0 the position at frame 0, row 1 the velocity per frame; columns x, y),
        residuals `(F, 2)` (centre minus line), and the leverage `(F,)` of each frame, `h = 1/F + (t - mean)^2 /
        sum (t - mean)^2`: the weight of a frame's own centre in the line at that frame.
    """
    t, points = _check_track(frames, centers)
    if t.size < 2:
        raise ValueError(f"A path needs at least 2 frames, but `frames` has {t.size}.")
    design = np.stack([np.ones_like(t), t], axis=1)  # (F, 2)
    coef, *_ = np.linalg.lstsq(design, points, rcond=None)
    offset = t - t.mean()
    leverage = 1.0 / t.size + offset**2 / float((offset**2).sum())
    return coef, points - design @ coef, leverage


def path_deviation(frames: np.ndarray, centers: np.ndarray, height: int, width: int, min_pixels: float = 0.5) -> dict:
    """How far the centres leave a straight path, in fractions of the frame (`x / width`, `y / height`).

    The in-fit distance of frame `t` is its distance from the least-squares line through all frames. The
    leave-one-out distance is its distance from the line through the other frames; for a linear least-squares fit
    that is exactly the residual divided by `1 - h_t` (the deleted residual, `h_t` the leverage), so a single frame
    displaced by `k` pixels from an otherwise straight track is `k` pixels from that line, while its in-fit residual
    is only `(1 - h_t) k` (0.87 k for the middle of 8 frames, 0.58 k at the ends). In clips of 6 or more frames that
    frame also has the largest leave-one-out distance; in shorter ones a line through the others extrapolated to an
    end frame can magnify the displacement.

    The worst frame is the one with the largest *standardised* residual, `r_t / sqrt(1 - h_t)`: under even jitter
    it has the same spread at every frame (the leave-one-out distance spreads more at the ends, the in-fit one in the
    middle), so chance picks every frame equally often; and a single displaced frame always has the largest one
    (with 4 or more frames; with 3 all standardised residuals are equal).
    A frame less than `min_pixels` from the line through the others is nothing a viewer sees, so a clip with no
    frame that far off has no worst frame (a drawn clip's centres are within 0.05 pixel of their line).

    Args:
        frames (`np.ndarray`): `(F,)` integer frame indices, strictly increasing.
        centers (`np.ndarray`): `(F, 2)` centres `(x, y)` in pixels.
        height (`int`): frame height in pixels.
        width (`int`): frame width in pixels.
        min_pixels (`float`, defaults to 0.5): how far (leave-one-out, in pixels) the worst frame must be off.

    Returns:
        `dict`: `path_deviation_max`, `path_deviation_mean` (in-fit), `path_deviation_loo_max` (leave-one-out) and
        `worst_frame` (an index into the clip, or `None`). With fewer than 3 frames every track is straight:
        deviations 0 and `worst_frame` `None`.
    """
    _check_track(frames, centers)
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, but is {value!r}.")
    if not min_pixels >= 0:
        raise ValueError(f"`min_pixels` must be >= 0, but is {min_pixels!r}.")
    if frames.size < 3:
        return {
            "path_deviation_max": 0.0,
            "path_deviation_mean": 0.0,
            "path_deviation_loo_max": 0.0,
            "worst_frame": None,
        }
    _, residuals, leverage = fit_path(frames, centers)
    distance = np.hypot(residuals[:, 0] / width, residuals[:, 1] / height)  # (F,)
    loo = distance / (1.0 - leverage)
    worst = int(np.argmax(distance / np.sqrt(1.0 - leverage)))
    off = float(np.hypot(residuals[worst, 0], residuals[worst, 1])) / (1.0 - leverage[worst])  # pixels
    return {
        "path_deviation_max": float(distance.max()),
        "path_deviation_mean": float(distance.mean()),
        "path_deviation_loo_max": float(loo.max()),
        "worst_frame": int(frames[worst]) if off >= min_pixels else None,
    }


def backward_jumps(
    frames: np.ndarray, centers: np.ndarray, height: int, width: int, direction: str | None = None
) -> dict:
    """Steps between consecutive visible frames that go against the direction of motion.

    Args:
        frames (`np.ndarray`): `(F,)` integer frame indices, strictly increasing.
        centers (`np.ndarray`): `(F, 2)` centres `(x, y)` in pixels.
        height (`int`): frame height in pixels.
        width (`int`): frame width in pixels.
        direction (`str`, *optional*): "left", "right", "up" or "down", the caption's; when `None`, the direction
            of the least-squares velocity (and no step counts as backwards if the centres do not move at all).

    Returns:
        `dict`: `backward_jump_max`, the largest step back along the direction of motion as a fraction of the frame
        along it (`width` for left and right, `height` for up and down), 0 when no step goes back; `backward_steps`,
        the number of steps back by more than one pixel.
    """
    _check_track(frames, centers)
    if direction is not None and direction not in DIRECTION_VECTORS:
        raise ValueError(f"`direction` must be one of {tuple(DIRECTION_VECTORS)} or None, but is {direction!r}.")
    if frames.size < 2:
        return {"backward_jump_max": 0.0, "backward_steps": 0}
    if direction is not None:
        unit = np.asarray(DIRECTION_VECTORS[direction], dtype=np.float64)
    else:
        unit = fit_path(frames, centers)[0][1]  # velocity in pixels per frame
        norm = float(np.linalg.norm(unit))
        if norm == 0.0:
            return {"backward_jump_max": 0.0, "backward_steps": 0}
        unit = unit / norm
    back = -(np.diff(centers.astype(np.float64), axis=0) @ unit)  # (F - 1,) pixels against the motion
    extent = abs(unit[0]) * width + abs(unit[1]) * height  # the frame's length along the motion, in pixels
    return {
        "backward_jump_max": max(0.0, float(back.max()) / extent),
        "backward_steps": int((back > 1.0).sum()),
    }


def shape_color_std(video: np.ndarray, mask: np.ndarray) -> float | None:
    """Colour spread inside a shape: the per-channel standard deviation over the pixels of its mask eroded by one
    pixel (3x3, the image border eroding too: the pixels left of a drawn, anti-aliased shape are fully covered),
    averaged over the channels, then over the frames that keep at least 2 pixels. A drawn shape gives 0.

    Args:
        video (`np.ndarray`): `(T, H, W, 3)` floats in [0, 1].
        mask (`np.ndarray`): `(T, H, W)` bool, the shape's binary mask.

    Returns:
        `float | None`: in the units of `video`; `None` when no frame keeps 2 pixels after erosion.
    """
    _check_video("video", video)
    _check_mask("mask", mask, video.shape[:3], bool)
    inner = _erode(mask)
    stds = []
    for frame, keep in zip(video, inner):
        if keep.sum() >= 2:
            stds.append(float(frame[keep].astype(np.float64).std(axis=0, ddof=1).mean()))
    return float(np.mean(stds)) if stds else None


def background_laplacian(video: np.ndarray, foreground: np.ndarray, margin: int = 2) -> float | None:
    """Grain of the background: the mean absolute 4-neighbour Laplacian `4 p - (up + down + left + right)` of the
    frames, per channel then averaged over the channels, over the pixels at least `margin + 1` pixels (3x3 steps)
    away from the foreground and not on the image border; averaged over the frames that have such pixels.

    Pixel noise of standard deviation `s`, independent per pixel and channel, has a Laplacian of variance
    `16 s^2 + 4 s^2 = 20 s^2`, so (Gaussian) a mean absolute value of `s sqrt(20) sqrt(2 / pi) = 3.57 s`. A flat
    background gives 0, a drawn textured one what its pattern's curvature gives.

    Args:
        video (`np.ndarray`): `(T, H, W, 3)` floats in [0, 1].
        foreground (`np.ndarray`): `(T, H, W)` bool, the shapes' binary masks.
        margin (`int`, defaults to 2): extra 3x3 dilations of `foreground`: 2 covers the anti-aliased edge pixels
            below half coverage and the neighbours whose Laplacian reads them.

    Returns:
        `float | None`: `None` when no frame has a background pixel.
    """
    _check_video("video", video)
    _check_mask("foreground", foreground, video.shape[:3], bool)
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise ValueError(f"`margin` must be a non-negative integer, but is {margin!r}.")
    excluded = dilate(foreground)
    for _ in range(margin):
        excluded = dilate(excluded)
    frames = video.astype(np.float64)
    center = frames[:, 1:-1, 1:-1]
    laplacian = 4 * center - frames[:, :-2, 1:-1] - frames[:, 2:, 1:-1] - frames[:, 1:-1, :-2] - frames[:, 1:-1, 2:]
    grain = np.abs(laplacian).mean(-1)  # (T, H - 2, W - 2)
    keep = ~excluded[:, 1:-1, 1:-1]
    counts = keep.sum((1, 2))
    if not counts.any():
        return None
    per_frame = (grain * keep).sum((1, 2))[counts > 0] / counts[counts > 0]
    return float(per_frame.mean())


def background_flicker(video: np.ndarray, foreground: np.ndarray) -> float:
    """Mean absolute frame-to-frame change, averaged over channels, of the pixels that are background (outside the
    3x3-dilated foreground) in both frames; 0 when there are none.

    Args:
        video (`np.ndarray`): `(T, H, W, 3)` floats in [0, 1].
        foreground (`np.ndarray`): `(T, H, W)` bool.
    """
    _check_video("video", video)
    _check_mask("foreground", foreground, video.shape[:3], bool)
    foreground = dilate(foreground)
    background = ~(foreground[1:] | foreground[:-1])  # (T-1, H, W)
    count = int(background.sum())
    if count == 0:
        return 0.0
    change = np.abs(video[1:] - video[:-1]).mean(-1)  # (T-1, H, W)
    return float((change * background).sum() / count)


def measure_defects(
    video: np.ndarray,
    masks: list[np.ndarray],
    tracks: list[ShapeTrack | None],
    directions: list[str | None],
    blur: float = 0.0,
) -> dict:
    """Every defect measure of one video. For several shapes each per-shape measure is that of the worst shape.

    Args:
        video (`np.ndarray`): `(T, H, W, 3)` floats in [0, 1].
        masks (`list[np.ndarray]`): per shape, its `(T, H, W)` bool binary mask.
        tracks (`list[ShapeTrack | None]`): per shape, its track (`None` when it was not found).
        directions (`list[str | None]`): per shape, the caption's direction (`None` to use the fitted one).
        blur (`float`, defaults to 0): the largest blur sigma (pixels) of the shapes; the background stays
            `2 + ceil(2 blur)` pixels away from them, so a blurred edge does not count as grain.

    Returns:
        `dict`: the `DEFECT_FIELDS` and `worst_frame`; path and jump measures are `None` when no shape was found,
        `shape_color_std` also when no shape keeps pixels after erosion.
    """
    _check_video("video", video)
    if not len(masks) == len(tracks) == len(directions):
        raise ValueError(
            f"Need one mask, track and direction per shape, but got {len(masks)}, {len(tracks)}, {len(directions)}."
        )
    num_frames, height, width = video.shape[:3]
    result: dict = {key: None for key in (*DEFECT_FIELDS, "worst_frame")}
    path_keys = ("path_deviation_max", "path_deviation_mean", "backward_jump_max", "backward_steps")
    worst_loo = -1.0
    for track, direction in zip(tracks, directions):
        if track is None:
            continue
        measured = {
            **path_deviation(track.frames, track.centers, height, width),
            **backward_jumps(track.frames, track.centers, height, width, direction),
        }
        for key in path_keys:
            result[key] = measured[key] if result[key] is None else max(result[key], measured[key])
        if measured["path_deviation_loo_max"] > worst_loo:  # the worst frame is that of the worst shape
            worst_loo = measured["path_deviation_loo_max"]
            result["path_deviation_loo_max"], result["worst_frame"] = worst_loo, measured["worst_frame"]
    stds = [shape_color_std(video, mask) for mask in masks]
    stds = [s for s in stds if s is not None]
    result["shape_color_std"] = max(stds) if stds else None
    foreground = np.zeros(video.shape[:3], dtype=bool)
    for mask in masks:
        foreground |= mask
    result["background_laplacian"] = background_laplacian(video, foreground, 2 + math.ceil(2 * max(blur, 0.0)))
    return result


def mean_interval(values) -> dict:
    """Mean of the values that are not `None`, with a 95% normal-approximation interval (the mean itself for one).

    Returns:
        `dict`: `mean`, `ci_low`, `ci_high` (all `None` when no value is given) and `n`.
    """
    kept = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if kept.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    half = Z95 * float(kept.std(ddof=1)) / math.sqrt(kept.size) if kept.size > 1 else 0.0
    mean = float(kept.mean())
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": int(kept.size)}


def aggregate_defects(scores) -> dict:
    """Means of the `DEFECT_FIELDS` over scored videos, and where their worst frames fall.

    Args:
        scores: `ShapeScore`s (or anything with the `DEFECT_FIELDS`, `worst_frame` and `num_frames` attributes).

    Returns:
        `dict`: per field `mean_interval` over the videos where it is defined; `worst_frame_is_middle`: the share of
        videos (with a worst frame) whose worst frame is the middle one, `num_frames // 2`, with its 95% Wilson
        interval (`mean`, `ci_low`, `ci_high`, `count`, `n`; chance is `1 / num_frames`); `worst_frame_histogram`:
        how many videos have their worst frame at each index.
    """
    result = {key: mean_interval([getattr(s, key) for s in scores]) for key in DEFECT_FIELDS}
    placed = [(s.worst_frame, s.num_frames) for s in scores if s.worst_frame is not None and s.num_frames]
    middle = sum(frame == count // 2 for frame, count in placed)
    low, high = wilson_interval(middle, len(placed))
    result["worst_frame_is_middle"] = {
        "mean": middle / len(placed) if placed else None,
        "ci_low": low if placed else None,
        "ci_high": high if placed else None,
        "count": middle,
        "n": len(placed),
    }
    histogram = [0] * max((count for _, count in placed), default=0)
    for frame, _ in placed:
        histogram[frame] += 1
    result["worst_frame_histogram"] = histogram
    return result


__all__ = [
    "DEFECT_FIELDS",
    "ShapeTrack",
    "aggregate_defects",
    "as_video_array",
    "background_flicker",
    "background_laplacian",
    "backward_jumps",
    "fit_path",
    "mean_interval",
    "measure_defects",
    "path_deviation",
    "shape_color_std",
    "track_shape",
]
