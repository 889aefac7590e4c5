"""The moving-shapes world: generator, captions, datasets, and the scorer's accuracy, chance level and FSD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusers_video.data.image_ops import blur_videos
from diffusers_video.data.shapes import (
    COLORS,
    DIRECTIONS,
    SHAPES,
    SPEEDS,
    ShapeSpec,
    ShapesScorer,
    ShapesWorld,
    frechet_distance,
    parse_prompt,
    split_combinations,
    wilson_interval,
)
from diffusers_video.data.shapes_datasets import ShapesDataset, ShapesIterableDataset

ATTRIBUTES = ("color", "shape", "direction", "speed")
# Chance of matching every attribute of a uniformly drawn caption, for any guess made without reading the caption:
# sum over combinations c of P(guess = c) / 168 = 1 / 168.
CHANCE_ALL = 1 / (len(COLORS) * len(SHAPES) * len(DIRECTIONS) * len(SPEEDS))
CHANCE = {"color": 1 / len(COLORS), "shape": 1 / len(SHAPES), "direction": 1 / len(DIRECTIONS), "speed": 1 / 2}


@pytest.fixture(scope="module")
def scorer():
    return ShapesScorer()


def mp4_round_trip(videos: np.ndarray, tmp_path, tiles: int = 4) -> np.ndarray:
    """Write `(N, T, H, W, 3)` clips with diffusers' `export_to_video` and read them back with imageio.

    To keep the test fast, clips are tiled `tiles x tiles` into one mosaic video per call; 32 and 64 are multiples of
    the codec's 16-pixel macroblocks, so every clip is encoded on its own blocks (4:2:0 chroma, quality 5).
    """
    imageio = pytest.importorskip("imageio")
    pytest.importorskip("imageio_ffmpeg")
    from diffusers.utils import export_to_video

    n, t, h, w, _ = videos.shape
    per = tiles * tiles
    out = np.empty_like(videos)
    for start in range(0, n, per):
        chunk = np.zeros((per, t, h, w, 3), np.float32)
        chunk[: len(videos[start : start + per])] = videos[start : start + per]
        mosaic = (
            chunk.reshape(tiles, tiles, t, h, w, 3).transpose(2, 0, 3, 1, 4, 5).reshape(t, tiles * h, tiles * w, 3)
        )
        path = export_to_video(list(mosaic), str(tmp_path / f"clips_{start}.mp4"), fps=8)
        back = np.stack(imageio.mimread(path)).astype(np.float32) / 255.0
        back = back.reshape(t, tiles, h, tiles, w, 3).transpose(1, 3, 0, 2, 4, 5).reshape(per, t, h, w, 3)
        out[start : start + per] = back[: len(videos[start : start + per])]
    return out


def accuracies(scorer, videos, captions) -> dict[str, float]:
    result = scorer.aggregate([scorer.score(v, c) for v, c in zip(videos, captions)])
    return {key: result[key]["accuracy"] for key in (*ATTRIBUTES, "all_correct")}


# ------------------------------------------------------------------------------------------------------ generator
def test_same_seed_gives_the_same_clip_and_different_seeds_differ():
    world = ShapesWorld(32, 32, 8, two_shape_prob=0.5)
    a, b = world.sample(7), world.sample(7)
    assert np.array_equal(a.video, b.video) and a.caption == b.caption and a.scene == b.scene
    others = [world.sample(seed) for seed in range(8, 14)]
    assert all(not np.array_equal(a.video, o.video) for o in others)
    assert len({o.caption for o in others}) > 1
    videos, captions = world.videos(3, seed=1)
    again, _ = ShapesWorld(32, 32, 8, two_shape_prob=0.5).videos(3, seed=1)
    assert np.array_equal(videos, again) and not np.array_equal(videos, world.videos(3, seed=2)[0])


@pytest.mark.parametrize("height, width, frames", [(16, 16, 2), (32, 48, 5), (64, 64, 16)])
def test_any_resolution_and_frame_count(height, width, frames):
    sample = ShapesWorld(height, width, frames, two_shape_prob=0.5).sample(3)
    assert sample.video.shape == (frames, height, width, 3) and sample.video.dtype == np.float32
    assert sample.video.min() >= 0.0 and sample.video.max() <= 1.0
    assert sample.image.shape == (height, width, 3) and np.array_equal(sample.first_frame, sample.video[0])
    assert not any(word in sample.still_caption.split() for word in ("moving", "left", "right", "up", "down"))


def test_a_scene_renders_at_any_resolution_and_frame_count_with_the_same_content(scorer):
    world = ShapesWorld(16, 16, 8)
    for seed in range(6):
        scene = world.scene(seed)
        for size, frames in ((16, 8), (64, 16), (32, 24)):
            video = world.render(scene, height=size, width=size, num_frames=frames)
            assert scorer.score(video, scene.caption).all_ok, (seed, size, frames, scene.caption)


def test_captions_parse_back_to_the_scene():
    world = ShapesWorld(32, 32, 8, two_shape_prob=0.5)
    templates = set()
    for seed in range(300):
        scene = world.scene(seed)
        parsed = parse_prompt(scene.caption)
        assert parsed.objects == scene.specs, scene.caption
        assert parsed.background in (None, scene.background)
        still = parse_prompt(scene.still_caption).objects
        assert [(s.color, s.shape) for s in still] == [(s.color, s.shape) for s in scene.specs]
        templates.add(
            " ".join(w for w in scene.caption.split() if w in ("a", "the", "going", "slides", "in", "moving"))
        )
    assert len(templates) >= 5  # several templates, not one string per combination
    assert parse_prompt("A red circle, moving right.").objects == (ShapeSpec("red", "circle", "right"),)


def test_heldout_split_is_disjoint_and_covers_every_word():
    train, heldout = set(split_combinations("train")), set(split_combinations("heldout"))
    assert len(heldout) == 24 and len(train) == 144 and not train & heldout
    for index, vocabulary in enumerate((COLORS, SHAPES, DIRECTIONS, SPEEDS)):
        assert {c[index] for c in heldout} == set(vocabulary) == {c[index] for c in train}
    for split, allowed in (("train", train), ("heldout", heldout)):
        world = ShapesWorld(split=split, two_shape_prob=0.3)
        seen = {spec.combination for seed in range(200) for spec in world.scene(seed).specs[:1]}
        assert seen <= allowed
    train_world = ShapesWorld(split="train", two_shape_prob=1.0)
    assert all(spec.combination in train for seed in range(100) for spec in train_world.scene(seed).specs)


# -------------------------------------------------------------------------------------------------------- datasets
def test_dataset_items_and_the_iterable_yields_the_same_items():
    world = ShapesWorld(32, 32, 8, split="train")
    dataset = ShapesDataset(num_samples=5, world=world, seed=3)
    item = dataset[1]
    assert item["video"].shape == (3, 8, 32, 32) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1 and item["video"].min() < -0.5
    assert isinstance(item["caption"], str)
    stream = iter(ShapesIterableDataset(world=world, seed=3, num_samples=5))
    for index in range(5):
        streamed = next(stream)
        assert (
            torch.equal(streamed["video"], dataset[index]["video"])
            and streamed["caption"] == dataset[index]["caption"]
        )
    image = ShapesDataset(num_samples=2, world=world, mode="image")[0]
    assert image["image"].shape == (3, 32, 32) and "moving" not in image["caption"]
    i2v = ShapesDataset(num_samples=2, world=world, mode="image_to_video")[0]
    assert torch.equal(i2v["first_frame"], i2v["video"][:, 0])
    # image_frame "first": the first frame with the full caption (a reference image for VideoGen)
    first = ShapesDataset(num_samples=2, world=world, mode="image", image_frame="first")[0]
    assert torch.equal(first["image"], i2v["video"][:, 0]) and first["caption"] == i2v["caption"]
    with pytest.raises(ValueError, match="`image_frame` must be one of .* but is 'last'"):
        ShapesDataset(num_samples=2, world=world, mode="image", image_frame="last")
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["video"].shape == (4, 3, 8, 32, 32) and len(batch["caption"]) == 4


def test_iterable_shards_across_workers(monkeypatch):
    from types import SimpleNamespace

    world = ShapesWorld(16, 16, 2)
    captions = []
    for worker in range(2):
        info = SimpleNamespace(id=worker, num_workers=2)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        captions += [item["caption"] for item in ShapesIterableDataset(world=world, num_samples=6)]
    expected = [ShapesDataset(num_samples=6, world=world)[i]["caption"] for i in (0, 2, 4, 1, 3, 5)]
    assert captions == expected


def test_cache_latents_with_a_tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        scaling_factor=0.5,
    ).eval()
    dataset = ShapesDataset(num_samples=3, world=ShapesWorld(16, 16, 4))
    latents = dataset.cache_latents(vae, batch_size=5)
    assert latents.shape == (3, 4, 4, 8, 8)
    video = dataset[2]["video"]  # (3, T, H, W)
    with torch.no_grad():
        expected = vae.encode(video.permute(1, 0, 2, 3)).latent_dist.mode() * 0.5  # (T, 4, 8, 8)
    torch.testing.assert_close(dataset[2]["latents"], expected.permute(1, 0, 2, 3), atol=1e-5, rtol=1e-4)
    images = ShapesDataset(num_samples=2, world=ShapesWorld(16, 16, 4), mode="image")
    assert images.cache_latents(vae).shape == (2, 4, 8, 8) and images[1]["latents"].shape == (4, 8, 8)
    with pytest.raises(TypeError, match="scaling_factor"):
        dataset.cache_latents(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------- scorer accuracy
@pytest.mark.parametrize(
    "height, frames, num_videos, two_shape_prob",
    [(32, 8, 300, 0.0), (64, 16, 100, 0.0), (32, 8, 100, 1.0), (64, 16, 40, 1.0)],
)
def test_every_attribute_is_recovered_on_ground_truth(scorer, height, frames, num_videos, two_shape_prob):
    world = ShapesWorld(height, height, frames, two_shape_prob=two_shape_prob)
    videos, captions = world.videos(num_videos, seed=101)
    result = accuracies(scorer, videos, captions)
    assert all(value >= 0.99 for value in result.values()), result


@pytest.mark.parametrize("height, frames, num_videos", [(32, 8, 160), (64, 16, 64)])
def test_accuracy_survives_an_mp4_round_trip_and_a_mild_blur(scorer, tmp_path, height, frames, num_videos):
    world = ShapesWorld(height, height, frames)
    videos, captions = world.videos(num_videos, seed=202)
    degraded = blur_videos(mp4_round_trip(videos, tmp_path), sigma=height / 64)  # 0.5 px at 32x32, 1 px at 64x64
    assert np.abs(degraded - videos).mean() > 0.005  # the round trip and blur really changed the clips
    result = accuracies(scorer, degraded, captions)
    assert all(value >= 0.97 for value in result.values()), result


def test_accuracy_is_at_chance_on_pure_noise_and_with_shuffled_captions(scorer):
    n = 300
    world = ShapesWorld(32, 32, 8)
    videos, captions = world.videos(n, seed=303)
    # Upper bound on the all-correct count at chance level: mean + 4 standard deviations (+1 for discreteness).
    bound = n * CHANCE_ALL + 4 * math.sqrt(n * CHANCE_ALL * (1 - CHANCE_ALL)) + 1  # 8.1 correct of 300 (2.7%)
    noise = np.random.default_rng(0).random(videos.shape, dtype=np.float32)
    shuffled = np.roll(np.arange(n), 1)  # every video gets another video's caption
    for name, pairs in (
        ("noise", zip(noise, captions)),
        ("shuffled", ((videos[i], captions[j]) for i, j in enumerate(shuffled))),
    ):
        result = scorer.aggregate([scorer.score(v, c) for v, c in pairs])
        assert result["all_correct"]["correct"] <= bound, (name, result["all_correct"])
        for attribute in ATTRIBUTES:
            p = CHANCE[attribute]
            assert result[attribute]["accuracy"] <= p + 4 * math.sqrt(p * (1 - p) / n), (name, attribute, result)
            if name == "shuffled":  # the scorer reads the video right, so it matches a random caption by chance
                assert result[attribute]["accuracy"] >= p - 4 * math.sqrt(p * (1 - p) / n), (name, attribute, result)


def test_input_layouts_and_dtypes_give_the_same_score(scorer):
    sample = ShapesWorld(32, 32, 8).sample(5)
    reference = scorer.score(sample.video, sample.caption)
    tensor = torch.from_numpy(sample.video).permute(0, 3, 1, 2)  # (T, 3, H, W)
    assert scorer.score(tensor, sample.caption) == reference
    as_uint8 = (sample.video * 255).round().astype(np.uint8)
    assert scorer.score(as_uint8, sample.caption).all_ok
    assert scorer.score(list(sample.video), sample.caption) == reference


def test_prompts_without_an_attribute_do_not_score_it(scorer):
    sample = ShapesWorld(32, 32, 8).sample(9)
    spec = sample.scene.specs[0]
    score = scorer.score(sample.video, f"a {spec.color} {spec.shape}")
    assert score.direction_ok is None and score.speed_ok is None and score.all_ok
    aggregate = scorer.aggregate([score])
    assert aggregate["direction"]["n"] == 0 and aggregate["color"]["n"] == 1


# --------------------------------------------------------------------------------- consistency, flicker and FSD
def test_temporal_consistency_and_background_flicker(scorer):
    world = ShapesWorld(32, 32, 8, textured_prob=1.0)
    videos, captions = world.videos(8, seed=404)
    clean = [scorer.score(v, c) for v, c in zip(videos, captions)]
    assert min(s.temporal_consistency for s in clean) > 0.98 and max(s.background_flicker for s in clean) < 1e-6
    rng = np.random.default_rng(0)
    vanishing = videos.copy()
    vanishing[:, 1::2] = vanishing[:, :1].mean(axis=(2, 3), keepdims=True)  # every other frame: shape gone
    jittery = np.clip(videos + rng.uniform(-0.08, 0.08, size=videos.shape[:2] + (1, 1, 1)), 0, 1).astype(np.float32)
    for degraded, field in ((vanishing, "temporal_consistency"), (jittery, "background_flicker")):
        scores = [scorer.score(v, c) for v, c in zip(degraded, captions)]
        before = np.mean([getattr(s, field) for s in clean])
        after = np.mean([getattr(s, field) for s in scores])
        assert (after < before - 0.1) if field == "temporal_consistency" else (after > before + 0.02), field


def test_frechet_distance_matches_the_closed_form():
    # Columns of a Hadamard matrix are orthogonal and zero-mean: the sample covariances are exactly diagonal.
    hadamard = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=np.float64)
    basis = np.tile(hadamard[:, 1:], (5, 1))  # (20, 3)
    scale_a, scale_b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = basis * scale_a + mean_a, basis * scale_b + mean_b
    std = math.sqrt(20 / 19)  # sample standard deviation of a +-1 column
    expected = ((mean_a - mean_b) ** 2).sum() + ((scale_a * std - scale_b * std) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="num_samples >= 2"):
        frechet_distance(a[:1], b)


def test_psnr_is_the_log_of_the_inverse_mean_squared_error_and_infinite_for_equal_inputs():
    from diffusers_video.data.metrics import psnr

    a = np.random.RandomState(0).rand(2, 4, 4, 3)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)  # mse 0.01
    assert psnr(np.zeros(8, np.float32), np.full(8, 0.5, np.float16)) == pytest.approx(10 * math.log10(4), abs=1e-9)


def test_fsd_is_near_zero_for_real_clips_and_grows_with_blur_and_frame_shuffling(scorer):
    world = ShapesWorld(32, 32, 8)
    real_a, _ = world.videos(100, seed=505)
    real_b, _ = world.videos(100, seed=606)
    features_a = scorer.features_batch(real_a)
    baseline = frechet_distance(features_a, scorer.features_batch(real_b))
    blurred = [frechet_distance(features_a, scorer.features_batch(blur_videos(real_b, s))) for s in (0.5, 1.0, 2.0)]
    rng = np.random.default_rng(0)
    order = np.stack([rng.permutation(8) for _ in range(len(real_b))])  # one random frame order per clip

    def shuffle(count: int) -> np.ndarray:
        """Cycle the first `count` frames of each clip's random order: exactly `count` frames move."""
        out = real_b.copy()
        for i, positions in enumerate(order[:, :count]):
            out[i, positions] = real_b[i, np.roll(positions, 1)]
        return out

    shuffled = [frechet_distance(features_a, scorer.features_batch(shuffle(k))) for k in (2, 4, 8)]
    # Measured: real vs real 0.06 (the sampling noise of 100 clips); blur 0.5/1/2 px 0.15/0.72/2.35; 2/4/8 frames
    # shuffled 0.34/0.58/0.74.
    assert baseline < 0.1 and baseline < blurred[0] / 2 and baseline < shuffled[0] / 4, (baseline, blurred, shuffled)
    assert blurred == sorted(blurred) and shuffled == sorted(shuffled), (blurred, shuffled)


