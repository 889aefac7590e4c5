"""Imagen Video's headline table in miniature: a teacher cascade against its distilled cascade, timed in one run.

    python benchmarks/bench_imagen_video_table.py --teacher runs/imagen_video/cascade \\
        --student runs/imagen_video/cascade_8_steps --teacher-steps 64 --guidance-scale 4,4,1,1 \\
        --num-samples 64 --threads 1 --output runs/imagen_video/table.json

Both folders are `ImagenVideoPipeline` folders as `diffusers-video imagen-video assemble` writes
them, with the same stages. Four rows: the teacher at the steps it was trained for (`--teacher-steps`, per stage,
default 64 for every stage, as the demo recipes distil them) and the distilled cascade (`--student-steps`,
default 8 per stage), each with constant guidance and with Imagen Video's oscillating guidance (Section 2.6 of the
paper: the high weight for the first 10% of the steps, then high and `--oscillating-low` alternately up to half of
the steps, then the low weight; `oscillating_guidance_scales`). `--guidance-scale` is the (high) weight per stage,
default 4 for the stages that read the text and 1 for those that do not (`CascadeStage.reads_text`). Every row
generates videos at the cascade's final size from the same held-out captions (attribute combinations never shown in
training) with the same seeds, `ShapesScorer` reads them (through `diffusers_video.data.quality.evaluate_pipeline`),
and the script prints a Markdown table (all-correct accuracy with its 95% Wilson interval, temporal consistency, FSD
against real clips, seconds per video), then per guidance kind the speed-up of the distilled cascade and its
all-correct difference in points with PASS/MISS against the targets: >= 7x faster, and within 3 points, read as a
loss of at most 3 points (the paper's claim is that distillation keeps the quality; a student that scores above its
teacher meets it, and the signed difference is printed either way). As both rows drew the same captions with the
same seeds, it also counts the videos distillation fixed and broke, with the exact McNemar p-value of that split
(`paired_changes`).

Timing on a shared machine. The four rows are not run one after another: for every batch of captions, each row
generates that batch in turn, in the order teacher-constant, student-constant, teacher-oscillating,
student-oscillating on even batches and the reverse on odd batches (an ABBA order: a load that rises or falls
steadily over a batch costs each row the same on average). So a change of load on the machine (other jobs starting
or stopping) falls on teacher and student alike, and the speed-up compares the two under the same conditions. Only
the pipeline calls are timed (synchronising CUDA around each), after one warm-up call per row. The videos are kept
and scored afterwards: `evaluate_pipeline` is given a stand-in pipeline that checks it asks for exactly the
captions, seeds, sizes and per-stage arguments each video was made with and returns that video.

A run that may be killed (the table takes hours on a small CPU) keeps its work with `--work-dir DIR`: every batch's
videos and timed seconds, all four rows, are saved there as soon as the batch is done. The same command started again
(same arguments and the same cascade files, checked by content) goes on from the first batch not saved; its warm-up
calls are made again, and every batch was timed with its four rows side by side in ABBA order, so the speed-up still
compares teacher and student under the same conditions. A work folder of another run is refused, naming what
differs.

Numbers mean something only for trained cascades; with random ones the script still runs end to end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from diffusers_video import ImagenVideoPipeline
from diffusers_video.data.quality import evaluate_pipeline, load_pipeline
from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.guidance import ScheduledGuidance, oscillating_guidance_scales

SPEED_UP_TARGET = 7.0
POINTS_TARGET = 3.0
GUIDANCE_KINDS = ("constant", "oscillating")
ROWS = (("teacher", "constant"), ("student", "constant"), ("teacher", "oscillating"), ("student", "oscillating"))


def per_stage_numbers(text: str | None, name: str, kind: type, count: int, default: list) -> list:
    """`"64,32,32"` -> `[64, 32, 32]`; one number is used for every stage; `None` gives `default`."""
    if text is None:
        return list(default)
    try:
        values = [kind(part) for part in str(text).split(",")]
    except ValueError:
        raise ValueError(
            f"`--{name}` must be one number or one per stage, comma-separated, but is {text!r}."
        ) from None
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise ValueError(f"`--{name}` has {len(values)} values but the cascades have {count} stages: {text!r}.")
    return values


def row_kwargs(guidance: str, steps: list[int], scales: list[float], low: float, levels: list[float]) -> dict:
    """The per-stage arguments of one row's `ImagenVideoPipeline` calls."""
    kwargs = {"num_inference_steps": list(steps), "guidance_scale": list(scales), "noise_aug_level": list(levels)}
    if guidance == "constant":
        kwargs["guidance"] = "constant"
    elif low == 1.0:  # the pipeline's own "oscillating" (low weight 1)
        kwargs["guidance"] = "oscillating"
    else:  # the same pattern with another low weight, one weight per step
        kwargs["guidance"] = [ScheduledGuidance(oscillating_guidance_scales(n, s, low)) for n, s in zip(steps, scales)]
    return kwargs


