"""`benchmarks/bench_i2vgen_xl_speed.py` at toy size: each part's two pipelines give the same video, and its report
holds the measurements and their ratios.

Only structural properties are checked (frames, report lines, positive measurements, ratios of the reported figures),
never times or their ratios against the targets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
bench = load_script(ROOT / "benchmarks" / "bench_i2vgen_xl_speed.py")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("part", bench.PARTS)
def test_the_converted_pipeline_gives_the_peers_frames_in_process(part, tmp_path, monkeypatch):
    from transformers import CLIPTextModel

    # the peer's worker patches CLIPTextModel.text_model as the benchmark does; monkeypatch removes it after the test
    monkeypatch.setattr(CLIPTextModel, "text_model", property(lambda self: self), raising=False)
    preset = bench.PRESETS["tiny"][part]
    bench.build_and_convert(part, preset, tmp_path)
    frames = {
        kind: bench.make_call(part, kind, tmp_path / bench.FOLDERS[part][kind], preset, decode_chunk_size=2)()
        for kind in ("peer", "ours")
    }  # 3 frames: 2 VAE calls
    size = preset["size"]
    assert frames["peer"].shape == frames["ours"].shape == (1, preset["frames"], size, size, 3)
    assert frames["peer"].std() > 0.01  # a real video, not a constant one that any two pipelines would agree on
    assert np.abs(frames["ours"] - frames["peer"]).max() <= 1e-4


@pytest.mark.slow  # four worker processes per part (~25 s each on the loaded CPU); the test above checks the frames
@pytest.mark.parametrize("part", bench.PARTS)
def test_each_part_reports_matching_frames_and_the_ratios(part, tmp_path, capsys):
    report = bench.main(
        ["--part", part, "--preset", "tiny", "--threads", "1", "--repeats", "1", "--json", str(tmp_path / "r.json")]
    )
    out = capsys.readouterr().out
    assert report["max_abs_diff"] <= 1e-4
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(report))
    results = report["results"]
    for kind in ("peer", "ours"):
        assert results[kind]["seconds"] > 0 and results[kind]["peak_mb"] > 0
        assert bench.NAMES[part][kind] in out
    assert report["time_ratio"] == pytest.approx(results["ours"]["seconds"] / results["peer"]["seconds"])
    assert report["memory_ratio"] == pytest.approx(results["ours"]["peak_mb"] / results["peer"]["peak_mb"])
    assert f"max |ours - peer| over the frames: {report['max_abs_diff']:.2e}" in out
    assert f"ratio ours/peer time: {report['time_ratio']:.2f}x (target <= 0.80x" in out
    assert f"ratio ours/peer peak memory: {report['memory_ratio']:.2f}x (target <= 1.00x" in out
    if part == "base":
        assert "CLIPTextModel.text_model patched" in out
