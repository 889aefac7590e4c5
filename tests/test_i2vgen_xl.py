"""I2VGen-XL: `I2VGenXLContentEncoder` + `UNet3DModel` against diffusers' `I2VGenXLUNet`, the `convert i2vgen-xl`
conversion, and `I2VGenXLCascadePipeline` against diffusers' `I2VGenXLPipeline`.

A tiny random diffusers `I2VGenXLPipeline` is built in memory (every weight random, the zero-initialised ones
included), saved, converted with the command line and loaded; both pipelines must give the same frames. With
transformers 5 diffusers' pipeline fails at its `clip_skip` (`CLIPTextModel` has no `text_model`): the reference
runs with that attribute patched to the model itself, which is what the lookup meant.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import assert_bfloat16_matches, load_script, tiny_clip_text_models, tiny_vae
from diffusers import DDIMScheduler, I2VGenXLPipeline, I2VGenXLUNet
from safetensors.torch import load_file, save_file
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

from diffusers_video import I2VGenXLCascadePipeline, I2VGenXLContentEncoder, UNet3DModel
from diffusers_video.cli import main as cli_main
from diffusers_video.commands.demo import _i2vgen_xl as _i2vgen_xl_demo
from diffusers_video.conversion.common import ConversionError
from diffusers_video.conversion.i2vgen_xl import (
    i2vgen_xl_config_to_content_encoder,
    i2vgen_xl_config_to_unet3d,
    split_i2vgen_xl_state_dict,
)
from diffusers_video.models.i2vgen_xl_content import frame_position_latents

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
TINY_I2VGEN = dict(
    sample_size=8,
    block_out_channels=(32, 64),
    layers_per_block=1,
    norm_num_groups=8,
    cross_attention_dim=32,
    attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
)


def make_i2vgen_unet(seed: int = 0) -> I2VGenXLUNet:
    torch.manual_seed(seed)
    unet = I2VGenXLUNet(**TINY_I2VGEN)
    with torch.no_grad():
        for param in unet.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return unet.eval()


def converted(unet: I2VGenXLUNet, **kwargs) -> tuple[UNet3DModel, I2VGenXLContentEncoder]:
    unet_weights, content_weights = split_i2vgen_xl_state_dict(unet.state_dict(), dict(unet.config), **kwargs)
    ours = UNet3DModel(**i2vgen_xl_config_to_unet3d(unet.config))
    ours.load_state_dict(unet_weights, strict=True)
    encoder = I2VGenXLContentEncoder(**i2vgen_xl_config_to_content_encoder(unet.config))
    encoder.load_state_dict(content_weights, strict=True)
    return ours.eval(), encoder.eval()


@pytest.fixture(scope="module")
def i2vgen_unet() -> I2VGenXLUNet:
    return make_i2vgen_unet()


def _unet_inputs(frames: int, batch: int = 2):
    g = torch.Generator().manual_seed(frames)
    return dict(
        sample=torch.randn(batch, 4, frames, 8, 8, generator=g),
        image_latent=torch.randn(batch, 4, 8, 8, generator=g),
        image_embeds=torch.randn(batch, 1, 32, generator=g),
        text=torch.randn(batch, 5, 32, generator=g),
        fps=torch.tensor([8, 16][:batch]),
    )


def _ours(unet, encoder, x, t=10):
    encoded = encoder(x["image_latent"], x["image_embeds"], x["sample"].shape[2], x["text"])
    sample = torch.cat([x["sample"], encoded.image_latents], dim=1)
    return unet(sample, t, encoder_hidden_states=encoded.context, scalar_conds={"fps": x["fps"]}).sample


@pytest.mark.parametrize("frames", [3, 1])
def test_content_encoder_and_unet_equal_i2vgen_xl_unet(i2vgen_unet, frames):
    unet, encoder = converted(i2vgen_unet)
    x = _unet_inputs(frames)
    with torch.no_grad():
        expected = i2vgen_unet(
            x["sample"], 10, fps=x["fps"], image_latents=frame_position_latents(x["image_latent"], frames),
            image_embeddings=x["image_embeds"], encoder_hidden_states=x["text"],
        ).sample  # fmt: skip
        assert (_ours(unet, encoder, x) - expected).abs().max() <= 1e-5
    # 5 text + 64 latent + 4 CLIP tokens, the public layout's 145 at this width
    assert encoder(x["image_latent"], x["image_embeds"], frames, x["text"]).context.shape == (2, 73, 32)


def test_every_key_lands_in_exactly_one_model_and_the_map_is_strict(i2vgen_unet):
    state = i2vgen_unet.state_dict()
    unet_weights, content_weights = split_i2vgen_xl_state_dict(state, dict(i2vgen_unet.config))
    assert len(unet_weights) + len(content_weights) == len(state)
    assert torch.equal(unet_weights["scalar_embeddings.fps.linear_2.weight"], state["fps_embedding.2.weight"])
    assert set(content_weights) == {k for k in state if k.split(".")[0].startswith(("image_latents", "context_emb"))}
    config = dict(i2vgen_unet.config)
    with pytest.raises(ConversionError, match="Unexpected key `down_blocks.0.bogus`"):
        split_i2vgen_xl_state_dict({**state, "down_blocks.0.bogus": torch.zeros(1)}, config)
    with pytest.raises(ConversionError, match="Missing key `context_embedding.0.bias`"):
        split_i2vgen_xl_state_dict({k: v for k, v in state.items() if k != "context_embedding.0.bias"}, config)
    with pytest.raises(ConversionError, match="Shape mismatch for `conv_in.weight`"):
        split_i2vgen_xl_state_dict({**state, "conv_in.weight": torch.zeros(32, 4, 3, 3)}, config)
    with pytest.raises(ConversionError, match="num_attention_heads"):
        i2vgen_xl_config_to_unet3d({**config, "num_attention_heads": 4})


def test_vgen_image_path_doubles_the_concatenated_path(i2vgen_unet):
    """VGen adds the image path twice: its converted UNet fed the path equals diffusers' fed twice the path."""
    plain, encoder = converted(i2vgen_unet)
    vgen, _ = converted(i2vgen_unet, vgen_image_path=True)
    x = _unet_inputs(3)
    with torch.no_grad():
        encoded = encoder(x["image_latent"], x["image_embeds"], 3, x["text"])
        kwargs = dict(encoder_hidden_states=encoded.context, scalar_conds={"fps": x["fps"]})
        doubled = plain(torch.cat([x["sample"], 2 * encoded.image_latents], 1), 10, **kwargs).sample
        ours = vgen(torch.cat([x["sample"], encoded.image_latents], 1), 10, **kwargs).sample
    assert (ours - doubled).abs().max() <= 1e-5