def heldout_captions(num_samples: int, seed: int, num_frames: int, height: int, width: int) -> list[str]:
    """The captions `evaluate_pipeline` prompts with (the replay checks that they are the same)."""
    world = ShapesWorld(height=max(height, 8), width=max(width, 8), num_frames=max(num_frames, 2), split="heldout")
    return [world.scene((seed, 0, i)).caption for i in range(num_samples)]


class StepCounter:
    """`callback_on_step_end` that counts the steps each stage takes."""

    def __init__(self, num_stages: int):
        self.counts = [0] * num_stages

    def __call__(self, pipe, step_index, timestep, callback_kwargs):
        self.counts[pipe.stage_index] += 1
        return {}


class Replay:
    """Stands in for a pipeline in `evaluate_pipeline`: returns the videos made earlier, checking every argument.

    `evaluate_pipeline` reads `__call__`'s parameters (the explicit ones below, all `ImagenVideoPipeline` takes that it
    uses) and calls it batch by batch; each call must ask for the captions, seeds and arguments the stored batch was
    generated with, in the same order.
    """

    def __init__(self, batches: list[tuple[list[str], list[int], dict, np.ndarray]]):
        self.batches = list(batches)
        self.position = 0

    def __call__(
        self,
        prompt,
        num_frames=None,
        height=None,
        width=None,
        num_inference_steps=None,
        guidance_scale=None,
        guidance=None,
        noise_aug_level=None,
        generator=None,
        output_type="np",
    ):
        prompts, seeds, kwargs, frames = self.batches[self.position]
        generators = generator if isinstance(generator, list) else [generator]
        asked = dict(
            num_frames=num_frames,
            height=height,
            width=width,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            guidance=guidance,
            noise_aug_level=noise_aug_level,
            output_type=output_type,
        )
        if (
            list(prompt) != prompts
            or [g.initial_seed() for g in generators] != seeds
            or any(asked[key] is not value and asked[key] != value for key, value in kwargs.items())
        ):
            raise RuntimeError(
                f"evaluate_pipeline asked batch {self.position} for {list(prompt)}, seeds "
                f"{[g.initial_seed() for g in generators]}, {asked}, but it was generated for {prompts}, seeds {seeds}, "
                f"{kwargs}: the benchmark's captions or seeds no longer follow evaluate_pipeline's."
            )
        self.position += 1
        return type("Output", (), {"frames": frames})()


def folder_digest(folder: str | Path) -> str:
    """SHA-256 of every file in `folder` (relative paths and bytes, in sorted order): the cascade a run used."""
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


