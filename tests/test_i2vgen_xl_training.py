"""I2VGen-XL training (`training.i2vgen_xl`) and the stand-in's CLIP image tower (`training.stand_in_image`): runs from
the command line that save folders `I2VGenXLCascadePipeline` loads and samples, learning on a fixed batch, exact
resumption of a killed run, bad config values, and contrastive learning of the image tower."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_train_log, tiny_clip_text_models, tiny_vae
from diffusers import DDPMScheduler, UNet2DConditionModel
from safetensors.torch import load_file
from test_training import run_killed_and_resumed
from transformers import AutoImageProcessor, AutoTokenizer, CLIPVisionModelWithProjection

from diffusers_video import AutoencoderKLVideo, I2VGenXLCascadePipeline, I2VGenXLContentEncoder
from diffusers_video.cli import main as cli_main
from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.training import TrainingConfig, train
from diffusers_video.training.components import load_text_encoder
from diffusers_video.training.i2vgen_xl import I2VGenXLTrainer, load_i2vgen_xl_components
from diffusers_video.training.stand_in_image import build_image_encoder, retrieval_accuracy, train_image_encoder

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")
ROOT = Path(__file__).resolve().parents[1]
SIZE, FRAMES, TEXT_DIM = 16, 4, 16
ZERO_SNR = {
    "_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
    "prediction_type": "v_prediction", "clip_sample": False, "rescale_betas_zero_snr": True,
}  # fmt: skip
TEMPORAL = {
    "temporal_layout": "modelscope", "temporal_attention": "bidirectional", "temporal_attention_head_dim": 8,
    "frame_position_encoding": None,
}  # fmt: skip


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A tiny stand-in folder: text encoder, tokenizer, VAE (2x), image UNet, scheduler, CLIP image tower."""
    folder = tmp_path_factory.mktemp("i2v_model") / "stand_in"
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8, cross_attention_dim=TEXT_DIM, attention_head_dim=2, use_linear_projection=True,
    )  # fmt: skip
    image_encoder, processor = build_image_encoder(
        TEXT_DIM, image_size=SIZE, patch_size=8, hidden_size=16, num_layers=1
    )
    for name, component in (
        ("text_encoder", text_encoder), ("tokenizer", tokenizer), ("vae", tiny_vae()), ("unet", unet),
        ("scheduler", DDPMScheduler(**{k: v for k, v in ZERO_SNR.items() if k != "_class_name"})),
        ("image_encoder", image_encoder), ("feature_extractor", processor),
    ):  # fmt: skip
        component.save_pretrained(folder / name)
    return folder


def base_config(output_dir, model_folder, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), max_train_steps=2, train_batch_size=2, learning_rate=1e-3, checkpointing_steps=None,
        prediction_type="v_prediction", condition_dropout=0.2, image_fraction=0.5,
        data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": 32},
        model={
            "pretrained_model_name_or_path": str(model_folder), "pipeline_class": "I2VGenXLCascadePipeline",
            "temporal": {**TEMPORAL, "in_channels": 8, "scalar_conditions": ["fps"]}, "scalar_conditions": {"fps": 16},
        },
        i2vgen_xl={"stage": "base", "content_encoder": {"latent_token_grid": 8}},
    )  # fmt: skip
    for key, value in overrides.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) and key in values else value
    return TrainingConfig.from_dict(values)


def an_image(seed: int = 0) -> np.ndarray:
    return ShapesWorld(height=SIZE, width=SIZE, num_frames=2).sample((seed,)).first_frame  # (H, W, 3) in [0, 1]


# --------------------------------------------------------------------------------------- runs from the command line


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, model_folder) -> Path:
    """Two steps of the base stage (a joint image-video batch) from the command line."""
    root = tmp_path_factory.mktemp("i2v_base")
    config_file = root / "config.json"
    base_config(root / "run", model_folder).to_json_file(config_file)
    assert cli_main(["train", "--config", str(config_file)]) == 0
    return root / "run"


