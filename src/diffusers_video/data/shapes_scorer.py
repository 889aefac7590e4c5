"""The moving-shapes scorer: what a video shows, whether it matches its prompt, and FSD.

`ShapesScorer.score(video, prompt)` segments the shapes from the background, reads each one's colour, shape,
direction and speed, compares them with the prompt, and measures temporal consistency and background flicker.
`aggregate` turns many scores into accuracies with 95% Wilson intervals. `features` gives a prompt-free feature
vector per video, and `frechet_distance` between two sets of them is FSD, the world's FVD analogue.

How a video is read (vectorised over frames and pixels; nothing is learned):

1. Background: a first pass splits pixels by their distance from the clip's median colour; each pixel's
   background is then its median over the frames in which it is away from that rough foreground (so a static
   texture cancels exactly), filled in from its neighbours where a slow shape covers it in every frame.
2. Soft mask: the background-subtracted colour projected on the shape's colour direction, rescaled so background
   is 0 and the shape's core 1. That is the pixel's coverage on anti-aliased, blurred or compressed edges, and
   pixel noise stays zero-mean instead of adding mass (a colour distance would); `> 0.5` is the binary mask. Too
   little contrast between shape and background means no shape was found.
3. Two-shape prompts: the two most frequent palette colours among foreground pixels mark each shape's core; every
   foreground pixel then goes to the nearest core, so edge pixels whose colour bled stay with their shape.
4. Colour: the background-subtracted foreground colour divided by its largest channel (so dim and bright
   renderings agree), nearest palette entry.
5. Shape: template matching. For each candidate shape the size follows from the mask's mass and the blur from
   its second moment (blur adds to the variance, the shape's own variance is known for its size); the candidate,
   rendered at the measured centroid and blurred by that amount, that best fits the mask wins. Modelling the blur
   makes this hold on blurry generations where a bounding-box fill ratio fails.
6. Motion: least-squares slope of the centroid over the frames in which the shape is visible, times
   `frames - 1`, as a fraction of the frame: the distance travelled over the clip. The larger axis and its sign
   give the direction; the distance against the geometric mean of `SLOW_TRAVEL` and `FAST_TRAVEL` gives the
   speed; under half of `SLOW_TRAVEL` the shape is "static" and has no direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .image_ops import dilate, gaussian_blur, inpaint, masked_median, otsu_threshold
from .metrics import frechet_distance, wilson_interval
from .shapes_captions import COLORS, FAST_TRAVEL, PALETTE, SHAPES, SLOW_TRAVEL, parse_prompt
from .shapes_defects import (
    aggregate_defects,
    as_video_array,
    background_flicker,
    fit_path,
    mean_interval,
    measure_defects,
    track_shape,
)

_PALETTE = np.asarray([PALETTE[c] for c in COLORS], dtype=np.float64)  # (7, 3)
# Per shape of size s (diameter / side / base = height): area / s^2, variance (x + y) / s^2 about the centroid,
# and the offset of the centroid below the bounding-box centre / s.
_AREA = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5}
_VARIANCE = {"circle": 1 / 8, "square": 1 / 6, "triangle": 1 / 24 + 1 / 18}
_CENTROID_OFFSET = {"circle": 0.0, "square": 0.0, "triangle": 1 / 6}
_PIXEL_VARIANCE = 1 / 6  # anti-aliasing by coverage adds about 1/12 per axis
FEATURE_NAMES: tuple[str, ...] = (
    "chroma_r",
    "chroma_g",
    "chroma_b",
    "size",
    "fill_ratio",
    "shape_error",
    "blur",
    "travel_x",
    "travel_y",
    "presence",
    "color_stability",
    "area_stability",
    "roughness",
    "background_flicker",
    "edge_softness",
    "background_level",
    "background_texture",
    "gradient_energy",
    "frame_difference",
)


def shape_coverage(shape: str, dx: np.ndarray, dy: np.ndarray, size: float | np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape, from pixel offsets to its bounding-box centre.

    The world's renderer and the scorer's templates share this definition. Coverage is `clip(0.5 - d, 0, 1)`
    of the signed distance `d` in pixels: exact on straight edges, close elsewhere.

    Args:
        shape (`str`): "circle" (diameter `size`), "square" (side `size`) or "triangle" (apex up, base and height
            `size`).
        dx (`np.ndarray`): horizontal offsets in pixels (broadcastable with `dy`).
        dy (`np.ndarray`): vertical offsets in pixels, growing downwards.
        size (`float | np.ndarray`): in pixels (broadcastable).

    Returns:
        `np.ndarray`: coverage, broadcast shape of the inputs.
    """
    half = size / 2
    if shape == "circle":
        distance = np.sqrt(dx**2 + dy**2) - half
    elif shape == "square":
        distance = np.maximum(np.abs(dx), np.abs(dy)) - half
    elif shape == "triangle":
        norm = np.hypot(size, half)
        below_apex = dy + half
        right = (dx * size - below_apex * half) / norm  # distance outside the right edge
        left = (-dx * size - below_apex * half) / norm
        distance = np.maximum(np.maximum(left, right), dy - half)
    else:
        raise ValueError(f"`shape` must be one of {SHAPES}, but is {shape!r}.")
    return np.clip(0.5 - distance, 0.0, 1.0)


