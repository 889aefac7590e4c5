"""`VideoRefinerPipeline` against diffusers' `VideoToVideoSDPipeline`, `convert video-refiner`, DDIM inversion, and
the refinement stage of `I2VGenXLCascadePipeline`.

A tiny random diffusers `VideoToVideoSDPipeline` (a ModelScope `UNet3DConditionModel`, v-prediction, zero terminal
SNR, trailing timesteps) is saved, converted with the command line and loaded; both refine a video into the same
frames. Guidance rescale is checked against a denoising loop written with diffusers' own pieces.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_bfloat16_matches, tiny_clip_text_models, tiny_vae
from diffusers import DDIMScheduler, UNet3DConditionModel, VideoToVideoSDPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

from diffusers_video import I2VGenXLCascadePipeline, UNet3DModel, VideoRefinerPipeline
from diffusers_video.cli import main as cli_main
from diffusers_video.data.quality import infer_video_settings
from diffusers_video.pipelines.i2vgen_xl.refine import ddim_invert

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_MODELSCOPE = dict(
    sample_size=8,
    block_out_channels=(32, 64),
    layers_per_block=1,
    norm_num_groups=8,
    cross_attention_dim=32,
    attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
)


def refiner_scheduler(**overrides) -> DDIMScheduler:
    config = dict(
        beta_schedule="squaredcos_cap_v2", rescale_betas_zero_snr=True, prediction_type="v_prediction",
        timestep_spacing="trailing", clip_sample=False,
    )  # fmt: skip
    return DDIMScheduler(**{**config, **overrides})


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory) -> Path:
    tokenizer, text_encoder = tiny_clip_text_models(text_dim=32)
    torch.manual_seed(0)
    unet = UNet3DConditionModel(**TINY_MODELSCOPE)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if ".conv4." in name:  # TemporalConvLayer's zero-initialised output
                param.normal_(0, 0.1)
            else:
                param.add_(0.05 * torch.randn_like(param))
    pipe = VideoToVideoSDPipeline(tiny_vae(), text_encoder, tokenizer, unet.eval(), refiner_scheduler())
    folder = tmp_path_factory.mktemp("v2v") / "zeroscope"
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipes(diffusers_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("refiner") / "refiner"
    assert cli_main(["convert", "video-refiner", "--checkpoint", str(diffusers_folder), "--output_dir", str(out)]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "VideoRefinerPipeline" and index["scheduler"] == ["diffusers", "DDIMScheduler"]
    assert index["unet"] == ["diffusers_video.models.unet_3d", "UNet3DModel"]
    theirs, ours = VideoToVideoSDPipeline.from_pretrained(diffusers_folder), VideoRefinerPipeline.from_pretrained(out)
    for pipe in (theirs, ours):
        pipe.set_progress_bar_config(disable=True)
    return theirs, ours


def a_video(frames: int = 3, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    return list(np.random.RandomState(seed).rand(frames, size, size, 3).astype(np.float32))


@pytest.mark.parametrize("strength, guidance_scale", [(0.6, 1.0), (0.6, 7.5), (1.0, 7.5)])
def test_refiner_equals_diffusers_video_to_video(pipes, strength, guidance_scale):
    theirs, ours = pipes
    call = dict(prompt="a red circle", video=a_video(), strength=strength, num_inference_steps=5,
                guidance_scale=guidance_scale, output_type="np")  # fmt: skip
    expected = theirs(**call, generator=torch.Generator().manual_seed(0)).frames
    frames = ours(**call, generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == expected.shape == (1, 3, 16, 16, 3)
    assert np.abs(frames - expected).max() <= 1e-4


def test_guidance_rescale_equals_a_loop_of_diffusers_pieces(pipes):
    """diffusers' VideoToVideoSDPipeline has no `guidance_rescale`: its own preparation, UNet, scheduler and
    Stable Diffusion's `rescale_noise_cfg` make the reference."""
    theirs, ours = pipes
    steps, strength, scale, rescale = 5, 0.6, 7.5, 0.7
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        text, negative = theirs.encode_prompt("a red circle", "cpu", 1, True)
        theirs.scheduler.set_timesteps(steps)
        timesteps, _ = theirs.get_timesteps(steps, strength, "cpu")
        video = theirs.video_processor.preprocess_video(a_video())
        latents = theirs.prepare_latents(video, timesteps[:1], 1, text.dtype, "cpu", generator)
        for t in timesteps:
            pred = theirs.unet(torch.cat([latents] * 2), t, encoder_hidden_states=torch.cat([negative, text])).sample
            uncond, cond = pred.chunk(2)
            guided = rescale_noise_cfg(uncond + scale * (cond - uncond), cond, guidance_rescale=rescale)
            latents = theirs.scheduler.step(guided, t, latents).prev_sample
        decoded = theirs.decode_latents(latents)
    expected = theirs.video_processor.postprocess_video(decoded, output_type="np")
    frames = ours("a red circle", video=a_video(), strength=strength, num_inference_steps=steps, guidance_scale=scale,
                  guidance_rescale=rescale, generator=torch.Generator().manual_seed(0)).frames  # fmt: skip
    assert np.abs(frames - expected).max() <= 1e-4
    plain = ours("a red circle", video=a_video(), strength=strength, num_inference_steps=steps, guidance_scale=scale,
                 generator=torch.Generator().manual_seed(0)).frames  # fmt: skip
    assert np.abs(frames - plain).max() > 1e-3  # the rescale changed something


