"""Progressive distillation: quality and speed of a teacher at 64 steps against its 8-step student, in one run.

    python benchmarks/bench_distillation.py --teacher runs/video/final --student runs/distilled [--num-samples 64]

Both models generate videos from the same held-out captions (attribute combinations never shown in training) with the
same seeds and guidance weight: the teacher with --teacher-steps deterministic DDIM steps and classifier-free guidance
by two UNet passes, the student with its own step count and the weight as its "guidance_scale" condition (one pass).
`ShapesScorer` reads every video (through `diffusers_video.data.quality.evaluate_pipeline`), and the script prints the
accuracies with 95% Wilson intervals, seconds per video and the speed-up. Issue 5's target: all-correct accuracy
within 3 points of the teacher's, read as a loss of at most 3 points (a student above its teacher meets it), at least
7x faster. `--student` is a student folder or the output folder of
`diffusers-video distill` (its student with the fewest steps is taken). Numbers mean something only for a trained
teacher; with a random one the script still runs end to end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffusers_video.data.quality import evaluate_pipeline
from diffusers_video.folders import DISTILLATION_NAME, read_json
from diffusers_video.training.distillation_sampling import DistillationSampler

METRICS = (("color", "colour"), ("shape", "shape"), ("direction", "direction"), ("speed", "speed"))


def find_student(path: str | Path) -> Path:
    """A student folder, or the student with the fewest steps in a distillation output folder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"The student folder `--student`='{path}' does not exist.")
    if (path / DISTILLATION_NAME).is_file():
        return path
    students = [
        ((read_json(folder / DISTILLATION_NAME, missing_ok=True) or {}).get("num_inference_steps"), folder)
        for folder in path.glob("student-*-steps")
    ]
    students = sorted((steps, folder) for steps, folder in students if isinstance(steps, int))
    if not students:
        raise FileNotFoundError(f"'{path}' is neither a student folder nor holds one (`student-<n>-steps/`).")
    return students[0][1]


def evaluate(name: str, sampler: DistillationSampler, steps: int, args, settings: dict) -> dict:
    """Warm up once (first calls pay one-off costs), then sample, score and time `args.num_samples` videos."""
    warm_up = {**settings, "num_inference_steps": min(steps, 2) if name == "teacher" else steps}
    sampler("warm up", guidance_scale=args.guidance_scale, generator=torch.Generator().manual_seed(0), **warm_up)
    print(f"{name}: {args.num_samples} videos, {steps} steps", flush=True)
    return evaluate_pipeline(
        sampler, num_samples=args.num_samples, num_inference_steps=steps, seed=args.seed,
        batch_size=args.batch_size, guidance_scale=args.guidance_scale, progress=not args.no_progress, **settings,
    )  # fmt: skip


def accuracy(entry: dict) -> str:
    if entry["accuracy"] is None:
        return "n/a"
    return f"{entry['accuracy']:.3f} ({entry['ci_low']:.3f}-{entry['ci_high']:.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="the teacher folder (what `distill --teacher` was given)")
    parser.add_argument("--student", required=True, help="a student folder or a `distill` output folder")
    parser.add_argument("--teacher-steps", type=int, default=64, help="teacher DDIM steps (default: 64)")
    parser.add_argument("--student-steps", type=int, default=None, help="default: the student's own step count")
    parser.add_argument("--num-samples", type=int, default=64, help="held-out captions (default: 64)")
    parser.add_argument("--guidance-scale", type=float, default=4.0, help="guidance weight of both (default: 4.0)")
    parser.add_argument("--seed", type=int, default=0, help="picks the captions and seeds (default: 0)")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per call (default: 8)")
    parser.add_argument("--height", type=int, default=None, help="default: the teacher's training size")
    parser.add_argument("--width", type=int, default=None, help="default: the teacher's training size")
    parser.add_argument("--num-frames", type=int, default=None, help="default: the teacher's training frames")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--output", default=None, help="also write both results to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    for name in ("teacher_steps", "num_samples", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be at least 1 but is {getattr(args, name)}.")

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    student_folder = find_student(args.student)
    teacher = DistillationSampler.from_folder(args.teacher, device=device)
    student = DistillationSampler.from_folder(student_folder, device=device)
    student_steps = args.student_steps or student.default_steps
    settings = {
        "height": args.height or teacher.default_height,
        "width": args.width or teacher.default_width,
        "num_frames": args.num_frames or teacher.default_num_frames,
    }
    started = time.perf_counter()
    results = {
        "teacher": evaluate("teacher", teacher, args.teacher_steps, args, settings),
        "student": evaluate("student", student, student_steps, args, settings),
    }

    teacher_result, student_result = results["teacher"], results["student"]
    print(
        f"\nProgressive distillation on {args.num_samples} held-out captions, {settings['height']}x{settings['width']} "
        f"x {settings['num_frames']} frames, guidance {args.guidance_scale}, seed {args.seed}, {device}"
    )
    print(f"teacher: {args.teacher}\nstudent: {student_folder}\n")
    head_teacher, head_student = f"teacher, {args.teacher_steps} steps", f"student, {student_steps} steps"
    print(f"{'':<24}{head_teacher:>24}{head_student:>24}")
    for key, label in (*METRICS, ("all_correct", "all correct")):
        row = (accuracy(r["scores"][key]) for r in (teacher_result, student_result))
        print(f"{label + ' accuracy':<24}" + "".join(f"{value:>24}" for value in row))
    seconds = [r["seconds_per_video"] for r in (teacher_result, student_result)]
    print(f"{'seconds per video':<24}{seconds[0]:>24.4f}{seconds[1]:>24.4f}")
    teacher_all, student_all = (r["scores"]["all_correct"]["accuracy"] for r in (teacher_result, student_result))
    if teacher_all is not None and student_all is not None:
        points = 100 * (student_all - teacher_all)
        verdict = "met" if points >= -3 else "missed"
        print(
            f"\nall correct, student - teacher: {points:+.1f} points (target: at most 3 below the teacher, {verdict})"
        )
    speed_up = seconds[0] / seconds[1]
    print(f"speed-up: {speed_up:.1f}x (target: >= 7x, {'met' if speed_up >= 7 else 'missed'})")
    print(f"total time: {time.perf_counter() - started:.1f} s")
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        results.update(speed_up=speed_up, teacher_dir=str(args.teacher), student_dir=str(student_folder))
        output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
