"""VideoFusion with diffusers' schedulers, the key frame's estimate, and long videos made window after window.

The schedulers are checked with oracle generators: models that return the exact prediction for one known clean video
`x0`. With an exact denoiser every consistent sampler ends at `x0`, whatever its order or step noise, so a wrong noise
level of the model input (Euler's sigma-space samples), a wrong combination of base and residual, or a key frame taken
from the wrong generator all show up as a final video away from `x0`.
"""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils import logging as diffusers_logging
from test_pipeline_videofusion import SIZE, make_pipe, run

from diffusers_video.pipelines.videofusion.extension import (
    default_extension_overlap,
    extension_windows,
)
from diffusers_video.schedulers.decomposed_noise import (
    key_frame_index,
)

pytestmark = pytest.mark.usefixtures("one_thread")

FRAMES = 5
LATENT = SIZE // 2
SCHEDULERS = {
    "ddim": (DDIMScheduler, {}),
    "dpm++2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++2m-sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
}


def zero_snr_pipe(**kwargs):
    """The committed demo's configuration: v-prediction with zero terminal SNR and trailing timesteps."""
    return make_pipe(
        base_prediction_type="v_prediction",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
        **kwargs,
    )


def levels(pipe, timestep) -> tuple[torch.Tensor, torch.Tensor]:
    """`(alpha_t, sigma_t)` of an integer timestep on the pipeline's current scheduler's training schedule."""
    alpha_bar = pipe.scheduler.alphas_cumprod.to(torch.float64)[int(round(float(timestep)))]
    return alpha_bar.sqrt().float(), (1 - alpha_bar).sqrt().float()


def install_oracles(pipe, x0: torch.Tensor, key_frame_shift: float = 0.0) -> None:
    """Make both generators exact for the clean video `x0` `(1, C, F, h, w)`.

    The base generator returns the key frame's velocity `alpha eps - sigma x0^k`; the residual generator the velocity
    of `x'` with the base noise taken out, `alpha (x' - alpha x0) / sigma - sigma x0` (at the key frame `-sigma x0^k`),
    whose key frame `x0` is shifted by `key_frame_shift`.
    """
    key = key_frame_index(x0.shape[2])
    residual_x0 = x0.clone()
    residual_x0[:, :, key] += key_frame_shift

    def base(sample, timestep, *args, **kwargs):
        alpha, sigma = levels(pipe, timestep)
        clean = x0[:, :, key].expand_as(sample)
        eps = (sample - alpha * clean) / sigma
        return (alpha * eps - sigma * clean,)

    def residual(sample, timestep, *args, **kwargs):
        alpha, sigma = levels(pipe, timestep)
        clean = residual_x0[:, :, : sample.shape[2]].expand_as(sample)
        return (alpha * (sample - alpha * clean) / sigma - sigma * clean,)

    pipe.base_unet.forward = base
    pipe.residual_unet.forward = residual


@pytest.fixture(scope="module")
def clean_video() -> torch.Tensor:
    return torch.randn(1, 4, FRAMES, LATENT, LATENT, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", list(SCHEDULERS) + ["decomposed"])
def test_every_scheduler_ends_at_the_clean_video_of_exact_generators(name, clean_video):
    pipe = zero_snr_pipe()
    if name != "decomposed":
        cls, options = SCHEDULERS[name]
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **options)
    install_oracles(pipe, clean_video)
    latents = run(pipe, num_frames=FRAMES, num_inference_steps=5)  # DDIM's own step needs 1000 % steps == 0
    torch.testing.assert_close(latents, clean_video, atol=2e-3 * clean_video.abs().max().item(), rtol=0)


def test_euler_without_the_sigma_space_scaling_would_miss_the_clean_video(clean_video):
    # the oracle test has teeth: reading Euler's unscaled timestep level as its sample's gives another video
    pipe = zero_snr_pipe()
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    install_oracles(pipe, clean_video)
    pipe.scheduler.scale_model_input = lambda sample, timestep: sample  # the model sees x0 + s eps unscaled
    latents = run(pipe, num_frames=FRAMES, num_inference_steps=6)
    assert (latents - clean_video).abs().max() > 0.1


