"""`diffusers-video bench quality` end to end on a tiny real pipeline, and `evaluate_pipeline` on an oracle."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
import torch

from diffusers_video import cli
from diffusers_video.data.quality import (
    MEAN_METRICS,
    evaluate_pipeline,
    format_quality_table,
    infer_video_settings,
    load_pipeline,
    score_ground_truth,
)
from diffusers_video.data.shapes import ShapesWorld

ATTRIBUTES = ("color", "shape", "direction", "speed", "all_correct")


def tiny_tokenizer():
    """A character-level CLIP tokenizer built in memory (transformers 5: `CLIPTokenizer(vocab=..., merges=...)`)."""
    from transformers import CLIPTokenizer

    letters = list(string.ascii_lowercase) + [","]
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(tokens)}, merges=[], model_max_length=77)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    """diffusers' own TextToVideoSDPipeline with tiny random components, saved to a folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        sample_size=16,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=8,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(  # one block: no downsampling, so 16x16 latents decode to 16x16 frames
        block_out_channels=(8,),
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        norm_num_groups=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=64,
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=1,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    pipeline = TextToVideoSDPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tiny_tokenizer(), unet=unet, scheduler=scheduler
    )
    folder = tmp_path_factory.mktemp("tiny_t2v")
    pipeline.save_pretrained(folder)
    return folder


@pytest.fixture
def bench_only(monkeypatch):
    """Run `cli.main` with only the bench sub-command registered."""
    monkeypatch.setattr(cli, "_COMMAND_MODULES", ["diffusers_video.commands.bench"])