class BatchStore:
    """`--work-dir`: each batch's videos, timed seconds and step counts per row, saved as soon as the batch is done.

    `fingerprint` (JSON-serialisable) names the run: a folder holding batches of a run with another fingerprint is
    refused with the keys that differ. Each batch is one `.npz` file, written to a temporary name and renamed, so a
    run killed while saving leaves either the whole batch or none of it.
    """

    def __init__(self, folder: str | Path, fingerprint: dict):
        self.folder = Path(folder)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from the file
        manifest = self.folder / "run.json"
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"`--work-dir` {str(folder)!r} is a file, not a folder.")
        if manifest.is_file():
            stored = json.loads(manifest.read_text())["fingerprint"]
            if stored != self.fingerprint:
                differ = sorted(
                    k for k in set(stored) | set(self.fingerprint) if stored.get(k) != self.fingerprint.get(k)
                )
                details = "; ".join(f"{k}: saved {stored.get(k)!r}, now {self.fingerprint.get(k)!r}" for k in differ)
                raise ValueError(
                    f"`--work-dir` {str(folder)!r} holds the batches of another run ({details}). Give a new folder, "
                    "or delete this one to start again."
                )
        else:
            if self.folder.is_dir() and any(self.folder.glob("batch-*.npz")):
                raise ValueError(f"`--work-dir` {str(folder)!r} holds batches but no run.json: not a work folder.")
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = manifest.with_name("run.json.tmp")
            temporary.write_text(json.dumps({"fingerprint": self.fingerprint}, indent=2) + "\n")
            os.replace(temporary, manifest)

    def path(self, index: int) -> Path:
        return self.folder / f"batch-{index:04d}.npz"

    def load(self, index: int) -> dict | None:
        """Batch `index` as `{row: {"frames", "seconds", "steps_taken"}}`, or `None` when it was not saved."""
        if not self.path(index).is_file():
            return None
        with np.load(self.path(index)) as data:
            meta = json.loads(str(data["meta"]))
            return {
                name: {"frames": data[f"frames_{i}"], "seconds": row["seconds"], "steps_taken": row["steps_taken"]}
                for i, (name, row) in enumerate(meta.items())
            }

    def save(self, index: int, batch: dict) -> None:
        meta = {name: {"seconds": row["seconds"], "steps_taken": row["steps_taken"]} for name, row in batch.items()}
        arrays = {f"frames_{i}": np.asarray(row["frames"]) for i, row in enumerate(batch.values())}
        temporary = self.path(index).with_name(f"batch-{index:04d}.tmp.npz")
        with temporary.open("wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(temporary, self.path(index))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def generate_interleaved(
    pipes: dict, rows: dict, captions: list[str], args, size: dict, device, store: BatchStore | None = None
) -> dict:
    """Generate every row's videos batch by batch, rows in ABBA order per batch; time each call.

    With a `store`, batches it holds are read back instead of generated, and every generated batch is saved to it.

    Returns:
        `dict`: per row name, `batches` (what `Replay` takes), `seconds` (timed seconds of all calls),
        `batch_seconds` (per batch), `steps_taken` (steps each stage took per call, from a step counter) and
        `resumed` (the indices of the batches read back from the store).
    """
    names = list(rows)
    out = {name: {"batches": [], "seconds": 0.0, "batch_seconds": [], "steps_taken": None} for name in names}
    starts = list(range(0, len(captions), args.batch_size))
    saved = {index: store.load(index) for index in range(len(starts))} if store is not None else {}
    resumed = [index for index, batch in saved.items() if batch is not None]
    if len(resumed) < len(starts):  # warm-up: first calls pay one-off costs (allocations, kernel selection)
        for name in names:
            model = name.split("-")[0]
            warm = dict(rows[name])
            if model == "teacher":  # fewer steps: a warm-up at 64 steps would cost as much as a video
                warm["num_inference_steps"] = [min(n, 2) for n in warm["num_inference_steps"]]
                warm["guidance"] = "constant" if warm["guidance"] == "constant" else "oscillating"
            pipes[model](captions[:1], generator=torch.Generator().manual_seed(0), output_type="np", **size, **warm)
    for batch_index, start in enumerate(starts):
        prompts = captions[start : start + args.batch_size]
        seeds = [args.seed + start + j for j in range(len(prompts))]
        batch = saved.get(batch_index)
        if batch is None:
            batch = {}
            order = names if batch_index % 2 == 0 else names[::-1]
            for name in order:
                model = name.split("-")[0]
                generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
                counter = StepCounter(pipes[model].num_stages)
                _sync(device)
                started = time.perf_counter()
                frames = pipes[model](
                    prompts,
                    generator=generators if len(prompts) > 1 else generators[0],
                    output_type="np",
                    callback_on_step_end=counter,
                    **size,
                    **rows[name],
                ).frames
                _sync(device)
                seconds = time.perf_counter() - started
                batch[name] = {"frames": frames, "seconds": seconds, "steps_taken": counter.counts}
            batch = {name: batch[name] for name in names}
            if store is not None:
                store.save(batch_index, batch)
        for name in names:
            entry = batch[name]
            out[name]["seconds"] += entry["seconds"]
            out[name]["batch_seconds"].append(entry["seconds"])
            out[name]["batches"].append((prompts, seeds, {**size, **rows[name], "output_type": "np"}, entry["frames"]))
            if out[name]["steps_taken"] is None:
                out[name]["steps_taken"] = list(entry["steps_taken"])
            elif out[name]["steps_taken"] != list(entry["steps_taken"]):
                raise RuntimeError(
                    f"{name}: the stages took {entry['steps_taken']} steps, before {out[name]['steps_taken']}."
                )
        if not args.no_progress:
            print(
                f"  batch {batch_index + 1}/{len(starts)}{' (saved earlier)' if batch_index in resumed else ''}, "
                "seconds of this batch (all batches so far): "
                + ", ".join(
                    f"{name} {out[name]['batch_seconds'][-1]:.1f} ({out[name]['seconds']:.1f})" for name in names
                ),
                flush=True,
            )
    for name in names:
        out[name]["resumed"] = resumed
    return out