def test_base_stage_saves_a_cascade_that_animates_an_image(base_run, model_folder):
    final = base_run / "final"
    index = json.loads((final / "model_index.json").read_text())
    assert "I2VGenXLCascadePipeline" in index["_class_name"] and index["refiner_unet"] == [None, None]
    pipe = I2VGenXLCascadePipeline.from_pretrained(final)
    pipe.set_progress_bar_config(disable=True)
    # the CLIP image encoder is frozen: the saved one is the source's, weight for weight
    source = load_file(model_folder / "image_encoder" / "model.safetensors")
    saved = load_file(final / "image_encoder" / "model.safetensors")
    assert source.keys() == saved.keys() and all(torch.equal(source[k], saved[k]) for k in source)
    # the content encoder learned: its zero-initialised token heads and the UNet's image channels left zero
    assert pipe.content_encoder.context_embedding[-1].weight.abs().sum() > 0
    assert pipe.unet.conv_in.weight[:, 4:].abs().sum() > 0
    assert pipe.unet.config.scalar_conditions == ["fps"] and pipe.unet.config.temporal_layout == "modelscope"
    assert pipe.config.default_height == SIZE and pipe.scheduler.config.rescale_betas_zero_snr
    frames = pipe(
        "a red circle moving right", image=an_image(), num_frames=FRAMES, num_inference_steps=2, guidance_scale=3.0,
        output_type="np", generator=torch.Generator().manual_seed(0),
    ).frames  # fmt: skip
    assert frames.shape == (1, FRAMES, SIZE, SIZE, 3) and np.isfinite(frames).all()
    lines = read_train_log(base_run)
    assert [line["step"] for line in lines] == [1, 2] and all(np.isfinite(line["loss"]) for line in lines)


def test_refiner_stage_adds_its_unet_to_the_base_cascade(base_run, model_folder, tmp_path, capsys):
    config = TrainingConfig.from_dict(
        dict(
            output_dir=str(tmp_path / "refiner"), max_train_steps=1, train_batch_size=2, learning_rate=1e-3,
            checkpointing_steps=None, prediction_type="v_prediction",
            data={"height": 2 * SIZE, "width": 2 * SIZE, "num_frames": FRAMES, "num_samples": 8},
            model={"pretrained_model_name_or_path": str(model_folder), "temporal": TEMPORAL, "noise_scheduler": ZERO_SNR},
            i2vgen_xl={"stage": "refiner", "base_model": str(base_run / "final")},
        )
    )  # fmt: skip
    final = train(config)
    pipe = I2VGenXLCascadePipeline.from_pretrained(final)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.refiner_unet.config.in_channels == 4 and pipe.refiner_unet.config.sample_size == [SIZE, SIZE]
    assert pipe.refiner_scheduler.config.timestep_spacing == "trailing"
    assert pipe.refiner_scheduler.config.rescale_betas_zero_snr and pipe.refiner_scheduler.config.prediction_type == (
        "v_prediction"
    )
    frames = pipe(
        "a red circle", image=an_image(1), num_frames=2, num_inference_steps=2, guidance_scale=1.0, output_type="np",
    ).frames  # fmt: skip
    assert frames.shape == (1, 2, 2 * SIZE, 2 * SIZE, 3)  # refined to the size the refiner trained at

    # `i2vgen-xl assemble`: the refiner behind a base stage (here the same one), its UNets saved in float16
    out = tmp_path / "cascade"
    argv = ["i2vgen-xl", "assemble", "--base", str(base_run / "final"), "--output_dir", str(out)]
    assert cli_main([*argv, "--refiner", str(final), "--fp16"]) == 0
    assembled = I2VGenXLCascadePipeline.from_pretrained(out)
    for name, source in (("refiner_unet", pipe.refiner_unet), ("unet", pipe.unet)):
        state, expected = getattr(assembled, name).state_dict(), source.state_dict()
        assert all(torch.equal(state[k], expected[k].half().float()) for k in expected), name
    assert json.loads((out / "training_config.json").read_text())["i2vgen_xl"]["stage"] == "base"
    assert cli_main([*argv[:-1], str(tmp_path / "again"), "--refiner", str(base_run / "final")]) == 1
    assert not (tmp_path / "again").exists()  # "has no `refiner_unet/`", refused before writing

    # `--vae`: a VAE whose decoder alone differs (a decoder fine-tuned at the refined size) decodes the cascade
    video_vae = AutoencoderKLVideo.from_vae2d(pipe.vae)
    with torch.no_grad():
        video_vae.decoder.conv_out.weight.add_(0.01)
    video_vae.save_pretrained(tmp_path / "video_vae")
    with_vae = [*argv[:-1], str(tmp_path / "with_vae"), "--refiner", str(final), "--vae", str(tmp_path / "video_vae")]
    assert cli_main(with_vae) == 0
    assembled = I2VGenXLCascadePipeline.from_pretrained(tmp_path / "with_vae")
    assert isinstance(assembled.vae, AutoencoderKLVideo)
    assert torch.equal(assembled.vae.decoder.conv_out.weight, video_vae.decoder.conv_out.weight)
    # another encoder would change the latents both stages trained on: refused, nothing written
    with torch.no_grad():
        video_vae.encoder.conv_in.weight.add_(0.01)
    video_vae.save_pretrained(tmp_path / "other_encoder")
    with_vae[-1], with_vae[argv.index("--output_dir") + 1] = str(tmp_path / "other_encoder"), str(tmp_path / "refused")
    assert cli_main(with_vae) == 1
    assert "has another encoder than the base stage's VAE" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


