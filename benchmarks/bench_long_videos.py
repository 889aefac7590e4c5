"""Long VideoFusion videos: does the motion go on? Extension (window after window) against blended windows.

    python benchmarks/bench_long_videos.py pipelines/videofusion/demo --frames 16 32 128 --num-samples 8 \\
        --modes extend blend --output runs/long_videos.json

A model trained on clips of `W` frames makes a longer video in windows of `W` frames. For every length and window
mode the script generates the same held-out captions with the same seeds and reads every video with `ShapesScorer`:
the direction verdict (the speed label is defined per clip, so it is not read for other lengths), the largest step
against the direction of motion (`backward_jump_max`, in fractions of the frame) and the number of steps back by more
than a pixel (`backward_steps`), and the path deviation. A video that moves on keeps its direction and has no step
back; blending windows side by side with VideoFusion's one base noise makes every window start from the same key
frame image, so the shape jumps back at each window.

Once a shape has crossed the frame it cannot go on moving inside it: in the world, a clip of the trained length keeps
its shapes inside, so at 128 frames the measures also count what the model does at the border (`visible_fraction`:
the share of frames in which the scorer finds the shape).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _measure import write_result  # benchmarks/ is on sys.path when this runs as a script

from diffusers_video import VideoFusionPipeline
from diffusers_video.data.metrics import wilson_interval
from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.data.shapes_scorer import ShapesScorer


def captions(num_samples: int, seed: int, size: int) -> list[str]:
    """Held-out captions with one shape (the direction of a single shape is what the measures read)."""
    world = ShapesWorld(height=size, width=size, num_frames=8, split="heldout")  # one shape (two_shape_prob 0)
    return [world.scene((seed, 0, i)).caption for i in range(num_samples)]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    pipe = VideoFusionPipeline.from_pretrained(args.pipeline_dir, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    trained, height, width = pipe.default_size()
    trained = args.window_size or trained
    prompts = captions(args.num_samples, args.seed, height)
    scorer = ShapesScorer()
    rows = []
    for frames in args.frames:
        for mode in args.modes if frames > trained else ["extend"]:
            scores, start = [], time.perf_counter()
            for index, prompt in enumerate(prompts):
                video = pipe(
                    prompt, num_frames=frames, num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                    generator=torch.Generator().manual_seed(index), window_mode=mode, window_size=args.window_size,
                ).frames[0]  # fmt: skip
                scores.append(scorer.score(video, prompt))
            seconds = (time.perf_counter() - start) / len(prompts)
            direction = [bool(s.direction_ok) for s in scores]
            jumps = [s.backward_jump_max for s in scores if s.backward_jump_max is not None]
            steps = [s.backward_steps for s in scores if s.backward_steps is not None]
            low, high = wilson_interval(sum(direction), len(direction))
            row = {
                "num_frames": frames,
                "window_mode": mode if frames > trained else "one window",
                "direction": sum(direction) / len(direction),
                "direction_ci": [low, high],
                "backward_jump_max_mean": float(np.mean(jumps)) if jumps else None,
                "backward_jump_max_worst": float(np.max(jumps)) if jumps else None,
                "backward_steps_mean": float(np.mean(steps)) if steps else None,
                "videos_with_a_step_back": sum(step > 0 for step in steps),
                "path_deviation_loo_max_mean": float(
                    np.mean([s.path_deviation_loo_max for s in scores if s.path_deviation_loo_max is not None])
                ),
                "seconds_per_video": seconds,
                "n": len(scores),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"pipeline": str(args.pipeline_dir), "trained_frames": trained, "steps": args.steps, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline_dir", type=Path)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 128])
    parser.add_argument("--modes", nargs="+", default=["extend", "blend"], choices=["extend", "blend"])
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window-size", type=int, default=None, help="default: the trained clip length")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    if args.output is not None:
        write_result(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