def test_the_base_noise_ratio_survives_a_scheduler_swap():
    pipe = zero_snr_pipe()
    before = pipe.frame_ratios(FRAMES)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.scheduler.register_to_config(base_noise_ratio=None)  # diffusers keeps unknown keys: not to be relied on
    torch.testing.assert_close(pipe.frame_ratios(FRAMES), before)
    assert before.tolist() == [0.5, 0.5, 1.0, 0.5, 0.5]


@pytest.mark.parametrize("estimate, expected_shift", [("base", 0.0), ("residual", 0.7)])
def test_the_key_frame_comes_from_the_generator_the_pipeline_names(estimate, expected_shift, clean_video):
    pipe = zero_snr_pipe()
    pipe.register_to_config(key_frame_estimate=estimate)
    install_oracles(pipe, clean_video, key_frame_shift=0.7)
    latents = run(pipe, num_frames=FRAMES, num_inference_steps=4)
    key = key_frame_index(FRAMES)
    torch.testing.assert_close(latents[:, :, key], clean_video[:, :, key] + expected_shift, atol=2e-3, rtol=0)
    others = [i for i in range(FRAMES) if i != key]
    torch.testing.assert_close(latents[:, :, others], clean_video[:, :, others], atol=2e-3, rtol=0)


def test_a_residual_key_frame_needs_v_prediction():
    pipe = make_pipe()  # epsilon
    with pytest.raises(ValueError, match="key_frame_estimate='residual'.*'v_prediction' but is 'epsilon'"):
        type(pipe)(**pipe.components, key_frame_estimate="residual")
    with pytest.raises(ValueError, match="`key_frame_estimate` must be one of .*'middle'"):
        type(pipe)(**pipe.components, key_frame_estimate="middle")


@pytest.mark.parametrize("name", ["dpm++2m-sde", "ddim"])
def test_step_noise_is_decomposed_like_the_initial_noise(name):
    pipe = zero_snr_pipe()
    cls, options = SCHEDULERS[name]
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **options)
    given = []
    step = pipe.scheduler.step

    @functools.wraps(step)  # the same signature: the pipeline reads whether `step` takes `variance_noise`
    def recording(*args, **kwargs):
        given.append(kwargs.get("variance_noise"))
        return step(*args, **kwargs)

    pipe.scheduler.step = recording
    run(pipe, num_frames=FRAMES, num_inference_steps=3, eta=1.0)
    noises = [noise for noise in given if noise is not None]
    assert len(noises) == 3
    key = key_frame_index(FRAMES)
    for noise in noises:  # frame i = sqrt(.5) b + sqrt(.5) r_i with b the key frame's noise
        base = noise[:, :, key]
        for i in (0, 1, 3, 4):
            residual = (noise[:, :, i] - 0.5**0.5 * base) / 0.5**0.5
            correlation = torch.corrcoef(torch.stack([residual.flatten(), base.flatten()]))[0, 1]
            assert abs(correlation) < 0.3
            assert 0.75 < residual.std() < 1.25


def test_a_scheduler_that_draws_its_own_step_noise_is_named_in_a_warning(caplog):
    pipe = zero_snr_pipe()
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    diffusers_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            run(pipe, num_frames=FRAMES, num_inference_steps=2)
    finally:
        diffusers_logging.disable_propagation()
    assert "EulerAncestralDiscreteScheduler draws the noise it adds" in caplog.text


# ---------------------------------------------------------------------------------------------------------------------
# Long videos, window after window
# ---------------------------------------------------------------------------------------------------------------------


