"""`benchmarks/bench_imagen_video_table.py` on two tiny saved cascades: the four rows, the steps every stage took, the
ABBA order of the calls, and ratios computed from the timed seconds (never the times themselves)."""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script

from diffusers_video import ImagenVideoPipeline, VDistilledScheduler
from diffusers_video.data.shapes_scorer import ShapesScorer
from diffusers_video.pipelines.imagen_video.cascade import StageSpec
from diffusers_video.training.stand_in import build_t5_text_encoder, build_t5_tokenizer

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_imagen_video_table.py"


bench = load_script(BENCH)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cascades(tmp_path_factory):
    """A teacher and a distilled cascade, base (8 frames of 8x8) -> SSR x2, saved to folders."""
    from test_pipeline_imagen_video import TEXT_DIM, ddim, tiny_unet

    folder = tmp_path_factory.mktemp("cascades")
    tokenizer = build_t5_tokenizer(model_max_length=8)
    text_encoder = build_t5_text_encoder(len(tokenizer), d_model=TEXT_DIM, num_layers=1)
    teacher = ImagenVideoPipeline.from_stages(
        text_encoder,
        tokenizer,
        [
            ("base", tiny_unet(seed=0), ddim()),
            (StageSpec("ssr", 2), tiny_unet(sr=True, attention=False, seed=1), ddim()),
        ],
    )
    student = ImagenVideoPipeline.from_stages(
        text_encoder,
        tokenizer,
        [
            ("base", tiny_unet(seed=2, conditions=("guidance_scale",)), VDistilledScheduler()),
            (StageSpec("ssr", 2), tiny_unet(sr=True, attention=False, seed=3), VDistilledScheduler()),
        ],
    )
    teacher.save_pretrained(folder / "teacher")
    student.save_pretrained(folder / "student")
    return folder / "teacher", folder / "student"


