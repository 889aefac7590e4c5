"""VideoFusionPipeline: the decomposed sampling step against the paper's formulas, parity with diffusers' text-to-video
sampling without a base generator, long videos over frame windows, offloading, saving, and bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_clip_text_models, tiny_sd21_unet2d_config, tiny_vae
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, TextToVideoSDPipeline, UNet2DConditionModel
from diffusers.video_processor import VideoProcessor

from diffusers_video import DecomposedNoiseScheduler, UNet3DModel, VideoFusionPipeline, VideoPipelineOutput
from diffusers_video.guidance import OscillatingGuidance
from diffusers_video.pipelines.pipeline_utils import decode_latents, postprocess_video
from diffusers_video.pipelines.prompts import encode_clip_prompt
from diffusers_video.pipelines.videofusion.windows import frame_windows, predict_over_windows, window_blend_weights

TEXT_DIM = 16
MAX_TOKENS = 16
SIZE = 16  # pixels; the VAE halves it to 8x8 latents, the UNets' 4 blocks need multiples of 2 * 8 = 16
PROMPT = "a red circle"


pytestmark = pytest.mark.usefixtures("one_thread")


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.02) -> torch.nn.Module:
    """Random weights everywhere (zero-initialised layers included), so every parameter matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    return model.eval()


def tiny_base_unet(**overrides) -> UNet2DConditionModel:
    torch.manual_seed(0)
    config = tiny_sd21_unet2d_config(sample_size=8, cross_attention_dim=TEXT_DIM)
    config.update(overrides)
    return _perturb(UNet2DConditionModel(**config), seed=1)


def tiny_residual_unet(base: UNet2DConditionModel, trained: bool = True, **temporal) -> UNet3DModel:
    """The base inflated; `trained` perturbs every weight (temporal layers then mix frames, spatial ones differ)."""
    residual = UNet3DModel.from_unet2d(base, temporal_attention_head_dim=8, **temporal).eval()
    return _perturb(residual, seed=2) if trained else residual


def make_pipe(
    with_base: bool = True,
    base_prediction_type: str = "epsilon",
    trained_residual: bool = True,
    **scheduler_config,
) -> VideoFusionPipeline:
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM, MAX_TOKENS)
    base = tiny_base_unet()
    residual = tiny_residual_unet(base, trained=trained_residual)
    scheduler = DecomposedNoiseScheduler(**{"base_noise_ratio": 0.5, **scheduler_config})
    pipe = VideoFusionPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        residual_unet=residual,
        scheduler=scheduler,
        base_unet=base if with_base else None,
        base_prediction_type=base_prediction_type,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe: VideoFusionPipeline, seed: int = 0, **kwargs):
    arguments = dict(prompt=PROMPT, num_frames=5, num_inference_steps=2, guidance_scale=4.0, output_type="latent")
    arguments.update(kwargs)
    return pipe(generator=torch.Generator().manual_seed(seed), **arguments).frames


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-5) -> None:
    """Equal up to float32 rounding of differently batched computations, relative to the largest value.

    Final latents of untrained tiny models are large (the first DDIM step from t = 999 divides by alpha_t = 0.006), so
    rounding differences scale with them.
    """
    torch.testing.assert_close(actual, expected, atol=tolerance * expected.abs().max().item(), rtol=0)


