"""`benchmarks/bench_direction_learning.py`: the ideal gap against a hand computation, and a two-step run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
bench = load_script(ROOT / "benchmarks" / "bench_direction_learning.py")


def test_ideal_gap_equals_a_hand_computation():
    # Two groups of two 1-element clips: "right" {1, 3} (mean 2), "left" {-1, -3} (mean -2).
    latents = torch.tensor([[1.0], [3.0], [-1.0], [-3.0]])
    keys = [("right",), ("right",), ("left",), ("left",)]
    swapped = [("left",), ("left",), ("right",), ("right",)]
    # own: every clip is 1 from its mean -> 1; swapped: |1+2|^2, |3+2|^2, ... -> (9 + 25 + 9 + 25) / 4 = 17
    assert bench.ideal_gap(latents, keys, swapped) == pytest.approx(16.0)
    # A clip whose swapped group is empty is left out; none left is an error.
    assert bench.ideal_gap(latents, keys, [("left",), ("up",), ("up",), ("up",)]) == pytest.approx(9.0 / 1.0 - 1.0)
    with pytest.raises(ValueError, match="No clip has a swapped group"):
        bench.ideal_gap(latents, keys, [("up",)] * 4)
    with pytest.raises(ValueError, match="one entry per clip"):
        bench.ideal_gap(latents, keys[:3], swapped)


def test_swap_direction_swaps_every_direction_word_and_nothing_else():
    assert bench.swap_direction("slowly moving to the right, a cyan circle") == (
        "slowly moving to the left, a cyan circle"
    )
    assert bench.swap_direction("the red square slides upwards rapidly") == "the red square slides downwards rapidly"
    assert bench.swap_direction("a blue triangle") == "a blue triangle"


def test_caption_styles_name_the_sample_s_own_attributes():
    from diffusers_video.data.shapes import ShapesWorld
    from diffusers_video.data.shapes_captions import parse_prompt

    sample = ShapesWorld(height=32, width=32, num_frames=8).sample((3, 1))
    spec = sample.scene.objects[0].spec
    assert bench.write_caption(sample, "full") == sample.caption
    assert bench.write_caption(sample, "direction") == f"moving {spec.direction}"
    assert parse_prompt(bench.write_caption(sample, "canonical")).objects[0] == spec
    assert [bench.write_caption(sample, "mixed", i) for i in range(3)] == [
        f"moving {spec.direction}",
        sample.caption,
        f"moving {spec.direction}",
    ]


def test_a_two_step_run_reports_gaps_at_every_evaluation(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        argv = ["--steps", "2", "--num-clips", "40", "--eval-clips", "4", "--eval-every", "1", "--batch-size", "2",
                "--captions", "direction", "--unet-options", '{"temporal_text_modulation": true}', "--threads", "1",
                "--output", str(tmp_path / "r.json")]  # fmt: skip
        assert bench.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "r.json").read_text())
    assert [row["step"] for row in result["history"]] == [0, 1, 2]
    assert all(set(row["gaps"]) == {"999", "950", "900", "800"} for row in result["history"])
    assert result["ideal_gap"]["direction"] > 0  # moving right: the shape is further right in the last frame
    assert "captions 'direction', e.g. 'moving" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "These must be >= 1: {'--steps': 0}"),
        (["--t-min", "1000"], "`--t-min` must be in [0, 999] but is 1000"),
        (["--unet-options", "[1]"], "`--unet-options` must be a JSON object but is '[1]'"),
        (["--stand-in", "no/such/folder"], "`--stand-in` 'no/such/folder' is not an image pipeline folder"),
    ],
)
def test_bad_arguments_are_refused(argv, message):
    with pytest.raises(ValueError) as error:
        bench.main(argv)
    assert message in str(error.value)