# ----------------------------------------------------------------------------------------------------- bad input
def test_interval_and_aggregate_fields(scorer):
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes=11"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="empty"):
        scorer.aggregate([])


@pytest.mark.parametrize(
    "prompt, word",
    [
        ("a purple circle moving left", "purple"),
        ("a red hexagon", "hexagon"),
        ("a red circle moving sideways", "sideways"),
    ],
)
def test_unknown_words_are_named(scorer, prompt, word):
    video = ShapesWorld(16, 16, 2).sample(0).video
    with pytest.raises(ValueError, match=f"Unknown word '{word}'"):
        scorer.score(video, prompt)


def test_bad_videos_and_prompts_raise_clear_errors(scorer):
    video = ShapesWorld(16, 16, 4).sample(0).video
    caption = "a red circle moving left"
    cases = [
        (video[None], r"rank 4.*\(1, 4, 16, 16, 3\)"),  # a batch
        (video[0], "rank 3"),
        (video[..., :2], "3 colour channels"),
        (video * 2 - 1, r"\[0, 1\], but range from -"),
        (video + 1.0, "range from 1.0"),
        (video[:1], "1 frame"),
        (np.full_like(video, np.nan), "NaN"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            scorer.score(bad, caption)
    with pytest.raises(ValueError, match="two colors"):
        parse_prompt("a red blue circle")
    with pytest.raises(ValueError, match="names no colour"):
        parse_prompt("a the moving")
    with pytest.raises(TypeError, match="prompt"):
        parse_prompt(3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_frames": 1}, "`num_frames` must be an integer >= 2 but is 1"),
        ({"height": 4}, "`height` must be an integer >= 8 but is 4"),
        ({"two_shape_prob": 1.5}, "`two_shape_prob` must be a probability in \\[0, 1\\], but is 1.5"),
        ({"split": "test"}, "'test'"),
        ({"slow_travel": 0.5, "fast_travel": 0.3}, "0.5 and 0.3"),
    ],
)
def test_bad_world_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapesWorld(**kwargs)


def test_shape_spec_rejects_values_outside_the_vocabulary():
    with pytest.raises(ValueError, match="'octagon'"):
        ShapeSpec(shape="octagon")
    with pytest.raises(ValueError, match="`mode`"):
        ShapesDataset(mode="audio")