# ---------------------------------------------------------------------------------------------------- it learns


@pytest.fixture(scope="module")
def stand_in_vae_folder(tmp_path_factory) -> Path:
    """The committed stand-in's text encoder, tokenizer and VAE (32x32 frames, 8x8 latents of unit variance: a random
    VAE's latents hardly differ between clips, so no image could tell the model anything), a tiny image UNet and a
    random CLIP image tower."""
    folder = tmp_path_factory.mktemp("i2v_stand_in") / "stand_in"
    for sub in ("text_encoder", "tokenizer", "vae"):
        shutil.copytree(ROOT / "pipelines" / "shapes_sd" / sub, folder / sub)
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8, cross_attention_dim=64, attention_head_dim=4, use_linear_projection=True,
    ).save_pretrained(folder / "unet")  # fmt: skip
    image_encoder, processor = build_image_encoder(64, image_size=32, patch_size=8, hidden_size=16, num_layers=1)
    image_encoder.save_pretrained(folder / "image_encoder")
    processor.save_pretrained(folder / "feature_extractor")
    return folder


def test_overfitting_a_fixed_batch_learns_to_animate_the_given_image(stand_in_vae_folder, tmp_path):
    """The true v error on fixed clips, noise and timesteps, computed here by hand through the content encoder and
    UNet, drops after 25 steps on those clips; and the model reads the image: given another clip's first frame, its
    error at high noise (where the noisy sample says little) is far larger."""
    size, frames = 32, 4
    config = base_config(
        tmp_path, stand_in_vae_folder, max_train_steps=25, train_batch_size=4, learning_rate=3e-3,
        condition_dropout=0.0, image_fraction=0.0, i2vgen_xl={"image_embed_dropout": 0.0, "content_encoder": {}},
        data={"num_samples": 4, "height": size, "width": size},
        model={"temporal": {**TEMPORAL, "temporal_attention_head_dim": 16, "in_channels": 8, "scalar_conditions": ["fps"]}},
    )  # fmt: skip
    trainer = I2VGenXLTrainer(config)
    c = trainer.components
    items = [trainer.datasets["video"][i] for i in range(4)]
    clips, captions = torch.stack([item["video"] for item in items]), [item["caption"] for item in items]
    assert clips.shape == (4, 3, frames, size, size)

    def v_error(t: list[int], shift: int = 0) -> float:
        scheduler = DDPMScheduler(**{k: v for k, v in ZERO_SNR.items() if k != "_class_name"})
        t = torch.tensor(t)
        with torch.no_grad():
            flat = clips.permute(0, 2, 1, 3, 4).reshape(-1, 3, size, size)
            z = c.vae.encode(flat).latent_dist.mode() * c.vae.config.scaling_factor
            z = z.reshape(4, frames, 4, size // 4, size // 4).permute(0, 2, 1, 3, 4)  # (B, 4, F, h, w)
            noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(123))
            a = scheduler.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1, 1)
            s = (1 - scheduler.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1, 1)
            text = trainer.encode_prompts(captions)
            first, pixels = z[:, :, 0].roll(shift, 0), clips[:, :, 0].roll(shift, 0)  # shift: another clip's image
            encoded = c.content_encoder.eval()(first, trainer.image_embeds(pixels), frames, text)
            sample = torch.cat([a * z + s * noise, encoded.image_latents], dim=1)
            fps = {"fps": torch.full((4,), 16.0)}
            out = c.unet.eval()(sample, t, encoder_hidden_states=encoded.context, scalar_conds=fps).sample
            return ((out - (a * noise - s * z)) ** 2).mean().item()

    spread, high = [100, 300, 600, 900], [900] * 4
    before = v_error(spread)
    trainer.train()
    after, right, other = v_error(spread), v_error(high), v_error(high, shift=1)
    print(
        f"v error before {before:.4f}, after {after:.4f}; at t=900 {right:.4f}, with another clip's image {other:.4f}"
    )
    assert after < 0.7 * before, (before, after)
    assert other > 1.4 * right, (right, other)