def test_bench_quality_runs_prints_the_table_and_writes_json(pipeline_dir, tmp_path, capsys, bench_only):
    output = tmp_path / "out" / "quality.json"
    argv = ["bench", "quality", str(pipeline_dir), "--num-samples", "3", "--steps", "2", "--num-frames", "8"]
    code = cli.main([*argv, "--seed", "1", "--output", str(output), "--num-real", "8", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    for label in ("colour accuracy", "shape accuracy", "direction accuracy", "speed accuracy", "all correct"):
        assert label in printed
    for label in ("temporal consistency", "FSD vs 8 real clips", "seconds per video", "95% CI", str(output)):
        assert label in printed
    for label in ("ground truth", "path deviation, worst frame", "path jump (leave-one-out)", "backward jump"):
        assert label in printed
    for label in ("colour spread in shape", "background grain", "worst frame is the middle"):
        assert label in printed
    result = json.loads(output.read_text())
    assert result["pipeline"] == "TextToVideoSDPipeline" and result["pipeline_dir"] == str(pipeline_dir)
    assert (result["num_samples"], result["num_inference_steps"], result["seed"]) == (3, 2, 1)
    assert (result["num_frames"], result["height"], result["width"]) == (8, 16, 16)  # size inferred from the folder
    for key in ATTRIBUTES:
        entry = result["scores"][key]
        assert entry["n"] == 3 and 0 <= entry["ci_low"] <= entry["accuracy"] <= entry["ci_high"] <= 1
    assert 0 <= result["scores"]["temporal_consistency"]["mean"] <= 1
    assert result["fsd"] > 0 and result["num_real"] == 8 and result["seconds_per_video"] > 0
    assert len(result["samples"]) == 3 and all(
        "worst_frame" in s and "path_deviation_max" in s for s in result["samples"]
    )
    assert result["ground_truth"]["all_correct"]["accuracy"] == 1.0  # the world's own renders of the same captions
    assert result["ground_truth"]["shape_color_std"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert all(
        s["prompt"] == ShapesWorld(split="heldout").scene((1, 0, i)).caption for i, s in enumerate(result["samples"])
    )
    # The videos came from `generate --prompts` (exact arrays and an index) and score as the in-memory loop does.
    videos_dir = tmp_path / "out" / "quality_videos"
    index = [json.loads(line) for line in (videos_dir / "index.jsonl").read_text().splitlines()]
    assert [(line["file"], line["seed"]) for line in index] == [("00000.npy", 1), ("00001.npy", 2), ("00002.npy", 3)]
    pipeline = load_pipeline(pipeline_dir)
    in_memory = evaluate_pipeline(pipeline, num_samples=3, num_inference_steps=2, seed=1, num_frames=8, num_real=8,
                                  progress=False)  # fmt: skip
    for key in ("scores", "ground_truth", "fsd", "samples", "num_frames", "height", "width"):
        assert result[key] == in_memory[key], key
    # A rerun resumes: nothing is generated again (no time to report) and the scores are the same.
    mtimes = [(videos_dir / line["file"]).stat().st_mtime_ns for line in index]
    assert cli.main([*argv, "--seed", "1", "--output", str(output), "--num-real", "8", "--no-progress"]) == 0
    again = json.loads(output.read_text())
    assert again["scores"] == result["scores"] and again["seconds_per_video"] is None
    assert [(videos_dir / line["file"]).stat().st_mtime_ns for line in index] == mtimes
    # Videos made with other settings are refused, not mixed in.
    assert cli.main([*argv[:-1], "4", "--seed", "1", "--output", str(output), "--no-progress"]) == 1
    assert "other settings" in capsys.readouterr().err


def test_bench_quality_fails_clearly_without_a_pipeline_folder(tmp_path, capsys, bench_only):
    (tmp_path / "notes.txt").write_text("not a pipeline")
    assert cli.main(["bench", "quality", str(tmp_path), "--num-samples", "1", "--steps", "1"]) == 1
    error = capsys.readouterr().err
    assert "model_index.json" in error and str(tmp_path) in error and "Traceback" not in error
    assert cli.main(["bench", "quality", str(tmp_path / "missing"), "--steps", "1"]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    assert cli.main(["bench", "quality", str(tmp_path), "--steps", "1"]) == 1
    assert "'NoSuchPipeline'" in capsys.readouterr().err
    assert cli.main(["bench", "quality", str(tmp_path), "--steps", "0"]) == 1
    assert "`--steps` must be at least 1, but is 0" in capsys.readouterr().err


class OraclePipeline:
    """A perfect text-to-video "pipeline": it renders what the prompt asks for."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompt, num_inference_steps, generator, output_type="np", num_frames=16, height=32, width=32):
        prompts = [prompt] if isinstance(prompt, str) else prompt
        generators = generator if isinstance(generator, list) else [generator]
        self.calls.append((len(prompts), num_frames, height, width))
        world = ShapesWorld(height, width, num_frames)
        seeds = [int(torch.randint(0, 2**31, (1,), generator=g)) for g in generators]
        frames = np.stack([world.render(world.scene_for_prompt(p, seed)) for p, seed in zip(prompts, seeds)])
        return type("Output", (), {"frames": frames})()


def test_evaluate_pipeline_scores_an_oracle_as_perfect_and_batches():
    oracle = OraclePipeline()
    assert infer_video_settings(oracle) == {"height": None, "width": None, "num_frames": 16}
    result = evaluate_pipeline(
        oracle, num_samples=10, num_inference_steps=1, batch_size=4, num_frames=8, progress=False
    )
    assert [c[0] for c in oracle.calls] == [4, 4, 2] and oracle.calls[0][1:] == (8, 32, 32) and result["height"] == 32
    assert all(result["scores"][key]["accuracy"] == 1.0 for key in ATTRIBUTES), result["scores"]
    assert result["scores"]["temporal_consistency"]["mean"] > 0.98 and result["fsd"] < 1.0
    assert "all correct" in format_quality_table(result) and json.loads(json.dumps(result)) == result
    # The oracle draws what the prompt asks for, so every defect measure sits on the ground truth's floor.
    scores = result["scores"]
    assert scores["path_deviation_loo_max"]["mean"] < 0.1 / 32 and scores["worst_frame_is_middle"]["n"] == 0
    assert scores["backward_jump_max"]["mean"] == 0.0 and scores["backward_steps"]["mean"] == 0.0
    assert scores["shape_color_std"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert result["ground_truth"] == score_ground_truth(10, 32, 32, 8)  # the same held-out scenes, drawn
    assert all(result["samples"][i]["worst_frame"] is None for i in range(10))
    with pytest.raises(ValueError, match="`num_samples` must be a positive integer, but is 0"):
        evaluate_pipeline(oracle, num_samples=0)


class ImageToVideoOracle(OraclePipeline):
    """An oracle with an `image` input, like image-to-video pipelines: it records the first frames it gets."""

    def __call__(self, prompt, image, num_inference_steps, generator, output_type="np", num_frames=8):
        self.images = image if isinstance(image, list) else [image]
        return super().__call__(prompt, num_inference_steps, generator, output_type, num_frames, 32, 32)


def test_evaluate_pipeline_gives_image_to_video_pipelines_a_first_frame():
    from PIL import Image

    oracle = ImageToVideoOracle()
    result = evaluate_pipeline(oracle, num_samples=2, num_inference_steps=1, batch_size=2, progress=False, num_real=2)
    assert all(isinstance(image, Image.Image) and image.size == (64, 64) for image in oracle.images)
    assert result["scores"]["all_correct"]["accuracy"] == 1.0 and result["num_frames"] == 8
    with pytest.raises(ValueError, match="`height=32` was given, but ImageToVideoOracle.__call__ has no `height`"):
        evaluate_pipeline(oracle, num_samples=1, height=32)


class CascadeOracle(OraclePipeline):
    """An oracle with per-stage arguments and a `default_size()`, like `ImagenVideoPipeline`."""

    def default_size(self):
        return 4, 24, 40

    def __call__(self, prompt, generator, num_inference_steps=50, guidance_scale=6.0, guidance="constant",
                 output_type="np", num_frames=None, height=None, width=None):  # fmt: skip
        self.arguments = (num_inference_steps, guidance_scale, guidance)
        return super().__call__(prompt, num_inference_steps, generator, output_type, num_frames, height, width)


def test_evaluate_pipeline_passes_call_kwargs_and_a_cascades_default_size():
    oracle = CascadeOracle()
    assert infer_video_settings(oracle) == {"height": 24, "width": 40, "num_frames": 4}
    call_kwargs = {"num_inference_steps": [8, 4], "guidance_scale": [4.0, 1.0], "guidance": "oscillating"}
    result = evaluate_pipeline(
        oracle, num_samples=2, batch_size=2, progress=False, num_real=2, call_kwargs=call_kwargs
    )
    assert oracle.arguments == ([8, 4], [4.0, 1.0], "oscillating") and oracle.calls == [(2, 4, 24, 40)]
    assert result["num_inference_steps"] == [8, 4] and result["guidance_scale"] == [4.0, 1.0]
    assert result["call_kwargs"] == {"guidance": "oscillating"} and (result["height"], result["width"]) == (24, 40)
    assert call_kwargs["num_inference_steps"] == [8, 4]  # the caller's dict is left alone
    with pytest.raises(ValueError, match=r"`call_kwargs` has \['eta'\], which CascadeOracle.__call__ does not take"):
        evaluate_pipeline(oracle, num_samples=1, call_kwargs={"eta": 0.0})
    with pytest.raises(ValueError, match=r"`call_kwargs` must not set \['height'\]"):
        evaluate_pipeline(oracle, num_samples=1, call_kwargs={"height": 8})


def test_ground_truth_floor_and_tables_of_results_without_the_new_measures():
    floor = score_ground_truth(num_samples=12, height=32, width=32, num_frames=8, seed=3)
    assert floor["num_videos"] == 12 and floor["all_correct"]["accuracy"] == 1.0
    assert floor["path_deviation_max"]["mean"] < 0.1 / 32 and floor["backward_steps"]["mean"] == 0.0
    assert floor["worst_frame_is_middle"] == {"mean": None, "ci_low": None, "ci_high": None, "count": 0, "n": 0}
    with pytest.raises(ValueError, match="`num_samples` must be a positive integer, but is 0"):
        score_ground_truth(num_samples=0)
    old = {"pipeline": "Old", "num_samples": 2, "height": 8, "width": 8, "num_frames": 2, "num_inference_steps": 1}
    old.update(seed=0, fsd=None, num_real=0, seconds_per_video=0.5)
    old["scores"] = {key: floor[key] for key in ("color", "shape", "direction", "speed", "all_correct")}
    old["scores"].update(
        temporal_consistency=floor["temporal_consistency"], background_flicker=floor["background_flicker"]
    )
    table = format_quality_table(old)  # written before the defect measures and the ground truth existed
    assert "temporal consistency" in table and "background grain" not in table and "n/a" in table
    assert {key for key, _ in MEAN_METRICS} <= set(floor)