def test_the_older_callback_is_called_as_diffusers_calls_it(pipes):
    theirs, ours = pipes
    calls = {"theirs": [], "ours": []}
    for name, pipe in (("theirs", theirs), ("ours", ours)):
        pipe(
            "a circle", a_video(), 0.8, 5, 7.5, generator=torch.Generator().manual_seed(0), callback_steps=2,
            callback=lambda step, t, latents, name=name: calls[name].append((step, int(t), latents.clone())),
        )  # fmt: skip
    assert [c[:2] for c in calls["ours"]] == [c[:2] for c in calls["theirs"]] == [(0, 799), (2, 399)]
    for (*_, mine), (*_, reference) in zip(calls["ours"], calls["theirs"]):
        assert (mine - reference).abs().max() <= 1e-4


def test_ddim_inversion_of_an_exact_model_is_undone_by_ddim_sampling():
    """An epsilon model that knows the true noise: inversion gives `alpha x0 + sigma eps`, DDIM maps it back."""
    scheduler = refiner_scheduler(prediction_type="epsilon", rescale_betas_zero_snr=False)
    scheduler.set_timesteps(10)
    timesteps = scheduler.timesteps[4:]
    x0, eps = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 4, 2, 4, 4)
    noisy = ddim_invert(lambda sample, t: eps, scheduler, x0, timesteps)
    alpha_bar = scheduler.alphas_cumprod[timesteps[0]]
    torch.testing.assert_close(noisy, alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps)
    sample = noisy
    for t in timesteps:
        sample = scheduler.step(eps, t, sample).prev_sample
    torch.testing.assert_close(sample, x0, atol=1e-4, rtol=1e-4)


def test_ddim_inversion_draws_no_noise_and_resizing_sets_the_size(pipes):
    """Given latents (no posterior to sample), DDIM inversion is deterministic: the generator changes nothing; fresh
    noise comes from it."""
    _, ours = pipes
    latents = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    call = dict(prompt="a circle", video=latents, strength=0.8, num_inference_steps=5, guidance_scale=3.0)
    runs = {
        (mode, seed): ours(**call, noise_mode=mode, generator=torch.Generator().manual_seed(seed)).frames
        for mode in ("fresh", "ddim_inversion")
        for seed in (0, 1)
    }
    assert np.abs(runs["ddim_inversion", 0] - runs["ddim_inversion", 1]).max() == 0
    assert np.abs(runs["fresh", 0] - runs["fresh", 1]).max() > 1e-3
    assert np.abs(runs["ddim_inversion", 0] - runs["fresh", 0]).max() > 1e-3
    resized = ours("a circle", video=a_video(), height=32, width=24, num_inference_steps=2, output_type="pt").frames
    assert resized.shape == (1, 3, 3, 32, 24)


def _no_model_runs(monkeypatch, pipe):
    def refuse(*args, **kwargs):
        raise AssertionError("a model ran before the inputs were checked")

    for component in (pipe.text_encoder, pipe.unet, pipe.vae):
        monkeypatch.setattr(component, "forward", refuse)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(strength=0.0), ValueError, r"`strength` must be a number in \(0, 1\] but is 0.0"),
        (dict(strength=1.5), ValueError, r"`strength` must be a number in \(0, 1\] but is 1.5"),
        (dict(guidance_rescale=-0.1), ValueError, r"`guidance_rescale` must be a number in \[0, 1\] but is -0.1"),
        (dict(guidance_rescale=1.5), ValueError, r"`guidance_rescale` must be a number in \[0, 1\] but is 1.5"),
        (dict(noise_mode="inverse"), ValueError, "`noise_mode` must be one of"),
        (dict(video=None), ValueError, "`video` must be given"),
        (dict(video=[a_video(), a_video()], prompt=["a", "b", "c"]), ValueError, "holds 2 videos but there are 3"),
        (dict(height=18, width=16), ValueError, "multiples of 4 .* 18 and 16"),
        (dict(video=[f * 3 for f in a_video()]), ValueError, r"values in \[0, 1\]"),
    ],
)
def test_bad_input_is_refused_before_any_model_runs(pipes, monkeypatch, overrides, error, message):
    _, ours = pipes
    _no_model_runs(monkeypatch, ours)
    with pytest.raises(error, match=message):
        ours(**{**dict(prompt="a circle", video=a_video(), num_inference_steps=2), **overrides})


