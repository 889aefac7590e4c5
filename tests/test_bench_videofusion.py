"""`benchmarks/bench_videofusion.py` at toy size: the same video from both pipelines, and a report with its ratios.

Only structural properties are checked (frames, report lines, positive measurements), never times or their ratios.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_videofusion.py"


bench = load_script(BENCH)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_converted_pipeline_generates_the_same_frames_in_process(tmp_path, capsys):
    preset = bench.PRESETS["tiny"]["t2v"]
    bench.save_text_to_video_pipeline(preset, tmp_path / "text-to-video")
    converter = bench._converter()
    argv = ["--checkpoint", str(tmp_path / "text-to-video"), "--output_dir", str(tmp_path / "videofusion")]
    assert converter.main(argv) == 0, capsys.readouterr().err
    peer = bench._t2v_call("peer", tmp_path / "text-to-video", preset, decode_chunk_size=None)()
    ours = bench._t2v_call("ours", tmp_path / "videofusion", preset, decode_chunk_size=2)()  # 3 frames: 2 VAE calls
    size = preset["size"]
    assert peer.shape == ours.shape == (1, preset["frames"], size, size, 3)
    assert peer.std() > 0.01  # a real video, not a constant one that any two pipelines would agree on
    assert np.abs(ours - peer).max() <= 1e-4


@pytest.mark.slow  # four worker processes (~25 s); the in-process test above checks the same frames
def test_part_t2v_reports_matching_frames_and_the_ratios(tmp_path, capsys):
    report = bench.main(
        ["--part", "t2v", "--preset", "tiny", "--threads", "1", "--repeats", "1", "--json", str(tmp_path / "r.json")]
    )
    out = capsys.readouterr().out
    assert report["max_abs_diff"] <= 1e-4
    assert json.loads((tmp_path / "r.json").read_text())["max_abs_diff"] == report["max_abs_diff"]
    assert "max |ours - peer| over the frames:" in out
    assert "decode_chunk_size=4" in out
    assert "ratio ours/peer time: " in out and "(target <= 0.80x" in out
    assert "ratio ours/peer peak memory: " in out and "(target <= 1.00x" in out
    for kind in ("peer", "ours"):
        assert report["results"][kind]["seconds"] > 0 and report["results"][kind]["peak_mb"] > 0


def test_part_long_reports_both_peaks_and_the_ratio(capsys):
    report = bench.main(["--part", "long", "--preset", "tiny", "--threads", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    preset = bench.PRESETS["tiny"]["long"]
    assert f"ratio {preset['long']}/{preset['short']} frames peak memory: " in out and "(target <= 1.20x" in out
    assert f"ratio {preset['long']}/{preset['short']} frames time: " in out
    for kind in ("short", "long"):
        assert f"{preset[kind]} frames" in out
        assert report["results"][kind]["seconds"] > 0 and report["results"][kind]["peak_mb"] > 0
