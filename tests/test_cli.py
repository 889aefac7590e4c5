"""The `diffusers-video` command: the demo job, help, and one-line errors for user mistakes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from diffusers_video.cli import main

STAND_IN = Path(__file__).resolve().parents[1] / "pipelines" / "shapes_sd"


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--output_dir", str(tmp_path), "--num_clips", "2", "--stand_in", str(STAND_IN)]) == 0
    out = capsys.readouterr().out
    assert "all-correct accuracy: 1.00 over 2 clips" in out
    assert "over 8 held-out captions" in out  # the trained stand-in generated and was scored
    assert "max |video UNet - image UNet frame by frame|" in out
    assert (tmp_path / "shapes.gif").stat().st_size > 1000
    assert (tmp_path / "stand_in.png").exists()
    assert (tmp_path / "unet3d" / "config.json").exists()


def test_user_mistakes_are_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "diffusers_video.cli", "demo", "--output_dir", str(tmp_path), "--num_clips", "0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "diffusers-video demo: error: `--num_clips` must be at least 1 but is 0."


def test_demo_without_the_stand_in_names_the_folder(tmp_path, capsys):
    assert main(["demo", "--output_dir", str(tmp_path), "--stand_in", str(tmp_path / "nowhere")]) == 1
    assert "nowhere' is not a pipeline folder" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
