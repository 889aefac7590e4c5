"""The accelerate training loop: real (tiny) runs, checkpoints, kill-and-resume, two processes, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_train_log, tiny_clip_text_models, tiny_vae
from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from diffusers_video import DecomposedNoiseScheduler, UNet3DModel
from diffusers_video.cli import main as cli_main
from diffusers_video.models.unet_3d import temporal_parameter_names
from diffusers_video.training import Trainer, TrainingComponents, TrainingConfig, checkpointing, train
from diffusers_video.training.data import per_process_batch_size, sample_generator, split_batch
from diffusers_video.training.objectives import (
    per_sample_mse,
    sample_timesteps,
    sample_training_noise,
    timestep_weights,
    v_equivalent_loss_weights,
)
from diffusers_video.training.trainer import export_checkpoint

SIZE, FRAMES, TEXT_DIM = 16, 4, 16


# ------------------------------------------------------------------------------------------------- tiny components


def tiny_unet3d(channels: int = 3) -> UNet3DModel:
    torch.manual_seed(0)
    return UNet3DModel(
        sample_size=SIZE, in_channels=channels, out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=TEXT_DIM,
        attention_head_dim=2, temporal_attention_head_dim=8, mid_block_type=None,
    )  # fmt: skip


def tiny_unet2d(channels: int = 4, sample_size: int = SIZE // 2) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, cross_attention_dim=TEXT_DIM,
        attention_head_dim=2, use_linear_projection=True,
    )  # fmt: skip


def components(unet=None, noise_scheduler=None, vae=None) -> TrainingComponents:
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM)
    return TrainingComponents(
        unet=unet if unet is not None else tiny_unet3d(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        noise_scheduler=noise_scheduler if noise_scheduler is not None else DDPMScheduler(),
        vae=vae,
    )


def make_config(output_dir, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), max_train_steps=3, train_batch_size=2, learning_rate=1e-3,
        checkpointing_steps=None, condition_dropout=0.2,
        data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 64},
    )  # fmt: skip
    values.update(overrides)
    return TrainingConfig.from_dict(values)


def parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")


# ------------------------------------------------------------------------------------------------------- (a) a run


def test_few_step_run_checkpoints_rotate_and_final_folder_holds_the_ema_weights(tmp_path):
    parts = components(noise_scheduler=DecomposedNoiseScheduler(base_noise_ratio=0.5))
    initial = parameters(parts.unet)
    config = make_config(
        tmp_path, max_train_steps=4, checkpointing_steps=1, checkpoints_total_limit=2, ema_decay=0.9,
        prediction_type="v_prediction", snr_gamma=5.0,
    )  # fmt: skip
    trainer = Trainer(config, parts)
    final = trainer.train()

    log = read_train_log(tmp_path)
    assert [line["step"] for line in log] == [1, 2, 3, 4]
    assert all(np.isfinite(line["loss"]) and line["loss"] > 0 for line in log)
    trained = parameters(parts.unet)
    assert sum(not torch.equal(initial[k], trained[k]) for k in initial) > 0.9 * len(initial)

    assert [step for step, _ in checkpointing.list_checkpoints(tmp_path)] == [3, 4]
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())

    reloaded = UNet3DModel.from_pretrained(final / "unet")
    ema = dict(zip([n for n, _ in parts.unet.named_parameters()], trainer.ema.shadow_params))
    for name, value in reloaded.named_parameters():
        assert torch.equal(value, ema[name]), name
    assert any(not torch.equal(ema[k], trained[k]) for k in trained)  # the EMA, not the last weights, was saved
    scheduler = DecomposedNoiseScheduler.from_pretrained(final / "scheduler")
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.base_noise_ratio == 0.5
    assert TrainingConfig.from_json_file(final / "training_config.json") == config


def test_export_checkpoint_saves_what_the_final_folder_holds(tmp_path):
    _save_model_folder(tmp_path / "model")
    config = make_config(
        tmp_path / "run", max_train_steps=2, checkpointing_steps=2, ema_decay=0.9,
        model={"pretrained_model_name_or_path": str(tmp_path / "model")},
    )  # fmt: skip
    final = train(config)
    exported = export_checkpoint(tmp_path / "run" / "checkpoint-2", tmp_path / "exported")
    assert exported == tmp_path / "exported"
    final_state = UNet3DModel.from_pretrained(final / "unet").state_dict()
    exported_state = UNet3DModel.from_pretrained(exported / "unet").state_dict()
    assert final_state.keys() == exported_state.keys()
    assert all(torch.equal(final_state[k], exported_state[k]) for k in final_state)  # the EMA weights of step 2
    assert sorted(p.name for p in exported.iterdir()) == sorted(p.name for p in final.iterdir())

    with pytest.raises(ValueError, match="already exists"):
        export_checkpoint(tmp_path / "run" / "checkpoint-2", tmp_path / "exported")
    with pytest.raises(ValueError, match="not a complete training checkpoint"):
        export_checkpoint(tmp_path / "run", tmp_path / "elsewhere")


# ------------------------------------------------------------------------------------------- (b) it learns at all


def _denoising_error(unet, text_encoder, tokenizer, clips, captions, prediction_type) -> float:
    """The true epsilon / v error on fixed noise and timesteps, computed here by hand (not with the library)."""
    alphas_cumprod = DDPMScheduler().alphas_cumprod
    g = torch.Generator().manual_seed(123)
    timesteps = torch.tensor([50, 250, 500, 750])
    noise = torch.randn(clips.shape, generator=g)
    alpha = alphas_cumprod[timesteps].sqrt().view(-1, 1, 1, 1, 1)
    sigma = (1 - alphas_cumprod[timesteps]).sqrt().view(-1, 1, 1, 1, 1)
    target = noise if prediction_type == "epsilon" else alpha * noise - sigma * clips
    ids = tokenizer(captions, padding="max_length", max_length=32, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        prediction = unet(alpha * clips + sigma * noise, timesteps, text_encoder(ids)[0]).sample
    return ((prediction - target) ** 2).mean().item()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_overfitting_a_fixed_batch_lowers_the_true_denoising_error(tmp_path, prediction_type):
    parts = components()
    config = make_config(
        tmp_path, max_train_steps=40, train_batch_size=4, learning_rate=3e-3, condition_dropout=0.0,
        prediction_type=prediction_type, data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 4},
    )  # fmt: skip
    trainer = Trainer(config, parts)
    items = [trainer.datasets["video"][i] for i in range(4)]
    clips, captions = torch.stack([item["video"] for item in items]), [item["caption"] for item in items]
    args = (parts.text_encoder, parts.tokenizer, clips, captions, prediction_type)
    before = _denoising_error(parts.unet.eval(), *args)
    trainer.train()
    after = _denoising_error(parts.unet.eval(), *args)
    assert after < 0.5 * before, (before, after)


# --------------------------------------------------------------------------------------- (c) kill and resume


def _save_model_folder(folder: Path) -> None:
    parts = components()
    for name, component in parts.as_dict().items():
        component.save_pretrained(folder / name)


def run_killed_and_resumed(tmp_path: Path, config: TrainingConfig) -> tuple[Path, Path]:
    """Train `config` (output_dir `tmp_path/run`, endless, checkpointing) with the CLI in a subprocess, SIGKILL it
    after its first checkpoint, resume with `--resume latest` for 4 more steps, and check the losses and weights
    against an uninterrupted run (`tmp_path/reference`). Returns both run folders."""
    run_dir, reference_dir = Path(config.output_dir), tmp_path / "reference"
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
    # Equal up to float32 summation order: the killed run is another process, and oneDNN may pick other kernels for
    # other memory alignments (a wrong data position or RNG state would change the losses in their first digits).
    losses, reference_losses = [line["loss"] for line in resumed], [line["loss"] for line in reference]
    assert losses == pytest.approx(reference_losses, rel=1e-6, abs=1e-9)
    # the first steps come from the killed process, the rest from the resumed one: it did resume
    assert len({line["run"] for line in resumed[:resumed_from]}) == 1
    killed_run = resumed[0]["run"]
    assert all(line["run"] != killed_run for line in resumed[resumed_from:])
    a = UNet3DModel.from_pretrained(run_dir / "final" / "unet").state_dict()
    b = UNet3DModel.from_pretrained(reference_dir / "final" / "unet").state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)
    return run_dir, reference_dir


def test_sigkill_then_resume_latest_repeats_the_uninterrupted_loss_sequence(tmp_path):
    _save_model_folder(tmp_path / "model")
    config = make_config(
        tmp_path / "run", max_train_steps=100_000, checkpointing_steps=2, ema_decay=0.9,
        model={"pretrained_model_name_or_path": str(tmp_path / "model")},
    )  # fmt: skip
    run_killed_and_resumed(tmp_path, config)


# ------------------------------------------------------------------------------------- (d) checkpoint selection


def test_latest_ignores_partial_and_corrupted_checkpoints(tmp_path):
    def fake_checkpoint(step: int, marker: bool = True) -> Path:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 100)
        if marker:
            checkpointing.write_marker(folder, step, "hash")
        return folder

    good = fake_checkpoint(2)
    fake_checkpoint(5, marker=False)  # killed before the marker (cannot happen through os.replace, but copied ones)
    (fake_checkpoint(7) / "model.safetensors").write_bytes(b"x" * 10)  # truncated after its marker was written
    (fake_checkpoint(8) / "checkpoint.json").write_text('{"step": 8, "fi')  # corrupted marker
    (tmp_path / ".tmp-checkpoint-9").mkdir()  # a write in progress
    assert checkpointing.latest_checkpoint(tmp_path) == good
    assert checkpointing.resolve_resume("latest", tmp_path) == good
    assert checkpointing.resolve_resume(str(tmp_path), tmp_path / "elsewhere") == good
    checkpointing.rotate_checkpoints(tmp_path, 1)
    assert good.exists() and (tmp_path / "checkpoint-5").exists()  # only complete checkpoints count and rotate


# ----------------------------------------------------------------------------------------- (e) two processes


def _two_process_worker(index: int, port: int, configs_json: str, out_dir: str) -> None:
    os.environ.update(
        RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        ACCELERATE_USE_CPU="yes", GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    for name, values in json.loads(configs_json).items():
        parts = components()
        Trainer(TrainingConfig.from_dict(values), parts).train()
        torch.save(parts.unet.state_dict(), Path(out_dir) / f"{name}-rank{index}.pt")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_keep_identical_weights_and_train_like_one(tmp_path):
    configs = {
        "joint": make_config(tmp_path / "joint", max_train_steps=2, train_batch_size=4, image_fraction=0.5),
        "video": make_config(tmp_path / "video", max_train_steps=2, train_batch_size=4, gradient_accumulation_steps=2),
    }
    torch.multiprocessing.start_processes(
        _two_process_worker,
        args=(_free_port(), json.dumps({k: c.to_dict() for k, c in configs.items()}), str(tmp_path)),
        nprocs=2,
        start_method="spawn",
    )
    initial = tiny_unet3d().state_dict()
    for name in configs:
        rank0, rank1 = torch.load(tmp_path / f"{name}-rank0.pt"), torch.load(tmp_path / f"{name}-rank1.pt")
        assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), name
        assert sum(not torch.equal(initial[k], rank0[k]) for k in rank0) > 0.9 * len(rank0), name

    # one process with the same global batch sees the same samples and noise: the same training up to rounding
    single = components()
    train(make_config(tmp_path / "one", max_train_steps=2, train_batch_size=4, gradient_accumulation_steps=2), single)
    trained = single.unet.state_dict()
    assert max((trained[k] - rank0[k]).abs().max().item() for k in rank0) < 1e-5
    losses = [line["loss"] for line in read_train_log(tmp_path / "video")]
    assert losses == pytest.approx([line["loss"] for line in read_train_log(tmp_path / "one")], rel=1e-5)


# -------------------------------------------------------------------------------------- (f) freeze_spatial


def test_freeze_spatial_trains_only_temporal_parameters(tmp_path):
    unet = tiny_unet3d()
    temporal = set(temporal_parameter_names(unet))
    before = parameters(unet)
    train(make_config(tmp_path, freeze_spatial=True, adam_weight_decay=0.1), components(unet))
    after = parameters(unet)
    spatial = set(before) - temporal
    assert spatial and all(torch.equal(before[k], after[k]) for k in spatial)
    assert sum(not torch.equal(before[k], after[k]) for k in temporal) > 0.9 * len(temporal)


# -------------------------------------------------------------------------------- (g) joint image-video batches


def _record_unet_calls(unet) -> list[tuple[int, ...]]:
    calls = []
    unet.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape)))
    return calls


def test_joint_batches_run_images_as_single_frame_videos(tmp_path):
    unet = tiny_unet3d()
    calls = _record_unet_calls(unet)
    train(make_config(tmp_path / "joint", max_train_steps=2, train_batch_size=4, image_fraction=0.5), components(unet))
    assert calls == [(2, 3, FRAMES, SIZE, SIZE), (2, 3, 1, SIZE, SIZE)] * 2

    # images only: the temporal layers are skipped, so they get no gradient and stay exactly as they were
    unet = tiny_unet3d()
    calls = _record_unet_calls(unet)
    before = parameters(unet)
    config = make_config(tmp_path / "images", max_train_steps=2, train_batch_size=4, image_fraction=0.9)
    train(config, components(unet))
    after = parameters(unet)
    assert calls == [(4, 3, 1, SIZE, SIZE)] * 2
    temporal = set(temporal_parameter_names(unet))
    assert all(torch.equal(before[k], after[k]) for k in temporal)
    assert all(not torch.equal(before[k], after[k]) for k in set(before) - temporal)


# --------------------------------------------------------------------------- (h) the image stand-in pipeline path


def test_image_unet_in_latent_space_saves_a_stable_diffusion_pipeline(tmp_path):
    parts = components(
        unet=tiny_unet2d(),
        vae=tiny_vae(sample_size=SIZE),
        noise_scheduler=DDPMScheduler(steps_offset=1, clip_sample=False),
    )
    before = parameters(parts.unet)
    config = make_config(
        tmp_path, prediction_type="v_prediction", model={"pipeline_class": "StableDiffusionPipeline"},
        data={"height": SIZE, "width": SIZE, "num_frames": 1, "num_samples": 8, "cache_latents": True},
    )  # fmt: skip
    final = train(config, parts)
    assert any(not torch.equal(before[k], v) for k, v in parameters(parts.unet).items())
    assert json.loads((final / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"

    pipe = StableDiffusionPipeline.from_pretrained(final)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    for name, value in pipe.unet.named_parameters():
        assert torch.equal(value, dict(parts.unet.named_parameters())[name]), name
    images = pipe(
        "a red circle", num_inference_steps=2, height=SIZE, width=SIZE, output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images  # fmt: skip
    assert images.shape == (1, SIZE, SIZE, 3) and np.isfinite(images).all()


# ------------------------------------------------------------------------------------------ objectives and data


def test_decomposed_training_noise_shares_the_base_and_is_per_sample():
    shared = DecomposedNoiseScheduler(base_noise_ratio=1.0)
    noise = sample_training_noise(shared, (2, 3, FRAMES, 8, 8), [sample_generator(0, p) for p in (0, 1)])
    assert torch.equal(noise.noise[:, :, :1].expand_as(noise.noise), noise.noise)  # all base: frames identical
    assert noise.base.shape == (2, 3, 1, 8, 8)
    # a sample's noise depends on its own position only, not on the batch it is in (what makes processes agree)
    half = DecomposedNoiseScheduler(base_noise_ratio=0.5)
    pair = sample_training_noise(half, (2, 3, FRAMES, 8, 8), [sample_generator(0, p) for p in (5, 6)])
    alone = sample_training_noise(half, (1, 3, FRAMES, 8, 8), [sample_generator(0, 6)])
    assert torch.equal(pair.noise[1:], alone.noise)


def test_video_folder_dataset_trains(tmp_path):
    data = tmp_path / "clips"
    data.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        np.save(data / f"{i}.npy", rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8))
        lines.append(json.dumps({"file_name": f"{i}.npy", "caption": f"clip {i}"}))
    (data / "metadata.jsonl").write_text("\n".join(lines))
    config = make_config(tmp_path / "run", max_train_steps=2, image_fraction=0.5, data={
        "path": str(data), "height": SIZE, "width": SIZE, "num_frames": FRAMES})  # fmt: skip
    train(config, components())
    assert len(read_train_log(tmp_path / "run")) == 2


def test_model_sources_inflate_load_or_build(tmp_path):
    folder = tmp_path / "sd"
    parts = components(unet=tiny_unet2d(3, SIZE))
    for name, component in parts.as_dict().items():
        component.save_pretrained(folder / name)
    source = {"pretrained_model_name_or_path": str(folder)}

    inflated = Trainer(make_config(tmp_path, model={**source, "temporal": {"frame_adaptor": True}})).unet
    assert isinstance(inflated, UNet3DModel) and inflated.config.frame_adaptor
    state2d = parts.unet.state_dict()
    assert all(torch.equal(value, state2d[key]) for key, value in inflated.state_dict().items() if key in state2d)

    image = Trainer(
        make_config(tmp_path, data={"num_frames": 1}, model={**source, "unet_class": "UNet2DConditionModel"})
    ).unet
    assert type(image) is UNet2DConditionModel

    scratch = dict(tiny_unet3d().config)
    decomposed = {"_class_name": "DecomposedNoiseScheduler", "base_noise_ratio": 0.3}
    trainer = Trainer(
        make_config(
            tmp_path,
            prediction_type="v_prediction",
            model={**source, "unet_config": scratch, "noise_scheduler": decomposed},
        )
    )
    assert trainer.unet.config.block_out_channels == tiny_unet3d().config.block_out_channels
    scheduler = trainer.components.noise_scheduler
    assert isinstance(scheduler, DecomposedNoiseScheduler) and scheduler.config.base_noise_ratio == 0.3
    assert scheduler.config.prediction_type == "v_prediction"


# ------------------------------------------------------------------------------------------------ (i) bad input


def test_bad_input_gets_clear_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        TrainingConfig.from_json_file(tmp_path / "nowhere.json")
    (tmp_path / "typo.json").write_text(json.dumps({"learning_rte": 1e-4, "data": {"hieght": 8}}))
    with pytest.raises(ValueError, match="learning_rte"):
        TrainingConfig.from_json_file(tmp_path / "typo.json")
    with pytest.raises(ValueError, match="data.hieght"):
        TrainingConfig.from_dict({"data": {"hieght": 8}})
    with pytest.raises(ValueError, match="'sample'"):
        make_config(tmp_path, prediction_type="sample")
    for fraction in (1.0, -0.1):
        with pytest.raises(ValueError, match=f"`image_fraction` must be in \\[0, 1\\) but is {fraction}"):
            make_config(tmp_path, image_fraction=fraction)
    with pytest.raises(
        ValueError, match=r"`train_batch_size` \(5\) must be divisible by the number of processes \(2\)"
    ):
        per_process_batch_size(5, 2)
    with pytest.raises(ValueError, match="no image"):
        split_batch(2, 0.1, FRAMES)
    with pytest.raises(FileNotFoundError, match="missing-clips"):
        Trainer(make_config(tmp_path, data={"path": str(tmp_path / "missing-clips")}), components())
    with pytest.raises(FileNotFoundError, match="missing-model"):
        Trainer(make_config(tmp_path, model={"pretrained_model_name_or_path": str(tmp_path / "missing-model")}))
    with pytest.raises(ValueError, match="freeze_spatial"):
        make_config(
            tmp_path, freeze_spatial=True, data={"num_frames": 1}, model={"unet_class": "UNet2DConditionModel"}
        )
    with pytest.raises(ValueError, match="freeze_spatial"):
        Trainer(make_config(tmp_path, freeze_spatial=True, data={"num_frames": 1}), components(tiny_unet2d(3, SIZE)))
    with pytest.raises(ValueError, match="num_frames"):
        Trainer(make_config(tmp_path), components(tiny_unet2d(3, SIZE)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty' holds no complete checkpoint"):
        checkpointing.resolve_resume(str(tmp_path / "empty"), tmp_path)
    with pytest.raises(FileNotFoundError, match="no-such-checkpoint"):
        checkpointing.resolve_resume(str(tmp_path / "no-such-checkpoint"), tmp_path)

    assert cli_main(["train", "--config", str(tmp_path / "nowhere.json")]) == 1
    assert "nowhere.json" in capsys.readouterr().err
    make_config(tmp_path).to_json_file(tmp_path / "ok.json")
    assert cli_main(["train", "--config", str(tmp_path / "ok.json"), "--max_train_steps", "many"]) == 1
    assert "--max_train_steps" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- timestep bias


def test_timestep_bias_later_draws_the_noisiest_timesteps_as_often_as_asked():
    weights = timestep_weights(1000, "later", portion=0.1, multiplier=6.0)
    assert weights[:900].eq(1).all() and weights[900:].eq(6).all()
    generators = [sample_generator(0, i) for i in range(6000)]
    drawn = sample_timesteps(1000, generators, weights)
    assert drawn.min() >= 0 and drawn.max() <= 999
    # 100 timesteps of weight 6 against 900 of weight 1: 600 / 1500 = 40% of the draws (binomial sd 0.6 points)
    assert abs((drawn >= 900).float().mean().item() - 0.4) < 0.025
    earlier = sample_timesteps(1000, generators, timestep_weights(1000, "earlier", portion=0.1, multiplier=6.0))
    assert abs((earlier < 100).float().mean().item() - 0.4) < 0.025


def test_no_timestep_bias_draws_the_numbers_uniform_runs_always_drew():
    assert timestep_weights(1000, "none", 0.5, 3.0) is None and timestep_weights(1000, "later", 0.5, 1.0) is None
    drawn = sample_timesteps(1000, [sample_generator(3, i) for i in range(8)], None)
    expected = torch.cat([torch.randint(0, 1000, (1,), generator=sample_generator(3, i)) for i in range(8)])
    assert torch.equal(drawn, expected)


def test_training_uses_the_biased_timesteps(tmp_path):
    """Every favoured sample lands in the last timestep when its weight dwarfs the others'."""
    parts = components()
    seen = []
    add_noise = parts.noise_scheduler.add_noise

    def recording_add_noise(clean, noise, timesteps):
        seen.extend(timesteps.tolist())
        return add_noise(clean, noise, timesteps)

    parts.noise_scheduler.add_noise = recording_add_noise
    config = make_config(
        tmp_path, max_train_steps=2, timestep_bias_strategy="later", timestep_bias_portion=0.001,
        timestep_bias_multiplier=1e12,
    )  # fmt: skip
    Trainer(config, parts).train()
    assert len(seen) == 4 and set(seen) == {999}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"timestep_bias_strategy": "range"}, "`timestep_bias_strategy` must be one of ('none', 'later', 'earlier')"),
        ({"timestep_bias_portion": 1.0}, "`timestep_bias_portion` must be in (0, 1) but is 1.0"),
        ({"timestep_bias_multiplier": 0.0}, "`timestep_bias_multiplier` must be > 0 but is 0.0"),
    ],
)
def test_bad_timestep_bias_is_a_clear_value_error(tmp_path, overrides, message):
    with pytest.raises(ValueError) as error:
        make_config(tmp_path, **overrides)
    assert message in str(error.value)