def test_the_trainer_conditions_as_the_pipeline_samples(model_folder, tmp_path):
    """The text and CLIP-image embeddings the UNet trains on are those the saved pipeline gives it for the same
    caption and first frame (clip_skip 1; the image through PIL, cropped, resized and normalised)."""
    from diffusers_video.pipelines.i2vgen_xl.images import clip_pixel_values, to_pil_images

    trainer = I2VGenXLTrainer(base_config(tmp_path, model_folder))
    pipe, c = trainer.cascade_pipeline(), trainer.components
    captions = ["a red circle moving left", "a blue square moving up quickly"]
    expected, _ = pipe.encode_prompt(captions, torch.device("cpu"), 1, False, clip_skip=1)
    assert torch.allclose(trainer.encode_prompts(captions), expected, atol=1e-6)
    last_layer, _ = pipe.encode_prompt(captions, torch.device("cpu"), 1, False, clip_skip=None)
    assert not torch.allclose(expected, last_layer, atol=1e-3)  # the choice of layer matters
    frames = torch.stack([torch.from_numpy(an_image(i)).permute(2, 0, 1) for i in range(2)])  # (2, 3, H, W) in [0, 1]
    with torch.no_grad():
        pixels = clip_pixel_values(to_pil_images(frames), SIZE, c.feature_extractor)
        reference = c.image_encoder(pixel_values=pixels).image_embeds
    assert torch.allclose(trainer.image_embeds(frames * 2 - 1), reference, atol=1e-5)


@pytest.mark.parametrize(
    ("condition_dropout", "image_embed_dropout", "caption_kept", "embeds_kept"),
    [(0.0, 0.0, True, True), (1.0, 0.0, False, False), (0.0, 1.0, True, False)],
)
def test_condition_dropout_is_the_pipelines_unconditional_branch(
    model_folder, tmp_path, condition_dropout, image_embed_dropout, caption_kept, embeds_kept
):
    """Dropping the condition empties the caption and zeroes the CLIP embedding together (the image latent stays);
    `image_embed_dropout` zeroes the CLIP embedding alone."""
    config = base_config(
        tmp_path, model_folder, condition_dropout=condition_dropout, image_fraction=0.0,
        i2vgen_xl={"image_embed_dropout": image_embed_dropout},
    )  # fmt: skip
    trainer = I2VGenXLTrainer(config)
    seen = []
    trainer.model = lambda inputs: seen.extend(inputs) or [torch.zeros_like(i["sample"]) for i in inputs]
    parts = next(iter(trainer._data_loader()))
    trainer.training_loss(parts)
    (part,) = seen
    empty = trainer.encode_prompts([""] * 2)
    assert torch.equal(part["text"], empty) != caption_kept
    assert bool((part["image_embeds"].abs().sum(dim=1) > 0).all()) == embeds_kept
    assert torch.equal(part["image_latent"], trainer.model_inputs(parts["video"])[:, :, 0])  # never dropped