def test_cascade_refines_after_the_base_stage(pipes, tmp_path):
    """The cascade with a refiner: `refine=False` is the base stage alone; the refiner runs its SDEdit steps at its
    size, with its own checks."""
    from test_i2vgen_xl import an_image, converted, make_i2vgen_unet, tiny_image_encoder

    _, refiner = pipes
    unet, encoder = converted(make_i2vgen_unet())
    image_encoder, feature_extractor = tiny_image_encoder()
    base = dict(
        vae=refiner.vae, text_encoder=refiner.text_encoder, tokenizer=refiner.tokenizer, image_encoder=image_encoder,
        feature_extractor=feature_extractor, content_encoder=encoder, unet=unet, scheduler=refiner_scheduler(),
    )  # fmt: skip
    plain = I2VGenXLCascadePipeline(**base)
    cascade = I2VGenXLCascadePipeline(**base, refiner_unet=refiner.unet, refiner_scheduler=refiner.scheduler)
    steps = []
    call = dict(
        image=an_image(), prompt="a circle", height=16, width=16, num_frames=2, num_inference_steps=5, output_type="np"
    )
    for pipe in (plain, cascade):
        pipe.set_progress_bar_config(disable=True)
    expected = plain(**call, generator=torch.Generator().manual_seed(0)).frames
    unrefined = cascade(**call, refine=False, generator=torch.Generator().manual_seed(0)).frames
    assert np.abs(unrefined - expected).max() == 0
    refined = cascade(
        **call, refiner_height=32, refiner_width=32, refiner_strength=0.6, generator=torch.Generator().manual_seed(0),
        callback_on_step_end=lambda pipe, i, t, kwargs: steps.append(i) or kwargs,
    ).frames  # fmt: skip
    assert refined.shape == (1, 2, 32, 32, 3) and steps == [0, 1, 2, 3, 4, 0, 1, 2]
    cascade.save_pretrained(tmp_path / "cascade")
    loaded = I2VGenXLCascadePipeline.from_pretrained(tmp_path / "cascade")
    loaded.set_progress_bar_config(disable=True)
    again = loaded(**call, refiner_height=32, refiner_width=32, generator=torch.Generator().manual_seed(0)).frames
    assert isinstance(loaded.refiner_unet, UNet3DModel) and np.abs(again - refined).max() <= 1e-5
    with pytest.raises(ValueError, match="`refiner_strength` must be a number in"):
        cascade(**call, refiner_strength=0)
    with pytest.raises(ValueError, match="`refiner_guidance_rescale` must be a number in"):
        cascade(**call, refiner_guidance_rescale=2)
    with pytest.raises(ValueError, match="`refiner_height` and `refiner_width` have to be"):
        cascade(**call, refiner_height=30, refiner_width=32)
    # `default_size()` is what a call that gives no size makes, and what `bench quality` reads
    for pipe in (plain, cascade):
        made = pipe(image=an_image(), prompt="a circle", num_inference_steps=2, output_type="np").frames
        assert pipe.default_size() == made.shape[1:4]
        assert infer_video_settings(pipe) == dict(zip(("num_frames", "height", "width"), made.shape[1:4]))
    assert plain.default_size()[1:] == plain.base_size() == cascade.base_size()
    assert cascade.default_size()[1:] == cascade.refiner_size(None, None, *cascade.base_size())


def test_bfloat16_refines_as_float32_does(pipes):
    _, ours = pipes
    call = dict(prompt="a red circle", video=a_video(), strength=0.6, num_inference_steps=4, guidance_scale=4.0,
                output_type="latent")  # fmt: skip
    reference = ours(**call, generator=torch.Generator().manual_seed(0)).frames
    low = copy.deepcopy(ours).to(torch.bfloat16)
    assert_bfloat16_matches(low(**call, generator=torch.Generator().manual_seed(0)).frames, reference)