@dataclass(frozen=True)
class ObjectEstimate:
    """What the scorer read about one shape.

    Args:
        color (`str | None`): nearest palette colour; `None` when no shape was found.
        shape (`str | None`): "circle", "square" or "triangle"; `None` when no shape was found.
        direction (`str | None`): "left", "right", "up" or "down"; `None` when the shape is static or absent.
        speed (`str | None`): "slow", "fast" or "static"; `None` when no shape was found.
        chroma (`tuple[float, float, float]`): the measured colour divided by its largest channel.
        shape_error (`float`): relative squared error of the best template (0 for a perfect render).
        blur (`float`): the blur (Gaussian sigma, pixels) the best template needed.
        fill_ratio (`float`): median `area / (tallest column * widest row)` of the binary mask.
        travel (`tuple[float, float]`): distance travelled over the clip `(x, y)` as fractions of the frame (y
            grows downwards).
        presence (`float`): fraction of frames in which the shape is visible.
        color_stability (`float`): 1 minus the mean per-frame colour deviation from the clip's colour.
        area_stability (`float`): 1 minus the coefficient of variation of the area over visible frames.
        smoothness (`float`): 1 minus the RMS distance of the centroids from a straight constant-speed path, in
            units of the shape's size.
        temporal_consistency (`float`): mean of presence, colour stability, area stability and smoothness.
    """

    color: str | None
    shape: str | None
    direction: str | None
    speed: str | None
    chroma: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shape_error: float = 1.0
    blur: float = 0.0
    fill_ratio: float = 0.0
    travel: tuple[float, float] = (0.0, 0.0)
    presence: float = 0.0
    color_stability: float = 0.0
    area_stability: float = 0.0
    smoothness: float = 0.0
    temporal_consistency: float = 0.0


_MISSING = ObjectEstimate(color=None, shape=None, direction=None, speed=None)


