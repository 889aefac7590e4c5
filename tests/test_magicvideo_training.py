"""MagicVideo's interpolation model through `diffusers-video train`: the `magicvideo` config section
(`training.magicvideo_config`) selects `MagicVideoInterpolationTrainer`, on a tiny latent Stable-Diffusion-style
folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import read_train_log, tiny_clip_text_models, tiny_vae
from diffusers import DDPMScheduler, UNet2DConditionModel

from diffusers_video import UNet3DModel
from diffusers_video.cli import main as cli_main
from diffusers_video.training import TRAINERS, MagicVideoConfig, Trainer, TrainingConfig
from diffusers_video.training.magicvideo import MagicVideoInterpolationTrainer
from diffusers_video.training.registry import registered_class

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "pipelines" / "magicvideo" / "train_interpolation.json"
SIZE, TEXT_DIM, LATENT = 16, 16, 4

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")


def _save_image_model(folder: Path) -> None:
    """A tiny latent Stable-Diffusion-style folder (16x16 pixels, 8x8x4 latents) that the recipe inflates."""
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2, in_channels=LATENT, out_channels=LATENT,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=TEXT_DIM,
        attention_head_dim=2, use_linear_projection=True,
    )  # fmt: skip
    modules = {
        "unet": unet, "vae": tiny_vae(sample_size=SIZE), "text_encoder": text_encoder, "tokenizer": tokenizer,
        "scheduler": DDPMScheduler(clip_sample=False),
    }  # fmt: skip
    for name, module in modules.items():
        module.save_pretrained(folder / name)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sd")
    _save_image_model(folder)
    return folder


def _train(image_model: Path, output_dir: Path, *extra: str) -> Path:
    """Two steps of the recipe through the command line, on the tiny folder (temporal heads of 8 channels)."""
    recipe = json.loads(RECIPE.read_text())
    recipe["model"]["temporal"]["temporal_attention_head_dim"] = 8
    output_dir.mkdir()
    (output_dir / "config.json").write_text(json.dumps(recipe))
    argv = [
        "train", "--config", str(output_dir / "config.json"), "--output_dir", str(output_dir),
        "--max_train_steps", "2", "--lr_warmup_steps", "0", "--train_batch_size", "2", "--ema_decay", "null", "--checkpointing_steps", "null",
        "--model.pretrained_model_name_or_path", str(image_model),
        "--data.height", str(SIZE), "--data.width", str(SIZE), "--data.num_samples", "4", *extra,
    ]  # fmt: skip
    assert cli_main(argv) == 0
    return output_dir / "final"


def test_the_recipe_sets_the_magicvideo_section_and_train_finds_the_interpolation_trainer():
    config = TrainingConfig.from_json_file(RECIPE)
    assert config.magicvideo == MagicVideoConfig(stage="interpolation", context_dropout=0.1)
    assert registered_class(config, TRAINERS, Trainer) is MagicVideoInterpolationTrainer
    assert config.model.temporal["in_channels"] == 2 * LATENT + 1
    # the section round-trips and opens from the command line's dotted keys
    assert TrainingConfig.from_dict(config.to_dict()) == config
    opened = TrainingConfig(data={"num_frames": 5}).with_overrides({"magicvideo.context_dropout": 0.25})
    assert opened.magicvideo == MagicVideoConfig(context_dropout=0.25)


def test_command_line_run_trains_the_context_channels_only_when_the_context_is_kept(image_model, tmp_path):
    """Two steps through `diffusers-video train`. The inflated UNet's context and mask input channels start at zero
    and get a gradient only through the context the interpolation trainer concatenates: with no context dropout they
    move, with `--magicvideo.context_dropout 1` (every sample's context zeroed) they stay exactly zero."""
    final = _train(image_model, tmp_path / "kept", "--magicvideo.context_dropout", "0")
    unet = UNet3DModel.from_pretrained(final / "unet")
    assert unet.config.in_channels == 2 * LATENT + 1 and unet.config.frame_adaptor == "conv"
    assert unet.config.temporal_attention == "bidirectional"
    context_weights = unet.conv_in.weight[:, LATENT:]  # (C_out, LATENT + 1, k, k): the keyframes and their mask
    assert context_weights[:, :LATENT].abs().amax() > 0 and context_weights[:, LATENT].abs().amax() > 0
    assert [line["step"] for line in read_train_log(tmp_path / "kept")] == [1, 2]
    saved = json.loads((final / "training_config.json").read_text())
    assert saved["magicvideo"] == {
        "stage": "interpolation", "context_dropout": 0.0, "image_encoder": None, "num_image_tokens": 4,
        "caption_fraction": 0.0,
    }  # fmt: skip
    assert not (final / "model_index.json").exists()  # the folder's unet/ is a pipeline's `interpolation_unet`

    dropped = UNet3DModel.from_pretrained(
        _train(image_model, tmp_path / "dropped", "--magicvideo.context_dropout", "1") / "unet"
    )
    assert not dropped.conv_in.weight[:, LATENT:].any()
    image_conv_in = UNet2DConditionModel.from_pretrained(image_model / "unet").conv_in.weight
    assert not torch.equal(dropped.conv_in.weight[:, :LATENT], image_conv_in)  # the noisy sample's channels trained


@pytest.mark.parametrize(
    "values, message",
    [
        ({"magicvideo": {"stage": "keyframes"}}, "`magicvideo.stage` must be one of \\('interpolation', 'pretrain'\\) but is 'keyframes'"),
        ({"magicvideo": {"context_dropout": 1.5}}, "`magicvideo.context_dropout` must be in \\[0, 1\\] but is 1.5"),
        ({"magicvideo": {"context_dropout": True}}, "`magicvideo.context_dropout` must be of type float but is True"),
        ({"magicvideo": {"factor": 2}}, "Unknown config keys \\['magicvideo.factor'\\]"),
        ({"data": {"num_frames": 4}}, "`data.num_frames` must be an interpolation factor plus one \\(\\[3, 5\\].* is 4"),
        ({"image_fraction": 0.5}, "`image_fraction` must be 0 with `magicvideo`.* is 0.5"),
        ({"videofusion": {}}, "`magicvideo` and `videofusion` cannot both be set"),
        ({"model": {"pipeline_class": "MagicVideoPipeline"}}, "`model.pipeline_class` must be None with `magicvideo`"),
    ],
)  # fmt: skip
def test_bad_magicvideo_settings_raise_naming_them(values, message):
    config = {"data": {"num_frames": 3}, "magicvideo": {}}
    for key, value in values.items():
        config[key] = {**config[key], **value} if isinstance(config.get(key), dict) else value
    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_dict(config)