def test_v_equivalent_weighting_turns_an_epsilon_error_into_the_implied_v_error():
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    g = torch.Generator().manual_seed(0)
    clean, noise, eps_hat = (torch.randn(4, 3, 2, 4, 4, generator=g) for _ in range(3))
    timesteps = torch.tensor([0, 300, 800, 999])
    noisy = scheduler.add_noise(clean, noise, timesteps)
    ab = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
    x0_hat = (noisy - (1 - ab).sqrt() * eps_hat) / ab.sqrt()  # what the epsilon prediction implies
    v_hat = ab.sqrt() * eps_hat - (1 - ab).sqrt() * x0_hat
    v_error = per_sample_mse(v_hat, scheduler.get_velocity(clean, noise, timesteps))
    weighted = per_sample_mse(eps_hat, noise) * v_equivalent_loss_weights(scheduler, timesteps)
    torch.testing.assert_close(weighted, v_error, rtol=1e-4, atol=1e-6)
    assert weighted[3] > 100 * per_sample_mse(eps_hat, noise)[3]  # the noisiest timestep now counts


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss_weighting": "x0"}, "`loss_weighting` must be one of ('none', 'v_equivalent') but is 'x0'"),
        ({"loss_weighting": "v_equivalent", "prediction_type": "v_prediction"}, "(is 'v_prediction')"),
        ({"loss_weighting": "v_equivalent", "snr_gamma": 5.0}, "no `snr_gamma` (is 5.0)"),
    ],
)
def test_bad_loss_weighting_is_a_clear_value_error(tmp_path, overrides, message):
    with pytest.raises(ValueError) as error:
        make_config(tmp_path, **overrides)
    assert message in str(error.value)