def test_table_has_four_rows_timed_in_abba_order_with_ratios_of_the_timed_seconds(
    cascades, tmp_path, monkeypatch, capsys
):
    calls = []  # (steps per stage, guidance, seconds) of every pipeline call, in order
    original = ImagenVideoPipeline.__call__

    @functools.wraps(original)
    def recording_call(self, *args, **kwargs):
        started = time.perf_counter()
        output = original(self, *args, **kwargs)
        calls.append((kwargs["num_inference_steps"], kwargs["guidance"], time.perf_counter() - started))
        return output

    monkeypatch.setattr(ImagenVideoPipeline, "__call__", recording_call)
    teacher, student = cascades
    output = tmp_path / "table.json"
    expected_rows = [
        ("teacher", "constant", [2, 2]),
        ("student", "constant", [1, 1]),
        ("teacher", "oscillating", [2, 2]),
        ("student", "oscillating", [1, 1]),
    ]
    argv = ["--teacher", str(teacher), "--student", str(student), "--teacher-steps", "2", "--student-steps", "1,1"]
    argv += ["--guidance-scale", "3,1", "--num-samples", "2", "--batch-size", "1", "--threads", "1"]
    assert bench.main([*argv, "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    rows = document["rows"]
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("  batch 2/2")]
    seconds = [row["batch_seconds"] for row in rows]
    assert progress == [
        "  batch 2/2, seconds of this batch (all batches so far): "
        + ", ".join(f"{m}-{g} {b[1]:.1f} ({b[0] + b[1]:.1f})" for (m, g, _), b in zip(expected_rows, seconds))
    ]

    assert [(r["model"], r["guidance"], r["steps"]) for r in rows] == expected_rows
    assert [r["steps_taken"] for r in rows] == [steps for _, _, steps in expected_rows]  # counted by a step callback
    assert document["settings"]["num_frames"] == 8 and document["settings"]["height"] == 16
    for row in rows:
        assert row["result"]["num_frames"] == 8 and row["result"]["height"] == row["result"]["width"] == 16
        assert row["result"]["num_inference_steps"] == row["steps"] and row["result"]["guidance_scale"] == [3.0, 1.0]
        assert row["result"]["call_kwargs"]["guidance"] == row["guidance"]
        assert row["seconds_per_video"] == pytest.approx(row["total_seconds"] / 2, rel=1e-12)

    # 4 warm-up calls, then per batch all four rows: in order on batch 0, reversed on batch 1
    keys = [(steps, guidance) for steps, guidance, _ in calls]
    rows_in_order = [(steps, guidance) for _, guidance, steps in expected_rows]
    assert keys[4:] == rows_in_order + rows_in_order[::-1]
    # each row's timed seconds are its two generating calls, not the warm-up ones
    for row, key in zip(rows, rows_in_order):
        measured = sum(seconds for k, (steps, guidance, seconds) in zip(keys[4:], calls[4:]) if k == key)
        assert measured <= row["total_seconds"] < measured + 0.5

    by_name = {(r["model"], r["guidance"]): r for r in rows}
    for kind in ("constant", "oscillating"):
        comparison = document["comparisons"][kind]
        ratio = by_name[("teacher", kind)]["seconds_per_video"] / by_name[("student", kind)]["seconds_per_video"]
        assert comparison["speed_up"] == pytest.approx(ratio, rel=1e-12)
        assert comparison["speed_up_pass"] == (ratio >= 7.0)
        points = 100 * (
            by_name[("student", kind)]["all_correct"]["accuracy"]
            - by_name[("teacher", kind)]["all_correct"]["accuracy"]
        )
        assert comparison["all_correct_points"] == pytest.approx(points)
        assert comparison["points_pass"] == (points >= -3.0)  # a loss of at most 3 points
        teacher_ok = [s["all_ok"] for s in by_name[("teacher", kind)]["result"]["samples"]]
        student_ok = [s["all_ok"] for s in by_name[("student", kind)]["result"]["samples"]]
        assert comparison["fixed"] == sum(not t and s for t, s in zip(teacher_ok, student_ok))
        assert comparison["fixed"] - comparison["broken"] == sum(student_ok) - sum(teacher_ok)

    assert "| cascade | steps per stage | guidance | all correct, % (95% CI) |" in out
    assert "| teacher | 2/2 | oscillating |" in out and "| student | 1/1 | constant |" in out
    verdict = "PASS" if document["comparisons"]["constant"]["speed_up_pass"] else "MISS"
    assert f"constant guidance: speed-up {document['comparisons']['constant']['speed_up']:.2f}x" in out
    assert f"(target >= 7x): {verdict}" in out
    constant = document["comparisons"]["constant"]
    assert (
        f"constant guidance: same captions and seeds: distillation fixed {constant['fixed']} videos and broke "
        f"{constant['broken']} (exact McNemar p = {constant['mcnemar_p']:.3g})" in out
    )


def test_paired_changes_count_discordant_videos_with_the_exact_mcnemar_p_value():
    before = [True, False, False, True, False, True]
    after = [True, True, True, False, False, True]
    # 2 fixed, 1 broken: P(X <= 1) for X ~ Binomial(3, 1/2) is 4/8, doubled and capped at 1
    assert bench.paired_changes(before, after) == {"fixed": 2, "broken": 1, "mcnemar_p": 1.0}
    # 6 fixed, none broken: 2 * (1/2)**6
    changes = bench.paired_changes([False] * 6 + [True], [True] * 7)
    assert changes == {"fixed": 6, "broken": 0, "mcnemar_p": pytest.approx(0.03125)}
    # 1 fixed, 7 broken: 2 * (1 + 8) / 256
    changes = bench.paired_changes([False] + [True] * 7, [True] + [False] * 7)
    assert (changes["fixed"], changes["broken"], changes["mcnemar_p"]) == (1, 7, pytest.approx(18 / 256))
    assert bench.paired_changes(before, before) == {"fixed": 0, "broken": 0, "mcnemar_p": 1.0}
    with pytest.raises(ValueError, match="`before` has 6 videos and `after` 5"):
        bench.paired_changes(before, [True] * 5)


def test_compare_passes_a_loss_of_at_most_3_points_and_any_gain():
    def row(model, guidance, oks, seconds):
        samples = [{"prompt": f"caption {i}", "all_ok": ok} for i, ok in enumerate(oks)]
        return {
            "model": model,
            "guidance": guidance,
            "seconds_per_video": seconds,
            "all_correct": {"accuracy": sum(oks) / len(oks)},
            "result": {"samples": samples},
        }

    teacher = [True] * 28 + [False] * 4  # 87.5%
    gain = [True] * 32  # +12.5 points: 4 fixed, none broken
    loss = [False] + [True] * 27 + [False] * 4  # -3.125 points: 1 broken
    comparisons = bench.compare(
        [
            row("teacher", "constant", teacher, 8.0),
            row("student", "constant", gain, 1.0),
            row("teacher", "oscillating", teacher, 6.9),
            row("student", "oscillating", loss, 1.0),
        ]
    )
    constant, oscillating = comparisons["constant"], comparisons["oscillating"]
    assert constant["all_correct_points"] == pytest.approx(12.5) and constant["points_pass"] is True
    assert (constant["fixed"], constant["broken"], constant["mcnemar_p"]) == (4, 0, pytest.approx(0.125))
    assert constant["speed_up"] == pytest.approx(8.0) and constant["speed_up_pass"] is True
    assert oscillating["all_correct_points"] == pytest.approx(-3.125) and oscillating["points_pass"] is False
    assert (oscillating["fixed"], oscillating["broken"]) == (0, 1) and oscillating["speed_up_pass"] is False
    swapped = row("student", "constant", gain, 1.0)
    swapped["result"]["samples"] = swapped["result"]["samples"][::-1]
    with pytest.raises(ValueError, match="constant teacher and student rows were not drawn from the same captions"):
        bench.compare(
            [
                row("teacher", "constant", teacher, 8.0),
                swapped,
                row("teacher", "oscillating", teacher, 6.9),
                row("student", "oscillating", loss, 1.0),
            ]
        )


def test_per_stage_numbers():
    assert bench.per_stage_numbers("64,32", "teacher-steps", int, 2, []) == [64, 32]
    assert bench.per_stage_numbers("8", "student-steps", int, 3, []) == [8, 8, 8]
    with pytest.raises(ValueError, match="`--teacher-steps` has 3 values but the cascades have 2 stages"):
        bench.per_stage_numbers("64,32,32", "teacher-steps", int, 2, [])
    with pytest.raises(ValueError, match="`--guidance-scale` must be one number or one per stage"):
        bench.per_stage_numbers("4,x", "guidance-scale", float, 2, [])


# ----------------------------------------------------------------------------- bench_imagen_video_stages.py

stages_bench = load_script(ROOT / "benchmarks" / "bench_imagen_video_stages.py")


def test_stage_swaps_pair_every_row_with_the_unswapped_cascade(cascades, tmp_path, capsys):
    teacher_dir, student_dir = cascades
    argv = ["--teacher", str(teacher_dir), "--student", str(student_dir), "--teacher-steps", "2", "--student-steps"]
    argv += ["1", "--guidance-scale", "3,1", "--num-samples", "3", "--batch-size", "2", "--threads", "1"]
    output = tmp_path / "stages.json"
    assert stages_bench.main([*argv, "--no-progress", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    rows = document["rows"]
    assert [(r["name"], r["swapped_stage"], r["steps"]) for r in rows] == [
        ("distilled", None, [1, 1]),
        ("distilled, teacher stage 0 (base)", 0, [2, 1]),
        ("distilled, teacher stage 1 (ssrx2)", 1, [1, 2]),
    ]
    assert "fixed" not in rows[0] and all(len(r["per_video_all_correct"]) == 3 for r in rows)

    # each row is the cascade it names, called with the captions and seeds of evaluate_pipeline
    teacher = ImagenVideoPipeline.from_pretrained(teacher_dir)
    student = ImagenVideoPipeline.from_pretrained(student_dir)
    captions = document["settings"]["captions"]
    size = {"num_frames": 8, "height": 16, "width": 16}

    def videos(pipe, steps):  # in the benchmark's batches of 2
        pipe.set_progress_bar_config(disable=True)
        out = []
        for start in (0, 2):
            generators = [torch.Generator().manual_seed(i) for i in range(start, min(start + 2, 3))]
            out.extend(pipe(
                captions[start : start + 2], generator=generators, num_inference_steps=steps,
                guidance_scale=[3.0, 1.0], noise_aug_level=0.1, output_type="np", **size,
            ).frames)  # fmt: skip
        return out

    plain = videos(student, [1, 1])
    student.replace_stage(1, unet=teacher.unet_1, scheduler=teacher.scheduler_1)
    swapped = videos(student, [1, 2])
    expected = np.mean([stages_bench.psnr(a, b) for a, b in zip(swapped, plain)])
    assert rows[2]["psnr_db"] == pytest.approx(expected, rel=1e-12)
    scorer = ShapesScorer()
    assert rows[2]["per_video_all_correct"] == [bool(scorer.score(v, c).all_ok) for v, c in zip(swapped, captions)]
    assert rows[0]["per_video_all_correct"] == [bool(scorer.score(v, c).all_ok) for v, c in zip(plain, captions)]
    fixed = sum(a and not b for a, b in zip(rows[2]["per_video_all_correct"], rows[0]["per_video_all_correct"]))
    assert rows[2]["fixed"] == fixed
    assert "| distilled, teacher stage 1 (ssrx2) | 1/2 |" in capsys.readouterr().out

    # a stage swapped for itself changes nothing: every video equal (infinite PSNR), nothing fixed or broken
    argv = ["--teacher", str(student_dir), "--student", str(student_dir), "--teacher-steps", "1", "--student-steps"]
    argv += ["1", "--stages", "1", "--into", "teacher", "--num-samples", "3", "--indices", "2,0", "--no-progress"]
    assert stages_bench.main([*argv, "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    assert document["settings"]["indices"] == [2, 0]
    assert document["settings"]["captions"] == [captions[2], captions[0]]
    same = document["rows"]
    assert [r["name"] for r in same] == ["teacher", "teacher, distilled stage 1 (ssrx2)"]
    assert math.isinf(same[1]["psnr_db"]) and same[1]["fixed"] == same[1]["broken"] == 0
    assert same[1]["per_video_all_correct"] == same[0]["per_video_all_correct"]

    with pytest.raises(ValueError, match=r"`--stages` must name distinct stages of the 2-stage cascades.*'1,2'"):
        stages_bench.main(["--teacher", str(teacher_dir), "--student", str(student_dir), "--stages", "1,2"])
    with pytest.raises(ValueError, match=r"`--indices` must be distinct integers in \[0, 3\).*'1,3'"):
        stages_bench.parse_indices("1,3", 3)


def test_a_killed_table_run_goes_on_from_its_work_dir(cascades, tmp_path, monkeypatch):
    teacher, student = cascades
    argv = ["--teacher", str(teacher), "--student", str(student), "--teacher-steps", "2", "--student-steps", "1"]
    argv += ["--guidance-scale", "3,1", "--num-samples", "3", "--batch-size", "1", "--threads", "1", "--no-progress"]
    assert bench.main([*argv, "--output", str(tmp_path / "whole.json")]) == 0
    whole = json.loads((tmp_path / "whole.json").read_text())

    calls = []
    original = ImagenVideoPipeline.__call__

    @functools.wraps(original)
    def killed_in_batch_1(self, *args, **kwargs):  # 4 warm-up calls, 4 for batch 0, then dies in batch 1
        calls.append((kwargs["num_inference_steps"], kwargs["guidance"]))
        if len(calls) == 11:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    work = tmp_path / "work"
    monkeypatch.setattr(ImagenVideoPipeline, "__call__", killed_in_batch_1)
    with pytest.raises(KeyboardInterrupt):
        bench.main([*argv, "--work-dir", str(work)])
    assert sorted(p.name for p in work.iterdir()) == ["batch-0000.npz", "run.json"]
    with np.load(work / "batch-0000.npz") as saved:
        first_seconds = {name: row["seconds"] for name, row in json.loads(str(saved["meta"])).items()}

    calls.clear()
    monkeypatch.setattr(ImagenVideoPipeline, "__call__", _recording(calls, original))
    output = tmp_path / "resumed.json"
    assert bench.main([*argv, "--work-dir", str(work), "--output", str(output)]) == 0
    resumed = json.loads(output.read_text())
    in_order = [([2, 2], "constant"), ([1, 1], "constant"), ([2, 2], "oscillating"), ([1, 1], "oscillating")]
    assert calls[4:] == in_order[::-1] + in_order  # warm-up again, then batch 1 (reversed) and batch 2 only
    assert resumed["settings"]["batches_read_from_work_dir"] == [0]
    for row, reference in zip(resumed["rows"], whole["rows"]):
        assert row["batch_seconds"][0] == first_seconds[f"{row['model']}-{row['guidance']}"]
        assert row["total_seconds"] == pytest.approx(sum(row["batch_seconds"]), rel=1e-12)
        for key in ("all_correct", "temporal_consistency", "fsd", "steps_taken"):  # the same videos as one whole run
            assert row[key] == reference[key]

    calls.clear()  # everything saved: no pipeline call at all
    assert bench.main([*argv, "--work-dir", str(work), "--output", str(output)]) == 0
    again = json.loads(output.read_text())
    assert calls == [] and again["settings"]["batches_read_from_work_dir"] == [0, 1, 2]
    assert [r["all_correct"] for r in again["rows"]] == [r["all_correct"] for r in whole["rows"]]

    changed = [*argv[:9], "2,1", *argv[10:]]
    with pytest.raises(
        ValueError, match=r"holds the batches of another run \(guidance_scale: saved \[3.0, 1.0\], now"
    ):
        bench.main([*changed, "--work-dir", str(work)])
    other_student = [*argv[:3], str(teacher), *argv[4:]]
    with pytest.raises(ValueError, match=r"another run \(student_sha256: saved '[0-9a-f]{64}', now '[0-9a-f]{64}'\)"):
        bench.main([*other_student, "--work-dir", str(work)])


def _recording(calls, original):
    @functools.wraps(original)
    def recording(self, *args, **kwargs):
        calls.append((kwargs["num_inference_steps"], kwargs["guidance"]))
        return original(self, *args, **kwargs)

    return recording
