"""The `diffusers-video` command: the demo job, generate, push, help, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_video.cli import main

STAND_IN = Path(__file__).resolve().parents[1] / "pipelines" / "shapes_sd"
VIDEOFUSION_DEMO = Path(__file__).resolve().parents[1] / "pipelines" / "videofusion" / "demo"
# the demo steps of the I2VGen-XL, MagicVideo and VideoGen folders are tested in their own files
WITHOUT_NEWER_DEMOS = ["--i2vgen_xl", "none", "--magicvideo", "none", "--videogen", "none"]


def test_demo_runs_end_to_end(tmp_path, capsys):
    argv = ["demo", "--output_dir", str(tmp_path), "--num_clips", "2", "--stand_in", str(STAND_IN)]
    assert main([*argv, "--videofusion", str(VIDEOFUSION_DEMO), *WITHOUT_NEWER_DEMOS]) == 0  # own tests
    out = capsys.readouterr().out
    assert "all-correct accuracy: 1.00 over 2 clips" in out
    assert "over 8 held-out captions" in out  # the trained stand-in generated and was scored
    assert "max |video UNet - image UNet frame by frame|" in out
    assert (tmp_path / "shapes.gif").stat().st_size > 1000
    assert (tmp_path / "stand_in.png").exists()
    assert (tmp_path / "unet3d" / "config.json").exists()
    # the committed VideoFusion demo: three prompts, each scored, each written as GIF (and MP4), plus a strip of all
    assert "8 frames of 32x32" in out
    for name in ("videofusion_a_red_circle_moving_right", "videofusion"):
        assert (tmp_path / f"{name}.gif").stat().st_size > 1000
    # the committed Imagen Video demo (run from the repository root): the same three prompts through its four stages
    assert "base -> TSR -> SSR -> SSR, 16 frames of 64x64, 8 steps per stage, guidance 4/4/1/1" in out
    assert out.count("scorer sees: ") == 2 + 3 + 3
    assert _gif_frames(tmp_path / "imagen_video_a_red_circle_moving_right.gif").shape == (16, 128, 128, 3)


def test_demo_without_the_videofusion_demo_names_the_folder(tmp_path, capsys):
    argv = ["demo", "--output_dir", str(tmp_path), "--stand_in", str(STAND_IN)]
    assert main([*argv, "--videofusion", str(tmp_path / "no_demo")]) == 1
    assert "no_demo' is not a pipeline folder" in capsys.readouterr().err


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


# ---------------------------------------------------------------------------------------------------------------------
# generate and push
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    """A tiny VideoFusionPipeline (16x16 frames) saved to a folder."""
    from test_hub import tiny_pipeline

    folder = tmp_path_factory.mktemp("cli") / "videofusion"
    tiny_pipeline(with_base=True).save_pretrained(
        folder, remote_code=False
    )  # plain: push adds shims to the upload only
    return folder


def _gif_frames(path: Path) -> np.ndarray:
    with PIL.Image.open(path) as gif:
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")))
    return np.stack(frames)


def test_generate_writes_the_pipelines_video_as_gif_and_mp4(pipeline_folder, tmp_path, capsys):
    import imageio.v3 as iio
    import torch

    from diffusers_video import VideoFusionPipeline

    common = ["generate", "--pipeline", str(pipeline_folder), "--prompt", "a red circle", "--num_frames", "4"]
    common += ["--steps", "2", "--guidance_scale", "3.0", "--seed", "7", "--no_progress"]
    assert main([*common, "--output", str(tmp_path / "video.gif")]) == 0
    assert f"wrote {tmp_path / 'video.gif'} (4 frames of 16x16, seed 7)" in capsys.readouterr().out
    pipe = VideoFusionPipeline.from_pretrained(pipeline_folder)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(7)
    expected = pipe("a red circle", num_frames=4, num_inference_steps=2, guidance_scale=3.0, generator=generator)
    expected = expected.frames
    # the GIF holds exactly the pipeline's frames (16x16 frames have at most 256 colours: no palette loss)
    assert np.array_equal(_gif_frames(tmp_path / "video.gif"), (expected[0] * 255).round().astype(np.uint8))

    assert main([*common, "--output", str(tmp_path / "out" / "video.mp4")]) == 0
    assert iio.imread(tmp_path / "out" / "video.mp4").shape == (4, 16, 16, 3)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--prompt", "x", "--image", "first.png"], "`--image` is not an option of VideoFusionPipeline (it is not an"),
        (["--prompt", "x", "--output", "video.avi"], "`--output` must end in .mp4 or .gif but is 'video.avi'."),
        (["--prompt", "x", "--fps", "0"], "`--fps` must be at least 1 but is 0."),
        ([], "`--prompt` is required: VideoFusionPipeline generates a video from text."),
        (["--prompt", "x", "--num_frames", "0"], "`num_frames` must be an integer >= 1 but is 0."),
        (["--prompt", "x", "--steps", "2,2"], "`--steps` takes one number for VideoFusionPipeline (it has no stages)"),
        (["--prompt", "x", "--steps", "two"], "`--steps` must be an integer, or one per stage separated by commas"),
        (["x", "--prompt", "y"], "Give the prompt once, as PROMPT or as `--prompt`, but both were given: 'x' and 'y'"),
        (["x", "--pipeline_kwargs", "[2, 2]"], "`--pipeline_kwargs` must be a JSON object but is '[2, 2]'"),
        (["x", "--pipeline_kwargs", "{fps: 8}"], "`--pipeline_kwargs` must be a JSON object but is '{fps: 8}': Expecting"),
        (["x", "--pipeline_kwargs", '{"num_keyframes": 4}'], "`--pipeline_kwargs` has 'num_keyframes', which is not an argument of VideoFusionPipeline"),
        (["x", "--pipeline_kwargs", '{"num_inference_steps": 4}'], "`--pipeline_kwargs` sets 'num_inference_steps', which the command sets itself"),
        (["x", "--pipeline_kwargs", '{"output_type": "pt"}'], "`--pipeline_kwargs` sets 'output_type', which the command sets itself"),
    ],
)  # fmt: skip
def test_generate_mistakes_are_one_line_naming_the_option(arguments, message, pipeline_folder, capsys):
    assert main(["generate", "--pipeline", str(pipeline_folder), "--no_progress", *arguments]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("diffusers-video generate: error: ") and message in error and "\n" not in error


def test_generate_names_a_pipeline_it_cannot_load(tmp_path, capsys):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not a folder")
    for pipeline, message in (
        (tmp_path / "missing" / "deep" / "folder", "is neither an existing folder nor a Hub repo id"),
        (checkpoint, "is a file, not a pipeline folder"),
        (STAND_IN, "'StableDiffusionPipeline', which is not a diffusers-video pipeline"),
    ):
        assert main(["generate", "--pipeline", str(pipeline), "--prompt", "x", "--no_progress"]) == 1
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert str(pipeline) in error and message in error


@pytest.fixture(scope="module")
def cascade_folder(tmp_path_factory):
    """A tiny ImagenVideoPipeline, base (8 frames of 8x8) -> SSR x2, saved to a folder."""
    from test_pipeline_imagen_video import TEXT_DIM, ddim, tiny_unet

    from diffusers_video import ImagenVideoPipeline
    from diffusers_video.pipelines.imagen_video import StageSpec
    from diffusers_video.training.stand_in import build_t5_text_encoder, build_t5_tokenizer

    tokenizer = build_t5_tokenizer(model_max_length=8)
    text_encoder = build_t5_text_encoder(len(tokenizer), d_model=TEXT_DIM, num_layers=1)
    stages = [("base", tiny_unet(seed=0), ddim()), (StageSpec("ssr", 2), tiny_unet(sr=True, attention=False), ddim())]
    folder = tmp_path_factory.mktemp("cli") / "imagen_video"
    ImagenVideoPipeline.from_stages(text_encoder, tokenizer, stages).save_pretrained(folder)
    return folder


def test_generate_runs_a_cascade_with_per_stage_steps_and_guidance(cascade_folder, tmp_path, capsys):
    import torch

    from diffusers_video import ImagenVideoPipeline

    command = ["generate", "--pipeline", str(cascade_folder), "a red circle moving right", "--steps", "2,1"]
    command += ["--guidance_scale", "3,1", "--seed", "5", "--no_progress", "--output", str(tmp_path / "video.gif")]
    assert main(command) == 0
    assert f"wrote {tmp_path / 'video.gif'} (8 frames of 16x16, seed 5)" in capsys.readouterr().out
    pipe = ImagenVideoPipeline.from_pretrained(cascade_folder)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        "a red circle moving right", num_inference_steps=[2, 1], guidance_scale=[3.0, 1.0],
        generator=torch.Generator().manual_seed(5),
    ).frames  # fmt: skip
    assert np.array_equal(_gif_frames(tmp_path / "video.gif"), (expected[0] * 255).round().astype(np.uint8))
    # one number is every stage's; a list of the wrong length is the pipeline's one-line error
    assert main([*command[:4], "--steps", "1", "--no_progress", "--output", str(tmp_path / "one.gif")]) == 0
    capsys.readouterr()
    assert main([*command[:4], "--steps", "2,2,2", "--no_progress", "--output", str(tmp_path / "three.gif")]) == 1
    error = capsys.readouterr().err.strip()
    assert "`num_inference_steps` has 3 values but the cascade has 2 stages" in error and "\n" not in error


def test_generate_pipeline_names_a_demo_folder(cascade_folder, tmp_path, monkeypatch, capsys):
    from diffusers_video.commands import generate

    monkeypatch.chdir(tmp_path)  # no committed demo folders here
    output = ["--output", str(tmp_path / "video.gif"), "--steps", "1", "--no_progress"]
    assert main(["generate", "--pipeline", "imagen_video", "a red circle moving right", *output]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        "diffusers-video generate: error: `--pipeline imagen_video` loads the demo folder "
        "'pipelines/imagen_video/demo', which does not exist (yet) here: run from the repository root once the demo "
        "is committed, or pass a pipeline folder."
    )
    (tmp_path / "videofusion").mkdir()  # a folder with a demo's name: which one is meant?
    assert main(["generate", "--pipeline", "videofusion", "a red circle moving right", *output]) == 1
    error = capsys.readouterr().err.strip()
    assert "`--pipeline videofusion` names the demo folder 'pipelines/videofusion/demo' and a folder" in error
    assert "pass './videofusion' for the folder" in error and "\n" not in error
    # a demo folder that exists is loaded
    monkeypatch.setitem(generate.DEMO_PIPELINES, "imagen_video", cascade_folder)
    assert main(["generate", "--pipeline", "imagen_video", "a red circle moving right", *output]) == 0
    assert "(8 frames of 16x16, seed 0)" in capsys.readouterr().out


def test_push_uploads_the_folder_with_a_card_over_http(pipeline_folder, tmp_path):
    """`diffusers-video push` in a process whose HF_ENDPOINT is the local test Hub (tests/hub_server.py)."""
    from hub_server import HubServer, hub_env
    from huggingface_hub import ModelCard

    scores = {"scores": {"all_correct": {"accuracy": 0.875, "ci_low": 0.529, "ci_high": 0.978}}, "num_samples": 8}
    (tmp_path / "scores.json").write_text(json.dumps(scores))
    shutil.copy(Path(__file__).resolve().parents[1] / "docs" / "shapes_examples.gif", tmp_path / "sample.gif")
    with HubServer(tmp_path / "store") as server:
        env = {**os.environ, **hub_env(server, tmp_path / "home"), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "diffusers_video.cli", "push", str(pipeline_folder), "user/cli-push"]
        command += ["--private", "--scores", str(tmp_path / "scores.json"), "--sample", str(tmp_path / "sample.gif")]
        command += ["--base_model", "stabilityai/stable-diffusion-2-1"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"to {server.url}/user/cli-push" in result.stdout
        files = server.files("user/cli-push")
        assert server.repos["user/cli-push"].private

        command = [sys.executable, "-m", "diffusers_video.cli", "generate", "--pipeline", "user/no-such-repo"]
        missing = subprocess.run([*command, "--prompt", "x"], env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("diffusers-video generate: error: cannot load `--pipeline` 'user/no-such")
    assert len(missing.stderr.strip().splitlines()) == 1 and "There is no folder 'user/no-such-repo'" in missing.stderr

    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model == "stabilityai/stable-diffusion-2-1" and card.data.pipeline_tag == "text-to-video"
    assert "| all correct | 0.875 | 0.529-0.978 |" in card.text
    assert files["sample.gif"] == (tmp_path / "sample.gif").read_bytes()
    assert files["quality.json"] == (tmp_path / "scores.json").read_bytes()
    assert json.loads(files["model_index.json"])["_class_name"] == ["pipeline", "VideoFusionPipeline"]
    assert (
        files["residual_unet/diffusion_pytorch_model.safetensors"]
        == (pipeline_folder / "residual_unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    )
    assert json.loads((pipeline_folder / "model_index.json").read_text())["_class_name"] == "VideoFusionPipeline"


def test_push_refuses_pickles_and_non_pipeline_folders_before_uploading(pipeline_folder, tmp_path, capsys):
    folder = Path(shutil.copytree(pipeline_folder, tmp_path / "copy"))
    (folder / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    assert main(["push", str(folder), "user/x"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        f"diffusers-video push: error: '{folder / 'vae' / 'diffusion_pytorch_model.bin'}' is a pickled file, which "
        "runs code when loaded; convert it to safetensors, leave it out, or pass `allow_pickle=True` "
        "(`--allow_pickle`) to upload it anyway."
    )
    assert main(["push", str(tmp_path / "nothing"), "user/x"]) == 1
    assert f"'{tmp_path / 'nothing'}' does not exist or is not a folder." in capsys.readouterr().err
    assert main(["push", str(STAND_IN), "user/x"]) == 1
    assert "'StableDiffusionPipeline', which is not a diffusers-video pipeline" in capsys.readouterr().err


def test_demo_runs_an_imagen_video_cascade_and_names_a_missing_one(cascade_folder, tmp_path, capsys):
    argv = ["demo", "--output_dir", str(tmp_path), "--num_clips", "1", "--stand_in", str(STAND_IN)]
    argv += ["--videofusion", str(VIDEOFUSION_DEMO), *WITHOUT_NEWER_DEMOS]
    assert main([*argv, "--imagen_video", str(tmp_path / "no_cascade")]) == 1
    assert "no_cascade' is not a pipeline folder" in capsys.readouterr().err
    assert main([*argv, "--imagen_video", str(cascade_folder)]) == 0
    out = capsys.readouterr().out
    # the fixture: a base with text cross-attention, then a fully convolutional SSR stage (no text, no guidance)
    assert "base -> SSR, 8 frames of 16x16, 8 steps per stage, guidance 4/1" in out
    assert out.count("scorer sees: ") == 1 + 3 + 3
    assert (tmp_path / "imagen_video_a_red_circle_moving_right.gif").stat().st_size > 500
    # the three videos side by side, four columns of white between them, enlarged twice
    strip = _gif_frames(tmp_path / "imagen_video.gif")
    assert strip.shape == (8, 2 * 16, 2 * (3 * 16 + 2 * 4), 3)
    assert (strip[:, :, 2 * 16 : 2 * 20] == 255).all()