def test_v_equivalent_weighting_reaches_the_base_stage_loss(model_folder, tmp_path):
    """`loss_weighting="v_equivalent"` weights an epsilon base stage's per-sample error by `1 / alpha_bar_t`, as in
    every other trainer (the base stage's own loss used to drop it)."""
    from diffusers_video.training.objectives import per_sample_mse, v_equivalent_loss_weights

    losses, seen = {}, []
    for weighting in ("none", "v_equivalent"):
        config = base_config(
            tmp_path / weighting, model_folder, prediction_type="epsilon", loss_weighting=weighting, image_fraction=0.0
        )
        trainer = I2VGenXLTrainer(config)
        trainer.model = lambda inputs: seen.extend(inputs) or [torch.zeros_like(i["sample"]) for i in inputs]
        parts = next(iter(trainer._data_loader()))
        losses[weighting] = trainer.training_loss(parts)
    first, second = seen
    assert torch.equal(first["timesteps"], second["timesteps"]) and torch.equal(first["sample"], second["sample"])
    scheduler = trainer.components.noise_scheduler
    noisy, timesteps = first["sample"], first["timesteps"]
    alpha = scheduler.alphas_cumprod[timesteps].sqrt().view(-1, 1, 1, 1, 1)
    sigma = (1 - scheduler.alphas_cumprod[timesteps]).sqrt().view(-1, 1, 1, 1, 1)
    clean = trainer.model_inputs(parts["video"])
    noise = (noisy - alpha * clean) / sigma  # the epsilon target, recovered from the noisy input
    errors = per_sample_mse(torch.zeros_like(noise), noise)
    assert torch.allclose(losses["none"], errors.mean(), rtol=1e-4)
    expected = (errors * v_equivalent_loss_weights(scheduler, timesteps)).mean()
    assert torch.allclose(losses["v_equivalent"], expected, rtol=1e-4)
    assert not torch.allclose(losses["v_equivalent"], losses["none"], rtol=1e-2)


# ------------------------------------------------------------------------------------------- kill and resume


def test_sigkill_then_resume_repeats_the_uninterrupted_run(model_folder, tmp_path):
    config = base_config(
        tmp_path / "run", model_folder, max_train_steps=100_000, checkpointing_steps=2, ema_decay=0.9,
        data={"num_samples": 16},
    )  # fmt: skip
    run_dir, reference_dir = run_killed_and_resumed(tmp_path, config)  # losses and UNet weights (see test_training)
    a = I2VGenXLContentEncoder.from_pretrained(run_dir / "final" / "content_encoder").state_dict()
    b = I2VGenXLContentEncoder.from_pretrained(reference_dir / "final" / "content_encoder").state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


