"""Which stage's distillation costs accuracy: a cascade with one stage at a time taken from the other cascade.

    python benchmarks/bench_imagen_video_stages.py --teacher runs/imagen_video/cascade \\
        --student runs/imagen_video/cascade_8_steps --teacher-steps 64 --student-steps 8 \\
        --guidance-scale 4,4,1,1 --num-samples 32 --threads 2 --output runs/imagen_video/stages.json

The headline table (`bench_imagen_video_table.py`) compares a teacher cascade with its distilled cascade as wholes.
When the distilled cascade loses accuracy, this script finds the stage that loses it. Its rows are the distilled
cascade (`--into student`, the default) and, for every stage `i` in `--stages`, the distilled cascade with stage `i`
replaced by its teacher (sampled with the teacher's steps; every other stage as distilled). A stage whose teacher wins
back what the distilled cascade loses is the stage whose distillation lost it. `--into teacher` does the converse
(the teacher cascade with one distilled stage at a time: what each stage's distillation costs on its own), at about
the teacher's price per row.

Every row generates the same held-out captions with the same seeds (those of `evaluate_pipeline`, so the unswapped
row repeats the table's row of the same guidance), batch by batch with the rows in ABBA order, and `ShapesScorer`
reads every video. Since a deterministic student learns to land where its teacher's steps land from the same noise,
the rows are compared video by video against the unswapped one: how many videos the swap makes correct ("fixed")
and wrong ("broken", with the exact McNemar p-value of that split: `paired_changes`), the mean shape-template error,
and the PSNR of its videos against the unswapped row's (how far the swapped stage moves the output; infinite when
nothing changes). `--indices` restricts the rows to some of the
held-out captions, each with its own seed (e.g. the videos an earlier run got wrong, and as many it got right).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from bench_imagen_video_table import (
    _sync,
    add_run_arguments,
    check_run_arguments,
    heldout_captions,
    load_cascades,
    paired_changes,
    per_stage_numbers,
    row_kwargs,
)

from diffusers_video import ImagenVideoPipeline
from diffusers_video.data.metrics import psnr, wilson_interval
from diffusers_video.data.shapes_scorer import ShapesScorer

MODELS = ("student", "teacher")
NAMES = {"student": "distilled", "teacher": "teacher"}


def swapped_pipeline(into: ImagenVideoPipeline, other: ImagenVideoPipeline, index: int | None) -> ImagenVideoPipeline:
    """`into` with stage `index` taken from `other` (a new pipeline sharing the models; `into` itself unchanged)."""
    stages = [tuple(stage) for stage in into.stages]
    if index is not None:
        stages[index] = tuple(other.stages[index])
    pipe = ImagenVideoPipeline.from_stages(into.text_encoder, into.tokenizer, stages)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def parse_indices(text: str, num_samples: int) -> list[int]:
    """`"3,10,22"` -> `[3, 10, 22]`: distinct caption indices below `num_samples`."""
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"`--indices` must be caption indices, comma-separated, but is {text!r}.") from None
    if any(not 0 <= i < num_samples for i in indices) or len(set(indices)) != len(indices):
        raise ValueError(
            f"`--indices` must be distinct integers in [0, {num_samples}) (`--num-samples`), but is {text!r}."
        )
    return indices


def summarise(scores: list, reference: list | None, videos: list, reference_videos: list | None) -> dict:
    """A row's accuracies and, against the unswapped row, its paired changes and PSNR."""
    n = len(scores)
    all_ok = [bool(s.all_ok) for s in scores]
    shape_ok = [bool(s.shape_ok) for s in scores]
    low, high = wilson_interval(sum(all_ok), n)
    row = {
        "all_correct": sum(all_ok) / n,
        "all_correct_ci": [low, high],
        "shape": sum(shape_ok) / n,
        "shape_error": float(np.mean([s.objects[0].shape_error for s in scores])),
        "per_video_all_correct": all_ok,
    }
    if reference is not None:
        row.update(paired_changes([bool(s.all_ok) for s in reference], all_ok))
        values = [psnr(a, b) for a, b in zip(videos, reference_videos)]
        row["psnr_db"] = math.inf if all(math.isinf(v) for v in values) else float(np.mean(values))
    return row


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| cascade | steps per stage | all correct, % (95% CI) | shape | shape error | fixed | broken | PSNR vs first "
        "row, dB | s / video |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["all_correct_ci"]
        fixed = "-" if "fixed" not in row else str(row["fixed"])
        broken = "-" if "broken" not in row else str(row["broken"])
        value = row.get("psnr_db")
        psnr_text = "-" if value is None else ("inf" if math.isinf(value) else f"{value:.1f}")
        lines.append(
            f"| {row['name']} | {'/'.join(str(n) for n in row['steps'])} | {100 * row['all_correct']:.1f} "
            f"({100 * low:.1f}-{100 * high:.1f}) | {row['shape']:.2f} | {row['shape_error']:.3f} | {fixed} | "
            f"{broken} | {psnr_text} | {row['seconds_per_video']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="the teacher cascade (an ImagenVideoPipeline folder)")
    parser.add_argument("--student", required=True, help="the distilled cascade (an ImagenVideoPipeline folder)")
    parser.add_argument("--into", choices=MODELS, default="student", help="the cascade stages are swapped into")
    parser.add_argument("--stages", default=None, help="the stages to swap, e.g. 0,2 (default: every stage)")
    parser.add_argument("--teacher-steps", default=None, help="per stage, e.g. 64,32,32,32 (default: 64)")
    parser.add_argument("--student-steps", default="8", help="per stage, or one for all (default: 8)")
    parser.add_argument(
        "--guidance-scale", default=None, help="weight per stage, e.g. 4,4,1,1 (default: 4, and 1 for SSR)"
    )
    parser.add_argument("--guidance", choices=("constant", "oscillating"), default="constant")
    parser.add_argument("--noise-aug-level", default="0.1", help="SR conditioning level, per stage (default: 0.1)")
    parser.add_argument("--num-samples", type=int, default=32, help="held-out captions (default: 32)")
    parser.add_argument(
        "--indices", default=None, help="only these of the held-out captions, e.g. 3,10,22 (seeds stay seed + index)"
    )
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    device = check_run_arguments(args)
    cascades = load_cascades(args, device)
    specs = {model: [str(spec) for spec in pipe.stage_specs] for model, pipe in cascades.items()}
    count = len(specs["teacher"])
    try:
        stages = list(range(count)) if args.stages is None else [int(part) for part in args.stages.split(",")]
    except ValueError:
        raise ValueError(f"`--stages` must be stage indices, comma-separated, but is {args.stages!r}.") from None
    if any(not 0 <= i < count for i in stages) or len(set(stages)) != len(stages):
        raise ValueError(
            f"`--stages` must name distinct stages of the {count}-stage cascades, but is {args.stages!r}."
        )
    frames, height, width = cascades["teacher"].default_size()
    size = {"num_frames": frames, "height": height, "width": width}
    steps = {
        "teacher": per_stage_numbers(args.teacher_steps, "teacher-steps", int, count, [64] * count),
        "student": per_stage_numbers(args.student_steps, "student-steps", int, count, [8] * count),
    }
    reads_text = [stage.reads_text for stage in cascades["teacher"].stages]
    scales = per_stage_numbers(
        args.guidance_scale, "guidance-scale", float, count, [4.0 if text else 1.0 for text in reads_text]
    )
    levels = per_stage_numbers(args.noise_aug_level, "noise-aug-level", float, count, [0.1] * count)

    into = args.into
    other = "teacher" if into == "student" else "student"
    rows = []  # name, pipeline, per-stage steps, call arguments
    for index in [None, *stages]:
        row_steps = [steps[other if i == index else into][i] for i in range(count)]
        name = NAMES[into] if index is None else f"{NAMES[into]}, {NAMES[other]} stage {index} ({specs[into][index]})"
        pipe = swapped_pipeline(cascades[into], cascades[other], index)
        rows.append((name, pipe, row_steps, row_kwargs(args.guidance, row_steps, scales, 1.0, levels)))

    print(
        f"Imagen Video stage swaps: {args.num_samples} held-out captions, {frames} frames of {height}x{width}, "
        f"stages {specs[into]}, {args.guidance} guidance {scales}, {NAMES[other]} stages {stages} into the "
        f"{NAMES[into]} cascade, seed {args.seed}, {device}, {torch.get_num_threads()} threads",
        flush=True,
    )
    started = time.perf_counter()
    captions = heldout_captions(args.num_samples, args.seed, frames, height, width)
    indices = list(range(args.num_samples)) if args.indices is None else parse_indices(args.indices, args.num_samples)
    captions = [captions[i] for i in indices]
    videos = [[] for _ in rows]
    seconds = [0.0] * len(rows)
    num_batches = math.ceil(len(captions) / args.batch_size)
    for batch_index, start in enumerate(range(0, len(captions), args.batch_size)):
        prompts = captions[start : start + args.batch_size]
        seeds = [args.seed + i for i in indices[start : start + args.batch_size]]
        order = list(range(len(rows)))
        for r in order if batch_index % 2 == 0 else order[::-1]:
            _, pipe, _, kwargs = rows[r]
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            _sync(device)
            tic = time.perf_counter()
            frames_out = pipe(prompts, generator=generators, output_type="np", **size, **kwargs).frames
            _sync(device)
            seconds[r] += time.perf_counter() - tic
            videos[r].extend(np.asarray(frames_out))
        if not args.no_progress:
            print(f"  batch {batch_index + 1}/{num_batches}: {time.perf_counter() - started:.0f} s", flush=True)

    scorer = ShapesScorer()
    scores = [[scorer.score(video, caption) for video, caption in zip(row_videos, captions)] for row_videos in videos]
    table = []
    for r, (name, _, row_steps, _) in enumerate(rows):
        reference = None if r == 0 else scores[0]
        row = summarise(scores[r], reference, videos[r], None if r == 0 else videos[0])
        row.update(
            name=name, swapped_stage=None if r == 0 else stages[r - 1], steps=row_steps,
            seconds_per_video=seconds[r] / len(captions),
        )  # fmt: skip
        table.append(row)

    print()
    print(markdown_table(table))
    print(f"total time: {time.perf_counter() - started:.1f} s")
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        settings = {
            "teacher_dir": str(args.teacher), "student_dir": str(args.student), "into": into, "stages": stages,
            "specs": specs[into], **size, "num_samples": args.num_samples, "batch_size": args.batch_size,
            "seed": args.seed, "threads": torch.get_num_threads(), "device": str(device), "guidance": args.guidance,
            "guidance_scale": scales, "noise_aug_level": levels, "indices": indices, "captions": captions,
        }  # fmt: skip
        document = {"settings": settings, "rows": table, "markdown": markdown_table(table)}
        output.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