def test_extension_windows_cover_the_video_in_order():
    assert extension_windows(8, 8, 5) == [(0, 8, 0)]
    assert extension_windows(16, 8, 5) == [(0, 8, 0), (3, 11, 5), (6, 14, 5), (8, 16, 6)]
    for frames in range(1, 40):
        plan = extension_windows(frames, 8, default_extension_overlap(8))
        assert plan[0][:2] == (0, min(frames, 8)) and plan[-1][1] == frames
        for (_, end, _), (start, next_end, given) in zip(plan, plan[1:]):
            assert given == end - start >= default_extension_overlap(8) and next_end > end
    assert [default_extension_overlap(size) for size in (1, 2, 3, 8, 16)] == [0, 1, 2, 5, 9]


def test_a_long_video_starts_with_the_short_one_of_the_same_seed():
    pipe = make_pipe()
    short = run(pipe, num_frames=4, window_size=4)
    long = run(pipe, num_frames=9, window_size=4)
    assert long.shape[2] == 9
    torch.testing.assert_close(long[:, :, :4], short, atol=0, rtol=0)


def test_each_window_is_given_the_frames_already_made_noised_to_every_step():
    pipe = make_pipe(with_base=False)
    noise = torch.randn(1, 4, 9, LATENT, LATENT, generator=torch.Generator().manual_seed(5))
    inputs = []
    forward = pipe.residual_unet.forward

    def recording(sample, timestep, *args, **kwargs):
        inputs.append((sample[1:].clone(), timestep))  # the conditional half of the guided batch
        return forward(sample, timestep, *args, **kwargs)

    pipe.residual_unet.forward = recording
    video = run(pipe, num_frames=9, window_size=4, window_overlap=2, latents=noise, num_inference_steps=2,
                window_strength=1.0)  # fmt: skip
    plan = extension_windows(9, 4, 2)
    assert len(inputs) == 2 * len(plan)
    for index, (start, _, given) in enumerate(plan[1:], start=1):
        for step in range(2):
            sample, timestep = inputs[2 * index + step]
            expected = pipe.scheduler.add_noise(
                video[:, :, start : start + given], noise[:, :, start : start + given], timestep
            )
            torch.testing.assert_close(sample[:, :, :given], expected, atol=1e-5, rtol=1e-5)


def test_the_default_length_is_the_trained_clip_length():
    pipe = make_pipe()
    assert pipe.default_num_frames == 16  # not recorded: diffusers' default
    pipe.register_to_config(num_frames=4)
    assert run(pipe, num_frames=None).shape[2] == 4
    assert pipe.default_size() == (4, SIZE, SIZE)


def test_later_windows_run_the_last_share_of_the_schedule_from_the_frames_already_made():
    pipe = make_pipe(with_base=False)
    calls = []
    forward = pipe.residual_unet.forward

    def recording(sample, timestep, *args, **kwargs):
        calls.append((int(timestep), sample[1:].clone()))
        return forward(sample, timestep, *args, **kwargs)

    pipe.residual_unet.forward = recording
    noise = torch.randn(1, 4, 6, LATENT, LATENT, generator=torch.Generator().manual_seed(5))
    video = run(pipe, num_frames=6, window_size=4, window_overlap=2, latents=noise, num_inference_steps=4,
                window_strength=0.5)  # fmt: skip
    assert extension_windows(6, 4, 2) == [(0, 4, 0), (2, 6, 2)]
    timesteps = pipe.scheduler.timesteps.tolist()
    assert [t for t, _ in calls] == timesteps + timesteps[2:]  # the second window skips the first half
    # its first input: the given frames, then copies of the last one, noised with its noise to the start level
    start = pipe.scheduler.add_noise(
        torch.cat([video[:, :, 2:4], video[:, :, 3:4].expand(-1, -1, 2, -1, -1)], dim=2), noise[:, :, 2:6],
        torch.tensor([timesteps[2]]),
    )  # fmt: skip
    torch.testing.assert_close(calls[4][1], start, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="`window_strength` must be a number in \\(0, 1\\] but is 0"):
        run(pipe, num_frames=6, window_size=4, window_strength=0)
