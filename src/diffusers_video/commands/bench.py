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

The videos are made by `diffusers-video generate --prompts` (the same code path): the held-out captions go into
`prompts.jsonl` in `--videos-dir`, one per line with its seed, and every video is written there as an exact float
array (`<index>.npy`) with `index.jsonl`. A rerun with the same settings skips the videos already there (an
interrupted benchmark resumes), and under `accelerate launch` the captions are split between the processes; the
scores are computed once all videos exist.
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path

import numpy as np
import torch

from ..data.quality import (
    first_frame_image,
    format_quality_table,
    heldout_scenes,
    load_pipeline,
    score_videos,
    video_sizes,
)
from .generate import generate_batch, pipeline_kwargs

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
    quality.add_argument(
        "--videos-dir", default=None, help="where the videos are written (default: OUTPUT's name + _videos)"
    )
    quality.add_argument("--guidance-scale", type=float, default=None, help="default: the pipeline's own")
    quality.add_argument("--num-frames", type=int, default=None, help="default: inferred from the pipeline")
    quality.add_argument("--height", type=int, default=None, help="default: inferred from the pipeline")
    quality.add_argument("--width", type=int, default=None, help="default: inferred from the pipeline")
    quality.add_argument("--num-real", type=int, default=None, help="real clips for FSD (default: max(N, 64))")
    quality.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    quality.add_argument(
        "--dtype", choices=sorted(_DTYPES), default="float32", help="weights dtype (default: float32)"
    )
    quality.add_argument(
        "--pipeline-kwargs",
        default=None,
        metavar="JSON",
        help="other arguments of the pipeline's call, a JSON object (e.g. '{\"interpolation_factors\": [2, 2]}')",
    )
    quality.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    quality.set_defaults(func=run_quality)


def run_quality(args: argparse.Namespace) -> int:
    """Run `bench quality` from parsed arguments; returns the exit code."""
    for name in ("num_samples", "steps"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be at least 1, but is {value}.")
    output = Path(args.output)
    videos_dir = Path(args.videos_dir) if args.videos_dir else output.with_name(f"{output.stem}_videos")
    pipeline = load_pipeline(args.pipeline_dir, torch_dtype=_DTYPES[args.dtype])
    sizes, call_settings = video_sizes(pipeline, args.height, args.width, args.num_frames)
    world, scenes = heldout_scenes(sizes, args.num_samples, args.seed)
    parameters = inspect.signature(pipeline.__call__).parameters
    extra = pipeline_kwargs(args.pipeline_kwargs, parameters, type(pipeline).__name__)
    settings = {"seed": args.seed, "steps": args.steps, "guidance_scale": args.guidance_scale, **call_settings}
    if extra:
        settings["pipeline_kwargs"] = extra
    made_by = {"pipeline_dir": str(Path(args.pipeline_dir).resolve()), "dtype": args.dtype}
    write_prompts(videos_dir, world, scenes, settings, made_by, image="image" in parameters)
    batch = generate_batch(
        argparse.Namespace(
            prompts=str(videos_dir / "prompts.jsonl"), output_dir=str(videos_dir), format="npy", fps=8,
            seed=args.seed, steps=args.steps, guidance_scale=args.guidance_scale, negative_prompt=None, image=None,
            num_frames=None, height=None, width=None, device=args.device, no_progress=args.no_progress,
            pipeline_kwargs=extra or None,
        ),
        pipeline=pipeline,
    )  # fmt: skip
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under `accelerate launch` the first process scores every video
        return 0
    videos = [np.load(videos_dir / job.file_name("npy"), allow_pickle=False) for job in batch.jobs]
    result = score_videos(
        videos,
        scenes,
        world,
        {
            "pipeline": type(pipeline).__name__,
            "num_samples": args.num_samples,
            "num_inference_steps": args.steps,
            "seed": args.seed,
            "guidance_scale": args.guidance_scale,
            **({"pipeline_kwargs": extra} if extra else {}),
        },
        batch.seconds,
        num_real=args.num_real,
        seed=args.seed,
        timed_videos=batch.generated,  # those made by this run (and this process), not resumed
    )
    result["pipeline_dir"] = str(args.pipeline_dir)
    result["device"] = str(pipeline.device)
    result["videos_dir"] = str(videos_dir)
    print(format_quality_table(result))
    if output.parent != Path(""):
        output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


def write_prompts(videos_dir: Path, world, scenes, settings: dict, made_by: dict, image: bool) -> None:
    """`prompts.jsonl` in `videos_dir`: one line per held-out scene (caption, seed `seed + i`, size), and for an
    image-to-video pipeline the first frame of the scene's real clip as `images/<index>.png`. `settings.json` records
    `settings` and `made_by` (the pipeline and dtype): videos already in the folder that were made otherwise are
    refused rather than mixed. (More samples with the same settings reuse the first ones: video `i` depends only on
    its caption and seed.)"""
    lines = []
    for i, scene in enumerate(scenes):
        line = {"prompt": scene.caption, "seed": settings["seed"] + i}
        line.update({key: settings[key] for key in ("num_frames", "height", "width") if key in settings})
        if image:
            line["image"] = f"images/{i:05d}.png"
        lines.append(json.dumps(line))
    text = "".join(line + "\n" for line in lines)
    recorded = videos_dir / "settings.json"
    wanted = json.dumps({**settings, **made_by}, sort_keys=True)
    if recorded.is_file() and recorded.read_text() != wanted:
        raise ValueError(
            f"`--videos-dir` '{videos_dir}' holds videos made with other settings ({recorded.read_text()}, now "
            f"{wanted}): give another `--videos-dir` or empty it."
        )
    videos_dir.mkdir(parents=True, exist_ok=True)
    if image:
        (videos_dir / "images").mkdir(exist_ok=True)
        for i, scene in enumerate(scenes):
            first_frame_image(world, scene).save(videos_dir / "images" / f"{i:05d}.png")
    (videos_dir / "prompts.jsonl").write_text(text)
    recorded.write_text(wanted)
