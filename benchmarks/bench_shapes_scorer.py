"""How well `ShapesScorer` reads ground-truth clips, and how fast: the figures quoted in the README ("The moving-shapes world").

    python benchmarks/bench_shapes_scorer.py [--num-videos 500]

For 16x16 x 8 (one shape), 32x32 x 8 and 64x64 x 16 clips (one shape, and two shapes) it prints per-attribute accuracy with 95% Wilson
intervals on clean renders, after a real mp4 round trip of every clip through diffusers' `export_to_video` (read
back with imageio), after that round trip plus a mild blur, and on degradations typical of small generative models.
Then the chance level on pure noise and with shuffled captions, FSD of real vs real, blurred and shuffled clips, and
the scoring time per clip.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from diffusers_video.data.image_ops import blur_videos
from diffusers_video.data.shapes import ShapesScorer, ShapesWorld, frechet_distance

ATTRIBUTES = ("color", "shape", "direction", "speed", "all_correct")


def mp4_round_trip(videos: np.ndarray) -> np.ndarray:
    import imageio
    from diffusers.utils import export_to_video

    out = np.empty_like(videos)
    with tempfile.TemporaryDirectory() as folder:
        for index, video in enumerate(videos):
            path = export_to_video(list(video), str(Path(folder) / "clip.mp4"), fps=8)
            out[index] = np.stack(imageio.mimread(path)).astype(np.float32) / 255.0
    return out


def model_like(videos: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Blur of 1/32 of the frame, washed-out colours, per-frame brightness flicker and pixel noise (sigma 0.05)."""
    videos = blur_videos(videos, size / 32)
    videos = 0.1 + 0.8 * (0.75 * videos + 0.25 * videos.mean(-1, keepdims=True))
    videos = videos * rng.uniform(0.85, 1.0, size=videos.shape[:2] + (1, 1, 1))
    return np.clip(videos + 0.05 * rng.standard_normal(videos.shape), 0, 1).astype(np.float32)


def report(scorer: ShapesScorer, label: str, videos, captions) -> None:
    result = scorer.aggregate([scorer.score(v, c) for v, c in zip(videos, captions)])
    cells = [f"{result[k]['accuracy']:.3f} ({result[k]['ci_low']:.3f}-{result[k]['ci_high']:.3f})" for k in ATTRIBUTES]
    print(f"  {label:<38}" + "".join(f"{cell:>22}" for cell in cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-videos", type=int, default=500, help="clips per setting (default: 500)")
    args = parser.parse_args(argv)
    scorer = ShapesScorer()
    rng = np.random.default_rng(0)
    n = args.num_videos
    print(f"{'':40}" + "".join(f"{k:>22}" for k in ATTRIBUTES))
    for size, frames, two_shapes in ((16, 8, (0.0,)), (32, 8, (0.0, 1.0)), (64, 16, (0.0, 1.0))):
        for two in two_shapes:
            world = ShapesWorld(size, size, frames, two_shape_prob=two)
            print(f"{size}x{size} x {frames} frames, {'two shapes' if two else 'one shape'}, {n} clips per row")
            videos, captions = world.videos(n, seed=1000)
            report(scorer, "clean", videos, captions)
            round_trip = mp4_round_trip(videos)
            report(scorer, "mp4 round trip", round_trip, captions)
            report(scorer, f"mp4 + blur sigma {size / 64:g} px", blur_videos(round_trip, size / 64), captions)
            report(scorer, "blur + colour shift + flicker + noise", model_like(videos, size, rng), captions)

    world = ShapesWorld(32, 32, 8)
    videos, captions = world.videos(n, seed=2000)
    print(f"chance level (32x32 x 8, {n} clips): all-correct 1/168 = {1 / 168:.4f}; colour 1/7, shape 1/3, ...")
    report(scorer, "uniform noise", rng.random(videos.shape, dtype=np.float32), captions)
    report(scorer, "shuffled captions", videos, list(np.roll(captions, 1)))

    real_a, _ = world.videos(n, seed=3000)
    real_b, _ = world.videos(n, seed=4000)
    features_a = scorer.features_batch(real_a)
    print(f"FSD against {n} real clips (32x32 x 8)")
    print(f"  real vs real: {frechet_distance(features_a, scorer.features_batch(real_b)):.3f}")
    for sigma in (0.5, 1.0, 2.0):
        fsd = frechet_distance(features_a, scorer.features_batch(blur_videos(real_b, sigma)))
        print(f"  blur sigma {sigma} px: {fsd:.3f}")
    for count in (2, 4, 8):
        shuffled = real_b.copy()
        for i in range(len(shuffled)):
            positions = rng.permutation(frames := real_b.shape[1])[:count]
            shuffled[i, positions] = real_b[i, np.roll(positions, 1)]
        fsd = frechet_distance(features_a, scorer.features_batch(shuffled))
        print(f"  {count} of {frames} frames shuffled: {fsd:.3f}")

    for size, frames in ((16, 8), (32, 8), (64, 16)):
        videos, captions = ShapesWorld(size, size, frames).videos(200, seed=5000)
        start = time.perf_counter()
        for video, caption in zip(videos, captions):
            scorer.score(video, caption)
        per_clip = (time.perf_counter() - start) / len(videos)
        print(f"scoring time {size}x{size} x {frames}: {1000 * per_clip:.1f} ms per clip (one CPU thread)")


if __name__ == "__main__":
    main()
