"""Training a temporal-aware VAE decoder (`video_vae` config section): tiny runs, what trains, kill-and-resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import read_train_log, tiny_vae

from diffusers_video import AutoencoderKLVideo
from diffusers_video.cli import main as cli_main
from diffusers_video.models.video_vae import temporal_parameter_names
from diffusers_video.training import TrainingConfig, VideoVAETrainer, checkpointing, train
from diffusers_video.training.video_vae import half_size, video_vae_loss

SIZE, FRAMES = 16, 4

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")


def save_tiny_vae(folder: Path) -> AutoencoderKLVideo:
    """Save a tiny `AutoencoderKL` at `folder/vae`; returns its identity inflation (the run's starting point)."""
    vae = tiny_vae()
    vae.save_pretrained(folder / "vae")
    return AutoencoderKLVideo.from_vae2d(vae)


def make_config(tmp_path: Path, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(tmp_path / "run"), max_train_steps=3, train_batch_size=2, learning_rate=1e-2,
        checkpointing_steps=None, data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 2},
        model={"pretrained_model_name_or_path": str(tmp_path / "model")}, video_vae={},
    )  # fmt: skip
    values.update(overrides)
    return TrainingConfig.from_dict(values)


def changed(before: AutoencoderKLVideo, after: AutoencoderKLVideo) -> set[str]:
    b = before.state_dict()
    return {name for name, value in after.state_dict().items() if not torch.equal(value, b[name])}


def test_temporal_run_lowers_the_loss_on_a_fixed_batch_and_changes_only_the_temporal_layers(tmp_path):
    initial = save_tiny_vae(tmp_path / "model")
    # two clips, a batch of two: every step sees the same batch (the loss is a mean, the order does not matter)
    final = train(make_config(tmp_path, max_train_steps=25, video_vae={"temporal_loss_weight": 2.0}))
    log = read_train_log(tmp_path / "run")
    assert [line["step"] for line in log] == list(range(1, 26))
    assert log[-1]["loss"] < 0.9 * log[0]["loss"]
    for line in log:  # the logged loss is the weighted sum of its logged parts
        assert line["loss"] == pytest.approx(line["reconstruction"] + 2.0 * line["temporal"], rel=1e-5)
    trained = AutoencoderKLVideo.from_pretrained(final)
    moved = changed(initial, trained)
    temporal = set(temporal_parameter_names(initial))
    assert moved and moved <= temporal
    assert not any(name.startswith(("encoder.", "quant_conv.")) for name in moved)
    assert (final / "training_config.json").is_file()


def test_decoder_run_trains_the_decoder_and_never_the_encoder(tmp_path):
    initial = save_tiny_vae(tmp_path / "model")
    final = train(make_config(tmp_path, video_vae={"train_layers": "decoder"}))
    moved = changed(initial, AutoencoderKLVideo.from_pretrained(final))
    assert any(not name.startswith(tuple(temporal_parameter_names(initial))) for name in moved)  # spatial ones too
    assert all(name.startswith(("decoder.", "post_quant_conv.")) for name in moved)


def test_the_temporal_options_reach_the_inflated_vae_and_a_video_vae_folder_loads_as_it_is(tmp_path):
    save_tiny_vae(tmp_path / "model")
    config = make_config(tmp_path, max_train_steps=1, video_vae={"temporal": {"temporal_attention": "directed"}})
    trainer = VideoVAETrainer(config)
    assert trainer.vae.config.temporal_attention == "directed"
    final = trainer.train()
    source = {"pretrained_model_name_or_path": str(final)}
    again = make_config(tmp_path, output_dir=str(tmp_path / "again"), max_train_steps=1, model=source,
                        video_vae={"subfolder": None})  # fmt: skip
    assert isinstance(train(again), Path)