@dataclass(frozen=True)
class ShapeScore:
    """The score of one video against its prompt.

    The estimate fields describe the first shape the prompt names; `objects` has one estimate per named shape.
    An `*_ok` field is `None` when the prompt does not name that attribute, else `True` only if it matches for
    every shape. `all_ok` is `True` when every named attribute matches.

    Args:
        prompt (`str`): the prompt scored against.
        color (`str | None`): estimated colour of the first shape.
        shape (`str | None`): estimated shape of the first shape.
        direction (`str | None`): estimated direction of the first shape (`None` if static).
        speed (`str | None`): "slow", "fast" or "static".
        color_ok (`bool | None`): colours match.
        shape_ok (`bool | None`): shapes match.
        direction_ok (`bool | None`): directions match.
        speed_ok (`bool | None`): speeds match.
        all_ok (`bool`): every named attribute matches.
        temporal_consistency (`float`): in [0, 1], mean over shapes of `ObjectEstimate.temporal_consistency`.
        background_flicker (`float`): mean absolute change of background pixels between consecutive frames, in
            [0, 1] intensity units (0 for a static background).
        objects (`tuple[ObjectEstimate, ...]`): per-shape estimates, in prompt order.
        num_frames (`int`): frames in the video.
        path_deviation_max (`float | None`): the largest distance of a frame's shape centre from the least-squares
            line through the centres of the visible frames, as a fraction of the frame (worst shape); `None` when no
            shape was found. See `shapes_defects.path_deviation`.
        path_deviation_mean (`float | None`): the mean of those distances.
        path_deviation_loo_max (`float | None`): the largest distance of a frame's centre from the line through
            the *other* frames (leave-one-out): one frame displaced by `k` pixels gives `k / size`.
        worst_frame (`int | None`): the frame that stands out most from the path (largest standardised residual);
            `None` with fewer than 3 visible frames or when it is less than half a pixel off.
        backward_jump_max (`float | None`): the largest step between consecutive frames against the caption's (or
            the fitted) direction, as a fraction of the frame; 0 when none goes back.
        backward_steps (`int | None`): the number of steps back by more than one pixel.
        shape_color_std (`float | None`): colour standard deviation inside the shape's eroded mask (0 when drawn).
        background_laplacian (`float | None`): mean absolute 4-neighbour Laplacian of the background (grain).
    """

    prompt: str
    color: str | None
    shape: str | None
    direction: str | None
    speed: str | None
    color_ok: bool | None
    shape_ok: bool | None
    direction_ok: bool | None
    speed_ok: bool | None
    all_ok: bool
    temporal_consistency: float
    background_flicker: float
    objects: tuple[ObjectEstimate, ...]
    num_frames: int = 0
    path_deviation_max: float | None = None
    path_deviation_mean: float | None = None
    path_deviation_loo_max: float | None = None
    worst_frame: int | None = None
    backward_jump_max: float | None = None
    backward_steps: int | None = None
    shape_color_std: float | None = None
    background_laplacian: float | None = None

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field."""
        return asdict(self)


def _normalise_chroma(rgb: np.ndarray) -> np.ndarray:
    return rgb / np.maximum(rgb.max(-1, keepdims=True), 1e-6)


def _nearest_color(chroma: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour for `(..., 3)` chroma vectors."""
    return np.argmin(((chroma[..., None, :] - _PALETTE) ** 2).sum(-1), axis=-1)


