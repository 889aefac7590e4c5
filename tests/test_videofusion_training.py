"""VideoFusion's joint base/residual training (`training.videofusion`): the loss by hand, the stop-gradient, the saved
folder, exact resumption, bad input."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from conftest import read_train_log, tiny_clip_text_models, tiny_vae
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import load_file

from diffusers_video import DecomposedNoiseScheduler, UNet3DModel, VideoFusionPipeline
from diffusers_video.cli import main as cli_main
from diffusers_video.commands.train import overrides_from_args, register
from diffusers_video.training import Trainer, TrainingConfig, checkpointing, train
from diffusers_video.training.data import sample_generator
from diffusers_video.training.videofusion import (
    VideoFusionComponents,
    VideoFusionTrainer,
    export_videofusion_pipeline,
)

SIZE, FRAMES, TEXT_DIM, KEY = 16, 4, 16, 2  # the key frame of 4 frames is floor(4 / 2) = 2
BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")


# ------------------------------------------------------------------------------------------------- tiny components


def tiny_residual(channels: int = 3, cross_attention_dim: int = TEXT_DIM) -> UNet3DModel:
    torch.manual_seed(0)
    return UNet3DModel(
        sample_size=SIZE, in_channels=channels, out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=cross_attention_dim,
        attention_head_dim=2, temporal_attention_head_dim=8, mid_block_type=None,
    )  # fmt: skip


def tiny_base(channels: int = 3, cross_attention_dim: int = TEXT_DIM, sample_size: int = SIZE) -> UNet2DConditionModel:
    torch.manual_seed(1)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=cross_attention_dim,
        attention_head_dim=2, use_linear_projection=True,
    )  # fmt: skip


def components(base=True, base_prediction_type=None, residual=None) -> VideoFusionComponents:
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM)
    return VideoFusionComponents(
        unet=residual if residual is not None else tiny_residual(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        noise_scheduler=DDPMScheduler(clip_sample=False, **BETAS),
        base_unet=tiny_base() if base else None,
        base_prediction_type=base_prediction_type,
    )


def make_config(output_dir, videofusion=None, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), max_train_steps=3, train_batch_size=3, learning_rate=1e-3,
        checkpointing_steps=None, condition_dropout=0.5, snr_gamma=5.0,
        data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 64},
        videofusion={"base_prediction_type": "v_prediction", **(videofusion or {})},
    )  # fmt: skip
    values.update(overrides)
    return TrainingConfig.from_dict(values)


def parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    return sum(not torch.equal(before[k], after[k]) for k in before) / len(before)


# ------------------------------------------------------------------------------------- (a) the loss by hand


@pytest.mark.parametrize(
    "base_prediction_type, prediction_type",
    [("v_prediction", "epsilon"), ("epsilon", "epsilon"), ("v_prediction", "v_prediction")],
)
def test_training_loss_equals_the_formulas_computed_by_hand(tmp_path, base_prediction_type, prediction_type):
    parts = components()
    config = make_config(
        tmp_path,
        videofusion={"base_prediction_type": base_prediction_type, "base_noise_ratio": 0.3},
        prediction_type=prediction_type,
    )
    trainer = VideoFusionTrainer(config, parts)
    batch = next(iter(trainer._data_loader()))
    with torch.no_grad():
        loss = trainer.training_loss(batch)
    video = batch["video"]

    # the noise schedule, from the DDPMScheduler's betas by hand (the trainer builds its DecomposedNoiseScheduler)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    lam = torch.tensor([0.3, 0.3, 1.0, 0.3], dtype=torch.float64).view(1, 1, FRAMES, 1, 1)  # lambda_key = 1
    x0 = video["x"].double()  # (B, 3, F, H, W), pixel space
    t, drop, residual, base = [], [], [], []
    for position in video["positions"].tolist():  # each sample's own generator, in the trainer's order
        g = sample_generator(config.seed, position)
        t.append(torch.randint(0, 1000, (1,), generator=g))
        drop.append(torch.rand(1, generator=g).item() < 0.5)
        residual.append(torch.randn((1, 3, FRAMES, SIZE, SIZE), generator=g))
        base.append(torch.randn((1, 3, 1, SIZE, SIZE), generator=g))
    t, residual, base = torch.cat(t), torch.cat(residual).double(), torch.cat(base).double()
    assert any(drop) and not all(drop)  # condition dropout is exercised both ways
    alpha = alphas_cumprod[t].sqrt().view(-1, 1, 1, 1, 1)
    sigma = (1 - alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1, 1)
    eps = lam.sqrt() * base + (1 - lam).sqrt() * residual
    x_t = alpha * x0 + sigma * eps
    captions = ["" if d else c for d, c in zip(drop, video["captions"])]
    ids = parts.tokenizer(captions, padding="max_length", max_length=32, truncation=True, return_tensors="pt")
    with torch.no_grad():
        text = parts.text_encoder(ids.input_ids)[0]
        base_out = parts.base_unet(x_t[:, :, KEY].float(), t, encoder_hidden_states=text).sample.double()
        if base_prediction_type == "v_prediction":
            base_target = alpha[..., 0] * base[:, :, 0] - sigma[..., 0] * x0[:, :, KEY]
            b_hat = alpha[..., 0] * base_out + sigma[..., 0] * x_t[:, :, KEY]  # eps from v
        else:
            base_target, b_hat = base[:, :, 0], base_out
        x_res = x_t - sigma * lam.sqrt() * b_hat.unsqueeze(2)
        r_hat = parts.unet(x_res.float(), t, encoder_hidden_states=text).sample.double()
    others = [0, 1, 3]
    base_mse = ((base_out - base_target) ** 2).mean(dim=(1, 2, 3))
    if prediction_type == "v_prediction":  # the velocity of x_res: alpha sqrt(1 - lambda) r - sigma x_0
        residual_target = alpha * (1 - lam).sqrt() * residual - sigma * x0
    else:
        residual_target = residual
    residual_mse = ((r_hat[:, :, others] - residual_target[:, :, others]) ** 2).mean(dim=(1, 2, 3, 4))
    snr = (alpha / sigma).flatten() ** 2
    base_weight = snr.clamp(max=5.0) / (snr + 1 if base_prediction_type == "v_prediction" else snr)
    residual_weight = snr.clamp(max=5.0) / (snr + 1 if prediction_type == "v_prediction" else snr)
    expected_base, expected_residual = (base_weight * base_mse).mean(), (residual_weight * residual_mse).mean()

    assert trainer.loss_parts["base_loss"].item() == pytest.approx(expected_base.item(), rel=1e-5)
    assert trainer.loss_parts["residual_loss"].item() == pytest.approx(expected_residual.item(), rel=1e-5)
    assert loss.item() == pytest.approx((expected_base + expected_residual).item(), rel=1e-5)
    scheduler = trainer.components.noise_scheduler
    assert isinstance(scheduler, DecomposedNoiseScheduler) and scheduler.config.prediction_type == prediction_type


# ----------------------------------------------------------------------------------------- (b) stop-gradient


def test_residual_loss_gives_the_base_generator_no_gradient(tmp_path):
    parts = components()
    trainer = VideoFusionTrainer(make_config(tmp_path), parts)
    base_loss, residual_loss = trainer.videofusion_losses(next(iter(trainer._data_loader())))

    def gradients(model) -> list[torch.Tensor]:
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]

    residual_loss.backward(retain_graph=True)
    assert all(g.abs().max() == 0 for g in gradients(parts.base_unet))
    assert sum(g.abs().max() > 0 for g in gradients(parts.unet)) > 0.5 * len(list(parts.unet.parameters()))
    for p in [*parts.base_unet.parameters(), *parts.unet.parameters()]:
        p.grad = None
    base_loss.backward()
    assert sum(g.abs().max() > 0 for g in gradients(parts.base_unet)) > 0.9 * len(list(parts.base_unet.parameters()))
    assert all(g.abs().max() == 0 for g in gradients(parts.unet))


# ------------------------------------------------------------------------------- (c) a run and its saved folder


def _save_image_model(folder) -> None:
    """A tiny latent Stable-Diffusion-style folder: the base, and the source the residual is inflated from."""
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM)
    scheduler = DDIMScheduler(prediction_type="v_prediction", clip_sample=False, **BETAS)
    modules = {
        "unet": tiny_base(4, sample_size=SIZE // 2), "vae": tiny_vae(sample_size=SIZE), "text_encoder": text_encoder,
        "tokenizer": tokenizer, "scheduler": scheduler,
    }  # fmt: skip
    for name, module in modules.items():
        module.save_pretrained(folder / name)


def test_command_line_run_saves_a_videofusion_pipeline_folder_with_both_generators_trained(tmp_path):
    source = tmp_path / "sd"
    _save_image_model(source)
    config = TrainingConfig.from_dict(
        dict(
            output_dir=str(tmp_path / "run"), max_train_steps=3, train_batch_size=2, learning_rate=1e-3,
            checkpointing_steps=2, ema_decay=0.9, snr_gamma=5.0,
            data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 8, "cache_latents": True},
            model={
                "pretrained_model_name_or_path": str(source), "temporal": {"frame_position_encoding": "sinusoidal"}
            },
            videofusion={"base_model": str(source)},
        )
    )  # fmt: skip
    config.to_json_file(tmp_path / "config.json")
    assert (
        cli_main(["train", "--config", str(tmp_path / "config.json"), "--videofusion.base_noise_ratio", "0.25"]) == 0
    )

    final = tmp_path / "run" / "final"
    index = json.loads((final / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "VideoFusionPipeline"]
    assert index["base_prediction_type"] == "v_prediction"  # read from the base folder's scheduler
    assert index["base_unet"][1] == "UNet2DConditionModel" and index["residual_unet"][1] == "UNet3DModel"
    assert index["scheduler"][1] == "DecomposedNoiseScheduler"
    assert all((final / name).is_dir() for name in ("vae", "text_encoder", "tokenizer", "base_unet", "residual_unet"))
    scheduler = DecomposedNoiseScheduler.from_pretrained(final / "scheduler")
    assert scheduler.config.prediction_type == "epsilon" and scheduler.config.base_noise_ratio == 0.25
    assert torch.allclose(scheduler.alphas_cumprod, DDIMScheduler(**BETAS).alphas_cumprod)

    log = read_train_log(tmp_path / "run")
    assert [line["step"] for line in log] == [1, 2, 3]
    for line in log:
        assert line["loss"] == pytest.approx(line["base_loss"] + line["residual_loss"], rel=1e-6)
        assert line["base_loss"] > 0 and line["residual_loss"] > 0

    # both generators trained; the checkpoint holds both; the final folder holds their EMA weights
    base_initial = UNet2DConditionModel.from_pretrained(source / "unet").state_dict()
    residual_initial = UNet3DModel.from_pretrained_2d(
        str(source), subfolder="unet", frame_position_encoding="sinusoidal"
    ).state_dict()
    base_final = UNet2DConditionModel.from_pretrained(final / "base_unet").state_dict()
    residual_final = UNet3DModel.from_pretrained(final / "residual_unet").state_dict()
    assert changed(base_initial, base_final) > 0.9 and changed(residual_initial, residual_final) > 0.5
    checkpoint = checkpointing.latest_checkpoint(tmp_path / "run")
    assert checkpoint.name == "checkpoint-2"
    saved = load_file(checkpoint / "model.safetensors")
    assert any(k.startswith("base_unet.") for k in saved) and any(k.startswith("residual_unet.") for k in saved)

    # the folder loads as the pipeline and samples
    pipe = VideoFusionPipeline.from_pretrained(final)
    assert pipe.config.base_prediction_type == "v_prediction" and pipe.scheduler.config.base_noise_ratio == 0.25
    assert all(torch.equal(v, base_final[k]) for k, v in pipe.base_unet.state_dict().items())
    assert all(torch.equal(v, residual_final[k]) for k, v in pipe.residual_unet.state_dict().items())
    frames = pipe(
        "a red circle", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=2, output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames  # fmt: skip
    assert frames.shape == (1, FRAMES, SIZE, SIZE, 3) and np.isfinite(frames).all()

    # exported for committing: fp16 UNets and VAE, float32 text encoder, the training config kept; loads back in fp32
    exported = export_videofusion_pipeline(final, tmp_path / "demo")
    for folder in ("base_unet", "residual_unet", "vae"):
        assert {t.dtype for t in load_file(next((exported / folder).glob("*.safetensors"))).values()} == {
            torch.float16
        }
    assert json.loads((exported / "training_config.json").read_text()) == json.loads(
        (final / "training_config.json").read_text()
    )
    demo = VideoFusionPipeline.from_pretrained(exported, torch_dtype=torch.float32)
    assert demo.text_encoder.dtype == torch.float32 and demo.residual_unet.dtype == torch.float32
    for name in ("base_unet", "residual_unet"):
        original = getattr(pipe, name).state_dict()
        for key, value in getattr(demo, name).state_dict().items():
            assert torch.equal(value, original[key].half().float()), key
    with pytest.raises(FileNotFoundError, match="not a pipeline folder"):
        export_videofusion_pipeline(tmp_path / "run", tmp_path / "demo")
    assert (tmp_path / "demo" / "model_index.json").is_file()  # a failed export leaves the previous one


def test_frozen_base_stays_bit_for_bit_and_ema_covers_both_generators(tmp_path):
    parts = components()
    base_before, residual_before = parameters(parts.base_unet), parameters(parts.unet)
    frozen = VideoFusionTrainer(make_config(tmp_path / "frozen", videofusion={"train_base": False}), parts)
    final = frozen.train()
    assert all(torch.equal(base_before[k], v) for k, v in parameters(parts.base_unet).items())
    saved_base = UNet2DConditionModel.from_pretrained(final / "base_unet")
    assert all(torch.equal(base_before[k], v) for k, v in saved_base.state_dict().items() if k in base_before)
    assert changed(residual_before, parameters(parts.unet)) > 0.5

    parts = components()
    trainer = VideoFusionTrainer(make_config(tmp_path / "joint", ema_decay=0.9), parts)
    assert len(trainer.trainable) == len(list(parts.base_unet.parameters())) + len(list(parts.unet.parameters()))
    final = trainer.train()
    shadow = dict(zip([id(p) for p in trainer.trainable], trainer.ema.shadow_params))
    for folder, cls, model in (
        ("base_unet", UNet2DConditionModel, parts.base_unet),
        ("residual_unet", UNet3DModel, parts.unet),
    ):
        reloaded = dict(cls.from_pretrained(final / folder).named_parameters())
        for name, p in model.named_parameters():
            assert torch.equal(reloaded[name], shadow[id(p)]), (folder, name)
        assert any(not torch.equal(reloaded[n], p) for n, p in model.named_parameters())  # the EMA, not the last


def test_without_a_base_the_residual_unet_learns_the_decomposed_noise(tmp_path):
    parts = components(base=False)
    before = parameters(parts.unet)
    final = train(make_config(tmp_path, videofusion={"base_noise_ratio": 0.5}), parts)
    assert changed(before, parameters(parts.unet)) > 0.5
    index = json.loads((final / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "VideoFusionPipeline"] and index["base_unet"] == [None, None]
    assert not (final / "base_unet").exists() and (final / "residual_unet").is_dir()
    assert DecomposedNoiseScheduler.from_pretrained(final / "scheduler").config.base_noise_ratio == 0.5
    assert "base_loss" not in read_train_log(tmp_path)[0]


# ----------------------------------------------------------------------------------------------- (d) resume


def test_resume_latest_repeats_the_uninterrupted_losses_of_both_generators(tmp_path):
    common = dict(checkpointing_steps=2, ema_decay=0.9)
    reference = make_config(tmp_path / "reference", max_train_steps=4, **common)
    train(reference, components())
    interrupted = make_config(tmp_path / "run", max_train_steps=2, **common)
    train(interrupted, components())
    resumed = make_config(tmp_path / "run", max_train_steps=4, resume_from_checkpoint="latest", **common)
    train(resumed, components())

    a, b = read_train_log(tmp_path / "run"), read_train_log(tmp_path / "reference")
    assert [line["step"] for line in a] == [1, 2, 3, 4]
    assert a[1]["run"] != a[2]["run"]  # steps 3 and 4 come from the resumed run
    for key in ("loss", "base_loss", "residual_loss"):
        assert [line[key] for line in a] == pytest.approx([line[key] for line in b], rel=1e-6, abs=1e-9), key
    for folder, cls in (("base_unet", UNet2DConditionModel), ("residual_unet", UNet3DModel)):
        x = cls.from_pretrained(tmp_path / "run" / "final" / folder).state_dict()
        y = cls.from_pretrained(tmp_path / "reference" / "final" / folder).state_dict()
        assert all(torch.allclose(x[k], y[k], rtol=0, atol=1e-6) for k in x), folder


# -------------------------------------------------------------------------------------------- (e) bad input


def test_bad_videofusion_settings_raise_naming_them(tmp_path):
    for values, match in [
        ({"prediction_type": "sample"}, "`prediction_type` must be one of .*'sample'"),
        ({"image_fraction": 0.5}, "`image_fraction` must be 0 .* 0.5"),
        ({"data": {"num_frames": 1}}, "`data.num_frames` must be >= 2 .* 1"),
        ({"model": {"pipeline_class": "StableDiffusionPipeline"}}, "`model.pipeline_class`.*StableDiffusionPipeline"),
        ({"videofusion": {"base_noise_ratio": 1.5}}, r"`videofusion.base_noise_ratio` must be in \[0, 1\] but is 1.5"),
        ({"videofusion": {"base_prediction_type": "sample"}}, "`videofusion.base_prediction_type`.*'sample'"),
        ({"videofusion": {"train_base": "yes"}}, "`videofusion.train_base` must be of type bool but is 'yes'"),
        ({"videofusion": {"base_nosie_ratio": 0.5}}, "videofusion.base_nosie_ratio"),
    ]:
        with pytest.raises(ValueError, match=match):
            make_config(tmp_path, **values)

    with pytest.raises(ValueError, match=r"`in_channels` \(4\) must equal .* \(`in_channels` 3\)"):
        VideoFusionTrainer(
            make_config(tmp_path), VideoFusionComponents(**{**vars(components()), "base_unet": tiny_base(4)})
        )
    with pytest.raises(ValueError, match=r"`cross_attention_dim` \(8\) must equal the residual generator's \(16\)"):
        VideoFusionTrainer(
            make_config(tmp_path), VideoFusionComponents(**{**vars(components()), "base_unet": tiny_base(3, 8)})
        )
    no_type = make_config(tmp_path, videofusion={"base_prediction_type": None})
    with pytest.raises(ValueError, match="`videofusion.base_prediction_type` is None"):
        VideoFusionTrainer(no_type, components())
    assert VideoFusionTrainer(no_type, components(base_prediction_type="epsilon")).base_prediction_type == "epsilon"
    with pytest.raises(ValueError, match="`videofusion.base_model` is 'somewhere' but the given components have no"):
        VideoFusionTrainer(make_config(tmp_path, videofusion={"base_model": "somewhere"}), components(base=False))
    with pytest.raises(ValueError, match=r"`base_noise_ratio` \(0.2\) differs from `videofusion.base_noise_ratio`"):
        VideoFusionTrainer(
            make_config(tmp_path),
            VideoFusionComponents(
                **{**vars(components()), "noise_scheduler": DecomposedNoiseScheduler(base_noise_ratio=0.2)}
            ),
        )
    _save_image_model(tmp_path / "sd")
    with pytest.raises(FileNotFoundError, match="`videofusion.base_model`='.*missing-base'"):
        VideoFusionTrainer(make_config(tmp_path, videofusion={"base_model": str(tmp_path / "missing-base")}, model={
            "pretrained_model_name_or_path": str(tmp_path / "sd")}))  # fmt: skip
    with pytest.raises(ValueError, match="Trainer cannot train a config with a `videofusion` section"):
        Trainer(make_config(tmp_path), components())

    # a base whose noise schedule is not the residual's
    DDIMScheduler(prediction_type="v_prediction").save_pretrained(tmp_path / "other" / "scheduler")  # linear betas
    UNet2DConditionModel.from_pretrained(tmp_path / "sd" / "unet").save_pretrained(tmp_path / "other" / "unet")
    model = {"pretrained_model_name_or_path": str(tmp_path / "sd")}
    with pytest.raises(ValueError, match="base model's noise schedule .*'linear'.* differs from the residual"):
        VideoFusionTrainer(make_config(tmp_path, model=model, videofusion={"base_model": str(tmp_path / "other")}))

    # the run's schedule rescaled to zero terminal SNR: the base is fine-tuned onto it, unless it is frozen
    zero_snr = {**model, "noise_scheduler": {"_class_name": "DDPMScheduler", "rescale_betas_zero_snr": True, **BETAS}}
    base = {"base_model": str(tmp_path / "sd")}
    trainer = VideoFusionTrainer(
        make_config(tmp_path, model=zero_snr, videofusion=base, prediction_type="v_prediction")
    )
    assert trainer.components.noise_scheduler.alphas_cumprod[-1] < 1e-8
    with pytest.raises(ValueError, match="`rescale_betas_zero_snr`=True but the base model's .* has False; a frozen"):
        VideoFusionTrainer(
            make_config(
                tmp_path, model=zero_snr, videofusion={**base, "train_base": False}, prediction_type="v_prediction"
            )
        )
    with pytest.raises(ValueError, match="zero terminal SNR.*`prediction_type` \\('epsilon'\\)"):
        VideoFusionTrainer(make_config(tmp_path, model=zero_snr, videofusion=base))


def test_command_line_overrides_open_the_videofusion_section(tmp_path):
    plain = TrainingConfig.from_dict({"output_dir": str(tmp_path)})
    assert plain.videofusion is None
    opened = plain.with_overrides({"videofusion.base_model": "pipelines/shapes_sd"})
    assert opened.videofusion.base_model == "pipelines/shapes_sd" and opened.videofusion.base_noise_ratio == 0.5
    assert TrainingConfig.from_dict(opened.to_dict()) == opened

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--config", "x.json", "--videofusion.train_base", "false"])
    assert overrides_from_args(args) == {"videofusion.train_base": False}
