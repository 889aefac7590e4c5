"""What a viewer sees wrong: path deviation, backward jumps, colour spread inside the shape, background grain."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from diffusers_video.data.shapes import ShapesScorer, ShapesWorld
from diffusers_video.data.shapes_defects import (
    DEFECT_FIELDS,
    aggregate_defects,
    background_laplacian,
    backward_jumps,
    fit_path,
    mean_interval,
    measure_defects,
    path_deviation,
    shape_color_std,
    track_shape,
)

LAPLACIAN_PER_NOISE = math.sqrt(20) * math.sqrt(2 / math.pi)  # E|4 n0 - n1 - n2 - n3 - n4| / s for iid N(0, s^2)


@pytest.fixture(scope="module")
def scorer():
    return ShapesScorer()


def scene_for(world: ShapesWorld, prompt: str, seed: int = 0):
    return world.scene_for_prompt(prompt, seed)


def moved(scene, dx_px: float, dy_px: float, world: ShapesWorld, index: int = 0):
    """The scene with shape `index` shifted by `(dx_px, dy_px)` pixels along its whole path."""
    objects = list(scene.objects)
    obj = objects[index]
    objects[index] = replace(obj, start=(obj.start[0] + dx_px / world.width, obj.start[1] + dy_px / world.height))
    return replace(scene, objects=tuple(objects))


# ------------------------------------------------------------------------------------------------- the floor
@pytest.mark.parametrize(
    "size, frames, num_videos, two_shape_prob, grain_mean, grain_max",
    [
        (16, 8, 30, 0.0, 0.08, 0.4),
        (32, 8, 40, 0.0, 0.04, 0.2),
        (64, 16, 8, 0.0, 0.02, 0.05),
        (32, 8, 12, 1.0, 0.04, 0.2),
    ],
)
def test_ground_truth_clips_sit_on_the_floor(scorer, size, frames, num_videos, two_shape_prob, grain_mean, grain_max):
    world = ShapesWorld(size, size, frames, split="heldout", two_shape_prob=two_shape_prob)
    videos, captions = world.videos(num_videos, seed=7)
    scores = [scorer.score(v, c) for v, c in zip(videos, captions)]
    assert all(s.all_ok for s in scores)
    for s in scores:
        assert s.num_frames == frames and s.worst_frame is None  # no frame is half a pixel off its line
        pixel = (0.3 if size == 16 else 0.1) / size  # anti-aliasing bias of the centroid of a 5-pixel shape
        assert s.path_deviation_loo_max < pixel and s.path_deviation_mean < s.path_deviation_max < pixel
        assert s.backward_jump_max == 0.0 and s.backward_steps == 0
        assert s.shape_color_std is None or s.shape_color_std == pytest.approx(0.0, abs=1e-6)  # None: too small
    assert sum(s.shape_color_std is not None for s in scores) >= 0.6 * num_videos
    kinds = [world.scene((7, i)).background for i in range(num_videos)]  # `videos` renders scenes (seed, i)
    plain = [s.background_laplacian for s, kind in zip(scores, kinds) if kind == "plain"]
    textured = [s.background_laplacian for s, kind in zip(scores, kinds) if kind == "textured"]
    assert max(plain) == pytest.approx(0.0, abs=1e-6) and min(textured) > 0  # a drawn pattern has curvature
    # Measured over 200 held-out clips: mean 0.034 at 16x16, 0.013 (largest 0.13) at 32x32, 0.0036 (largest 0.035)
    # at 64x64: the finer the pixels, the smaller the curvature of the pattern per pixel. Noise of s = 0.01 adds 0.036.
    assert np.mean(plain + textured) < grain_mean and max(textured) < grain_max


# ---------------------------------------------------------------------------------------------- path deviation
def test_leave_one_out_is_the_distance_from_the_line_through_the_other_frames():
    rng = np.random.default_rng(0)
    frames = np.array([0, 1, 2, 4, 5, 7, 8, 9])  # frames 3 and 6 missing
    centers = np.stack([3 + 2.0 * frames, 20 - 1.0 * frames], axis=1) + rng.normal(0, 0.4, (8, 2))
    height, width = 40, 50
    result = path_deviation(frames, centers, height, width)
    loo = []
    for i in range(frames.size):
        others = np.arange(frames.size) != i
        line = [np.polyval(np.polyfit(frames[others], centers[others, axis], 1), frames[i]) for axis in (0, 1)]
        loo.append(math.hypot((centers[i, 0] - line[0]) / width, (centers[i, 1] - line[1]) / height))
    assert result["path_deviation_loo_max"] == pytest.approx(max(loo), rel=1e-9)
    coef = np.polyfit(frames, centers, 1)  # (2, 2): slope row first
    fitted = np.hypot(*((centers - (np.outer(frames, coef[0]) + coef[1])) / [width, height]).T)
    assert result["path_deviation_max"] == pytest.approx(fitted.max(), rel=1e-9)
    assert result["path_deviation_mean"] == pytest.approx(fitted.mean(), rel=1e-9)
    assert fit_path(frames, centers)[0][1] == pytest.approx(coef[0], rel=1e-9)


@pytest.mark.parametrize("num_frames", [4, 6, 8, 16])
def test_a_single_displaced_centre_is_always_the_worst_frame(num_frames):
    rng = np.random.default_rng(num_frames)
    frames = np.arange(num_frames)
    for _ in range(50):
        centers = np.stack([5 + 1.5 * frames, 9 + 0.0 * frames], axis=1)
        j, k = int(rng.integers(num_frames)), rng.uniform(1, 4)
        centers[j] += k * np.array([math.cos(a := rng.uniform(0, 2 * math.pi)), math.sin(a)])
        result = path_deviation(frames, centers, 64, 64)
        leverage = 1 / num_frames + (j - frames.mean()) ** 2 / ((frames - frames.mean()) ** 2).sum()
        assert result["worst_frame"] == j  # in any clip of 4 or more frames
        assert result["path_deviation_max"] >= (1 - leverage) * k / 64 - 1e-12  # the displaced frame's own residual
        if num_frames >= 6:  # in shorter clips, extrapolating to an end frame can magnify the displacement
            assert result["path_deviation_loo_max"] == pytest.approx(k / 64, rel=1e-9)


@pytest.mark.parametrize("frame", [0, 4, 7])
@pytest.mark.parametrize("k", [2, 3])
def test_a_frame_whose_shape_is_displaced_by_k_pixels_is_the_worst_at_k_over_size(scorer, frame, k):
    world = ShapesWorld(32, 32, 8)
    scene = scene_for(world, "a red circle moving right fast on a textured background", seed=frame + 10 * k)
    shift = k if scene.objects[0].start[1] < 0.5 else -k  # across the motion, towards the middle of the frame
    video = world.render(scene)
    video[frame] = world.render(moved(scene, 0, shift, world))[frame]
    score = scorer.score(video, scene.caption)
    assert score.all_ok and score.worst_frame == frame
    assert score.path_deviation_loo_max == pytest.approx(k / 32, abs=0.1 / 32)
    leverage = 1 / 8 + (frame - 3.5) ** 2 / 42
    assert score.path_deviation_max == pytest.approx((1 - leverage) * k / 32, abs=0.1 / 32)  # the fit is dragged
    assert score.backward_steps == 0  # the displacement is across the motion
    clean = scorer.score(world.render(scene), scene.caption)
    assert clean.worst_frame is None and clean.path_deviation_loo_max < 0.1 / 32


def test_the_worst_shape_counts_in_a_two_shape_clip(scorer):
    world = ShapesWorld(64, 64, 8, two_shape_prob=1.0)
    scene = world.scene(3)
    assert len(scene.objects) == 2
    second = scene.objects[1]
    vertical = second.spec.direction in ("up", "down")
    toward = 3 if (second.start[0] if vertical else second.start[1]) < 0.5 else -3
    video = world.render(scene)
    video[5] = world.render(moved(scene, toward if vertical else 0, 0 if vertical else toward, world, index=1))[5]
    score = scorer.score(video, scene.caption)
    assert score.all_ok and score.worst_frame == 5
    assert score.path_deviation_loo_max == pytest.approx(3 / 64, abs=0.1 / 64)


# ---------------------------------------------------------------------------------------------- backward jumps
@pytest.mark.parametrize(
    "height, width, prompt, steps",
    [
        (32, 32, "a green square moving right fast on a plain background", 1),  # 2.06 px per frame
        (32, 32, "a green square moving right slowly on a plain background", 0),  # 0.91 px: under one pixel
        (48, 32, "a yellow triangle moving down fast on a textured background", 1),  # along the height
    ],
)
def test_a_shape_that_steps_back_gives_the_backward_jump(scorer, height, width, prompt, steps):
    world = ShapesWorld(height, width, 8)
    scene = scene_for(world, prompt, seed=2)
    video = world.render(scene)
    video[[3, 4]] = video[[4, 3]]  # steps: +2v, -v, +2v around frames 3 and 4
    travel = scene.objects[0].travel
    step = travel / 7  # one frame's step, as a fraction of the frame along the motion (travel is per clip)
    score = scorer.score(video, prompt)
    assert score.backward_jump_max == pytest.approx(step, abs=0.05 / height)
    assert score.backward_steps == steps
    spec = scene.objects[0].spec
    no_direction = scorer.score(video, f"a {spec.color} {spec.shape}")  # the fitted direction instead
    assert no_direction.backward_jump_max == pytest.approx(score.backward_jump_max, abs=1e-5)
    assert scorer.score(world.render(scene), prompt).backward_jump_max == 0.0


def test_motion_against_the_caption_steps_back_every_frame():
    frames = np.arange(8)
    centers = np.stack([4 + 2.0 * frames, np.full(8, 10.0)], axis=1)  # 2 px per frame to the right
    assert backward_jumps(frames, centers, 32, 32, "right") == {"backward_jump_max": 0.0, "backward_steps": 0}
    assert backward_jumps(frames, centers, 32, 32, "left") == {"backward_jump_max": 2 / 32, "backward_steps": 7}
    assert backward_jumps(frames, centers, 32, 64, "up")["backward_jump_max"] == 0.0  # across the motion
    assert backward_jumps(frames, np.full((8, 2), 5.0), 32, 32) == {"backward_jump_max": 0.0, "backward_steps": 0}


# --------------------------------------------------------------------------------- colour spread and grain
def noisy_square_clip(noise: float, seed: int = 0):
    """Grey background 0.4, a square of colour (0.75, 0.8, 0.9) of 12 px, plus iid Gaussian noise (no clipping)."""
    rng = np.random.default_rng(seed)
    video = np.full((8, 40, 40, 3), 0.4)
    mask = np.zeros((8, 40, 40), dtype=bool)
    for t in range(8):
        mask[t, 10:22, 4 + 2 * t : 16 + 2 * t] = True
    video[mask] = (0.75, 0.8, 0.9)
    return video + rng.normal(0.0, noise, video.shape), mask


def test_a_shape_cut_by_the_image_border_has_no_colour_spread():
    video = np.full((2, 16, 16, 3), 0.1)
    video[:, 4:10, 0:6] = (0.2, 0.9, 0.3)
    video[:, 4:10, 0] = (0.15, 0.5, 0.2)  # the border column is half covered (the shape's edge lies on it)
    mask = np.zeros((2, 16, 16), dtype=bool)
    mask[:, 4:10, 0:6] = True  # a soft mask of 0.5+ there still reads as inside
    assert shape_color_std(video, mask) == pytest.approx(
        0.0, abs=1e-12
    )  # the border erodes like any edge: 4x4 fully covered pixels are left


@pytest.mark.parametrize("noise", [0.01, 0.03])
def test_speckle_noise_raises_colour_spread_by_s_and_grain_by_3_57_s(noise):
    clean, mask = noisy_square_clip(0.0)
    assert shape_color_std(clean, mask) == pytest.approx(0.0, abs=1e-12)
    assert background_laplacian(clean, mask) == pytest.approx(0.0, abs=1e-12)
    video, _ = noisy_square_clip(noise)
    # 10x10 eroded pixels x 8 frames x 3 channels: the sample spread is within a few percent of s.
    assert shape_color_std(video, mask) == pytest.approx(noise, rel=0.04)
    # Laplacian of iid noise: variance 16 s^2 + 4 s^2, mean absolute value s sqrt(20) sqrt(2 / pi).
    assert background_laplacian(video, mask) == pytest.approx(LAPLACIAN_PER_NOISE * noise, rel=0.03)


def test_speckle_noise_through_the_scorer(scorer):
    world = ShapesWorld(48, 48, 8)
    scene = scene_for(world, "a circle moving left fast on a plain background", seed=4)
    scene = replace(
        scene,
        background_params=(0.4, 0.4, 0.4, 0.0),
        objects=(replace(scene.objects[0], rgb=(0.75, 0.8, 0.9)),),
    )
    clean = world.render(scene)
    noise = 0.02
    noisy = (clean + np.random.default_rng(0).normal(0, noise, clean.shape)).astype(np.float32)
    assert 0.0 <= noisy.min() and noisy.max() <= 1.0  # nothing clipped, so the noise is exactly iid Gaussian
    before, after = scorer.score(clean, scene.caption), scorer.score(noisy, scene.caption)
    assert before.shape_color_std == pytest.approx(0, abs=1e-6) and before.background_laplacian == pytest.approx(0)
    assert after.shape_color_std == pytest.approx(noise, rel=0.08)
    assert after.background_laplacian == pytest.approx(LAPLACIAN_PER_NOISE * noise, rel=0.05)


# ------------------------------------------------------------------------------------ aggregation and results
def test_aggregate_counts_middle_worst_frames_and_skips_undefined_measures(scorer):
    world = ShapesWorld(32, 32, 8)
    scores = []
    for i, frame in enumerate([4, 4, 0, None]):  # the middle (8 // 2) twice, the first once, one clean clip
        scene = scene_for(world, "a blue square moving left fast on a plain background", seed=i)
        video = world.render(scene)
        if frame is not None:
            video[frame] = world.render(moved(scene, 0, 3 if scene.objects[0].start[1] < 0.5 else -3, world))[frame]
        scores.append(scorer.score(video, scene.caption))
    blank = scorer.score(np.zeros((8, 32, 32, 3), dtype=np.float32), "a blue square moving left")
    assert blank.path_deviation_max is None and blank.shape_color_std is None and blank.background_laplacian == 0.0
    result = scorer.aggregate([*scores, blank])
    assert [s.worst_frame for s in scores] == [4, 4, 0, None]
    middle = result["worst_frame_is_middle"]
    assert (middle["count"], middle["n"], middle["mean"]) == (2, 3, pytest.approx(2 / 3))
    assert middle["ci_low"] < 2 / 3 < middle["ci_high"]
    assert result["worst_frame_histogram"] == [1, 0, 0, 0, 2, 0, 0, 0]
    assert result["path_deviation_loo_max"]["n"] == 4 and result["background_laplacian"]["n"] == 5
    expected = np.mean([s.path_deviation_loo_max for s in scores])
    assert result["path_deviation_loo_max"]["mean"] == pytest.approx(expected)
    assert set(DEFECT_FIELDS) <= set(result) and set(DEFECT_FIELDS) <= set(scores[0].to_dict())
    assert scores[0].to_dict()["worst_frame"] == 4
    assert aggregate_defects([blank])["worst_frame_is_middle"]["mean"] is None
    interval = mean_interval([None, 1.0, 3.0])  # sample std sqrt(2), over sqrt(2) values: half-width 1.96
    assert interval == {
        "mean": 2.0,
        "ci_low": pytest.approx(0.04, abs=1e-3),
        "ci_high": pytest.approx(3.96, abs=1e-3),
        "n": 2,
    }


# ------------------------------------------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    video, mask = noisy_square_clip(0.0)
    frames, centers = np.arange(8), np.zeros((8, 2))
    cases = [
        (lambda: path_deviation(frames.astype(float), centers, 32, 32), "`frames` must be a 1-D integer"),
        (lambda: path_deviation(frames[::-1].copy(), centers, 32, 32), "`frames` must be strictly increasing"),
        (lambda: path_deviation(frames, centers[:, :1], 32, 32), r"`centers` must have shape \(8, 2\)"),
        (lambda: path_deviation(frames, centers + np.nan, 32, 32), "`centers` contains NaN"),
        (lambda: path_deviation(frames, centers, 0, 32), "`height` must be a positive integer, but is 0"),
        (lambda: fit_path(frames[:1], centers[:1]), "at least 2 frames"),
        (lambda: backward_jumps(frames, centers, 32, 32, "sideways"), "`direction` must be one of"),
        (lambda: shape_color_std(video[0], mask), "`video` must be a \\(frames, height, width, 3\\)"),
        (lambda: shape_color_std((video * 255).astype(np.uint8), mask), "`video` must hold floats"),
        (lambda: shape_color_std(video, mask[:, :-1]), r"`mask` must be a numpy array of shape \(8, 40, 40\)"),
        (lambda: shape_color_std(video, mask.astype(float)), "`mask` must have dtype bool"),
        (lambda: background_laplacian(video, mask[0]), "`foreground` must be a numpy array of shape"),
        (lambda: background_laplacian(video, mask, margin=-1), "`margin` must be a non-negative integer"),
        (lambda: track_shape(mask[0]), r"`mask` must be a \(frames, height, width\)"),
        (lambda: measure_defects(video, [mask], [], [None]), "one mask, track and direction per shape"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
