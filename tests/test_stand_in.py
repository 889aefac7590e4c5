"""The Stable Diffusion 2.1 stand-in: tokenizer, VAE training, evaluation, and the committed `pipelines/shapes_sd/`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.training import stand_in

STAND_IN = Path(__file__).resolve().parent.parent / "pipelines" / "shapes_sd"
HAS_STAND_IN = (STAND_IN / "model_index.json").is_file()


@pytest.fixture(scope="module")
def tokenizer():
    return stand_in.build_tokenizer()


def test_vocabulary_covers_parser_words():
    words = set(stand_in.vocabulary_words())
    for word in ("red", "magenta", "triangle", "leftwards", "rapidly", "textured", "background", "and", ","):
        assert word in words


def test_every_caption_word_is_one_known_token(tokenizer):
    known = {word + "</w>" for word in stand_in.vocabulary_words()}
    captions = []
    for split, two_shape in (("all", 0.0), ("all", 0.5), ("heldout", 0.0)):
        world = ShapesWorld(height=8, width=8, num_frames=2, split=split, two_shape_prob=two_shape)
        for i in range(300):
            scene = world.scene((7, i))
            captions += [scene.caption, scene.still_caption]
    for caption in captions:
        tokens = tokenizer.tokenize(caption)
        unknown = [t for t in tokens if t not in known]
        assert not unknown, (caption, unknown)
        assert len(tokens) + 2 <= tokenizer.model_max_length, caption
        # one token per word or punctuation mark
        assert len(tokens) == len(stand_in._WORD_PATTERN.findall(caption.lower()))


def test_tokenizer_round_trips_through_save(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    caption = "a fast red circle moving to the left, on a textured background"
    assert loaded(caption).input_ids == tokenizer(caption).input_ids


def test_train_vae_lowers_reconstruction_loss():
    torch.set_num_threads(1)
    vae = stand_in.build_vae(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8,
        sample_size=16,
    )
    frames = stand_in.shapes_frames(32, 16, 16)
    losses = stand_in.train_vae(vae, frames, steps=40, batch_size=8, learning_rate=3e-3, log_every=0)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    factor = stand_in.set_scaling_factor(vae, frames)
    assert vae.config.scaling_factor == pytest.approx(factor) and factor > 0


def test_train_vae_rejects_bad_frames():
    with pytest.raises(ValueError, match="frames"):
        stand_in.train_vae(stand_in.build_vae(), torch.zeros(4, 1, 32, 32), steps=1)


def test_contrastive_loss_matches_a_written_out_reference():
    torch.manual_seed(0)
    video, text, scale = torch.randn(5, 3), torch.randn(5, 3), torch.tensor(1.3)
    v = video / video.norm(dim=1, keepdim=True)
    t = text / text.norm(dim=1, keepdim=True)
    logits = [[float(np.exp(1.3) * v[i] @ t[j]) for j in range(5)] for i in range(5)]
    by_video = [-logits[i][i] + np.log(sum(np.exp(x) for x in logits[i])) for i in range(5)]
    by_text = [-logits[j][j] + np.log(sum(np.exp(logits[i][j]) for i in range(5))) for j in range(5)]
    expected = 0.5 * (np.mean(by_video) + np.mean(by_text))
    assert float(stand_in.contrastive_loss(video, text, scale)) == pytest.approx(expected, rel=1e-5)
    # matched pairs score lower than shuffled ones
    assert stand_in.contrastive_loss(text, text, scale) < stand_in.contrastive_loss(text.flip(0), text, scale)
    with pytest.raises(ValueError, match="video_features"):
        stand_in.contrastive_loss(video, text[:4], scale)


def test_attribute_share_of_hand_made_features():
    # two groups with means +-1 on axis 0 and within-group spread 1 on axis 1: half the variance is the label's
    features = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert stand_in.attribute_share(features, ["a", "a", "b", "b"]) == pytest.approx(0.5)
    assert stand_in.attribute_share(features, ["a", "b", "a", "b"]) == pytest.approx(0.5)
    assert stand_in.attribute_share(features, ["a", "b", "b", "a"]) == pytest.approx(0.0)
    assert stand_in.attribute_share(features, list("abcd")) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="features"):
        stand_in.attribute_share(features, ["a"])


def test_train_text_encoder_is_seeded_and_learns(tokenizer):
    torch.set_num_threads(1)

    def run(seed):
        text_encoder = stand_in.build_text_encoder(len(tokenizer), hidden_size=32, num_layers=1, seed=0)
        losses = stand_in.train_text_encoder(
            text_encoder, tokenizer, steps=60, batch_size=16, learning_rate=1e-3, num_clips=32, height=16, width=16,
            num_frames=4, seed=seed, log_every=0,
        )  # fmt: skip
        return text_encoder, losses

    text_encoder, losses = run(0)
    assert not text_encoder.training
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])  # 32 clips: the towers learn to match them
    again, losses_again = run(0)
    assert losses_again == losses
    assert all(torch.equal(a, b) for a, b in zip(text_encoder.state_dict().values(), again.state_dict().values()))
    assert run(1)[1] != losses


def test_pooled_text_features_clip_pooler_and_t5_masked_mean(tokenizer):
    clip = stand_in.build_text_encoder(len(tokenizer), hidden_size=32, num_layers=1, seed=0)
    ids = stand_in.caption_token_ids(tokenizer, clip, ["a red circle moving right", "a blue square"])
    with torch.no_grad():
        assert torch.equal(stand_in.pooled_text_features(clip, ids), clip(ids).pooler_output)
    t5_tokenizer = stand_in.build_t5_tokenizer()
    t5 = stand_in.build_t5_text_encoder(len(t5_tokenizer), d_model=32, num_layers=1, seed=0)
    ids = stand_in.caption_token_ids(t5_tokenizer, t5, ["a red circle moving right", "a blue square"])
    with torch.no_grad():
        pooled = stand_in.pooled_text_features(t5, ids)
        for row in range(2):  # the mean of the caption's own tokens (and its end token), not of the padding
            length = int((ids[row] != t5.config.pad_token_id).sum())
            assert torch.allclose(pooled[row], t5(ids[row : row + 1, :length]).last_hidden_state[0].mean(dim=0),
                                  atol=1e-5)  # fmt: skip
    assert ids[1, -1] == t5.config.pad_token_id


def test_train_text_encoder_trains_t5_stand_in():
    torch.set_num_threads(1)
    t5_tokenizer = stand_in.build_t5_tokenizer()
    t5 = stand_in.build_t5_text_encoder(len(t5_tokenizer), d_model=32, num_layers=1, seed=0)
    before = {name: value.clone() for name, value in t5.state_dict().items()}
    losses = stand_in.train_text_encoder(
        t5, t5_tokenizer, steps=60, batch_size=16, num_clips=32, height=16, width=16, num_frames=4, log_every=0
    )
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert not torch.equal(before["encoder.block.0.layer.0.SelfAttention.q.weight"],
                           t5.state_dict()["encoder.block.0.layer.0.SelfAttention.q.weight"])  # fmt: skip


def test_train_text_encoder_rejects_bad_sizes(tokenizer):
    text_encoder = stand_in.build_text_encoder(len(tokenizer), hidden_size=32, num_layers=1)
    with pytest.raises(ValueError, match="batch_size"):
        stand_in.train_text_encoder(text_encoder, tokenizer, steps=1, batch_size=1)
    with pytest.raises(ValueError, match="steps"):
        stand_in.train_text_encoder(text_encoder, tokenizer, steps=0)


def test_score_single_frames_ground_truth_is_perfect():
    world = ShapesWorld(num_frames=2)
    samples = [world.sample((3, i)) for i in range(40)]
    result = stand_in.score_single_frames([s.image for s in samples], [s.still_caption for s in samples])
    assert result["n"] == 40
    assert result["color"] == 1.0 and result["shape"] == 1.0 and result["both"] == 1.0
    low, high = result["color_ci"]
    assert 0.8 < low < 1.0 == high


def test_score_single_frames_wrong_captions_fail():
    world = ShapesWorld(num_frames=2)
    sample = world.sample((3, 0))
    other = "a red circle" if "red" not in sample.still_caption else "a blue circle"
    result = stand_in.score_single_frames([sample.image], [other])
    assert result["color"] == 0.0


def _tiny_pipeline():
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    tokenizer = stand_in.build_tokenizer()
    text_encoder = stand_in.build_text_encoder(len(tokenizer), hidden_size=32, num_layers=1)
    vae = stand_in.build_vae(block_out_channels=(8, 16, 16), norm_num_groups=8, sample_size=32)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        attention_head_dim=(2, 4),
        cross_attention_dim=32,
        use_linear_projection=True,
        norm_num_groups=8,
    )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=stand_in.build_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip


def test_evaluate_pipeline_runs_on_a_tiny_pipeline():
    result = stand_in.evaluate_pipeline(_tiny_pipeline(), num_samples=3, num_inference_steps=2, batch_size=2)
    assert result["n"] == 3
    assert 0.0 <= result["color"] <= 1.0 and 0.0 <= result["shape"] <= 1.0
    assert "seconds" in stand_in.format_result(result) or "color" in stand_in.format_result(result)


@pytest.mark.skipif(not HAS_STAND_IN, reason="pipelines/shapes_sd/ holds no trained stand-in")
def test_committed_stand_in_loads_and_samples():
    from diffusers import StableDiffusionPipeline

    from diffusers_video.models.unet_3d import UNet3DModel

    pipe = StableDiffusionPipeline.from_pretrained(STAND_IN, dtype=torch.float32)
    assert pipe.unet.config.use_linear_projection
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    out = pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np")
    assert out.images.shape == (1, 32, 32, 3)
    unet3d = UNet3DModel.from_pretrained_2d(str(STAND_IN), torch_dtype=torch.float32)
    latents = torch.randn(1, 4, 2, 8, 8)
    text = pipe.text_encoder(pipe.tokenizer(["a red circle"], padding="max_length", return_tensors="pt").input_ids)[0]
    with torch.no_grad():
        sample = unet3d(latents, 10, encoder_hidden_states=text).sample
    assert sample.shape == latents.shape