def test_converted_unet_takes_lora_and_gradient_checkpointing(i2vgen_unet):
    from peft import LoraConfig

    unet, encoder = converted(i2vgen_unet)
    x = _unet_inputs(2, batch=1)
    with torch.no_grad():
        before = _ours(unet, encoder, x)
    unet.add_adapter(LoraConfig(r=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=True))
    with torch.no_grad():
        torch.testing.assert_close(_ours(unet, encoder, x), before, atol=1e-5, rtol=0)  # LoRA starts at identity
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
        assert (_ours(unet, encoder, x) - before).abs().max() > 1e-3
    grads = []
    for checkpointing in (False, True):  # in eval mode: the temporal convolutions' dropout would differ
        if checkpointing:
            unet.enable_gradient_checkpointing()
        unet.zero_grad()
        _ours(unet, encoder, x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in unet.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("lora_A" in n for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ the pipelines


def tiny_image_encoder() -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=16, projection_dim=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=16, patch_size=8,
    )  # fmt: skip
    return CLIPVisionModelWithProjection(config).eval(), CLIPImageProcessor(crop_size=16, size=16)


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory, i2vgen_unet) -> Path:
    tokenizer, text_encoder = tiny_clip_text_models(text_dim=32)
    image_encoder, feature_extractor = tiny_image_encoder()
    scheduler = DDIMScheduler(
        beta_schedule="squaredcos_cap_v2", rescale_betas_zero_snr=True, set_alpha_to_one=True, clip_sample=False,
        steps_offset=1, timestep_spacing="leading", prediction_type="v_prediction",
    )  # fmt: skip
    pipe = I2VGenXLPipeline(
        vae=tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
        feature_extractor=feature_extractor, unet=i2vgen_unet, scheduler=scheduler,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("i2vgen") / "i2vgen-xl"
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def converted_folder(diffusers_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "cascade"
    assert cli_main(["convert", "i2vgen-xl", "--checkpoint", str(diffusers_folder), "--output_dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def pipes(diffusers_folder, converted_folder):
    theirs = I2VGenXLPipeline.from_pretrained(diffusers_folder)
    ours = I2VGenXLCascadePipeline.from_pretrained(converted_folder)
    for pipe in (theirs, ours):
        pipe.set_progress_bar_config(disable=True)
    return theirs, ours


def an_image(width: int = 28, height: int = 20, seed: int = 0) -> PIL.Image.Image:
    return PIL.Image.fromarray((np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8))


def test_converted_folder_layout(converted_folder, diffusers_folder):
    index = json.loads((converted_folder / "model_index.json").read_text())
    assert index["_class_name"] == "I2VGenXLCascadePipeline"
    assert index["unet"] == ["diffusers_video.models.unet_3d", "UNet3DModel"]
    assert index["content_encoder"] == ["diffusers_video.models.i2vgen_xl_content", "I2VGenXLContentEncoder"]
    assert index["refiner_unet"] == [None, None] and (index["default_height"], index["default_width"]) == (704, 1280)
    source = load_file(diffusers_folder / "unet" / "diffusion_pytorch_model.safetensors")
    unet = load_file(converted_folder / "unet" / "diffusion_pytorch_model.safetensors")
    content = load_file(converted_folder / "content_encoder" / "diffusion_pytorch_model.safetensors")
    assert len(unet) + len(content) == len(source)
    assert torch.equal(content["context_embedding.2.weight"], source["context_embedding.2.weight"])


@pytest.mark.parametrize(
    "num_frames, guidance_scale, clip_skip", [(3, 1.0, 1), (1, 1.0, None), (3, 7.5, 1)], ids=["video", "one", "cfg"]
)
def test_cascade_base_stage_equals_diffusers_i2vgen_xl(pipes, monkeypatch, num_frames, guidance_scale, clip_skip):
    theirs, ours = pipes
    # diffusers reads `text_encoder.text_model.final_layer_norm`; transformers 5's CLIPTextModel is flat
    monkeypatch.setattr(CLIPTextModel, "text_model", property(lambda self: self), raising=False)
    latents = torch.randn(1, 4, num_frames, 8, 8, generator=torch.Generator().manual_seed(1))
    call = dict(
        image=an_image(), prompt="a red circle", height=16, width=16, num_frames=num_frames, num_inference_steps=4,
        guidance_scale=guidance_scale, latents=latents, clip_skip=clip_skip, output_type="np",
    )  # fmt: skip
    torch.manual_seed(0)  # diffusers samples the image latent from the global generator
    expected = theirs(**call, generator=torch.Generator().manual_seed(0)).frames
    frames = ours(**call, generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == expected.shape == (1, num_frames, 16, 16, 3)
    assert np.abs(frames - expected).max() <= 1e-4


def test_any_multiple_size_runs_and_the_first_frame_follows_the_image(pipes):
    _, ours = pipes
    frames = ours(
        image=an_image(40, 20), prompt="a circle", height=16, width=32, num_frames=2, num_inference_steps=2,
        generator=torch.Generator().manual_seed(0), output_type="pt",
    ).frames  # fmt: skip
    assert frames.shape == (1, 2, 3, 16, 32)
    with pytest.raises(ValueError, match=r"`height` and `width` have to be positive multiples of 4 .* 18 and 32"):
        ours(image=an_image(), prompt="a circle", height=18, width=32)


def test_callbacks_see_every_step_and_can_stop_guidance(pipes):
    _, ours = pipes
    seen = []

    def callback(pipe, i, t, kwargs):
        seen.append((i, pipe.do_classifier_free_guidance))
        if i == 1:
            pipe._guidance_scale = 0.0  # what diffusers' SDCFGCutoffCallback does
        return kwargs

    ours(image=an_image(), prompt="a circle", height=16, width=16, num_frames=2, num_inference_steps=3,
         guidance_scale=5.0, callback_on_step_end=callback)  # fmt: skip
    assert seen == [(0, True), (1, True), (2, False)]


def test_replace_first_frame_keeps_the_image_latent_at_every_step_and_at_the_end(pipes):
    """`replace_first_frame`: the UNet sees frame 0 as the image latent noised to each step's level with frame 0 of
    the initial noise, and the video ends on the image latent itself; the other frames are denoised in its context."""
    _, ours = pipes
    image, noise = an_image(), torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    _, given = ours.encode_image(image, 16, 16, 1, 1, torch.Generator().manual_seed(0))
    seen, forward = [], ours.unet.forward

    def spy(sample, timestep, *args, **kwargs):
        seen.append((sample[:1, :4].clone(), timestep))
        return forward(sample, timestep, *args, **kwargs)

    call = dict(image=image, prompt="a circle", height=16, width=16, num_frames=3, num_inference_steps=3,
                guidance_scale=1.0, latents=noise, output_type="latent")  # fmt: skip
    ours.unet.forward = spy
    try:
        kept = ours(**call, replace_first_frame=True, generator=torch.Generator().manual_seed(0)).frames
        seen_kept, seen[:] = list(seen), []
        free = ours(**call, generator=torch.Generator().manual_seed(0)).frames
    finally:
        del ours.unet.forward
    assert torch.equal(kept[:, :, 0], given.to(kept.dtype))
    assert not torch.allclose(free[:, :, 0], given, atol=1e-3)  # without it the model alone carries the image
    for sample, t in seen_kept:
        expected = ours.scheduler.add_noise(given[:, :, None], noise[:, :, :1], t.reshape(1))
        torch.testing.assert_close(sample[:, :, :1], expected, atol=1e-6, rtol=0)
    assert not torch.allclose(kept[:, :, 1:], free[:, :, 1:], atol=1e-4)


# ------------------------------------------------------------------------------------------------ bad input


def _no_model_runs(monkeypatch, pipe):
    def refuse(*args, **kwargs):
        raise AssertionError("a model ran before the inputs were checked")

    for component in (pipe.text_encoder, pipe.image_encoder, pipe.unet, pipe.vae):
        monkeypatch.setattr(component, "forward", refuse)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(image=None), ValueError, "`image` must be given"),
        (dict(image="still.png"), TypeError, "`image` must be a PIL image"),
        (dict(image=torch.rand(4, 16, 16)), ValueError, "3 colour channels"),
        (dict(image=torch.rand(3, 16, 16) * 2), ValueError, r"values in \[0, 1\]"),
        (dict(image=[an_image(16, 16), an_image(20, 16)]), ValueError, "must all have one size"),
        (dict(image=[an_image()] * 2, prompt=["a", "b", "c"]), ValueError, "holds 2 images but there are 3 prompts"),
        (dict(target_fps=0), ValueError, "`target_fps` must be a number > 0 but is 0"),
        (dict(target_fps=-8), ValueError, "`target_fps` must be a number > 0 but is -8"),
        (dict(num_frames=0), ValueError, "`num_frames` must be an integer >= 1 but is 0"),
        (dict(refine="yes"), TypeError, "`refine` must be True or False"),
        (dict(replace_first_frame=1), TypeError, "`replace_first_frame` must be True or False but is 1"),
    ],
)
def test_bad_input_is_refused_before_any_model_runs(pipes, monkeypatch, overrides, error, message):
    _, ours = pipes
    _no_model_runs(monkeypatch, ours)
    call = dict(image=an_image(), prompt="a circle", height=16, width=16, num_frames=2, num_inference_steps=2)
    with pytest.raises(error, match=message):
        ours(**{**call, **overrides})


def test_a_refiner_must_work_on_the_base_latents(pipes):
    _, ours = pipes
    components = {**ours.components}
    refiner = UNet3DModel(**{**dict(ours.unet.config), "scalar_conditions": [], "in_channels": 3, "out_channels": 3})
    with pytest.raises(ValueError, match="`refiner_unet` reads 3 and predicts 3 latent channels .* have 4"):
        I2VGenXLCascadePipeline(**{**components, "refiner_unet": refiner, "refiner_scheduler": ours.scheduler})
    with pytest.raises(ValueError, match="Give both `refiner_unet` and `refiner_scheduler`"):
        I2VGenXLCascadePipeline(**{**components, "refiner_unet": None, "refiner_scheduler": ours.scheduler})


def test_cli_refuses_a_bad_folder_in_one_line(diffusers_folder, tmp_path, capsys):
    bad = tmp_path / "bad"
    (bad / "unet").mkdir(parents=True)
    state = load_file(diffusers_folder / "unet" / "diffusion_pytorch_model.safetensors")
    save_file({**state, "bogus.weight": torch.zeros(1)}, bad / "unet" / "diffusion_pytorch_model.safetensors")
    (bad / "unet" / "config.json").write_text((diffusers_folder / "unet" / "config.json").read_text())
    script = load_script(ROOT / "conversion_scripts" / "convert_i2vgen_xl.py")
    assert script.main(["--checkpoint", str(bad / "unet"), "--output_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Unexpected key `bogus.weight`" in err
    assert not (tmp_path / "out").exists()


def test_a_lora_file_loads_into_the_base_unet_and_unloads_exactly(pipes, tmp_path):
    """A LoRA whose keys are prefixed `unet.` (as `diffusers-video train` writes it) adapts the base UNet."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from diffusers_video.pipelines.lora import VideoLoraLoaderMixin

    _, ours = pipes
    adapted, _ = converted(make_i2vgen_unet())
    adapted.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    VideoLoraLoaderMixin.save_lora_weights(tmp_path, {"unet": get_peft_model_state_dict(adapted)})
    call = dict(
        image=an_image(), prompt="a circle", height=16, width=16, num_frames=2, num_inference_steps=2, output_type="np"
    )
    reference = ours(**call, generator=torch.Generator().manual_seed(0)).frames
    ours.load_lora_weights(tmp_path, adapter_name="motion")
    try:
        assert ours.get_list_adapters() == {"unet": ["motion"]}
        assert np.abs(ours(**call, generator=torch.Generator().manual_seed(0)).frames - reference).max() > 1e-3
    finally:
        ours.unload_lora_weights()
    np.testing.assert_array_equal(ours(**call, generator=torch.Generator().manual_seed(0)).frames, reference)


def test_a_batch_pairs_each_prompt_with_its_image(pipes):
    """Two prompts, two images, two videos each: every video is the one its prompt and image make alone (the VAE's
    posterior is made near-deterministic, so that the image latent does not depend on the draw)."""
    _, ours = pipes
    images, prompts = [an_image(seed=0), an_image(seed=1)], ["a circle", "a square"]
    latents = torch.randn(4, 4, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    call = dict(height=16, width=16, num_frames=2, num_inference_steps=2, guidance_scale=3.0, output_type="np")
    bias = ours.vae.quant_conv.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias[4:] = -100.0  # log-variance clamped to -30: std 3e-7
    try:
        batch = ours(image=images, prompt=prompts, num_videos_per_prompt=2, latents=latents, **call).frames
        assert batch.shape == (4, 2, 16, 16, 3)
        for video, index in enumerate([0, 0, 1, 1]):
            alone = ours(image=images[index], prompt=prompts[index], latents=latents[video : video + 1], **call)
            assert np.abs(alone.frames[0] - batch[video]).max() <= 1e-4
        assert np.abs(batch[0] - batch[2]).max() > 1e-3
    finally:
        with torch.no_grad():
            bias.copy_(saved)


def test_the_content_encoder_loads_strictly(converted_folder, tmp_path):
    folder = tmp_path / "content_encoder"
    I2VGenXLContentEncoder.from_pretrained(converted_folder / "content_encoder").save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_image_token": 4}))
    with pytest.raises(ValueError, match="`num_image_token` in .* is not a config key of I2VGenXLContentEncoder"):
        I2VGenXLContentEncoder.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(folder / "diffusion_pytorch_model.safetensors")
    weights.pop("context_embedding.0.bias")
    save_file(weights, folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match=r"missing weights \['context_embedding.0.bias'\]"):
        I2VGenXLContentEncoder.from_pretrained(folder)


def test_bfloat16_from_pretrained_runs_the_cascade_as_float32_does(pipes, converted_folder):
    _, ours = pipes
    low = I2VGenXLCascadePipeline.from_pretrained(converted_folder, dtype=torch.bfloat16)
    low.set_progress_bar_config(disable=True)
    assert (
        {p.dtype for p in low.unet.parameters()}
        == {p.dtype for p in low.content_encoder.parameters()}
        == {torch.bfloat16}
    )
    call = dict(image=an_image(), prompt="a red circle", height=16, width=16, num_frames=3, num_inference_steps=2,
                guidance_scale=4.0, output_type="latent")  # fmt: skip
    reference = ours(**call, generator=torch.Generator().manual_seed(0)).frames
    assert_bfloat16_matches(low(**call, generator=torch.Generator().manual_seed(0)).frames, reference)


def test_the_demo_step_animates_the_first_frames_and_scores_them(converted_folder, tmp_path, capsys):
    pipe = I2VGenXLCascadePipeline.from_pretrained(converted_folder)
    pipe.register_to_config(default_height=16, default_width=16)  # converted: diffusers' 704 x 1280
    pipe.save_pretrained(tmp_path / "small")
    _i2vgen_xl_demo(tmp_path, tmp_path / "small", 0)
    out = capsys.readouterr().out
    assert "8 frames of 16x16, refined to 16x16" in out  # no refiner in this folder: the base size
    assert out.count("first frame against the image: PSNR") == 3 and out.count("scorer sees: ") == 3
    assert (tmp_path / "i2vgen_xl_a_red_circle_moving_right.gif").stat().st_size > 500
    assert cli_main(["demo", "--output_dir", str(tmp_path), "--i2vgen_xl", str(tmp_path / "none_here")]) == 1
    assert "none_here' is not a pipeline folder" in capsys.readouterr().err
