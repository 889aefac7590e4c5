"""Render a few ground-truth clips of the moving-shapes world into one GIF for the README.

    python benchmarks/make_shapes_gif.py [--output docs/shapes_examples.gif] [--seed 0]

Prints each clip's caption (left to right, top to bottom) and what `ShapesScorer` reads from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from diffusers_video.data.shapes import ShapesScorer, ShapesWorld


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="docs/shapes_examples.gif", help="GIF to write")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default: 0)")
    parser.add_argument("--columns", type=int, default=4, help="clips per row (default: 4)")
    parser.add_argument("--rows", type=int, default=2, help="rows of clips (default: 2)")
    parser.add_argument("--scale", type=int, default=2, help="pixel upscaling for display (default: 2)")
    args = parser.parse_args(argv)

    # 64x64 x 16 frames, as in the demos; the last clip of the grid has two shapes.
    count = args.columns * args.rows
    world = ShapesWorld(64, 64, 16)
    samples = [world.sample((args.seed, i)) for i in range(count - 1)]
    samples.append(ShapesWorld(64, 64, 16, two_shape_prob=1.0).sample((args.seed, count)))
    scorer = ShapesScorer()
    for index, sample in enumerate(samples):
        score = scorer.score(sample.video, sample.caption)
        seen = " and ".join(f"{o.color} {o.shape} {o.direction} {o.speed}" for o in score.objects)
        print(f"{index + 1}. {sample.caption!r:<90} scorer reads: {seen} (all correct: {score.all_ok})")

    videos = np.stack([s.video for s in samples])  # (N, T, H, W, 3)
    videos = videos.repeat(args.scale, axis=2).repeat(args.scale, axis=3)  # nearest-neighbour upscaling
    gap = 2  # a dark line between clips
    videos = np.pad(videos, ((0, 0), (0, 0), (0, gap), (0, gap), (0, 0)), constant_values=0.35)
    n, frames, height, width, _ = videos.shape
    grid = videos.reshape(args.rows, args.columns, frames, height, width, 3).transpose(2, 0, 3, 1, 4, 5)
    grid = grid.reshape(frames, args.rows * height, args.columns * width, 3)[:, :-gap, :-gap]
    images = [Image.fromarray((frame * 255).round().astype(np.uint8)) for frame in grid]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(output, save_all=True, append_images=images[1:], duration=125, loop=0, optimize=True)
    print(f"wrote {output} ({output.stat().st_size / 1024:.0f} KB, {frames} frames)")


if __name__ == "__main__":
    main()
