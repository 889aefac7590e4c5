"""`diffusers-video bench quality`: generation quality of a saved pipeline in the moving-shapes world.

Loads the pipeline folder (the class named in its model_index.json, from diffusers_video or diffusers), generates
videos from held-out captions (attribute combinations never shown in training), scores what they show, and prints
per-attribute accuracy, all-correct accuracy (95% Wilson intervals), temporal consistency, background flicker, FSD
against real clips and seconds per video. Beside the verdicts it prints what a viewer sees: how far the shape leaves
its straight path (worst frame, mean, and leave-one-out: the frame's distance from the line through the other
frames), the largest step back against the motion and the steps back by more than a pixel, the colour spread
inside the shape, the background grain (mean absolute Laplacian), and how often the worst frame is the middle one;
each next to its ground-truth floor (the world's own renders of the same captions). The same numbers, plus
per-video results (each video's worst frame included), go to a JSON file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..data.quality import evaluate_pipeline, format_quality_table, load_pipeline

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmark a pipeline", description="Benchmarks.")
    benches = parser.add_subparsers(dest="bench", metavar="BENCH")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    quality = benches.add_parser(
        "quality",
        help="generation quality in the moving-shapes world",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    quality.add_argument("pipeline_dir", metavar="PIPELINE_DIR", help="a pipeline folder written by save_pretrained")
    quality.add_argument("--num-samples", type=int, default=64, help="videos to generate (default: 64)")
    quality.add_argument("--steps", type=int, default=25, help="denoising steps (default: 25)")
    quality.add_argument("--seed", type=int, default=0, help="picks captions and generator seeds (default: 0)")
    quality.add_argument(
        "--output", default="bench_quality.json", help="JSON file to write (default: bench_quality.json)"
    )
    quality.add_argument("--batch-size", type=int, default=1, help="videos per pipeline call (default: 1)")
    quality.add_argument("--guidance-scale", type=float, default=None, help="default: the pipeline's own")
    quality.add_argument("--num-frames", type=int, default=None, help="default: inferred from the pipeline")
    quality.add_argument("--height", type=int, default=None, help="default: inferred from the pipeline")
    quality.add_argument("--width", type=int, default=None, help="default: inferred from the pipeline")
    quality.add_argument("--num-real", type=int, default=None, help="real clips for FSD (default: max(N, 64))")
    quality.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    quality.add_argument(
        "--dtype", choices=sorted(_DTYPES), default="float32", help="weights dtype (default: float32)"
    )
    quality.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    quality.set_defaults(func=run_quality)


def run_quality(args: argparse.Namespace) -> int:
    """Run `bench quality` from parsed arguments; returns the exit code."""
    for name in ("num_samples", "steps", "batch_size"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be at least 1, but is {value}.")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = load_pipeline(args.pipeline_dir, device=device, torch_dtype=_DTYPES[args.dtype])
    result = evaluate_pipeline(
        pipeline,
        num_samples=args.num_samples,
        num_inference_steps=args.steps,
        seed=args.seed,
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        batch_size=args.batch_size,
        guidance_scale=args.guidance_scale,
        num_real=args.num_real,
        progress=not args.no_progress,
    )
    result["pipeline_dir"] = str(args.pipeline_dir)
    result["device"] = str(device)
    print(format_quality_table(result))
    output = Path(args.output)
    if output.parent != Path(""):
        output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return 0