class ShapesScorer:
    """Reads colour, shape, direction and speed from moving-shapes videos and compares them with prompts.

    Works at any resolution (16x16 and up) and any frame count >= 2, on clean renders, compressed videos and
    blurry or noisy generations. Scoring takes about 4 ms per 32x32 x 8 clip and 20 ms per 64x64 x 16 clip on one
    CPU thread.

    Args:
        slow_travel (`float`, defaults to `SLOW_TRAVEL`): distance a slow shape covers over a clip (fraction of
            the frame), as in `ShapesWorld`.
        fast_travel (`float`, defaults to `FAST_TRAVEL`): the same for a fast shape.
        min_contrast (`float`, defaults to 0.15): minimum RGB distance between the foreground and background
            levels for a shape to count as found.
    """

    def __init__(self, slow_travel: float = SLOW_TRAVEL, fast_travel: float = FAST_TRAVEL, min_contrast: float = 0.15):
        if not 0.0 < slow_travel < fast_travel:
            raise ValueError(
                f"Need 0 < slow_travel < fast_travel, but got slow_travel={slow_travel!r}, "
                f"fast_travel={fast_travel!r}."
            )
        if not 0.0 <= min_contrast < 1.0:
            raise ValueError(f"`min_contrast` must be in [0, 1), but is {min_contrast!r}.")
        self.speed_threshold = math.sqrt(slow_travel * fast_travel)
        self.static_threshold = slow_travel / 2
        self.min_contrast = float(min_contrast)

    # ------------------------------------------------------------------------------------------ segmentation
    def _threshold(self, distance: np.ndarray) -> float:
        """Foreground threshold: Otsu's, lowered to just above the background's spread when that is lower.

        Otsu alone can split two shapes of different contrast (a green and a white one) instead of shapes from
        background; the background mode (median and MAD of all pixels, most of which are background) cannot.
        """
        values = distance.ravel()
        median = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - median)))
        return min(otsu_threshold(values), median + max(4.5 * spread, self.min_contrast / 2))

    def _segment(self, video: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
        """Background `(H, W, 3)`, background-subtracted video `(T, H, W, 3)`, distance from the background and
        foreground mask `(T, H, W)`, background level, and whether a shape was found."""
        color = np.median(video.reshape(-1, 3), axis=0)
        rough = np.sqrt(((video - color) ** 2).sum(-1))  # (T, H, W)
        away = ~dilate(dilate(rough > self._threshold(rough)))
        background = inpaint(masked_median(video, away), away.any(0), color)  # (H, W, 3)
        diff = video - background
        distance = np.sqrt((diff**2).sum(-1))  # (T, H, W)
        above = distance > self._threshold(distance)
        if not above.any() or above.all():
            return background, diff, distance, above, np.zeros((len(video), 1, 1)), False
        # Background level per frame: the mean distance of pixels away from the foreground. The mean, not the
        # median, so that noise averages to 0 in the soft mask instead of adding mass around the shape.
        quiet = ~dilate(above)
        total = (distance * quiet).sum((1, 2))
        count = quiet.sum((1, 2))
        fallback = float(np.median(distance[~above]))
        bg_level = np.where(count > 0, total / np.maximum(count, 1), fallback)[:, None, None]  # (T, 1, 1)
        found = float(np.percentile(distance[above], 97)) - float(np.median(bg_level)) >= self.min_contrast
        return background, diff, distance, above, bg_level, found

    @staticmethod
    def _object_masks(
        diff: np.ndarray, distance: np.ndarray, above: np.ndarray, bg_level: np.ndarray, count: int
    ) -> list[np.ndarray]:
        """Soft masks of `count` shapes, told apart by their palette colour: coverage (0 background, 1 core),
        plus zero-mean noise, clipped to [-1, 1].

        Each mask is normalised by its own shape's foreground level, so a dim shape beside a bright one still
        reaches 1 in its core.
        """
        if count == 1:
            owners = [above]
        else:
            chroma = _normalise_chroma(np.clip(diff, 0.0, None))
            votes = np.bincount(_nearest_color(chroma[above]), minlength=len(COLORS))
            chosen = np.argsort(-votes, kind="stable")[:count]
            label = np.argmin(((chroma[..., None, :] - _PALETTE[chosen]) ** 2).sum(-1), axis=-1)  # (T, H, W)
            # Colour picks each shape's core; every foreground pixel then goes to the nearest core (relative to
            # its size), so edge pixels whose colour bled (compression, blur) stay with their shape.
            _, height, width = distance.shape
            ys = (np.arange(height) + 0.5)[None, :, None]
            xs = (np.arange(width) + 0.5)[None, None, :]
            gaps = []
            for k, c in enumerate(chosen):
                core = above & (label == k)
                pixels = core.sum((1, 2)).astype(np.float64)  # (T,)
                visible = (pixels > 0)[:, None, None] & (votes[c] > 0)
                safe = np.maximum(pixels, 1.0)[:, None, None]
                cx, cy = (core * xs).sum((1, 2))[:, None, None] / safe, (core * ys).sum((1, 2))[:, None, None] / safe
                gap = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / np.sqrt(safe)
                gaps.append(np.where(visible, gap, np.inf))
            nearest = np.argmin(np.stack(gaps), axis=0)  # (T, H, W)
            owners = [(nearest == k) & np.isfinite(gaps[k]) for k in range(count)]
        masks = []
        quiet = ~dilate(above)
        quiet_count = np.maximum(quiet.sum((1, 2)), 1)  # (T,)
        for owned in owners:
            core = owned & above
            if not core.any():
                masks.append(np.zeros_like(distance))
                continue
            # Project the background-subtracted colour on the shape's colour direction: linear in coverage, and
            # noise averages to 0 instead of adding mass (as a colour distance would).
            strong = core & (distance >= np.median(distance[core]))
            direction = diff[strong].mean(0)
            direction /= max(float(np.linalg.norm(direction)), 1e-6)
            projection = diff @ direction  # (T, H, W)
            offset = ((projection * quiet).sum((1, 2)) / quiet_count)[:, None, None]  # per-frame background level
            level = float(np.percentile(projection[core], 97))
            soft = np.clip((projection - offset) / np.maximum(level - offset, 1e-6), -1.0, 1.0)
            masks.append(soft * owned if count > 1 else soft)
        return masks

    # ------------------------------------------------------------------------------------------- estimation
    @staticmethod
    def _fit_shape(mask: np.ndarray, dx: np.ndarray, dy: np.ndarray, area: np.ndarray, variance: np.ndarray):
        """Template matching: (shape, relative error of the best template, its blur sigma in pixels).

        For each candidate the template's size follows from the mask's mass, its blur from the mask's variance,
        and its brightness (the mask's core may not reach 1 when the foreground level is overestimated, e.g.
        under noise) from a least-squares fit; size and blur are refined once with that brightness.
        """
        errors, sigmas = [], []
        energy = max(float((mask**2).sum()), 1e-9)
        for shape in SHAPES:
            gain = np.ones_like(area)  # (F,) per frame: brightness may flicker
            for _ in range(2):
                size = np.sqrt(area / (gain * _AREA[shape]))[:, None, None]  # (F, 1, 1) from the mass
                # Blur adds 2 sigma^2 to the variance (x + y) of the sharp, anti-aliased shape.
                blur2 = (variance[:, None, None] - _VARIANCE[shape] * size**2 - _PIXEL_VARIANCE) / 2
                sigma = math.sqrt(max(float(np.median(blur2)), 0.0))
                template = gaussian_blur(shape_coverage(shape, dx, dy + _CENTROID_OFFSET[shape] * size, size), sigma)
                fit = (mask * template).sum((1, 2)) / np.maximum((template**2).sum((1, 2)), 1e-9)
                gain = np.clip(fit, 0.5, 1.2)
            errors.append(float(((mask - gain[:, None, None] * template) ** 2).sum()) / energy)
            sigmas.append(sigma)
        best = int(np.argmin(errors))
        return SHAPES[best], errors[best], sigmas[best]

    def _estimate(self, diff: np.ndarray, mask: np.ndarray) -> tuple[ObjectEstimate, dict]:
        """Attributes and consistency of one shape from its soft mask `(T, H, W)`; the extras carry its track."""
        num_frames, height, width = mask.shape
        track = track_shape(mask)
        if track is None:
            return _MISSING, {}
        frames, m, area, variance, binary = track.frames, track.window, track.area, track.variance, track.binary
        cx, cy = track.centers[:, 0], track.centers[:, 1]
        pixels = binary.sum((1, 2)).astype(np.float64)  # (F,)
        ys = (np.arange(height, dtype=np.float64) + 0.5)[None, :, None]  # (1, H, 1)
        xs = (np.arange(width, dtype=np.float64) + 0.5)[None, None, :]  # (1, 1, W)
        dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]  # (F, H, W)

        # Colour: background-subtracted, weighted towards the core; per frame and over the clip.
        weight = (np.clip(m, 0.0, None) ** 2)[..., None]  # (F, H, W, 1)
        weighted = np.clip(diff[frames], 0.0, None) * weight
        chroma = _normalise_chroma(weighted.sum((0, 1, 2)) / max(float(weight.sum()), 1e-9))
        color = COLORS[int(_nearest_color(chroma))]
        frame_chroma = _normalise_chroma(weighted.sum((1, 2)) / np.maximum(weight.sum((1, 2)), 1e-9))
        color_stability = 1.0 - float(np.clip(np.sqrt(((frame_chroma - chroma) ** 2).sum(-1)), 0.0, 1.0).mean())

        shape, shape_error, blur = self._fit_shape(m, dx, dy, area, variance)

        # Motion: least-squares line through the centroids of the visible frames.
        travel, smoothness, direction, speed = (0.0, 0.0), 0.0, None, "static"
        size = math.sqrt(float(np.median(area)))
        if frames.size >= 2:
            coef, residuals, _ = fit_path(frames, track.centers)
            travel = (float(coef[1, 0] * (num_frames - 1) / width), float(coef[1, 1] * (num_frames - 1) / height))
            rms = math.sqrt(float((residuals**2).sum(1).mean()))
            smoothness = 1.0 - min(1.0, rms / max(size, 1.0))
            if max(abs(travel[0]), abs(travel[1])) >= self.static_threshold:
                if abs(travel[0]) >= abs(travel[1]):
                    direction = "right" if travel[0] > 0 else "left"
                else:
                    direction = "down" if travel[1] > 0 else "up"
                speed = "fast" if max(abs(travel[0]), abs(travel[1])) >= self.speed_threshold else "slow"

        presence = frames.size / num_frames
        area_stability = 1.0 - min(1.0, float(area.std() / area.mean()))
        fill = float(np.median(pixels / (binary.sum(1).max(1) * binary.sum(2).max(1))))
        estimate = ObjectEstimate(
            color=color,
            shape=shape,
            direction=direction,
            speed=speed,
            chroma=tuple(float(c) for c in chroma),
            shape_error=shape_error,
            blur=blur,
            fill_ratio=fill,
            travel=travel,
            presence=presence,
            color_stability=color_stability,
            area_stability=area_stability,
            smoothness=smoothness,
            temporal_consistency=(presence + color_stability + area_stability + smoothness) / 4,
        )
        partial = float(((m > 0.05) & (m < 0.95)).sum())
        partial /= max(partial + float((m >= 0.95).sum()), 1.0)  # share of edge pixels among the shape's pixels
        extra = {"size": size / math.sqrt(height * width), "edge_softness": partial, "track": track}
        return estimate, extra

    # ------------------------------------------------------------------------------------------------ public
    def score(self, video, prompt: str) -> ShapeScore:
        """Score one video against the prompt it was generated from.

        Args:
            video (`np.ndarray | torch.Tensor | list`): `(frames, height, width, 3)` floats in [0, 1] or a
                `(frames, 3, height, width)` tensor; at least 2 frames.
            prompt (`str`): a caption of the moving-shapes world (see `parse_prompt`).

        Returns:
            `ShapeScore`.

        Raises:
            ValueError: for a prompt with an unknown word (named in the message), or a video of the wrong rank,
                channel count or value range, or with fewer than 2 frames.
        """
        parsed = parse_prompt(prompt)
        video = as_video_array(video)
        _, diff, distance, above, bg_level, found = self._segment(video)
        count = len(parsed.objects)
        estimates, binaries, tracks = [_MISSING] * count, [], []
        if found:
            masks = self._object_masks(diff, distance, above, bg_level, count)
            read = [self._estimate(diff, mask) for mask in masks]
            order = self._match(parsed.objects, [estimate for estimate, _ in read])
            estimates = [read[i][0] for i in order]
            binaries, tracks = [masks[i] > 0.5 for i in order], [read[i][1].get("track") for i in order]
        directions = [spec.direction for spec in parsed.objects][: len(tracks)]
        defects = measure_defects(video, binaries, tracks, directions, max((e.blur for e in estimates), default=0.0))
        oks: dict[str, bool | None] = {}
        for attribute in ("color", "shape", "direction", "speed"):
            wanted = [getattr(spec, attribute) for spec in parsed.objects]
            if all(w is None for w in wanted):
                oks[attribute] = None
            else:
                oks[attribute] = all(w is None or getattr(e, attribute) == w for w, e in zip(wanted, estimates))
        first = estimates[0]
        return ShapeScore(
            prompt=prompt,
            color=first.color,
            shape=first.shape,
            direction=first.direction,
            speed=first.speed,
            color_ok=oks["color"],
            shape_ok=oks["shape"],
            direction_ok=oks["direction"],
            speed_ok=oks["speed"],
            all_ok=all(ok is not False for ok in oks.values()),
            temporal_consistency=float(np.mean([e.temporal_consistency for e in estimates])),
            background_flicker=background_flicker(video, above if found else np.zeros_like(above)),
            objects=tuple(estimates),
            num_frames=len(video),
            **defects,
        )

    @staticmethod
    def _match(specs, estimates: list[ObjectEstimate]) -> tuple[int, ...]:
        """The order of the estimates that agrees best with the prompt's shapes (two shapes: try both orders)."""
        if len(estimates) == 1:
            return (0,)

        def agreement(order):
            return sum(
                getattr(spec, a) is not None and getattr(spec, a) == getattr(estimates[i], a)
                for spec, i in zip(specs, order)
                for a in ("color", "shape", "direction", "speed")
            )

        forward = tuple(range(len(estimates)))
        return max((forward, forward[::-1]), key=agreement)

    def features(self, video) -> np.ndarray:
        """A prompt-free feature vector of one video, for FSD (all foreground read as one shape).

        Args:
            video: as in `score`.

        Returns:
            `np.ndarray`: `(len(FEATURE_NAMES),)` float64, in the order of `FEATURE_NAMES`; every entry is of
            order 1 on real clips, so no entry dominates the distance.
        """
        video = as_video_array(video)
        background, diff, distance, above, bg_level, found = self._segment(video)
        estimate, extra = (_MISSING, {})
        if found:
            estimate, extra = self._estimate(diff, self._object_masks(diff, distance, above, bg_level, 1)[0])
        else:
            above = np.zeros_like(above)
        away = ~dilate(above)
        gray = video.mean(-1)  # (T, H, W)
        gradient = np.abs(np.diff(gray, axis=1)).mean() + np.abs(np.diff(gray, axis=2)).mean()
        values = [
            *estimate.chroma,
            extra.get("size", 0.0),
            estimate.fill_ratio,
            estimate.shape_error,
            estimate.blur * 32 / min(video.shape[1:3]),  # in pixels of a 32x32 frame
            *estimate.travel,
            estimate.presence,
            estimate.color_stability,
            estimate.area_stability,
            2.0 * (1.0 - estimate.smoothness),  # path roughness
            10.0 * background_flicker(video, above),
            extra.get("edge_softness", 0.0),
            float(background.mean()),
            4.0 * (float(gray[away].std()) if away.any() else 0.0),
            4.0 * float(gradient),
            4.0 * float(np.abs(np.diff(gray, axis=0)).mean()),
        ]
        return np.asarray(values, dtype=np.float64)

    def features_batch(self, videos) -> np.ndarray:
        """`features` of every video of a batch `(num_videos, frames, height, width, 3)` or a list of videos."""
        return np.stack([self.features(video) for video in videos])

    def fsd(self, videos_a, videos_b) -> float:
        """Fréchet shapes distance (FSD) between two sets of at least 2 videos each."""
        return frechet_distance(self.features_batch(videos_a), self.features_batch(videos_b))

    @staticmethod
    def aggregate(scores: Sequence[ShapeScore]) -> dict:
        """Accuracies with 95% Wilson intervals, and the mean of every measure with its 95% interval.

        Args:
            scores (`Sequence[ShapeScore]`): one per video (at least one).

        Returns:
            `dict`: `num_videos`; for each of `color`, `shape`, `direction`, `speed` and `all_correct` a dict with
            `accuracy`, `ci_low`, `ci_high`, `correct` and `n` (the videos whose prompt names the attribute); for
            `temporal_consistency`, `background_flicker` and each of `shapes_defects.DEFECT_FIELDS` a dict with
            `mean`, `ci_low`, `ci_high` (normal approximation; equal to the mean for a single video; `None` where no
            video defines the measure) and `n` (the videos that define it); `worst_frame_is_middle` and
            `worst_frame_histogram` (see `shapes_defects.aggregate_defects`).
        """
        scores = list(scores)
        if not scores:
            raise ValueError("`scores` is empty; score at least one video.")
        result: dict = {"num_videos": len(scores)}
        for key, field in (
            ("color", "color_ok"),
            ("shape", "shape_ok"),
            ("direction", "direction_ok"),
            ("speed", "speed_ok"),
            ("all_correct", "all_ok"),
        ):
            values = [getattr(s, field) for s in scores if getattr(s, field) is not None]
            correct, n = int(sum(values)), len(values)
            low, high = wilson_interval(correct, n)
            accuracy = correct / n if n else None
            result[key] = {"accuracy": accuracy, "ci_low": low, "ci_high": high, "correct": correct, "n": n}
        for key in ("temporal_consistency", "background_flicker"):
            result[key] = mean_interval([getattr(s, key) for s in scores])
        result.update(aggregate_defects(scores))
        return result


__all__ = [
    "FEATURE_NAMES",
    "ObjectEstimate",
    "ShapeScore",
    "ShapesScorer",
    "as_video_array",
    "frechet_distance",
    "shape_coverage",
    "wilson_interval",
]
