"""`benchmarks/bench_video_vae.py` at toy size: the report's structure, never its times or figures.

The video VAE is the identity inflation of the stand-in's VAE, so its decode equals the image decoder's: the
reconstruction figures of both match and the flicker reduction is zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_script
from diffusers import AutoencoderKL

from diffusers_video import AutoencoderKLVideo

ROOT = Path(__file__).resolve().parents[1]
bench = load_script(ROOT / "benchmarks" / "bench_video_vae.py")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_toy_run_reports_every_part(tmp_path):
    AutoencoderKLVideo.from_vae2d(AutoencoderKL.from_pretrained(ROOT / "pipelines/shapes_sd/vae")).save_pretrained(
        tmp_path / "video_vae"
    )
    out = tmp_path / "result.json"
    result = bench.main(
        ["--video-vae", str(tmp_path / "video_vae"), "--num-clips", "2", "--num-videos", "1", "--steps", "1",
         "--time-frames", "2", "--time-size", "16", "--repeats", "1", "--threads", "1", "--device", "cpu",
         "--json", str(out)]
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    recon = result["recon"]
    for kind in ("image", "video"):
        assert recon[kind]["psnr_db"] > 10 and recon[kind]["temporal_error"] > 0
    assert recon["psnr_gain_db"] == pytest.approx(0, abs=1e-3)  # the identity inflation decodes as the image VAE
    assert recon["temporal_error_ratio"] == pytest.approx(1, abs=1e-3)
    demo = result["demo"]
    assert demo["num_videos"] == 1 and demo["flicker_reduction"] == pytest.approx(0, abs=1e-3)
    assert set(demo["video"]) == {"all_correct", "background_flicker", "temporal_consistency"}
    assert isinstance(demo["meets_targets"], bool)
    speed = result["speed"]
    for kind in ("image", "video"):
        assert speed[kind]["seconds"] > 0 and speed[kind]["peak_bytes"] >= 0
    assert speed["time_ratio"] > 0


def test_unknown_parts_are_refused():
    with pytest.raises(SystemExit):
        bench.parse_args(["--parts", "recon,nope"])
