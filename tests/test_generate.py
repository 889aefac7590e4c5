"""`diffusers-video generate --prompts FILE --output_dir DIR`: one video per prompt (the video `--prompt` would give
for the same seed), per-line seeds and options, the JSONL index, resumption, a LoRA, bad prompt files, and two
processes under `accelerate launch` writing the files of one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_video.cli import main
from diffusers_video.commands.generate import read_prompts

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")

PROMPTS = [
    {"prompt": "a red circle moving right", "seed": 7},
    {"prompt": "a blue square moving up", "num_frames": 3, "steps": 1},
    {"prompt": "a green triangle moving left", "negative_prompt": "a red circle"},
    {"prompt": "a white square moving down", "guidance_scale": 1.0},
]


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory) -> Path:
    """A tiny VideoFusionPipeline (16x16 frames, no base generator) saved to a folder."""
    from test_hub import tiny_pipeline

    folder = tmp_path_factory.mktemp("generate") / "videofusion"
    tiny_pipeline(with_base=False).save_pretrained(folder, remote_code=False)
    return folder


def gif_frames(path: Path) -> np.ndarray:
    with PIL.Image.open(path) as gif:
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")))
    return np.stack(frames)


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def batch(pipeline_folder: Path, prompts: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "generate", "--pipeline", str(pipeline_folder), "--prompts", str(prompts), "--output_dir", str(output_dir),
        "--format", "gif", "--num_frames", "4", "--steps", "2", "--seed", "100", "--no_progress", *extra,
    ]  # fmt: skip


def test_prompt_files_text_and_jsonl(tmp_path):
    text = tmp_path / "prompts.txt"
    text.write_text("# a comment\na red circle moving right\n\n  a blue square moving up  \n")
    jobs = read_prompts(text, seed=5)
    assert [(j.index, j.prompt, j.seed, j.options) for j in jobs] == [
        (0, "a red circle moving right", 5, {}),
        (1, "a blue square moving up", 6, {}),
    ]
    jobs = read_prompts(write_jsonl(tmp_path / "p.jsonl", PROMPTS), seed=100)
    assert [j.seed for j in jobs] == [7, 101, 102, 103]
    assert jobs[1].options == {"num_frames": 3, "steps": 1}
    (tmp_path / "frames").mkdir()
    jobs = read_prompts(write_jsonl(tmp_path / "frames" / "i.jsonl", [{"prompt": "x", "image": "first.png"}]))
    assert jobs[0].options == {"image": str(tmp_path / "frames" / "first.png")}  # relative to the prompts file


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "x", "sed": 1}', "line 2 of '.*' has unknown keys \\['sed'\\]"),
        ('{"prompt": ""}', 'line 2 of .* non-empty "prompt"'),
        ('{"prompt": "x", "seed": -1}', '"seed" must be an integer >= 0 but is -1'),
        ("{prompt: x}", "line 2 of .* is not valid JSON"),
        ('{"prompt": "x", "image": 3}', '"image" must be the name of an image file but is 3'),
    ],
)
def test_bad_prompt_lines_name_the_line(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_prompts(path)


def test_batch_mistakes_are_one_line(pipeline_folder, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    assert main(batch(pipeline_folder, empty, tmp_path / "out")) == 1
    assert "holds no prompt" in capsys.readouterr().err
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a red circle", "steps": 0}])
    assert main(batch(pipeline_folder, prompts, tmp_path / "out")) == 1
    assert not list((tmp_path / "out").glob("*.gif"))  # every line is checked before the first video
    assert main(batch(pipeline_folder, prompts, tmp_path / "out", "--output", "x.mp4")) == 1
    assert "leave out `--output`" in capsys.readouterr().err


def test_one_video_per_prompt_with_an_index_and_resumption(pipeline_folder, tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "videos"
    assert main(batch(pipeline_folder, prompts, out)) == 0
    assert "wrote 4 videos" in capsys.readouterr().out
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [(line["index"], line["seed"], line["file"]) for line in index] == [
        (0, 7, "00000.gif"), (1, 101, "00001.gif"), (2, 102, "00002.gif"), (3, 103, "00003.gif"),
    ]  # fmt: skip
    assert index[1]["num_frames"] == 3 and index[2]["negative_prompt"] == "a red circle"
    assert [len(gif_frames(out / line["file"])) for line in index] == [4, 3, 4, 4]

    # each video is the one `generate --prompt` writes for its prompt and seed
    single = tmp_path / "single.gif"
    command = ["generate", "--pipeline", str(pipeline_folder), "--prompt", PROMPTS[0]["prompt"], "--seed", "7"]
    assert main([*command, "--num_frames", "4", "--steps", "2", "--output", str(single), "--no_progress"]) == 0
    assert single.read_bytes() == (out / "00000.gif").read_bytes()
    assert (out / "00000.gif").read_bytes() != (out / "00003.gif").read_bytes()

    # an interrupted batch: the missing video is made again, the others are kept as they are
    kept = {name: (out / name).stat().st_mtime_ns for name in ("00000.gif", "00001.gif", "00003.gif")}
    lost = (out / "00002.gif").read_bytes()
    (out / "00002.gif").unlink()
    assert main(batch(pipeline_folder, prompts, out)) == 0
    assert "wrote 1 videos to" in capsys.readouterr().out
    assert (out / "00002.gif").read_bytes() == lost
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    assert [json.loads(line)["file"] for line in (out / "index.jsonl").read_text().splitlines()] == [
        line["file"] for line in index
    ]


def test_a_lora_changes_the_batch(pipeline_folder, tmp_path, capsys):
    from test_lora import random_lora

    from diffusers_video import VideoFusionPipeline
    from diffusers_video.pipelines.lora import VideoLoraLoaderMixin

    residual = VideoFusionPipeline.from_pretrained(pipeline_folder).residual_unet
    state, metadata = random_lora(residual, 0)
    VideoLoraLoaderMixin.save_lora_weights(tmp_path / "lora", {"unet": state}, {"unet": metadata})
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moving right\n")
    assert main(batch(pipeline_folder, prompts, tmp_path / "plain")) == 0
    assert main(batch(pipeline_folder, prompts, tmp_path / "lora", "--lora", str(tmp_path / "lora"))) == 0
    plain, adapted = (gif_frames(tmp_path / name / "00000.gif") for name in ("plain", "lora"))
    assert np.abs(adapted.astype(int) - plain).max() > 10
    assert main(batch(pipeline_folder, prompts, tmp_path / "x", "--lora", str(tmp_path / "nowhere"))) == 1
    assert "`--lora` '" in capsys.readouterr().err.splitlines()[-1]  # names it: neither a file nor a repo id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_write_the_videos_of_one(pipeline_folder, tmp_path):
    """`accelerate launch --multi_gpu` starts the processes with torchrun; without CUDA they run on CPU over gloo."""
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS[:3])  # 3 prompts: 2 + 1, an uneven split
    assert main(batch(pipeline_folder, prompts, tmp_path / "one", "--device", "cpu")) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "diffusers_video.cli", *batch(pipeline_folder, prompts, tmp_path / "two", "--device", "cpu"),
    ]  # fmt: skip
    result = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 1/2: 2 of 3 videos" in result.stdout and "process 2/2: 1 of 3 videos" in result.stdout
    for name in ("00000.gif", "00001.gif", "00002.gif", "index.jsonl"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def test_a_cascade_takes_per_stage_steps_and_guidance_per_line(tmp_path, capsys):
    from test_cli import cascade_folder

    folder = cascade_folder.__wrapped__(type("Factory", (), {"mktemp": lambda self, name: tmp_path / name})())
    lines = [
        {"prompt": "a red circle moving right", "seed": 3, "steps": [2, 1], "guidance_scale": [4, 1]},
        {"prompt": "a red circle moving right", "seed": 3, "steps": [2, 1], "guidance_scale": 1},
        {"prompt": "a red circle moving right", "steps": [2, 1, 1]},
    ]
    prompts = write_jsonl(tmp_path / "prompts.jsonl", lines[:2])
    command = ["generate", "--pipeline", str(folder), "--prompts", str(prompts), "--output_dir", str(tmp_path / "out")]
    assert main([*command, "--format", "gif", "--no_progress"]) == 0
    one, two = (gif_frames(tmp_path / "out" / f"0000{i}.gif") for i in (0, 1))
    assert one.shape == two.shape == (8, 16, 16, 3)
    assert not np.array_equal(one, two)  # the same seed; base guidance 4 against 1: each line's own options
    write_jsonl(prompts, lines[2:])
    assert main([*command, "--no_progress"]) == 1  # three numbers for two stages, before any video
    assert "num_inference_steps" in capsys.readouterr().err
