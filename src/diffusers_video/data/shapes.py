"""The moving-shapes world: seeded procedural text-video data whose ground truth is known.

One (optionally two) shapes from {circle, square, triangle} in one of seven colours move left, right, up or down,
slowly or fast, over a plain dark or a textured background. A scene is sampled from a seed and described in
resolution-free units (fractions of the frame), so the same scene renders at any resolution and frame count:
`ShapesWorld(height=16, width=16).render(scene)` and `render(scene, height=64, width=64)` show the same clip,
which is what a cascade's super-resolution stage needs.

Speeds are defined over the whole clip: a slow shape crosses `SLOW_TRAVEL` (a fifth) of the frame between the
first and the last frame, a fast one `FAST_TRAVEL`. A clip keeps its speed label when more frames are sampled
(temporal super-resolution, frame interpolation), and every shape stays inside the frame.

`ShapesScorer` (in `shapes_scorer.py`, re-exported here) measures what a video actually shows.

Example:

```py
>>> from diffusers_video.data.shapes import ShapesScorer, ShapesWorld
>>> world = ShapesWorld(height=32, width=32, num_frames=8)
>>> sample = world.sample(seed=0)
>>> sample.video.shape
(8, 32, 32, 3)
>>> ShapesScorer().score(sample.video, sample.caption).all_ok
True
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..pipelines.checks import check_int_at_least
from .shapes_captions import (
    BACKGROUNDS,
    COLORS,
    DIRECTION_VECTORS,
    DIRECTIONS,
    FAST_TRAVEL,
    PALETTE,
    SHAPES,
    SLOW_TRAVEL,
    SPEEDS,
    ParsedPrompt,
    ShapeSpec,
    _pick,
    all_combinations,
    is_heldout,
    parse_prompt,
    split_combinations,
    write_caption,
)
from .shapes_scorer import (
    FEATURE_NAMES,
    ObjectEstimate,
    ShapeScore,
    ShapesScorer,
    as_video_array,
    frechet_distance,
    shape_coverage,
    wilson_interval,
)

# Empty border kept around every shape, as a fraction of the frame.
_MARGIN = 0.03


@dataclass(frozen=True)
class ShapeObject:
    """One shape of a scene, in resolution-free units.

    Args:
        spec (`ShapeSpec`): colour, shape, direction and speed (all set).
        size (`float`): diameter of a circle, side of a square, base and height of a triangle, as a fraction of
            `min(height, width)`.
        start (`tuple[float, float]`): centre of the shape's bounding box at the first frame, `(x, y)` as
            fractions of the width and height.
        travel (`float`): distance covered from the first to the last frame, as a fraction of the frame side
            along the direction of motion.
        rgb (`tuple[float, float, float]`): the rendered colour (the palette colour times a brightness).
    """

    spec: ShapeSpec
    size: float
    start: tuple[float, float]
    travel: float
    rgb: tuple[float, float, float]

    def centers(self, num_frames: int) -> np.ndarray:
        """Bounding-box centres `(num_frames, 2)` as `(x, y)` fractions of the frame, one row per frame."""
        dx, dy = DIRECTION_VECTORS[self.spec.direction]
        progress = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
        x = self.start[0] + dx * self.travel * progress
        y = self.start[1] + dy * self.travel * progress
        return np.stack([x, y], axis=1)


@dataclass(frozen=True)
class ShapesScene:
    """A sampled scene: its shapes, background and captions.

    Args:
        objects (`tuple[ShapeObject, ...]`): one or two shapes, in caption order (later shapes drawn on top).
        background (`str`): "plain" or "textured".
        background_params (`tuple[float, ...]`): colours and pattern parameters of the background.
        caption (`str`): a caption for the video.
        still_caption (`str`): a caption for a still image of the scene (no motion words).
        still_frame (`float`): the position in the clip, in [0, 1], of the frame used as the still image.
    """

    objects: tuple[ShapeObject, ...]
    background: str
    background_params: tuple[float, ...]
    caption: str
    still_caption: str
    still_frame: float

    @property
    def specs(self) -> tuple[ShapeSpec, ...]:
        """The `ShapeSpec` of each shape."""
        return tuple(obj.spec for obj in self.objects)


@dataclass(frozen=True)
class ShapesSample:
    """A rendered scene.

    Args:
        video (`np.ndarray`): `(frames, height, width, 3)` float32 in [0, 1].
        caption (`str`): the video caption.
        still_caption (`str`): a caption without motion words, for `image`.
        image (`np.ndarray`): one frame `(height, width, 3)` for joint image-video training.
        scene (`ShapesScene`): the scene, to render it again at another resolution.
    """

    video: np.ndarray
    caption: str
    still_caption: str
    image: np.ndarray
    scene: ShapesScene

    @property
    def first_frame(self) -> np.ndarray:
        """The first frame `(height, width, 3)`: the conditioning image for image-to-video."""
        return self.video[0]


def _check_probability(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1], but is {value!r}.")


class ShapesWorld:
    """Seeded generator of moving-shapes videos and captions.

    Args:
        height (`int`, defaults to 32): frame height in pixels (>= 8).
        width (`int`, defaults to 32): frame width in pixels (>= 8).
        num_frames (`int`, defaults to 8): frames per video (>= 2).
        split (`str`, defaults to "all"): which (colour, shape, direction, speed) combinations to draw: "train",
            "heldout" or "all" (see `shapes_captions.split_combinations`).
        two_shape_prob (`float`, defaults to 0.0): probability that a scene has two shapes (of different colours,
            never overlapping).
        textured_prob (`float`, defaults to 0.5): probability of a textured rather than a plain dark background.
        slow_travel (`float`, defaults to `SLOW_TRAVEL`): distance a slow shape covers over the clip, as a fraction
            of the frame.
        fast_travel (`float`, defaults to `FAST_TRAVEL`): the same for a fast shape.
        background_phrase (`bool`, defaults to `True`): let captions mention the background half of the time.
    """

    def __init__(
        self,
        height: int = 32,
        width: int = 32,
        num_frames: int = 8,
        split: str = "all",
        two_shape_prob: float = 0.0,
        textured_prob: float = 0.5,
        slow_travel: float = SLOW_TRAVEL,
        fast_travel: float = FAST_TRAVEL,
        background_phrase: bool = True,
    ):
        check_int_at_least(height, "height", 8)
        check_int_at_least(width, "width", 8)
        check_int_at_least(num_frames, "num_frames", 2)
        _check_probability("two_shape_prob", two_shape_prob)
        _check_probability("textured_prob", textured_prob)
        if not 0.0 < slow_travel < fast_travel <= 0.5:
            raise ValueError(
                f"`slow_travel` and `fast_travel` must satisfy 0 < slow_travel < fast_travel <= 0.5, but are "
                f"{slow_travel!r} and {fast_travel!r}."
            )
        self.height, self.width, self.num_frames = int(height), int(width), int(num_frames)
        self.split = split
        self.combinations = split_combinations(split)
        self.two_shape_prob = float(two_shape_prob)
        self.textured_prob = float(textured_prob)
        self.travel = {"slow": float(slow_travel), "fast": float(fast_travel)}
        self.background_phrase = background_phrase

    def __repr__(self) -> str:
        return (
            f"ShapesWorld(height={self.height}, width={self.width}, num_frames={self.num_frames}, "
            f"split={self.split!r}, two_shape_prob={self.two_shape_prob}, textured_prob={self.textured_prob})"
        )

    # ----------------------------------------------------------------------------------------------- sampling
    def scene(self, seed: int | tuple[int, ...]) -> ShapesScene:
        """Sample a scene (attributes, layout, background and captions) from a seed.

        Args:
            seed (`int | tuple[int, ...]`): non-negative integer(s); the same seed always gives the same scene.

        Returns:
            `ShapesScene`.
        """
        rng = np.random.default_rng(seed)
        first = ShapeSpec(*self.combinations[int(rng.integers(len(self.combinations)))])
        two = rng.random() < self.two_shape_prob
        objects = self._place_pair(rng, first) if two else (self._place(rng, first, rng.uniform(0.28, 0.38)),)
        background = "textured" if rng.random() < self.textured_prob else "plain"
        params = _background_params(rng, background)
        specs = tuple(obj.spec for obj in objects)
        phrase_background = background if self.background_phrase else None
        caption = write_caption(specs, rng, background=phrase_background)
        still_caption = write_caption(specs, rng, background=phrase_background, still=True)
        return ShapesScene(
            objects=objects,
            background=background,
            background_params=params,
            caption=caption,
            still_caption=still_caption,
            still_frame=float(rng.random()),
        )

    def scene_for_prompt(self, prompt: str, seed: int | tuple[int, ...] = 0) -> ShapesScene:
        """A random scene that shows what a prompt asks for (attributes it leaves out are drawn at random).

        Useful as a reference ("oracle") generator and to make first frames for image-to-video from any caption.

        Args:
            prompt (`str`): a caption of the world with one or two shapes (see `parse_prompt`).
            seed (`int | tuple[int, ...]`, defaults to 0): layout, sizes, background and missing attributes.

        Returns:
            `ShapesScene` whose `caption` is `prompt`.
        """
        parsed = parse_prompt(prompt)
        if len(parsed.objects) > 2:
            raise ValueError(f"Prompt {prompt!r} names {len(parsed.objects)} shapes; the world has at most 2.")
        rng = np.random.default_rng(seed)
        specs = []
        for spec in parsed.objects:
            drawn = (_pick(rng, COLORS), _pick(rng, SHAPES), _pick(rng, DIRECTIONS), _pick(rng, SPEEDS))
            specs.append(ShapeSpec(*(given or default for given, default in zip(spec.combination, drawn))))
        if len(specs) == 1:
            objects = (self._place(rng, specs[0], rng.uniform(0.28, 0.38)),)
        else:
            objects = self._place_pair(rng, specs[0], specs[1])
        background = parsed.background or ("textured" if rng.random() < self.textured_prob else "plain")
        return ShapesScene(
            objects=objects,
            background=background,
            background_params=_background_params(rng, background),
            caption=prompt,
            still_caption=write_caption(tuple(specs), rng, still=True),
            still_frame=float(rng.random()),
        )

    def _place(self, rng: np.random.Generator, spec: ShapeSpec, size: float) -> ShapeObject:
        """Choose a start so the shape stays inside the frame (plus margin) for the whole clip."""
        travel = self.travel[spec.speed]
        dx, dy = DIRECTION_VECTORS[spec.direction]
        side = min(self.height, self.width)
        start = []
        for axis_length, step in ((self.width, dx), (self.height, dy)):
            half = size * side / (2 * axis_length)
            low, high = _MARGIN + half, 1.0 - _MARGIN - half
            if step > 0:
                high -= travel
            elif step < 0:
                low += travel
            start.append(rng.uniform(low, max(low, high)))
        brightness = rng.uniform(0.85, 1.0)
        rgb = tuple(float(c * brightness) for c in PALETTE[spec.color])
        return ShapeObject(
            spec=spec, size=float(size), start=(float(start[0]), float(start[1])), travel=travel, rgb=rgb
        )

    def _place_pair(
        self, rng: np.random.Generator, first: ShapeSpec, second: ShapeSpec | None = None
    ) -> tuple[ShapeObject, ShapeObject]:
        """Two shapes whose boxes stay apart in every frame (rejection sampling). Without `second`, the second
        shape is drawn from the split in another colour."""
        side = min(self.height, self.width)
        given = second
        for attempt in range(1000):
            if given is None and attempt % 20 == 0:  # every 20 failed layouts, re-draw the second shape too
                others = [c for c in self.combinations if c[0] != first.color]
                if not others:  # a split so narrow that it has one colour: pair with any other colour
                    others = [c for c in all_combinations() if c[0] != first.color]
                second = ShapeSpec(*others[int(rng.integers(len(others)))])
            a = self._place(rng, first, rng.uniform(0.22, 0.28))
            b = self._place(rng, second, rng.uniform(0.22, 0.28))
            gap_x = (a.size + b.size) * side / (2 * self.width) + 0.04
            gap_y = (a.size + b.size) * side / (2 * self.height) + 0.04
            start, end = a.centers(2) - b.centers(2)  # offsets (x, y) at the first and last frame
            close_x = _close_interval(start[0], end[0], gap_x)
            close_y = _close_interval(start[1], end[1], gap_y)
            if max(close_x[0], close_y[0]) >= min(close_x[1], close_y[1]):  # never close on both axes at once
                return a, b
        raise ValueError(f"Could not place {first} and {second} apart for the whole clip; their paths cross.")

    def sample(self, seed: int | tuple[int, ...]) -> ShapesSample:
        """Sample and render a scene.

        Args:
            seed (`int | tuple[int, ...]`): non-negative integer(s).

        Returns:
            `ShapesSample`: the video, its captions, a still image and the scene.
        """
        scene = self.scene(seed)
        video = self.render(scene)
        index = min(int(scene.still_frame * self.num_frames), self.num_frames - 1)
        return ShapesSample(
            video=video, caption=scene.caption, still_caption=scene.still_caption, image=video[index], scene=scene
        )

    def videos(self, num_videos: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
        """Render `num_videos` videos with seeds `(seed, 0), (seed, 1), ...`.

        Args:
            num_videos (`int`): how many.
            seed (`int`, defaults to 0): base seed.

        Returns:
            `tuple[np.ndarray, list[str]]`: videos `(num_videos, frames, height, width, 3)` in [0, 1] and captions.
        """
        check_int_at_least(num_videos, "num_videos", 1)
        samples = [self.sample((seed, i)) for i in range(num_videos)]
        return np.stack([s.video for s in samples]), [s.caption for s in samples]

    def captions(self, num_captions: int, seed: int = 0) -> list[str]:
        """Captions of the scenes `(seed, 0), (seed, 1), ...` without rendering them (what a benchmark prompts)."""
        check_int_at_least(num_captions, "num_captions", 1)
        return [self.scene((seed, i)).caption for i in range(num_captions)]

    # ---------------------------------------------------------------------------------------------- rendering
    def render(
        self, scene: ShapesScene, height: int | None = None, width: int | None = None, num_frames: int | None = None
    ) -> np.ndarray:
        """Render a scene, by default at this world's resolution and frame count.

        Args:
            scene (`ShapesScene`): from `scene()`.
            height (`int`, *optional*): override the frame height.
            width (`int`, *optional*): override the frame width.
            num_frames (`int`, *optional*): override the frame count (1 gives the first frame only).

        Returns:
            `np.ndarray`: `(frames, height, width, 3)` float32 in [0, 1]. Edges are anti-aliased by coverage.
        """
        height = self.height if height is None else height
        width = self.width if width is None else width
        num_frames = self.num_frames if num_frames is None else num_frames
        check_int_at_least(height, "height", 1)
        check_int_at_least(width, "width", 1)
        check_int_at_least(num_frames, "num_frames", 1)
        ys = (np.arange(height, dtype=np.float32) + 0.5)[None, :, None]  # (1, H, 1) pixel centres
        xs = (np.arange(width, dtype=np.float32) + 0.5)[None, None, :]  # (1, 1, W)
        frame = np.broadcast_to(_background(scene, height, width), (num_frames, height, width, 3)).copy()
        side = min(height, width)
        for obj in scene.objects:
            centers = obj.centers(num_frames).astype(np.float32)
            cx = (centers[:, 0] * width)[:, None, None]  # (T, 1, 1) in pixels
            cy = (centers[:, 1] * height)[:, None, None]
            coverage = shape_coverage(obj.spec.shape, xs - cx, ys - cy, obj.size * side)[..., None]  # (T, H, W, 1)
            frame = frame * (1.0 - coverage) + np.asarray(obj.rgb, dtype=np.float32) * coverage
        return np.clip(frame, 0.0, 1.0).astype(np.float32)


def _close_interval(start: float, end: float, gap: float) -> tuple[float, float]:
    """The times `t` in [0, 1] at which `|start + (end - start) * t| < gap` (empty as `(1, 0)`)."""
    velocity = end - start
    if velocity == 0:
        return (0.0, 1.0) if abs(start) < gap else (1.0, 0.0)
    low, high = sorted(((-gap - start) / velocity, (gap - start) / velocity))
    low, high = max(low, 0.0), min(high, 1.0)
    return (low, high) if low < high else (1.0, 0.0)


def _background_params(rng: np.random.Generator, background: str) -> tuple[float, ...]:
    """Colours and pattern of a background: a dark base colour, and for "textured" an accent colour and a
    pattern (stripes, soft checks or smooth blobs) with its period, angle and noise seed."""
    base = rng.uniform(0.0, 0.15, size=3)
    if background == "plain":
        return (*(float(c) for c in base), 0.0)
    accent = rng.uniform(0.0, 0.25, size=3)
    kind = int(rng.integers(3))  # 0 stripes, 1 checks, 2 blobs
    period = rng.uniform(0.1, 0.25)
    angle = rng.uniform(0.0, math.pi)
    noise_seed = int(rng.integers(2**31))
    return (*(float(c) for c in base), 1.0, *(float(c) for c in accent), float(kind), period, angle, float(noise_seed))


def _background(scene: ShapesScene, height: int, width: int) -> np.ndarray:
    """The static background `(height, width, 3)`, defined in frame fractions so it renders at any resolution."""
    p = scene.background_params
    base = np.asarray(p[:3], dtype=np.float32)
    if scene.background == "plain":
        return np.broadcast_to(base, (height, width, 3))
    accent = np.asarray(p[4:7], dtype=np.float32)
    kind, period, angle, noise_seed = int(p[7]), p[8], p[9], int(p[10])
    y = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
    x = ((np.arange(width, dtype=np.float32) + 0.5) / width)[None, :]
    if kind == 0:  # stripes
        pattern = 0.5 + 0.5 * np.sin(2 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / period)
    elif kind == 1:  # soft checks
        pattern = 0.5 + 0.5 * np.sin(2 * math.pi * x / period) * np.sin(2 * math.pi * y / period)
    else:  # smooth blobs: a random 6x6 grid, bilinearly interpolated
        grid = np.random.default_rng(noise_seed).random((6, 6)).astype(np.float32)
        gy, gx = y[:, 0] * 5, x[0] * 5
        y0, x0 = np.minimum(gy.astype(int), 4), np.minimum(gx.astype(int), 4)
        fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
        pattern = (
            grid[y0][:, x0] * (1 - fy) * (1 - fx)
            + grid[y0 + 1][:, x0] * fy * (1 - fx)
            + grid[y0][:, x0 + 1] * (1 - fy) * fx
            + grid[y0 + 1][:, x0 + 1] * fy * fx
        )
    pattern = np.broadcast_to(pattern, (height, width)).astype(np.float32)[..., None]
    return base * (1 - pattern) + accent * pattern


# ------------------------------------------------------------------------------------------ tensor layout
def video_to_tensor(video: np.ndarray) -> torch.Tensor:
    """`(frames, height, width, 3)` in [0, 1] -> `(3, frames, height, width)` float32 tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(video)).permute(3, 0, 1, 2) * 2.0 - 1.0  # (C, T, H, W)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """`(height, width, 3)` in [0, 1] -> `(3, height, width)` float32 tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1) * 2.0 - 1.0  # (C, H, W)


__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "DIRECTIONS",
    "FAST_TRAVEL",
    "FEATURE_NAMES",
    "ObjectEstimate",
    "PALETTE",
    "SHAPES",
    "SLOW_TRAVEL",
    "SPEEDS",
    "ParsedPrompt",
    "ShapeObject",
    "ShapeScore",
    "ShapeSpec",
    "ShapesSample",
    "ShapesScene",
    "ShapesScorer",
    "ShapesWorld",
    "all_combinations",
    "as_video_array",
    "frechet_distance",
    "image_to_tensor",
    "is_heldout",
    "parse_prompt",
    "split_combinations",
    "video_to_tensor",
    "wilson_interval",
]