def _accuracy(entry: dict) -> str:
    if entry["accuracy"] is None:
        return "n/a"
    return f"{100 * entry['accuracy']:.1f} ({100 * entry['ci_low']:.1f}-{100 * entry['ci_high']:.1f})"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| cascade | steps per stage | guidance | all correct, % (95% CI) | temporal consistency | FSD | s / video |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        fsd = "n/a" if row["fsd"] is None else f"{row['fsd']:.3f}"
        steps = "/".join(str(n) for n in row["steps"])
        lines.append(
            f"| {row['model']} | {steps} | {row['guidance']} | {_accuracy(row['all_correct'])} | "
            f"{row['temporal_consistency']['mean']:.3f} | {fsd} | {row['seconds_per_video']:.3f} |"
        )
    return "\n".join(lines)


def paired_changes(before: list[bool], after: list[bool]) -> dict:
    """What a change of cascade (distillation, a stage swapped) did, video by video, to videos drawn from the same
    captions with the same seeds; `before` and `after` say per video whether it was all correct.

    Returns:
        `dict`: `fixed` (videos wrong before and right after), `broken` (the reverse), and `mcnemar_p`, the exact
        two-sided McNemar p-value of `fixed` against `broken` (a binomial test of the discordant pairs with p = 1/2):
        how likely a split at least this uneven is if the change did not alter the accuracy. `fixed - broken` is the
        difference of the two all-correct counts.
    """
    if len(before) != len(after):
        raise ValueError(f"`before` has {len(before)} videos and `after` {len(after)}; they must be paired.")
    fixed = sum(1 for b, a in zip(before, after) if a and not b)
    broken = sum(1 for b, a in zip(before, after) if b and not a)
    discordant = fixed + broken
    tail = sum(math.comb(discordant, k) for k in range(min(fixed, broken) + 1)) / 2**discordant
    return {"fixed": fixed, "broken": broken, "mcnemar_p": min(1.0, 2 * tail)}


