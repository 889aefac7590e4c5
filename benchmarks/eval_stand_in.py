"""Colour and shape accuracy of the Stable Diffusion 2.1 stand-in (`pipelines/shapes_sd/`), sampled with diffusers' own
`StableDiffusionPipeline`.

    python benchmarks/eval_stand_in.py [FOLDER] [--num-samples 64] [--split all] [--guidance-scale 4] [--steps 25]

Samples one 32x32 frame per still-image caption of the moving-shapes world (DDIM, trailing timesteps,
`clip_sample=False`), scores colour and shape with `ShapesScorer` (each frame repeated as a 2-frame still clip) and
prints the accuracies with 95% Wilson intervals. The target of issue 5 is >= 0.90 for both on >= 64 samples. With
`--fp32` the (fp16) weights are upcast to float32 for sampling on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from diffusers_video.training.stand_in import evaluate_pipeline, format_result

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT / "pipelines" / "shapes_sd"))
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--split", default="all", choices=("all", "train", "heldout"))
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not (folder / "model_index.json").is_file():
        parser.error(f"'{folder}' is not a pipeline folder (no model_index.json).")
    result = evaluate_pipeline(
        folder, args.num_samples, args.split, args.guidance_scale, args.steps, seed=args.seed, dtype=torch.float32
    )
    print(f"{folder}  split={args.split} guidance={args.guidance_scale} steps={args.steps}  ({result['seconds']} s)")
    print(format_result(result))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