def encode(pipe: VideoFusionPipeline, text: str) -> torch.Tensor:
    """CLIP embeddings of one prompt, computed without the pipeline."""
    ids = pipe.tokenizer(text, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    return pipe.text_encoder(ids.input_ids)[0]


@pytest.fixture(scope="module")
def pipe() -> VideoFusionPipeline:
    return make_pipe()


# ---------------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------------


def test_every_output_type_gives_the_same_video_in_its_format(pipe):
    latents = run(pipe)
    assert latents.shape == (1, 4, 5, SIZE // 2, SIZE // 2)
    np_frames = run(pipe, output_type="np")
    pt_frames = run(pipe, output_type="pt")
    pil_frames = run(pipe, output_type="pil")
    assert isinstance(np_frames, np.ndarray) and np_frames.shape == (1, 5, SIZE, SIZE, 3)
    assert np_frames.dtype == np.float32 and np_frames.min() >= 0.0 and np_frames.max() <= 1.0
    assert np_frames.std() > 0.01  # not a constant image
    assert isinstance(pt_frames, torch.Tensor) and pt_frames.shape == (1, 5, 3, SIZE, SIZE)
    assert len(pil_frames) == 1 and len(pil_frames[0]) == 5
    assert all(isinstance(im, PIL.Image.Image) and im.size == (SIZE, SIZE) for im in pil_frames[0])

    np.testing.assert_allclose(pt_frames.permute(0, 1, 3, 4, 2).numpy(), np_frames, atol=1e-6)
    pil_array = np.stack([np.asarray(im) for im in pil_frames[0]])[None]
    np.testing.assert_array_equal(pil_array, (np_frames * 255).round().astype(np.uint8))
    # the np frames are the latents decoded as diffusers' TextToVideoSDPipeline decodes them
    with torch.no_grad():
        reference = TextToVideoSDPipeline.decode_latents(SimpleNamespace(vae=pipe.vae), latents)
    expected = VideoProcessor(do_resize=False, vae_scale_factor=2).postprocess_video(reference, output_type="np")
    np.testing.assert_allclose(np_frames, expected, atol=1e-6)

    output = pipe(PROMPT, num_frames=5, num_inference_steps=2, output_type="latent", return_dict=False,
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert isinstance(output, tuple) and len(output) == 1
    assert isinstance(pipe(PROMPT, num_frames=1, num_inference_steps=1), VideoPipelineOutput)


def test_chunked_decoding_equals_decoding_all_frames_at_once(pipe):
    latents = torch.randn(2, 4, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = decode_latents(pipe.vae, latents)
        chunked = decode_latents(pipe.vae, latents, decode_chunk_size=2)
    assert whole.shape == (2, 3, 5, SIZE, SIZE) and whole.dtype == torch.float32
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
    assert postprocess_video(whole, "pt").shape == (2, 5, 3, SIZE, SIZE)
    np.testing.assert_allclose(
        run(pipe, output_type="np", decode_chunk_size=2), run(pipe, output_type="np"), atol=1e-6
    )


def test_seeded_generation_is_deterministic_and_depends_on_the_seed(pipe):
    first, again, other = run(pipe, seed=0), run(pipe, seed=0), run(pipe, seed=1)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 0.1


def test_num_videos_per_prompt_repeats_each_prompt_with_its_own_noise(pipe):
    prompts = ["a red circle", "a blue square"]
    generators = [torch.Generator().manual_seed(seed) for seed in range(4)]
    batch = pipe(prompts, num_frames=5, num_inference_steps=2, guidance_scale=4.0, num_videos_per_prompt=2,
                 generator=generators, output_type="latent").frames  # fmt: skip
    assert batch.shape == (4, 4, 5, SIZE // 2, SIZE // 2)
    # video j is prompt j // 2 with generator j, as diffusers repeats embeddings prompt by prompt
    for j in (1, 2):
        single = run(pipe, seed=j, prompt=prompts[j // 2])
        assert_close_relative(batch[j : j + 1], single)
    assert (batch[0] - batch[1]).abs().max() > 0.1


def test_prompt_embeds_give_the_same_video_as_the_prompt(pipe):
    prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(
        PROMPT, torch.device("cpu"), 1, True, negative_prompt="a blue square"
    )
    assert prompt_embeds.shape == (1, MAX_TOKENS, TEXT_DIM)
    torch.testing.assert_close(prompt_embeds, encode(pipe, PROMPT), atol=0, rtol=0)
    from_prompt = run(pipe, negative_prompt="a blue square")
    from_embeds = run(pipe, prompt=None, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds)
    assert torch.equal(from_prompt, from_embeds)
    assert (from_prompt - run(pipe)).abs().max() > 1e-3  # the negative prompt is used


def test_clip_skip_uses_an_earlier_layer_through_the_final_layer_norm(pipe):
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states
        expected = pipe.text_encoder.final_layer_norm(hidden[-2])  # transformers 5: no `.text_model`
        skipped, _ = encode_clip_prompt(pipe.tokenizer, pipe.text_encoder, PROMPT, torch.device("cpu"), 2, False,
                                        clip_skip=1)  # fmt: skip
    assert skipped.shape == (2, MAX_TOKENS, TEXT_DIM)
    torch.testing.assert_close(skipped, expected.repeat(2, 1, 1), atol=1e-6, rtol=0)
    assert (skipped[:1] - encode(pipe, PROMPT)).abs().max() > 1e-3


def test_default_size_comes_from_the_residual_unet(pipe):
    assert pipe.residual_unet.config.sample_size * pipe.vae_scale_factor == SIZE
    assert run(pipe, output_type="np").shape[2:4] == (SIZE, SIZE)
    assert run(pipe, height=32, width=16).shape == (1, 4, 5, 16, 8)


# ---------------------------------------------------------------------------------------------------------------------
# Sampling maths
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_prediction_type, guidance_scale, weight, eta, scheduler_config",
    [
        ("epsilon", 3.0, 3.0, 0.0, {}),
        ("v_prediction", OscillatingGuidance(high=5.0, low=2.0), 5.0, 1.0, {}),
        # v-prediction VideoFusion at zero terminal SNR: the first step starts at alpha_t = 0
        ("v_prediction", 3.0, 3.0, 0.0, {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}),
    ],
)
def test_one_step_equals_the_videofusion_step_computed_by_hand(
    base_prediction_type, guidance_scale, weight, eta, scheduler_config
):
    pipe = make_pipe(base_prediction_type=base_prediction_type, **scheduler_config)
    v_mode = scheduler_config.get("prediction_type") == "v_prediction"
    num_frames, key = 5, 2
    recorded = []
    pipe(PROMPT, num_frames=num_frames, num_inference_steps=3, guidance_scale=guidance_scale, eta=eta,
         generator=torch.Generator().manual_seed(0), output_type="latent",
         callback_on_step_end=lambda p, i, t, tensors: recorded.append(tensors["latents"].clone()) or {})  # fmt: skip

    with torch.no_grad():
        # initial noise: residual r, then base b, from the same generator; lambda = 1 at the key frame
        generator = torch.Generator().manual_seed(0)
        shape = (1, 4, num_frames, SIZE // 2, SIZE // 2)
        r = torch.randn(shape, generator=generator)
        b = torch.randn((1, 4, 1, SIZE // 2, SIZE // 2), generator=generator)
        lam = torch.tensor([0.5, 0.5, 1.0, 0.5, 0.5]).reshape(1, 1, -1, 1, 1)
        x = lam.sqrt() * b + (1 - lam).sqrt() * r

        text = torch.cat([encode(pipe, ""), encode(pipe, PROMPT)])  # unconditional first
        timesteps = pipe.scheduler.timesteps  # set by the call: 3 "trailing" steps
        t, t_prev = timesteps[0], timesteps[1]
        abar, abar_prev = pipe.scheduler.alphas_cumprod[t], pipe.scheduler.alphas_cumprod[t_prev]
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()

        # 1. base generator on the key frame, guided, as epsilon
        x_key = x[:, :, key]
        uncond, cond = pipe.base_unet(torch.cat([x_key] * 2), t, encoder_hidden_states=text).sample.chunk(2)
        base_out = uncond + weight * (cond - uncond)
        b_hat = base_out if base_prediction_type == "epsilon" else alpha * base_out + sigma * x_key
        b_hat = b_hat[:, :, None]  # (B, C, 1, h, w)
        x0_key = None if base_prediction_type == "epsilon" else alpha * x_key - sigma * base_out
        # 2. base noise out of every frame
        x_res = x - sigma * lam.sqrt() * b_hat
        # 3. residual generator, guided
        uncond, cond = pipe.residual_unet(torch.cat([x_res] * 2), t, encoder_hidden_states=text).sample.chunk(2)
        r_hat = uncond + weight * (cond - uncond)
        # 4. combined noise and the DDIM step (Song et al. eq. 12 and 16)
        if v_mode:  # r_hat is the velocity of x_res: v_i = alpha sqrt(lambda_i) b_hat + u_i; the base's v at the key
            v = alpha * lam.sqrt() * b_hat + r_hat
            v[:, :, key] = alpha * b_hat[:, :, 0] - sigma * x0_key
            x0, eps = alpha * x - sigma * v, alpha * v + sigma * x
        else:
            eps = lam.sqrt() * b_hat + (1 - lam).sqrt() * r_hat
            x0 = (x - sigma * eps) / alpha
        std = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
        expected = abar_prev.sqrt() * x0 + (1 - abar_prev - std**2).sqrt() * eps
        if eta > 0:  # the step noise is decomposed with the same ratios, drawn next from the generator
            r2 = torch.randn(shape, generator=generator)
            b2 = torch.randn((1, 4, 1, SIZE // 2, SIZE // 2), generator=generator)
            expected = expected + std * (lam.sqrt() * b2 + (1 - lam).sqrt() * r2)

    assert len(recorded) == 3
    assert (recorded[0] - x).abs().max() > 0.01
    if v_mode:
        assert alpha == 0 and torch.isfinite(recorded[-1]).all()
    torch.testing.assert_close(recorded[0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_without_base_and_ratio_zero_equals_a_plain_ddim_loop(prediction_type):
    pipe = make_pipe(with_base=False, base_noise_ratio=0.0, prediction_type=prediction_type)
    steps, weight = 4, 6.0
    ours = run(pipe, num_inference_steps=steps, guidance_scale=weight)

    ddim = DDIMScheduler(clip_sample=False, timestep_spacing="trailing", prediction_type=prediction_type)
    ddim.set_timesteps(steps)
    with torch.no_grad():
        text = torch.cat([encode(pipe, ""), encode(pipe, PROMPT)])
        x = torch.randn((1, 4, 5, SIZE // 2, SIZE // 2), generator=torch.Generator().manual_seed(0))
        for t in ddim.timesteps:
            uncond, cond = pipe.residual_unet(torch.cat([x] * 2), t, encoder_hidden_states=text).sample.chunk(2)
            x = ddim.step(uncond + weight * (cond - uncond), t, x).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=0)


def test_without_base_and_ratio_zero_equals_diffusers_text_to_video_pipeline():
    """Same weights in diffusers' TextToVideoSDPipeline (our UNet3DModel in place of its UNet): the same video."""
    pipe = make_pipe(with_base=False, base_noise_ratio=0.0)
    reference = TextToVideoSDPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.residual_unet,
        scheduler=DDIMScheduler(clip_sample=False, timestep_spacing="trailing"),
    )  # fmt: skip
    reference.set_progress_bar_config(disable=True)
    arguments = dict(num_frames=5, num_inference_steps=4, guidance_scale=7.0, negative_prompt="a blue square")
    expected = reference(PROMPT, generator=torch.Generator().manual_seed(0), **arguments).frames
    ours = pipe(PROMPT, generator=torch.Generator().manual_seed(0), **arguments).frames
    assert ours.shape == expected.shape == (1, 5, SIZE, SIZE, 3)
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_a_weight_of_one_skips_the_unconditional_passes():
    pipe = make_pipe()
    batches = {"base": [], "residual": []}
    for name, model in (("base", pipe.base_unet), ("residual", pipe.residual_unet)):
        forward = model.forward

        def recording(sample, *args, _forward=forward, _name=name, **kwargs):
            batches[_name].append(sample.shape[0])
            return _forward(sample, *args, **kwargs)

        model.forward = recording
    run(pipe, num_inference_steps=3, guidance_scale=[1.0, 5.0, 1.0])
    assert batches == {"base": [1, 2, 1], "residual": [1, 2, 1]}


def test_callback_on_step_end_sees_and_replaces_tensors(pipe):
    seen = []

    def callback(p, i, t, tensors):
        seen.append((i, int(t), sorted(tensors)))
        return {"latents": torch.zeros_like(tensors["latents"])} if i == 1 else {}

    names = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    latents = run(pipe, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=names)
    assert [s[0] for s in seen] == [0, 1]
    assert [s[1] for s in seen] == pipe.scheduler.timesteps.tolist()
    assert seen[0][2] == ["latents", "negative_prompt_embeds", "prompt_embeds"]
    assert torch.equal(latents, torch.zeros_like(latents))


# ---------------------------------------------------------------------------------------------------------------------
# Long videos
# ---------------------------------------------------------------------------------------------------------------------


def test_frame_windows_cover_the_video_and_blend_weights_sum_to_one():
    assert frame_windows(5, 8, 2) == [(0, 5)]
    assert frame_windows(8, 8, 2) == [(0, 8)]
    assert frame_windows(11, 4, 1) == [(0, 4), (3, 7), (6, 10), (7, 11)]
    assert frame_windows(12, 4, 0) == [(0, 4), (4, 8), (8, 12)]
    for num_frames, size, overlap in [(11, 4, 1), (20, 6, 3), (9, 5, 4), (7, 2, 1), (13, 3, 0)]:
        windows = frame_windows(num_frames, size, overlap)
        assert all(end - start == size for start, end in windows)
        assert windows[0][0] == 0 and windows[-1][1] == num_frames
        assert all(b[0] - a[0] <= size - overlap for a, b in zip(windows, windows[1:]))  # no gaps
        weights = window_blend_weights(windows, num_frames)
        assert weights.shape == (len(windows), num_frames)
        torch.testing.assert_close(weights.sum(0), torch.ones(num_frames, dtype=torch.float64))
        for index, (start, end) in enumerate(windows):
            assert (weights[index, start:end] > 0).all() and weights[index, :start].eq(0).all()
            assert weights[index, end:].eq(0).all()
    # a crossfade: in the 1-frame overlaps of (0, 4), (3, 7) the frame is shared half and half
    weights = window_blend_weights([(0, 4), (3, 7)], 7)
    assert weights[:, 3].tolist() == [0.5, 0.5] and weights[0, :3].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="`window_overlap`.*4 and 4"):
        frame_windows(10, 4, 4)


def test_predict_over_windows_blends_a_frame_local_model_exactly():
    sample = torch.randn(2, 3, 11, 4, 4, generator=torch.Generator().manual_seed(0))
    seen = []

    def frame_local(frames):  # depends on each frame alone
        seen.append(frames.shape[2])
        return torch.cat([frames.sin(), frames.sum(1, keepdim=True)], dim=1)  # (N, 4, W, H, W')

    windows = frame_windows(11, 4, 2)
    blended = predict_over_windows(frame_local, sample, windows, window_blend_weights(windows, 11))
    assert blended.shape == (2, 4, 11, 4, 4) and max(seen) == 4 and len(seen) == len(windows)
    torch.testing.assert_close(blended, frame_local(sample), atol=1e-6, rtol=0)
    # a model that mixes frames sees only its window: the blend differs from the whole-video prediction
    windows = frame_windows(11, 4, 1)
    mixed = predict_over_windows(lambda x: x.cumsum(2), sample, windows, window_blend_weights(windows, 11))
    torch.testing.assert_close(mixed[:, :, :3], sample.cumsum(2)[:, :, :3])  # the first window alone
    assert (mixed - sample.cumsum(2)).abs().max() > 0.5


def record_frames(model: torch.nn.Module) -> list[tuple[int, ...]]:
    shapes = []
    forward = model.forward

    def recording(sample, *args, **kwargs):
        shapes.append(tuple(sample.shape))
        return forward(sample, *args, **kwargs)

    model.forward = recording
    return shapes


def test_a_window_covering_the_video_is_the_plain_path(pipe):
    plain = run(pipe, num_frames=5)
    assert torch.equal(run(pipe, num_frames=5, window_size=5, window_overlap=2), plain)
    assert torch.equal(run(pipe, num_frames=5, window_size=9), plain)


def test_long_videos_run_the_residual_unet_over_windows_and_the_base_once_per_step():
    pipe = make_pipe()
    residual_shapes, base_shapes = record_frames(pipe.residual_unet), record_frames(pipe.base_unet)
    frames = run(pipe, num_frames=11, num_inference_steps=2, window_size=4, window_overlap=1, output_type="np",
                 decode_chunk_size=4, window_mode="blend")  # fmt: skip
    assert frames.shape == (1, 11, SIZE, SIZE, 3)
    assert max(shape[2] for shape in residual_shapes) == 4
    assert len(residual_shapes) == 2 * len(frame_windows(11, 4, 1))  # every window at every step
    assert base_shapes == [(2, 4, SIZE // 2, SIZE // 2)] * 2  # one key frame, cond and uncond batched


@pytest.mark.parametrize("with_base", [True, False])
def test_windows_blend_a_frame_local_model_into_the_plain_result(with_base):
    # freshly inflated: temporal layers are the identity, so each frame's prediction ignores the other frames and
    # any normalised blend of windows must give back the plain prediction
    pipe = make_pipe(with_base=with_base, trained_residual=False)
    plain = run(pipe, num_frames=9)
    windowed = run(pipe, num_frames=9, window_size=4, window_overlap=2, window_mode="blend")
    assert_close_relative(windowed, plain)
    # a trained residual generator mixes frames, so windows then change the video
    trained = make_pipe(with_base=with_base)
    plain = run(trained, num_frames=9)
    windowed = run(trained, num_frames=9, window_size=4, window_overlap=2, window_mode="blend")
    assert (windowed - plain).abs().max() > 1e-3 * plain.abs().max()


def test_default_window_is_the_residual_unets_max_frames():
    pipe = make_pipe()
    pipe.residual_unet.register_to_config(max_frames=4)
    shapes = record_frames(pipe.residual_unet)
    run(pipe, num_frames=6, num_inference_steps=1, window_mode="blend")
    assert [shape[2] for shape in shapes] == [4, 4]  # windows (0, 4), (2, 6): overlap 4 // 4 = 1, moved to the end


# ---------------------------------------------------------------------------------------------------------------------
# diffusers machinery: offloading, saving
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_base", [True, False])
def test_model_cpu_offload_hooks_every_model_and_keeps_the_result(with_base):
    # enable_model_cpu_offload needs an accelerator unless a device is given; "cpu" installs the same hooks
    pipe = make_pipe(with_base=with_base)
    expected = run(pipe)
    pipe.enable_model_cpu_offload(device="cpu")
    assert len(pipe._all_hooks) == (4 if with_base else 3)  # text_encoder, (base_unet,) residual_unet, vae
    hooked = {name for name, model in pipe.components.items() if hasattr(model, "_hf_hook")}
    assert hooked == {"text_encoder", "residual_unet", "vae"} | ({"base_unet"} if with_base else set())
    assert torch.equal(run(pipe), expected)


@pytest.mark.parametrize("with_base", [True, False])
def test_save_and_load_round_trip(with_base, tmp_path):
    pipe = make_pipe(with_base=with_base, base_prediction_type="v_prediction")
    expected = run(pipe)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["base_prediction_type"] == "v_prediction"
    assert index["residual_unet"] == ["diffusers_video.models.unet_3d", "UNet3DModel"]
    assert index["scheduler"] == ["diffusers_video.schedulers.scheduling_decomposed", "DecomposedNoiseScheduler"]
    assert (index["base_unet"] == [None, None]) != with_base

    loaded = VideoFusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.base_prediction_type == "v_prediction"
    assert isinstance(loaded.scheduler, DecomposedNoiseScheduler) and loaded.scheduler.config.base_noise_ratio == 0.5
    assert (loaded.base_unet is not None) == with_base
    torch.testing.assert_close(run(loaded), expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded_pipe():
    """A pipeline whose models fail the test if called: every bad input must be refused before any model runs."""
    pipe = make_pipe()
    for model in (pipe.text_encoder, pipe.base_unet, pipe.residual_unet, pipe.vae):

        def refuse(*args, **kwargs):
            raise AssertionError("a model ran before the input was checked")

        model.forward = refuse
    return pipe


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(height=24), ValueError, "`height` and `width`.*16.*24 and 16"),
        (dict(width=8), ValueError, "`height` and `width`.*16 and 8"),
        (dict(num_frames=0), ValueError, "`num_frames`.*0"),
        (dict(num_inference_steps=0), ValueError, "`num_inference_steps`.*0"),
        (dict(guidance_scale=-1.0), ValueError, "`guidance_scale`.*-1.0"),
        (dict(guidance_scale=OscillatingGuidance(high=5.0, low=-2.0)), ValueError, "`guidance_scale`.*-2.0"),
        (dict(guidance_scale=[2.0, 3.0, 4.0]), ValueError, r"`guidance_scale` \[2.0, 3.0, 4.0\].*=2"),
        (dict(prompt_embeds=torch.zeros(1, MAX_TOKENS, TEXT_DIM)), ValueError, "either `prompt` or `prompt_embeds`"),
        (dict(prompt=None), ValueError, "either `prompt` or `prompt_embeds`"),
        (dict(prompt=["a", "b"], negative_prompt=["c", "d", "e"]), ValueError, r"batch sizes.*\(3\).*\(2\)"),
        (
            dict(
                prompt=None,
                prompt_embeds=torch.zeros(2, MAX_TOKENS, TEXT_DIM),
                negative_prompt_embeds=torch.zeros(1, MAX_TOKENS, TEXT_DIM),
            ),
            ValueError,
            r"batch sizes.*\(1\).*\(2\)",
        ),
        (dict(prompt=["a", "b"], negative_prompt="c"), TypeError, "`negative_prompt`.*type of `prompt`"),
        (dict(prompt=None, prompt_embeds=torch.zeros(1, MAX_TOKENS, 8)), ValueError, r"`prompt_embeds`.*\(1, 16, 8\)"),
        (dict(prompt=3), TypeError, "`prompt`.*3"),
        (dict(output_type="numpy"), ValueError, "`output_type`.*'numpy'"),
        (dict(window_size=4, window_overlap=4), ValueError, "`window_overlap`.*`window_size`.*4 and 4"),
        (dict(window_overlap=32), ValueError, "`window_overlap`.*`window_size`.*32 and 32"),
        (dict(window_size=0), ValueError, "`window_size`.*0"),
        (dict(callback_on_step_end_tensor_inputs=["noise_pred"]), ValueError, "noise_pred"),
        (dict(latents=torch.zeros(1, 4, 3, 8, 8)), ValueError, r"`latents`.*\(1, 4, 5, 8, 8\).*\(1, 4, 3, 8, 8\)"),
        (dict(generator=[torch.Generator()] * 2), ValueError, "`generator`.*2.*1"),
        (dict(eta=-0.5), ValueError, "`eta`.*-0.5"),
        (dict(num_videos_per_prompt=0), ValueError, "`num_videos_per_prompt`.*0"),
        (dict(decode_chunk_size=0), ValueError, "`decode_chunk_size`.*0"),
    ],
)
def test_bad_input_is_refused_before_any_model_runs(guarded_pipe, kwargs, error, message):
    arguments = dict(prompt=PROMPT, num_frames=5, num_inference_steps=2, guidance_scale=4.0)
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        guarded_pipe(**arguments)


def test_per_frame_ratios_must_match_the_frame_count(guarded_pipe):
    pipe = VideoFusionPipeline(
        **{**guarded_pipe.components, "scheduler": DecomposedNoiseScheduler(base_noise_ratio=[0.5] * 3)}
    )
    with pytest.raises(ValueError, match="one value per frame \\(5 frames\\)"):
        pipe(PROMPT, num_frames=5, num_inference_steps=2)


def test_a_swapped_scheduler_that_predicts_samples_is_refused_with_a_base_generator(guarded_pipe):
    pipe = VideoFusionPipeline(**guarded_pipe.components)
    pipe.scheduler = DecomposedNoiseScheduler(prediction_type="sample")
    with pytest.raises(ValueError, match="`prediction_type` must be 'epsilon' or 'v_prediction' but is 'sample'"):
        pipe(PROMPT, num_frames=5, num_inference_steps=2)


def test_learned_frame_encodings_limit_the_window(guarded_pipe):
    residual = tiny_residual_unet(tiny_base_unet(), frame_position_encoding="learned", max_frames=4)
    pipe = VideoFusionPipeline(**{**guarded_pipe.components, "residual_unet": residual})
    with pytest.raises(ValueError, match="`window_size`.*`max_frames` \\(4.*but is 6"):
        pipe(PROMPT, num_frames=8, num_inference_steps=2, window_size=6)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (
            dict(base_unet=dict(in_channels=8, out_channels=8)),
            ValueError,
            "`base_unet`.*4 latent channels.*in_channels=8",
        ),
        (dict(base_unet=dict(cross_attention_dim=24)), ValueError, "cross_attention_dim=24.*cross_attention_dim=16"),
        (dict(base_prediction_type="sample"), ValueError, "`base_prediction_type`.*'sample'"),
        (
            dict(scheduler=DecomposedNoiseScheduler(prediction_type="sample")),
            ValueError,
            "'epsilon' or 'v_prediction'",
        ),
        (
            dict(scheduler=DecomposedNoiseScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True)),
            ValueError,
            "zero terminal SNR.*`prediction_type` \\('v_prediction'\\) and `base_prediction_type` \\('epsilon'\\)",
        ),
        (
            dict(scheduler=FlowMatchEulerDiscreteScheduler()),
            TypeError,
            "discrete-time diffusers scheduler with `alphas_cumprod`.*FlowMatchEulerDiscreteScheduler",
        ),
    ],
)
def test_components_that_do_not_fit_are_refused_at_construction(guarded_pipe, change, error, message):
    components = {**guarded_pipe.components, "base_prediction_type": "epsilon"}
    for name, value in change.items():
        components[name] = tiny_base_unet(**value) if name == "base_unet" else value
    with pytest.raises(error, match=message):
        VideoFusionPipeline(**components)