def compare(rows: list[dict]) -> dict:
    """Per guidance kind: speed-up (teacher seconds / student seconds), all-correct difference in points, and the
    videos distillation fixed and broke (`paired_changes`)."""
    by_key = {(row["model"], row["guidance"]): row for row in rows}
    comparisons = {}
    for kind in GUIDANCE_KINDS:
        teacher, student = by_key[("teacher", kind)], by_key[("student", kind)]
        speed_up = teacher["seconds_per_video"] / student["seconds_per_video"]
        teacher_all, student_all = teacher["all_correct"]["accuracy"], student["all_correct"]["accuracy"]
        points = None if teacher_all is None or student_all is None else 100 * (student_all - teacher_all)
        teacher_samples, student_samples = teacher["result"]["samples"], student["result"]["samples"]
        if [v["prompt"] for v in teacher_samples] != [v["prompt"] for v in student_samples]:
            raise ValueError(f"The {kind} teacher and student rows were not drawn from the same captions.")
        changes = paired_changes([v["all_ok"] for v in teacher_samples], [v["all_ok"] for v in student_samples])
        comparisons[kind] = {
            "speed_up": speed_up,
            "speed_up_target": SPEED_UP_TARGET,
            "speed_up_pass": speed_up >= SPEED_UP_TARGET,
            "all_correct_points": points,
            "points_target": POINTS_TARGET,
            "points_pass": None if points is None else points >= -POINTS_TARGET,  # a loss of at most 3 points
            **changes,
        }
    return comparisons


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both Imagen Video benches share (those `check_run_arguments` checks, the seed and the output)."""
    parser.add_argument("--batch-size", type=int, default=4, help="videos per call (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="picks the captions and seeds (default: 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--output", default=None, help="also write the table and every result to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="print no progress lines")


def check_run_arguments(args) -> torch.device:
    """Check `--num-samples`, `--batch-size` and `--threads` (and set the threads); the device to run on."""
    for name in ("num_samples", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be at least 1 but is {getattr(args, name)}.")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"`--threads` must be at least 1 but is {args.threads}.")
        torch.set_num_threads(args.threads)
    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_cascades(args, device: torch.device) -> dict[str, ImagenVideoPipeline]:
    """`--teacher` and `--student` as pipelines (progress bars off), checked to have the same stages and size."""
    pipes = {}
    for model, folder in (("teacher", args.teacher), ("student", args.student)):
        pipe = load_pipeline(folder, device=device)
        if not isinstance(pipe, ImagenVideoPipeline):
            raise ValueError(f"`--{model}` {folder!r} holds a {type(pipe).__name__}, not an ImagenVideoPipeline.")
        pipe.set_progress_bar_config(disable=True)
        pipes[model] = pipe
    specs = [str(spec) for spec in pipes["teacher"].stage_specs]
    if [str(spec) for spec in pipes["student"].stage_specs] != specs:
        raise ValueError(
            f"The cascades have different stages: teacher {specs}, student "
            f"{[str(spec) for spec in pipes['student'].stage_specs]}."
        )
    size = pipes["teacher"].default_size()
    if pipes["student"].default_size() != size:
        raise ValueError(
            f"The cascades make videos of different sizes: {size} and "
            f"{pipes['student'].default_size()} (frames, height, width)."
        )
    return pipes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="the teacher cascade (an ImagenVideoPipeline folder)")
    parser.add_argument("--student", required=True, help="the distilled cascade (an ImagenVideoPipeline folder)")
    parser.add_argument("--teacher-steps", default=None, help="per stage, e.g. 64,32,32,32 (default: 64)")
    parser.add_argument("--student-steps", default="8", help="per stage, or one for all (default: 8)")
    parser.add_argument(
        "--guidance-scale", default=None, help="(high) weight per stage, e.g. 4,4,1,1 (default: 4, and 1 for SSR)"
    )
    parser.add_argument("--oscillating-low", type=float, default=1.0, help="low weight of oscillating guidance (1)")
    parser.add_argument("--noise-aug-level", default="0.1", help="SR conditioning level, per stage (default: 0.1)")
    parser.add_argument("--num-samples", type=int, default=64, help="held-out captions (default: 64)")
    add_run_arguments(parser)
    parser.add_argument(
        "--work-dir", default=None, help="save every batch here; the same command started again goes on from it"
    )
    args = parser.parse_args(argv)
    device = check_run_arguments(args)
    pipes = load_cascades(args, device)
    specs = [str(spec) for spec in pipes["teacher"].stage_specs]
    count = len(specs)
    frames, height, width = pipes["teacher"].default_size()
    size = {"num_frames": frames, "height": height, "width": width}
    steps = {
        "teacher": per_stage_numbers(args.teacher_steps, "teacher-steps", int, count, [64] * count),
        "student": per_stage_numbers(args.student_steps, "student-steps", int, count, [8] * count),
    }
    reads_text = [stage.reads_text for stage in pipes["teacher"].stages]
    scales = per_stage_numbers(
        args.guidance_scale, "guidance-scale", float, count, [4.0 if text else 1.0 for text in reads_text]
    )
    levels = per_stage_numbers(args.noise_aug_level, "noise-aug-level", float, count, [0.1] * count)
    rows = {
        f"{model}-{kind}": row_kwargs(kind, steps[model], scales, args.oscillating_low, levels) for model, kind in ROWS
    }

    settings = {
        "teacher_dir": str(args.teacher),
        "student_dir": str(args.student),
        "stages": specs,
        **size,
        "num_samples": args.num_samples,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "teacher_steps": steps["teacher"],
        "student_steps": steps["student"],
        "guidance_scale": scales,
        "oscillating_low": args.oscillating_low,
        "noise_aug_level": levels,
        "order": "per batch: " + ", ".join(rows) + " on even batches, reversed on odd ones",
    }
    store = None
    if args.work_dir is not None:
        fingerprint = {key: value for key, value in settings.items() if not key.endswith("_dir")}
        fingerprint.update(teacher_sha256=folder_digest(args.teacher), student_sha256=folder_digest(args.student))
        store = BatchStore(args.work_dir, fingerprint)
    print(
        f"Imagen Video table: {args.num_samples} held-out captions, {frames} frames of {height}x{width}, stages "
        f"{specs}, guidance {scales} (oscillating low {args.oscillating_low}), seed {args.seed}, {device}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    started = time.perf_counter()
    captions = heldout_captions(args.num_samples, args.seed, frames, height, width)
    generated = generate_interleaved(pipes, rows, captions, args, size, device, store)
    if store is not None:
        settings["work_dir"] = str(args.work_dir)
        settings["batches_read_from_work_dir"] = generated[next(iter(rows))]["resumed"]

    table = []
    for model, kind in ROWS:
        name = f"{model}-{kind}"
        result = evaluate_pipeline(
            Replay(generated[name]["batches"]),
            num_samples=args.num_samples,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=False,
            call_kwargs=rows[name],
            **size,
        )
        seconds = generated[name]["seconds"]
        result.update(
            pipeline="ImagenVideoPipeline", seconds_per_video=seconds / args.num_samples, total_seconds=seconds
        )
        table.append(
            {
                "model": model,
                "guidance": kind,
                "folder": str(getattr(args, model)),
                "steps": steps[model],
                "steps_taken": generated[name]["steps_taken"],
                "guidance_scale": scales,
                "oscillating_low": args.oscillating_low if kind == "oscillating" else None,
                "all_correct": result["scores"]["all_correct"],
                "temporal_consistency": result["scores"]["temporal_consistency"],
                "fsd": result["fsd"],
                "seconds_per_video": result["seconds_per_video"],
                "total_seconds": seconds,
                "batch_seconds": generated[name]["batch_seconds"],
                "result": result,
            }
        )
    comparisons = compare(table)

    print()
    print(markdown_table(table))
    print()
    for kind, comparison in comparisons.items():
        verdict = "PASS" if comparison["speed_up_pass"] else "MISS"
        print(f"{kind} guidance: speed-up {comparison['speed_up']:.2f}x (target >= {SPEED_UP_TARGET:g}x): {verdict}")
        points = comparison["all_correct_points"]
        if points is None:
            print(f"{kind} guidance: all correct, distilled - teacher: n/a")
        else:
            verdict = "PASS" if comparison["points_pass"] else "MISS"
            print(
                f"{kind} guidance: all correct, distilled - teacher: {points:+.1f} points "
                f"(target: at most {POINTS_TARGET:g} below the teacher): {verdict}"
            )
        print(
            f"{kind} guidance: same captions and seeds: distillation fixed {comparison['fixed']} videos and broke "
            f"{comparison['broken']} (exact McNemar p = {comparison['mcnemar_p']:.3g})"
        )
    print(f"total time: {time.perf_counter() - started:.1f} s")
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        document = {"settings": settings, "rows": table, "comparisons": comparisons, "markdown": markdown_table(table)}
        output.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
