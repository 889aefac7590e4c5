"""Training VideoGen's models: the true motion of the moving-shapes world, the flow upsampler's trainer, the
reference-conditioned video UNet and the latent super-resolution UNet, through their recipes on the stand-in.

The true flows are checked against the world's own renderer: warping the rendered frames with them gives back the
rendered middle frame (exactly where a shape moves by whole pixels). Each recipe trains a few steps on the stand-in
(`pipelines/shapes_sd`) and its result loads into `VideoGenPipeline`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_train_log

import diffusers_video.training.videogen  # noqa: F401 (registers the trainer for the `videogen` section)
from diffusers_video import AutoencoderKLVideo, FlowTemporalUpsampler, UNet3DModel, VideoGenPipeline
from diffusers_video.cli import main as cli_main
from diffusers_video.data.shapes import ShapeObject, ShapesScene, ShapesWorld
from diffusers_video.data.shapes_captions import ShapeSpec
from diffusers_video.models.flow_upsampler import backward_warp
from diffusers_video.pipelines.imagen_video.cascade import StageSpec, downsample_for_condition, upsample_condition
from diffusers_video.training import TrainingConfig, train
from diffusers_video.training.videogen import (
    FlowUpsamplerTrainer,
    VideoGenTrainer,
    assemble_pipeline,
    true_middle_flows,
)

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = str(ROOT / "pipelines" / "shapes_sd")


def _recipe(name, tmp_path, **overrides):
    config = TrainingConfig.from_json_file(ROOT / "pipelines" / "videogen" / f"train_{name}.json")
    values = {"output_dir": str(tmp_path), "model.pretrained_model_name_or_path": STAND_IN, "data.num_samples": 8,
              "data.cache_latents": False, "checkpointing_steps": None, **overrides}  # fmt: skip
    return config.with_overrides(values)


def _warp_pairs(video, flows):
    """Both neighbours of each middle time warped with `flows` `(P, 4, H, W)`: `video` `(F, C, H, W)`, frames two
    apart given."""
    given = video[::2]
    return backward_warp(given[:-1], flows[:, :2]), backward_warp(given[1:], flows[:, 2:])


@pytest.mark.parametrize("direction", ["right", "left", "up", "down"])
def test_true_flows_of_whole_pixel_motion_warp_the_rendered_frames_onto_the_middle_frame(direction):
    # 32 px, 9 frames, travel 0.25: 1 px per frame, so frames two apart are +-1 px from the middle time
    square = ShapeObject(ShapeSpec("red", "square", direction, "slow"), size=0.25, start=(0.5, 0.5), travel=0.25,
                         rgb=(0.9, 0.1, 0.1))  # fmt: skip
    scene = ShapesScene((square,), "plain", (0.05, 0.05, 0.05, 0.0), "a red square", "a red square", 0.0)
    video = torch.from_numpy(ShapesWorld(height=32, width=32, num_frames=9).render(scene)).permute(0, 3, 1, 2)
    flows = true_middle_flows(scene, 9, 32, 32, stride=2)  # (4, 4, 32, 32)
    assert flows.shape == (4, 4, 32, 32)
    moving = flows[:, 2:].abs().sum(1) > 0
    interior = flows[:, 2:].abs().sum(1) == 1  # a whole pixel of motion: the shape covers the pixel fully
    assert interior.any() and not flows.permute(0, 2, 3, 1)[~moving].any()  # the static background does not move
    torch.testing.assert_close(flows[:, :2], -flows[:, 2:], rtol=0, atol=0)
    warped0, warped1 = _warp_pairs(video, flows)
    middle = video[1::2]
    error = torch.minimum((warped0 - middle).abs().amax(1), (warped1 - middle).abs().amax(1))  # (P, H, W)
    # where the flow is exact (background, or a shape covering the pixel fully) one of the warps is the middle frame
    assert error[~moving | interior].max() < 1e-4
    # with the better warp at each pixel (what the learned mask is for), far better than blending the neighbours
    blend = (video[0:-1:2] + video[2::2]) / 2
    assert error.mean() < 0.1 * (blend - middle).abs().amax(1).mean()


@pytest.mark.slow
def test_a_flow_upsampler_learns_from_the_true_motion(tmp_path):
    """About 30 s on one CPU thread: 150 steps of batch 8 (the flow error falls from 0.032 to 0.023 latent pixels)."""
    config = _recipe("flow_upsampler", tmp_path, max_train_steps=150, train_batch_size=8, learning_rate=0.003,
                     lr_warmup_steps=0, ema_decay=None, **{"data.num_frames": 5, "data.num_samples": 64})  # fmt: skip
    train(config)
    log = read_train_log(tmp_path)
    for name, ratio in (("flow", 0.85), ("reconstruction", 0.6)):
        first, last = np.mean([line[name] for line in log[:5]]), np.mean([line[name] for line in log[-5:]])
        assert last < ratio * first, (name, first, last)


def test_the_flow_upsampler_recipe_supervises_each_clip_with_its_own_motion(tmp_path):
    config = _recipe("flow_upsampler", tmp_path, max_train_steps=2, train_batch_size=4,
                     **{"data.num_frames": 5, "videogen.pixel_loss_weight": 0.5})  # fmt: skip
    trainer = VideoGenTrainer(config)
    assert isinstance(trainer, FlowUpsamplerTrainer)
    part = next(iter(trainer._data_loader()))["video"]  # pixels (no cached latents)
    flows = trainer.true_flows(part, 32, 32)  # at the pixel size: (B, 4, 2, 32, 32)
    assert flows.shape == (4, 4, 2, 32, 32)
    errors, blends = [], []
    for clip, flow in zip(part["x"], flows):  # each clip warped with the flows of the scene at its position
        video = clip.transpose(0, 1)  # (F, 3, H, W)
        warped0, warped1 = _warp_pairs(video, flow.transpose(0, 1))
        middle = video[1::2]
        errors.append(torch.minimum((warped0 - middle).abs(), (warped1 - middle).abs()).mean())
        blends.append(((video[0:-1:2] + video[2::2]) / 2 - middle).abs().mean())
    ratios = [float(e / b) for e, b in zip(errors, blends)]
    assert max(ratios) < 0.5, ratios  # another clip's motion would not explain this clip's middle frames

    final = trainer.train()
    log = read_train_log(tmp_path)
    assert len(log) == 2 and {"reconstruction", "flow", "pixel"} <= set(log[0])
    model = FlowTemporalUpsampler.from_pretrained(final / "flow_upsampler")
    assert model.config.in_channels == 4 and list(model.config.block_out_channels) == [32, 64]
    assert not torch.equal(model.flow_out.weight, torch.zeros_like(model.flow_out.weight))  # it trained


def test_the_video_recipe_conditions_on_the_first_frame_and_saves_a_pipeline_that_samples_from_text(tmp_path):
    config = _recipe("video", tmp_path, max_train_steps=2, train_batch_size=2,
                     **{"data.num_frames": 4, "videogen.reference_dropout": 0.5})  # fmt: skip
    trainer = VideoGenTrainer(config)
    clean = torch.randn(16, 4, 4, 8, 8)
    reference = trainer.conditioning({"positions": torch.arange(16)}, clean)  # (B, C, F, h, w)
    kept = reference.flatten(1).abs().amax(1) > 0
    assert 0 < int(kept.sum()) < 16  # dropout 0.5
    for sample in range(16):
        for frame in range(4):
            expected = clean[sample, :, 0] if kept[sample] else torch.zeros_like(clean[sample, :, 0])
            assert torch.equal(reference[sample, :, frame], expected)
    again = trainer.conditioning({"positions": torch.arange(16)}, clean)
    assert torch.equal(again, reference)  # a function of (seed, position): a resumed run drops the same ones

    part = next(iter(trainer._data_loader()))["video"]  # a batch of the run (pixels: no cached latents)
    final = trainer.train()
    pipe = VideoGenPipeline.from_pretrained(final)
    assert pipe.unet.config.in_channels == 8 and pipe.image_unet is not None and pipe.flow_upsampler is None
    pipe.set_progress_bar_config(disable=True)
    frames = pipe("a red circle moving right", num_frames=4, num_inference_steps=2).frames  # from text alone
    assert frames.shape == (1, 4, 32, 32, 3)
    # the pipeline encodes a reference image as the trainer encodes a clip's first frame
    with torch.no_grad():
        first_frames = trainer.model_inputs(part)[:, :, 0]  # (B, 4, 8, 8)
        torch.testing.assert_close(pipe.encode_reference(part["x"][:, :, 0]), first_frames, rtol=0, atol=1e-6)


def test_a_random_reference_frame_is_one_frame_of_each_clip_drawn_per_sample(tmp_path):
    first = VideoGenTrainer(_recipe("video", tmp_path / "a", max_train_steps=1, **{"videogen.reference_dropout": 0.5}))
    config = _recipe("video", tmp_path / "b", max_train_steps=1,
                     **{"videogen.reference_dropout": 0.5, "videogen.reference_frame": "random"})  # fmt: skip
    trainer = VideoGenTrainer(config)
    clean = torch.randn(16, 4, 6, 8, 8)
    positions = {"positions": torch.arange(16)}
    reference, kept_first = trainer.conditioning(positions, clean), first.conditioning(positions, clean)
    picked = []
    for sample in range(16):
        if not reference[sample].any():
            assert not kept_first[sample].any()  # the same samples dropped as with the first frame
            continue
        matches = [k for k in range(6) if torch.equal(reference[sample, :, 0], clean[sample, :, k])]
        assert len(matches) == 1 and all(
            torch.equal(reference[sample, :, f], clean[sample, :, matches[0]]) for f in range(6)
        )
        picked.append(matches[0])
    assert len(set(picked)) > 2  # frames all over the clip, not the first alone
    assert torch.equal(trainer.conditioning(positions, clean), reference)  # a function of (seed, position)
    with pytest.raises(ValueError, match="`videogen.reference_frame` must be one of"):
        _recipe("video", tmp_path / "c", **{"videogen.reference_frame": "last"})


def test_the_super_resolution_recipe_conditions_on_the_upsampled_latents(tmp_path):
    config = _recipe("super_resolution", tmp_path, max_train_steps=1, train_batch_size=2,
                     **{"data.num_frames": 2, "data.height": 32, "data.width": 32, "videogen.noise_aug_max": 0.0})  # fmt: skip
    trainer = VideoGenTrainer(config)
    clean = torch.randn(2, 4, 2, 8, 8)
    condition = trainer.conditioning({"positions": torch.arange(2)}, clean)
    spec = StageSpec("ssr", 2)
    torch.testing.assert_close(condition, upsample_condition(downsample_for_condition(clean, spec), spec))
    conds = trainer.unet_kwargs({"positions": torch.arange(2)}, 2)["scalar_conds"]
    assert torch.equal(conds["noise_aug_level"], torch.zeros(2))
    final = trainer.train()
    unet = UNet3DModel.from_pretrained(final / "unet")
    assert unet.config.in_channels == 8 and list(unet.config.scalar_conditions) == ["noise_aug_level"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data.num_frames": 4}, "`data.num_frames` must be odd and >= 3 with `videogen.stage` 'flow_upsampler'"),
        ({"model.pipeline_class": "VideoGenPipeline"}, "`model.pipeline_class` must be one of (None,)"),
        ({"data.path": "clips", "data.cache_latents": False}, "`videogen.flow_loss_weight` must be 0 on video files"),
        ({"videogen.stage": "interpolation"}, "`videogen.stage` must be one of"),
        ({"videogen.reference_dropout": 1.5}, "`videogen.reference_dropout` must be in [0, 1] but is 1.5"),
        ({"image_fraction": 0.5}, "`image_fraction` must be 0 with `videogen.stage` 'flow_upsampler'"),
    ],
)
def test_configs_that_cannot_train_a_videogen_model_are_refused(overrides, message):
    config = TrainingConfig.from_json_file(ROOT / "pipelines" / "videogen" / "train_flow_upsampler.json")
    with pytest.raises(ValueError) as raised:
        config.with_overrides(overrides)
    assert message in str(raised.value)


def _perturb_copy(model: torch.nn.Module) -> torch.nn.Module:
    copy = type(model).from_config(model.config)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        copy.conv_in.weight.add_(0.01)
    return copy


def test_assemble_puts_the_separately_trained_stages_behind_the_video_model(tmp_path):
    runs = {}
    for name, overrides in (
        ("video", {"data.num_frames": 4}),
        ("flow_upsampler", {"data.num_frames": 5}),
        ("super_resolution", {"data.num_frames": 2, "data.height": 32, "data.width": 32}),
    ):
        config = _recipe(name, tmp_path / name, max_train_steps=1, train_batch_size=2, **overrides)
        runs[name] = VideoGenTrainer(config).train()
    output = tmp_path / "pipeline"
    written = assemble_pipeline(runs["video"], output, flow_upsampler_folder=runs["flow_upsampler"],
                                super_resolution_folder=runs["super_resolution"], fp16=True)  # fmt: skip
    assert (
        written == output
        and (output / "training_config.json").read_text() == (runs["video"] / "training_config.json").read_text()
    )
    pipe = VideoGenPipeline.from_pretrained(output)
    video = VideoGenPipeline.from_pretrained(runs["video"])
    flow = FlowTemporalUpsampler.from_pretrained(runs["flow_upsampler"] / "flow_upsampler")
    sr = UNet3DModel.from_pretrained(runs["super_resolution"] / "unet")
    for mine, theirs in ((pipe.unet, video.unet), (pipe.image_unet, video.image_unet), (pipe.flow_upsampler, flow),
                         (pipe.super_resolution_unet, sr)):  # fmt: skip
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k].half().float()) for k in a)  # saved in float16, loaded back in float32
        assert all(v.dtype == torch.float32 for v in a.values())
    assert pipe.config.super_resolution_factor == 2
    pipe.set_progress_bar_config(disable=True)
    frames = pipe("a red circle moving right", num_frames=3, num_inference_steps=1).frames
    assert frames.shape == (1, 5, 64, 64, 3)  # x2 frames by the flow upsampler, x2 size by the SR stage

    # a folder of the wrong run is refused, and the folder already there is kept
    before = sorted(p.relative_to(output) for p in output.rglob("*"))
    with pytest.raises(ValueError, match="`flow_upsampler_folder` .* has no `flow_upsampler/`"):
        assemble_pipeline(runs["video"], output, flow_upsampler_folder=runs["super_resolution"])
    with pytest.raises(ValueError, match="not a latent super-resolution run's final folder"):
        assemble_pipeline(runs["video"], output, super_resolution_folder=runs["video"])
    with pytest.raises(ValueError, match="is not a pipeline folder"):
        assemble_pipeline(runs["flow_upsampler"], output)
    assert sorted(p.relative_to(output) for p in output.rglob("*")) == before
    # another text-to-image model for the reference (e.g. the stand-in tuned on first frames); a folder without one
    image_model = tmp_path / "image_model"
    other = _perturb_copy(video.image_unet)
    other.save_pretrained(image_model / "unet")
    video.image_scheduler.save_pretrained(image_model / "scheduler")
    assemble_pipeline(runs["video"], tmp_path / "with_image_model", image_model_folder=image_model)
    swapped = VideoGenPipeline.from_pretrained(tmp_path / "with_image_model")
    assert torch.equal(swapped.image_unet.conv_in.weight, other.conv_in.weight)
    assert not torch.equal(swapped.image_unet.conv_in.weight, video.image_unet.conv_in.weight)
    with pytest.raises(ValueError, match="has no `unet/` of a UNet2DConditionModel"):
        assemble_pipeline(runs["video"], tmp_path / "refused", image_model_folder=runs["flow_upsampler"])

    # a video model trained on from a VideoGenPipeline folder keeps that folder's image model (its `image_unet/`)
    again = _recipe("video", tmp_path / "again", max_train_steps=1, train_batch_size=2,
                    **{"data.num_frames": 4, "model.pretrained_model_name_or_path": str(runs["video"]),
                       "model.temporal": {}})  # fmt: skip
    image_unet, image_scheduler = VideoGenTrainer(again).image_model()
    assert torch.equal(image_unet.conv_in.weight, video.image_unet.conv_in.weight)
    assert image_scheduler.config.num_train_timesteps == video.image_scheduler.config.num_train_timesteps

    # the command line writes the same folder
    from_cli = tmp_path / "from_cli"
    assert cli_main(["videogen", "assemble", "--video", str(runs["video"]), "--flow_upsampler",
                     str(runs["flow_upsampler"]), "--output_dir", str(from_cli)]) == 0  # fmt: skip
    again = VideoGenPipeline.from_pretrained(from_cli)
    assert again.super_resolution_unet is None
    assert torch.equal(again.flow_upsampler.flow_out.weight, flow.flow_out.weight)

    # `--vae`: VideoGen's enhanced decoder, a video VAE whose decoder alone differs, decodes the pipeline; another
    # encoder would change the latents every stage trained on: refused, nothing written
    video_vae = AutoencoderKLVideo.from_vae2d(video.vae)
    with torch.no_grad():
        video_vae.decoder.conv_out.weight.add_(0.01)
    video_vae.save_pretrained(tmp_path / "video_vae")
    argv = [
        "videogen",
        "assemble",
        "--video",
        str(runs["video"]),
        "--vae",
        str(tmp_path / "video_vae"),
        "--output_dir",
    ]
    assert cli_main([*argv, str(tmp_path / "with_vae")]) == 0
    decoded = VideoGenPipeline.from_pretrained(tmp_path / "with_vae").vae
    assert isinstance(decoded, AutoencoderKLVideo)
    assert torch.equal(decoded.decoder.conv_out.weight, video_vae.decoder.conv_out.weight)
    with torch.no_grad():
        video_vae.encoder.conv_in.weight.add_(0.01)
    video_vae.save_pretrained(tmp_path / "video_vae")
    with pytest.raises(ValueError, match="has another encoder than the base stage's VAE"):
        assemble_pipeline(runs["video"], tmp_path / "refused", vae_folder=tmp_path / "video_vae")
    assert not (tmp_path / "refused").exists()


def test_the_no_reference_recipe_differs_from_the_video_recipe_only_by_the_reference():
    """`bench_videogen.py --parts reference --with-reference --without-reference` compares the two at the same budget:
    the same model, data and optimiser; the reference always zeroed; as many steps as the checkpoint compared."""
    with_reference = TrainingConfig.from_json_file(ROOT / "pipelines" / "videogen" / "train_video.json").to_dict()
    without = TrainingConfig.from_json_file(
        ROOT / "pipelines" / "videogen" / "train_video_no_reference.json"
    ).to_dict()
    assert without["videogen"]["reference_dropout"] == 1.0
    assert without["max_train_steps"] % with_reference["checkpointing_steps"] == 0  # a checkpoint at the same step
    for config in (with_reference, without):
        for key in ("output_dir", "max_train_steps"):
            config.pop(key)
        config["videogen"].pop("reference_dropout")
    assert with_reference == without


def test_the_any_frame_recipe_differs_from_the_no_reference_recipe_only_by_the_reference():
    """The same-budget comparison of the demo's design (the reference from any frame) against no reference: the
    same model, data, optimiser and step count; only where the reference comes from and how often it is dropped."""
    any_frame = TrainingConfig.from_json_file(ROOT / "pipelines" / "videogen" / "train_video_any_frame.json").to_dict()
    without = TrainingConfig.from_json_file(
        ROOT / "pipelines" / "videogen" / "train_video_no_reference.json"
    ).to_dict()
    assert any_frame["videogen"]["reference_frame"] == "random" and any_frame["videogen"]["reference_dropout"] == 0.1
    assert any_frame["max_train_steps"] == without["max_train_steps"]
    for config in (any_frame, without):
        config.pop("output_dir")
        for key in ("reference_dropout", "reference_frame"):
            config["videogen"].pop(key)
    assert any_frame == without