# --------------------------------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"i2vgen_xl": {"stage": "middle"}}, "`i2vgen_xl.stage` must be one of"),
        (
            {"i2vgen_xl": {"image_embed_dropout": 1.5}},
            r"`i2vgen_xl.image_embed_dropout` must be in \[0, 1\] but is 1.5",
        ),
        ({"i2vgen_xl": {"clip_skip": -1}}, "`i2vgen_xl.clip_skip` must be None or an integer >= 0 but is -1"),
        ({"i2vgen_xl": {"stage": "refiner"}}, "`i2vgen_xl.base_model` .* is None"),
        ({"i2vgen_xl": {"bogus": 1}}, r"Unknown config keys \['i2vgen_xl.bogus'\]"),
        ({"data": {"num_frames": 1}, "image_fraction": 0.0}, "`data.num_frames` must be >= 2 .* but is 1"),
        ({"data": {"cache_latents": True}}, "`data.cache_latents` must be false"),
        ({"model": {"pipeline_class": "StableDiffusionPipeline"}}, "`model.pipeline_class` must be None or"),
        ({"imagen_video": {}, "model": {"pipeline_class": None}}, "`i2vgen_xl` and `imagen_video` cannot both be set"),
    ],
)
def test_bad_config_values_are_refused_naming_them(model_folder, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        base_config(tmp_path, model_folder, **overrides)


def test_models_that_do_not_fit_are_refused_before_training(model_folder, tmp_path):
    no_channels = base_config(tmp_path, model_folder, model={"temporal": {**TEMPORAL, "scalar_conditions": ["fps"]}})
    with pytest.raises(ValueError, match=r"`in_channels` \(4\) must exceed the 4 latent channels"):
        load_i2vgen_xl_components(no_channels)
    with pytest.raises(FileNotFoundError, match="`i2vgen_xl.image_encoder`"):
        load_i2vgen_xl_components(base_config(tmp_path, model_folder, i2vgen_xl={"image_encoder": str(tmp_path)}))
    with pytest.raises(ValueError, match=r"content_encoder` has keys \['bogus'\]"):
        load_i2vgen_xl_components(base_config(tmp_path, model_folder, i2vgen_xl={"content_encoder": {"bogus": 1}}))
    refiner = dict(
        output_dir=str(tmp_path), prediction_type="v_prediction",
        model={"pretrained_model_name_or_path": str(model_folder), "temporal": TEMPORAL},
        i2vgen_xl={"stage": "refiner", "base_model": str(model_folder)},
    )  # fmt: skip
    with pytest.raises(ValueError, match="`i2vgen_xl.base_model` .* must be an I2VGenXLCascadePipeline folder"):
        I2VGenXLTrainer(TrainingConfig.from_dict(refiner))


# ------------------------------------------------------------------------------------------ the CLIP image tower


def test_image_tower_learns_the_frozen_text_towers_space():
    """200 contrastive steps against the committed stand-in's text tower: held-out retrieval names the right colour
    and shape far above chance (it starts near chance), and the text tower is untouched."""
    folder = ROOT / "pipelines" / "shapes_sd"
    text_encoder = load_text_encoder(folder / "text_encoder")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    text_before = {k: v.clone() for k, v in text_encoder.state_dict().items()}
    image_encoder, processor = build_image_encoder(64, image_size=32, patch_size=8, hidden_size=32, num_layers=1)
    before = retrieval_accuracy(image_encoder, processor, text_encoder, tokenizer, num_pairs=128)
    losses = train_image_encoder(
        image_encoder, processor, text_encoder, tokenizer, steps=200, batch_size=64, num_pairs=1024, log_every=0
    )
    after = retrieval_accuracy(image_encoder, processor, text_encoder, tokenizer, num_pairs=128)
    assert np.mean(losses[-20:]) < 0.75 * np.mean(losses[:20])
    assert before["accuracy"] < 3 * before["chance"] and after["accuracy"] > 5 * after["chance"], (before, after)
    assert after["accuracy"] > 0.4
    assert all(torch.equal(v, text_before[k]) for k, v in text_encoder.state_dict().items())
    with pytest.raises(ValueError, match=r"`projection_dim` \(32\) must equal the text encoder's width \(64\)"):
        train_image_encoder(build_image_encoder(32)[0], processor, text_encoder, tokenizer, steps=1)


def test_stand_in_image_command_writes_the_folder_a_recipe_reads(tmp_path):
    out = tmp_path / "image"
    argv = ["stand-in-image", "--output_dir", str(out), "--text_folder", str(ROOT / "pipelines" / "shapes_sd")]
    small = ["--steps", "2", "--batch_size", "8", "--num_pairs", "16", "--patch_size", "8", "--hidden_size", "16"]
    assert cli_main([*argv, *small, "--num_layers", "1"]) == 0
    summary = json.loads((out / "image_encoder_summary.json").read_text())
    assert summary["steps"] == 2 and 0 < summary["heldout_after"]["chance"] < 0.2
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(out / "image_encoder")
    assert image_encoder.config.projection_dim == 64  # the text tower's width
    assert AutoImageProcessor.from_pretrained(out / "feature_extractor").crop_size["height"] == 32
    assert cli_main([*argv, "--patch_size", "5"]) == 1  # 32 is no multiple of 5: one line, exit status 1
