"""MagicVideo's pre-training of the keyframe model on CLIP image embeddings (`training.magicvideo_pretrain`): the
context the UNet reads (the projected embedding of the chosen frame, the caption, the empty caption), per-sample
seeded choices, exact resumption of a killed run, the final folder as a `MagicVideoPipeline` that the keyframe recipe
fine-tunes, the recipes, and bad config values; on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import read_train_log, tiny_clip_text_models, tiny_vae
from diffusers import DDPMScheduler, UNet2DConditionModel
from test_training import run_killed_and_resumed

from diffusers_video import MagicVideoPipeline
from diffusers_video.training import TRAINERS, Trainer, TrainingConfig, load_components, train
from diffusers_video.training.magicvideo import MagicVideoInterpolationTrainer
from diffusers_video.training.magicvideo_pretrain import (
    IMAGE_PROJECTION_NAME,
    MagicVideoImageProjection,
    MagicVideoPretrainTrainer,
    load_pretrain_components,
)
from diffusers_video.training.registry import registered_class
from diffusers_video.training.stand_in_image import build_image_encoder, clip_image_inputs

pytestmark = pytest.mark.usefixtures("one_thread_and_fresh_accelerate")
ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "pipelines" / "magicvideo"
SIZE, FRAMES, TEXT_DIM, TOKENS, BATCH = 16, 4, 16, 4, 8
MAGICVIDEO_UNET = {
    "frame_adaptor": "conv", "temporal_conv": False, "temporal_attention": "directed", "temporal_layout": "parallel",
    "temporal_attention_head_dim": 8, "scalar_conditions": ["fps"],
}  # fmt: skip


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A tiny latent Stable-Diffusion-style folder (16x16 pixels, 8x8x4 latents) with a tiny CLIP image tower."""
    folder = tmp_path_factory.mktemp("mv_pretrain") / "stand_in"
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4, cross_attention_dim=TEXT_DIM, attention_head_dim=2, use_linear_projection=True,
    )  # fmt: skip
    image_encoder, processor = build_image_encoder(
        TEXT_DIM, image_size=SIZE, patch_size=8, hidden_size=16, num_layers=1
    )
    for name, component in (
        ("text_encoder", text_encoder), ("tokenizer", tokenizer), ("vae", tiny_vae(sample_size=SIZE)), ("unet", unet),
        ("scheduler", DDPMScheduler(clip_sample=False)), ("image_encoder", image_encoder),
        ("feature_extractor", processor),
    ):  # fmt: skip
        component.save_pretrained(folder / name)
    return folder


def pretrain_config(output_dir, model_folder, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), max_train_steps=2, train_batch_size=BATCH, learning_rate=1e-3,
        checkpointing_steps=None, condition_dropout=0.0,
        data={"height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_samples": BATCH},
        model={
            "pretrained_model_name_or_path": str(model_folder), "pipeline_class": "MagicVideoPipeline",
            "temporal": MAGICVIDEO_UNET, "scalar_conditions": {"fps": 8},
        },
        magicvideo={"stage": "pretrain", "num_image_tokens": TOKENS},
    )  # fmt: skip
    for key, value in overrides.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) and key in values else value
    return TrainingConfig.from_dict(values)


def contexts_seen(trainer, parts) -> list[torch.Tensor]:
    """The `encoder_hidden_states` of every UNet call of one `training_loss`, in order."""
    seen = []
    hook = trainer.components.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].detach().clone()), with_kwargs=True
    )
    try:
        trainer.training_loss(parts)
    finally:
        hook.remove()
    return seen


@torch.no_grad()
def projected_by_hand(trainer, frame: torch.Tensor) -> torch.Tensor:
    """`projection(CLIP image embeds)` `(k, D)` of one frame `(3, H, W)` in [-1, 1]."""
    c = trainer.components
    embeds = c.image_encoder(pixel_values=clip_image_inputs(frame[None], c.feature_extractor)).image_embeds
    return c.image_projection(embeds)[0]


# --------------------------------------------------------------------------------------------- the context