def test_half_size_clips_are_2x2_means_and_their_loss_is_averaged_by_clip_count(tmp_path):
    clips = torch.arange(2 * 3 * 2 * 4 * 4, dtype=torch.float32).reshape(2, 3, 2, 4, 4)
    small = half_size(clips)
    assert small.shape == (2, 3, 2, 2, 2)
    assert small[1, 2, 1, 0, 1] == clips[1, 2, 1, 0:2, 2:4].mean()
    save_tiny_vae(tmp_path / "model")
    trainer = VideoVAETrainer(
        make_config(tmp_path, train_batch_size=4, video_vae={"train_layers": "decoder", "half_size_fraction": 0.25})
    )
    x = torch.rand(4, 3, FRAMES, SIZE, SIZE) * 2 - 1
    loss = trainer.training_loss({"video": {"x": x}})
    expected = 0.0
    for group, weight in ((half_size(x[:1]), 0.25), (x[1:], 0.75)):  # round(0.25 * 4) = 1 clip at half size
        decoded = trainer.model(trainer.encode(group))
        expected = expected + weight * video_vae_loss(decoded, group, 1.0)["loss"]
    torch.testing.assert_close(loss, expected)
    assert trainer.loss_parts["reconstruction"] > 0


def test_video_vae_loss_is_l1_plus_the_weighted_l1_of_frame_differences():
    target = torch.zeros(1, 1, 3, 1, 1)
    decoded = torch.tensor([0.0, 1.0, 1.0]).view(1, 1, 3, 1, 1)
    losses = video_vae_loss(decoded, target, temporal_weight=0.5)
    assert losses["reconstruction"].item() == pytest.approx(2 / 3)
    assert losses["temporal"].item() == pytest.approx(0.5)  # differences (1, 0) against (0, 0)
    assert losses["loss"].item() == pytest.approx(2 / 3 + 0.25)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"video_vae": {"train_layers": "encoder"}}, "video_vae.train_layers"),
        ({"video_vae": {"temporal_loss_weight": -1.0}}, "video_vae.temporal_loss_weight"),
        ({"video_vae": {"temporal": []}}, "video_vae.temporal"),
        ({"video_vae": {"unknown": 1}}, "video_vae.unknown"),
        ({"data": {"num_frames": 1}}, "data.num_frames"),
        ({"videofusion": {}}, "cannot both be set"),
        ({"video_vae": {"half_size_fraction": 1.0}}, r"`video_vae.half_size_fraction` must be in \[0, 1\) but is 1.0"),
        (
            {"video_vae": {"half_size_fraction": 0.5}, "data": {"height": 18, "width": 17, "num_frames": 2}},
            "needs an even frame size to downsample x2 but `data.height` x `data.width` is 18x17",
        ),
    ],
)
def test_bad_video_vae_configs_are_clear_value_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(tmp_path, **overrides)


def test_a_folder_without_a_vae_is_a_clear_error(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(ValueError, match="holds no VAE"):
        VideoVAETrainer(make_config(tmp_path))


def test_sigkill_then_resume_latest_repeats_the_uninterrupted_run(tmp_path):
    save_tiny_vae(tmp_path / "model")
    config = make_config(tmp_path, max_train_steps=100_000, checkpointing_steps=2, learning_rate=1e-3, ema_decay=0.9,
                         data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 64})  # fmt: skip
    run_dir, reference_dir = tmp_path / "run", tmp_path / "reference"
    config_file = tmp_path / "config.json"
    config.to_json_file(config_file)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "diffusers_video.cli", "train", "--config", str(config_file)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not checkpointing.list_checkpoints(run_dir):
            if process.poll() is not None:
                pytest.fail(f"training exited early: {process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 60 s")
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    resumed_from = checkpointing.list_checkpoints(run_dir)[-1][0]
    total = resumed_from + 4
    common = ["train", "--config", str(config_file), "--max_train_steps", str(total)]
    assert cli_main([*common, "--resume", "latest"]) == 0
    assert cli_main([*common, "--output_dir", str(reference_dir)]) == 0

    resumed, reference = read_train_log(run_dir), read_train_log(reference_dir)
    assert [line["step"] for line in resumed] == list(range(1, total + 1))
    for key in ("loss", "reconstruction", "temporal"):
        values = [line[key] for line in resumed]
        assert values == pytest.approx([line[key] for line in reference], rel=1e-6, abs=1e-9)
    killed_run = resumed[0]["run"]
    assert all(line["run"] != killed_run for line in resumed[resumed_from:])  # it did resume
    a = AutoencoderKLVideo.from_pretrained(run_dir / "final").state_dict()
    b = AutoencoderKLVideo.from_pretrained(reference_dir / "final").state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)
