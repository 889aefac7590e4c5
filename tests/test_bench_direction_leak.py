"""`benchmarks/bench_direction_leak.py` on the committed VideoFusion demo, at two clips and two steps.

Only structural properties are checked (the start's noise level, fractions that exclude each other), never the
figures themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_direction_leak.py"
DEMO = ROOT / "pipelines" / "videofusion" / "demo"


bench = load_script(BENCH)


def test_the_report_names_the_first_noise_level_and_exclusive_fractions(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        argv = [str(DEMO), "--num-videos", "2", "--steps", "2", "--threads", "1", "--output", str(tmp_path / "r.json")]
        assert bench.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "r.json").read_text())
    from diffusers_video import DecomposedNoiseScheduler

    scheduler = DecomposedNoiseScheduler.from_pretrained(DEMO / "scheduler")
    assert result["first_timestep"] == scheduler.config.num_train_timesteps - 1  # "trailing": sampling starts at T
    assert result["alpha_t"] == pytest.approx(scheduler.alphas_cumprod[-1].sqrt().item(), abs=1e-6)
    for start in ("noise", "clip"):  # a shape cannot move both ways: the prompt names the opposite direction
        assert result[f"{start}_follows_prompt"] + result[f"{start}_follows_clip"] <= 1.0
    if result["alpha_t"] == 0.0:  # zero terminal SNR: the start holds nothing of the clip, so both rows agree
        assert result["noise_follows_prompt"] == result["clip_follows_prompt"]
    assert "each prompted with the opposite direction" in capsys.readouterr().out


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="`--num-videos` and `--steps` must be >= 1 but are 0 and 25"):
        bench.main([str(DEMO), "--num-videos", "0"])