def test_the_unet_reads_the_projected_clip_embedding_of_the_chosen_frame(model_folder, tmp_path):
    trainer = MagicVideoPretrainTrainer(pretrain_config(tmp_path, model_folder))
    parts = next(iter(trainer._data_loader()))
    (context,) = contexts_seen(trainer, parts)  # one UNet call: every sample is image-conditioned
    assert context.shape == (BATCH, TOKENS, TEXT_DIM)
    clips = parts["video"]["x"]  # (B, 3, F, H, W) pixels
    _, frames = trainer.condition_choices("video", parts["video"], FRAMES)
    assert len(set(frames.tolist())) > 1  # a frame chosen per sample, not one for all
    for i in range(BATCH):
        candidates = [projected_by_hand(trainer, clips[i, :, f]) for f in range(FRAMES)]
        matches = [f for f in range(FRAMES) if torch.allclose(context[i], candidates[f], atol=1e-5)]
        assert matches == [int(frames[i])], (i, matches, int(frames[i]))


@pytest.mark.parametrize(("caption_fraction", "condition_dropout"), [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_captions_and_dropout_give_the_text_embeddings(model_folder, tmp_path, caption_fraction, condition_dropout):
    """Captioned clips read their caption's embeddings exactly; dropped samples the empty caption's (the pipeline's
    unconditional branch), captioned or not."""
    config = pretrain_config(
        tmp_path, model_folder, condition_dropout=condition_dropout, magicvideo={"caption_fraction": caption_fraction}
    )
    trainer = MagicVideoPretrainTrainer(config)
    parts = next(iter(trainer._data_loader()))
    (context,) = contexts_seen(trainer, parts)
    captions = parts["video"]["captions"] if condition_dropout == 0 else [""] * BATCH
    assert torch.equal(context, trainer.encode_prompts(captions))


def test_a_mixed_batch_puts_each_sample_with_its_own_context(model_folder, tmp_path):
    """Half the clips captioned, a quarter of the samples dropped: the captioned clips are the first half of the
    dataset, and the denoiser's two UNet calls give every sample the output of the UNet on it alone."""
    config = pretrain_config(
        tmp_path, model_folder, condition_dropout=0.25, magicvideo={"caption_fraction": 0.5},
        data={"num_samples": 2 * BATCH},
    )  # fmt: skip
    trainer = MagicVideoPretrainTrainer(config)
    inputs = []
    model = trainer.model
    trainer.model = lambda parts: inputs.extend(parts) or [torch.zeros_like(p["sample"]) for p in parts]
    parts = next(iter(trainer._data_loader()))
    trainer.training_loss(parts)
    (part,) = inputs
    captioned, _ = trainer.condition_choices("video", parts["video"], FRAMES)
    indices = [trainer._items.dataset_index(int(p), 2 * BATCH) for p in parts["video"]["positions"]]
    assert captioned.tolist() == [index < BATCH for index in indices]
    use_image = part["use_image"]
    empty = trainer.encode_prompts([""])[0]
    dropped = torch.tensor([torch.equal(row, empty) for row in part["text"]])
    assert torch.equal(use_image, ~captioned & ~dropped)
    assert 0 < int(use_image.sum()) < BATCH and bool(dropped.any())  # both calls and the dropout happen
    assert not part["image_embeds"][~use_image].any() and part["image_embeds"][use_image].abs().amax(1).gt(0).all()

    unet, projection = trainer.components.unet, trainer.components.image_projection
    with torch.no_grad():
        outputs = model([part])[0]
        for i in range(BATCH):
            context = projection(part["image_embeds"][i : i + 1]) if use_image[i] else part["text"][i : i + 1]
            kwargs = {"scalar_conds": {"fps": part["kwargs"]["scalar_conds"]["fps"][i : i + 1]}}
            sample, timesteps = part["sample"][i : i + 1], part["timesteps"][i : i + 1]
            alone = unet(sample, timesteps, encoder_hidden_states=context, **kwargs).sample
            assert torch.allclose(outputs[i : i + 1], alone, atol=1e-5), i


def test_the_choices_are_seeded_per_sample_and_cached_latents_see_the_same_frames(model_folder, tmp_path):
    def choices(seed: int, cache: bool = False):
        config = pretrain_config(
            tmp_path / f"{seed}{cache}", model_folder, seed=seed, condition_dropout=0.5,
            magicvideo={"caption_fraction": 0.25}, data={"cache_latents": cache},
        )  # fmt: skip
        trainer = MagicVideoPretrainTrainer(config)
        part = next(iter(trainer._data_loader()))["video"]
        captioned, frames = trainer.condition_choices("video", part, FRAMES)
        embeds = trainer.image_embeds(trainer.frame_pixels("video", part, torch.arange(BATCH), frames))
        return captioned, frames, embeds, part["latent"]

    first, again, cached, other = choices(0), choices(0), choices(0, cache=True), choices(1)
    assert all(torch.equal(a, b) for a, b in zip(first[:3], again[:3]))
    assert cached[3] and not first[3]  # the cached run's batch holds latents: its frames are rendered again
    assert torch.equal(cached[1], first[1]) and torch.allclose(cached[2], first[2], atol=1e-6)
    assert not torch.equal(other[1], first[1])


# ------------------------------------------------------------------------------ resume, folder, fine-tuning


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, model_folder) -> tuple[Path, Path]:
    """A run killed after its first checkpoint and resumed, and the uninterrupted run (cached latents, a quarter of
    the clips captioned, a quarter of the samples dropped, EMA)."""
    root = tmp_path_factory.mktemp("mv_pretrain_resume")
    config = pretrain_config(
        root / "run", model_folder, max_train_steps=100_000, checkpointing_steps=2, ema_decay=0.9,
        train_batch_size=4, condition_dropout=0.25, magicvideo={"caption_fraction": 0.25},
        data={"cache_latents": True},
    )  # fmt: skip
    return run_killed_and_resumed(root, config)  # losses and UNet weights (see test_training)


def test_sigkill_then_resume_repeats_the_uninterrupted_run(killed_and_resumed):
    run_dir, reference_dir = killed_and_resumed
    a = MagicVideoImageProjection.from_pretrained(run_dir / "final" / IMAGE_PROJECTION_NAME).state_dict()
    b = MagicVideoImageProjection.from_pretrained(reference_dir / "final" / IMAGE_PROJECTION_NAME).state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


def test_the_final_folder_is_a_keyframe_pipeline_that_the_keyframe_recipe_fine_tunes(
    killed_and_resumed, model_folder, tmp_path
):
    final = killed_and_resumed[1] / "final"
    pipe = MagicVideoPipeline.from_pretrained(final)
    assert pipe.interpolation_unet is None and pipe.unet.config.temporal_layout == "parallel"
    pipe.set_progress_bar_config(disable=True)
    frames = pipe("a red circle moving right", num_keyframes=FRAMES, num_inference_steps=2, output_type="pt").frames
    assert frames.shape == (1, FRAMES, 3, SIZE, SIZE)
    projection = MagicVideoImageProjection.from_pretrained(final / IMAGE_PROJECTION_NAME)
    assert projection.config.num_tokens == TOKENS and projection.config.cross_attention_dim == TEXT_DIM
    saved = json.loads((final / "training_config.json").read_text())["magicvideo"]
    assert saved["stage"] == "pretrain" and saved["caption_fraction"] == 0.25

    finetune = pretrain_config(
        tmp_path / "finetune", model_folder, max_train_steps=1, magicvideo=None, condition_dropout=0.1,
        model={"pretrained_model_name_or_path": str(final), "temporal": {}},
    )  # fmt: skip
    assert registered_class(finetune, TRAINERS, Trainer) is Trainer  # the ordinary keyframe recipe
    start = load_components(finetune.model).unet.state_dict()
    pretrained = pipe.unet.state_dict()
    assert all(torch.equal(start[k], pretrained[k]) for k in pretrained)  # it starts from the pre-trained UNet
    tuned = MagicVideoPipeline.from_pretrained(train(finetune))
    assert [line["step"] for line in read_train_log(tmp_path / "finetune")] == [1]
    assert not all(torch.equal(tuned.unet.state_dict()[k], pretrained[k]) for k in pretrained)


# -------------------------------------------------------------------------------------------------- recipes


def test_the_recipes_pre_train_then_fine_tune_the_keyframe_recipes_model():
    keyframes = TrainingConfig.from_json_file(RECIPES / "train_keyframes.json")
    pretrain = TrainingConfig.from_json_file(RECIPES / "pretrain_keyframes.json")
    finetune = TrainingConfig.from_json_file(RECIPES / "finetune_keyframes.json")
    assert registered_class(pretrain, TRAINERS, Trainer) is MagicVideoPretrainTrainer
    assert TRAINERS["magicvideo"] is MagicVideoInterpolationTrainer  # the section's registered class names it
    assert pretrain.magicvideo.stage == "pretrain" and pretrain.magicvideo.image_encoder == "pipelines/shapes_sd"
    assert pretrain.model.temporal == keyframes.model.temporal and pretrain.data == keyframes.data
    assert finetune.magicvideo is None and registered_class(finetune, TRAINERS, Trainer) is Trainer
    assert (
        finetune.model.pretrained_model_name_or_path == f"{pretrain.output_dir}/final" and not finetune.model.temporal
    )
    for config in (pretrain, finetune):
        assert config.model.pipeline_class == "MagicVideoPipeline"
        assert config.model.noise_scheduler == keyframes.model.noise_scheduler
        assert config.model.scalar_conditions == keyframes.model.scalar_conditions
        assert config.prediction_type == keyframes.prediction_type


# --------------------------------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"magicvideo": {"num_image_tokens": 0}}, r"`magicvideo.num_image_tokens` must be an integer >= 1 but is 0"),
        ({"magicvideo": {"num_image_tokens": 2.5}}, r"`magicvideo.num_image_tokens` must be of type int but is 2.5"),
        ({"magicvideo": {"caption_fraction": 1.5}}, r"`magicvideo.caption_fraction` must be in \[0, 1\] but is 1.5"),
        ({"magicvideo": {"caption_fraction": "all"}}, r"`magicvideo.caption_fraction` must be of type float"),
        ({"magicvideo": {"image_encoder": 3}}, r"`magicvideo.image_encoder` must be of type str \| None but is 3"),
        ({"magicvideo": {"stage": "keyframes"}}, r"`magicvideo.stage` must be one of .* but is 'keyframes'"),
        (
            {"magicvideo": {"stage": "interpolation", "caption_fraction": 0.1}, "data": {"num_frames": 3}},
            r"`magicvideo.caption_fraction` applies to the 'pretrain' stage only.* is 0.1",
        ),
        (
            {"model": {"pipeline_class": "StableDiffusionPipeline"}},
            r"`model.pipeline_class` must be None or 'MagicVideoPipeline' .* but is 'StableDiffusionPipeline'",
        ),
        (
            {"model": {"unet_class": "UNet2DConditionModel", "temporal": {}}, "data": {"num_frames": 1}},
            r"`model.unet_class` must be 'UNet3DModel' for the `magicvideo` 'pretrain' stage .* 'UNet2DConditionModel'",
        ),
        ({"lora": {}}, r"`lora` cannot be set for the `magicvideo` 'pretrain' stage"),
        ({"videofusion": {}, "model": {"pipeline_class": None}}, r"`magicvideo` and `videofusion` cannot both be set"),
    ],
)
def test_bad_config_values_are_refused_naming_them(model_folder, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        pretrain_config(tmp_path, model_folder, **overrides)


def test_models_that_do_not_fit_are_refused_before_training(model_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`magicvideo.image_encoder`\) has no `image_encoder/`"):
        load_pretrain_components(pretrain_config(tmp_path, model_folder, magicvideo={"image_encoder": str(tmp_path)}))
    config = pretrain_config(tmp_path, model_folder)
    components = load_pretrain_components(config)
    components.image_projection = MagicVideoImageProjection(TEXT_DIM, TEXT_DIM, num_tokens=2)
    with pytest.raises(ValueError, match=r"`num_tokens` \(2\) must equal `magicvideo.num_image_tokens` \(4\)"):
        MagicVideoPretrainTrainer(config, components)
    with pytest.raises(ValueError, match="MagicVideoInterpolationTrainer trains the 'interpolation' stage"):
        MagicVideoInterpolationTrainer(config)
    interpolation = TrainingConfig(data={"num_frames": 3}, magicvideo={})
    assert registered_class(interpolation, TRAINERS, Trainer) is MagicVideoInterpolationTrainer
