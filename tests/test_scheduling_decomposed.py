"""DecomposedNoiseScheduler (VideoFusion): noise statistics, DDIM parity, decomposition maths, config, bad input."""

import itertools
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusers_video import DecomposedNoiseScheduler
from diffusers_video.schedulers.decomposed_noise import (
    combine_noise,
    combine_velocity,
    frame_ratios,
    remove_base_noise,
    residual_velocity,
    sample_decomposed_noise,
    split_noise,
)

SHAPE = (2, 3, 4, 5, 5)  # (B, C, F, H, W)


def frame_correlations(noise: torch.Tensor) -> torch.Tensor:
    """(F, F) correlation matrix of the frames of (B, C, F, H, W) noise, pooled over batch, channels and pixels."""
    per_frame = noise.permute(2, 0, 1, 3, 4).reshape(noise.shape[2], -1)  # (F, B * C * H * W)
    return torch.corrcoef(per_frame)


def ks_distance_to_standard_normal(values: torch.Tensor) -> float:
    """Kolmogorov-Smirnov distance between the empirical distribution of `values` and N(0, 1)."""
    values = values.flatten().double().sort().values
    n = values.numel()
    cdf = torch.special.ndtr(values)
    upper = torch.arange(1, n + 1, dtype=torch.float64) / n
    lower = torch.arange(0, n, dtype=torch.float64) / n
    return max((upper - cdf).max().item(), (cdf - lower).max().item())


# ----------------------------------------------------------------------------------------------------------------------
# Noise statistics
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.9])
def test_frame_noise_is_standard_normal_and_frames_correlate_with_lambda(ratio):
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=ratio)
    generator = torch.Generator().manual_seed(0)
    noise, base, residual = scheduler.sample_noise((32, 4, 4, 16, 16), generator=generator)  # 32768 values per frame
    assert noise.shape == (32, 4, 4, 16, 16) and residual.shape == noise.shape and base.shape == (32, 4, 1, 16, 16)
    for frame in range(noise.shape[2]):
        values = noise[:, :, frame]
        assert abs(values.mean().item()) < 0.02
        assert abs(values.std().item() - 1.0) < 0.02
        assert ks_distance_to_standard_normal(values) < 0.012
    correlations = frame_correlations(noise)
    off_diagonal = correlations[~torch.eye(4, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, ratio), atol=0.025), correlations


def test_per_frame_ratios_give_correlation_sqrt_lambda_i_lambda_j():
    ratios = [0.2, 0.9, 1.0, 0.5]
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=ratios)
    noise, base, _ = scheduler.sample_noise((32, 4, 4, 16, 16), generator=torch.Generator().manual_seed(1))
    expected = torch.tensor(
        [[math.sqrt(a * b) if i != j else 1.0 for j, b in enumerate(ratios)] for i, a in enumerate(ratios)]
    )
    assert torch.allclose(frame_correlations(noise), expected.float(), atol=0.025)
    # a frame with lambda = 1 carries exactly the base noise
    assert torch.equal(noise[:, :, 2:3], base)


def test_zero_ratio_draws_exactly_diffusers_noise():
    ratios = frame_ratios(0.0, SHAPE[2])
    noise, base, residual = sample_decomposed_noise(SHAPE, ratios, generator=torch.Generator().manual_seed(3))
    expected = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noise, expected) and torch.equal(residual, expected)
    assert torch.count_nonzero(base) == 0


def test_injected_variance_noise_is_decomposed():
    # the difference between an eta = 1 step and a deterministic step is std_dev_t * the injected noise
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=0.5)
    scheduler.set_timesteps(10)
    timestep = scheduler.timesteps[3]
    sample = torch.randn(32, 4, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    model_output = torch.zeros(sample.shape)  # predicted noise 0: no "direction" term, whose size depends on eta
    deterministic = scheduler.step(model_output, timestep, sample, eta=0.0).prev_sample
    stochastic = scheduler.step(
        model_output, timestep, sample, eta=1.0, generator=torch.Generator().manual_seed(6)
    ).prev_sample
    injected = stochastic - deterministic
    off_diagonal = frame_correlations(injected)[~torch.eye(4, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, 0.5), atol=0.025)
    # `eta` defaults to the config value
    configured = DecomposedNoiseScheduler(base_noise_ratio=0.5, eta=1.0)
    configured.set_timesteps(10)
    again = configured.step(model_output, timestep, sample, generator=torch.Generator().manual_seed(6)).prev_sample
    assert torch.equal(again, stochastic)


# ----------------------------------------------------------------------------------------------------------------------
# Parity with diffusers' DDIMScheduler when nothing is shared
# ----------------------------------------------------------------------------------------------------------------------

PARITY_CASES = [
    dict(prediction_type=prediction_type, timestep_spacing=spacing)
    for prediction_type, spacing in itertools.product(["epsilon", "v_prediction", "sample"], ["leading", "trailing"])
] + [
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1),
    dict(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=True),
    dict(rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing"),
    dict(thresholding=True, sample_max_value=3.0, dynamic_thresholding_ratio=0.9),
    dict(set_alpha_to_one=False, clip_sample=True, clip_sample_range=0.5),
    dict(num_train_timesteps=500, timestep_spacing="trailing", prediction_type="v_prediction"),
]


@pytest.mark.parametrize("eta", [0.0, 0.8])
@pytest.mark.parametrize("options", PARITY_CASES)
def test_zero_base_noise_ratio_equals_ddim_step_for_step(options, eta):
    ddim = DDIMScheduler(**{"clip_sample": False, **options})
    # the config as saved to disk: in memory, from_config replaces DDIM's defaults by this class's defaults
    saved = {key: value for key, value in ddim.config.items() if key != "_use_default_values"}
    scheduler = DecomposedNoiseScheduler.from_config(saved, base_noise_ratio=0.0)
    ddim.set_timesteps(10)
    scheduler.set_timesteps(10)
    assert torch.equal(ddim.timesteps, scheduler.timesteps)

    data = torch.Generator().manual_seed(0)
    sample = torch.randn(SHAPE, generator=data)
    ddim_noise, our_noise = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    use_clipped = options.get("clip_sample", False)
    for timestep in ddim.timesteps:
        model_output = torch.randn(SHAPE, generator=data)
        expected = ddim.step(
            model_output, timestep, sample, eta=eta, use_clipped_model_output=use_clipped, generator=ddim_noise
        )
        actual = scheduler.step(
            model_output, timestep, sample, eta=eta, use_clipped_model_output=use_clipped, generator=our_noise
        )
        torch.testing.assert_close(actual.prev_sample, expected.prev_sample, atol=1e-6, rtol=0)
        torch.testing.assert_close(actual.pred_original_sample, expected.pred_original_sample, atol=1e-6, rtol=0)
        sample = expected.prev_sample


def test_zero_base_noise_ratio_equals_ddim_with_given_variance_noise():
    ddim = DDIMScheduler(clip_sample=False, timestep_spacing="trailing")
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=0.0)
    ddim.set_timesteps(5)
    scheduler.set_timesteps(5)
    generator = torch.Generator().manual_seed(2)
    sample = torch.randn(SHAPE, generator=generator)
    for timestep in ddim.timesteps:
        model_output, variance_noise = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
        expected = ddim.step(model_output, timestep, sample, eta=1.0, variance_noise=variance_noise).prev_sample
        actual = scheduler.step(model_output, timestep, sample, eta=1.0, variance_noise=variance_noise).prev_sample
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
        sample = expected


def test_add_noise_and_get_velocity_equal_ddpm():
    ddpm = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    scheduler = DecomposedNoiseScheduler(beta_schedule="squaredcos_cap_v2", base_noise_ratio=[0.1, 0.4, 0.7, 1.0])
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(SHAPE, generator=generator)
    noise, _, _ = scheduler.sample_noise(SHAPE, generator=generator)
    timesteps = torch.tensor([10, 900])
    torch.testing.assert_close(
        scheduler.add_noise(clean, noise, timesteps), ddpm.add_noise(clean, noise, timesteps), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        scheduler.get_velocity(clean, noise, timesteps),
        ddpm.get_velocity(clean, noise, timesteps),
        atol=1e-6,
        rtol=0,
    )


def test_steps_land_on_the_grid_for_every_spacing():
    scheduler = DecomposedNoiseScheduler(timestep_spacing="linspace")
    scheduler.set_timesteps(7)
    landed = [int(scheduler.previous_timestep(t)) for t in scheduler.timesteps]
    assert landed == scheduler.timesteps.tolist()[1:] + [-1]
    scheduler.set_timesteps(timesteps=[900, 450, 7])
    assert scheduler.num_inference_steps == 3
    assert [int(scheduler.previous_timestep(t)) for t in scheduler.timesteps] == [450, 7, -1]


def test_full_deterministic_chain_with_an_exact_model_reaches_the_data():
    # a model that knows the clean video predicts its epsilon exactly; DDIM then lands on the clean video
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=0.5, prediction_type="epsilon")
    scheduler.set_timesteps(12)
    clean = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sample, _, _ = scheduler.sample_noise(SHAPE, generator=torch.Generator().manual_seed(1))
    for timestep in scheduler.timesteps:
        alpha, sigma = scheduler.alpha_sigma(timestep)
        epsilon = (sample - alpha * clean) / sigma
        sample = scheduler.step(epsilon, timestep, sample).prev_sample
    torch.testing.assert_close(sample, clean, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# combine / split / remove_base_noise
# ----------------------------------------------------------------------------------------------------------------------

ratio_lists = st.lists(st.floats(0.0, 0.99), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(ratios=ratio_lists, seed=st.integers(0, 2**31 - 1))
def test_split_of_combine_recovers_base_and_residual(ratios, seed):
    generator = torch.Generator().manual_seed(seed)
    frames = len(ratios)
    base = torch.randn(2, 3, 1, 4, 4, generator=generator)
    residual = torch.randn(2, 3, frames, 4, 4, generator=generator)
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=ratios)
    split_base, split_residual = scheduler.split(scheduler.combine(base, residual), base=base)
    torch.testing.assert_close(split_base, base)
    torch.testing.assert_close(split_residual, residual, atol=2e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(ratios=ratio_lists, pure_base_frame=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_combine_of_split_reproduces_any_noise(ratios, pure_base_frame, seed):
    # any noise is reachable while at most one frame is pure base noise (lambda = 1)
    if pure_base_frame:
        ratios = [*ratios[: seed % len(ratios)], 1.0, *ratios[seed % len(ratios) :]]
    noise = torch.randn(2, 3, len(ratios), 4, 4, generator=torch.Generator().manual_seed(seed))
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=ratios)
    base, residual = scheduler.split(noise)
    assert base.shape == (2, 3, 1, 4, 4) and residual.shape == noise.shape
    torch.testing.assert_close(scheduler.combine(base, residual), noise, atol=1e-5, rtol=1e-5)


def test_split_without_base_uses_a_pure_base_frame_exactly():
    ratios = frame_ratios([0.3, 0.6, 1.0, 0.6], 4)
    generator = torch.Generator().manual_seed(0)
    base, residual = torch.randn(2, 3, 1, 4, 4, generator=generator), torch.randn(2, 3, 4, 4, 4, generator=generator)
    split_base, split_residual = split_noise(combine_noise(base, residual, ratios), ratios)
    torch.testing.assert_close(split_base, base, atol=0, rtol=0)
    keep = [0, 1, 3]  # the residual of the lambda = 1 frame does not enter the noise and comes back as zeros
    torch.testing.assert_close(split_residual[:, :, keep], residual[:, :, keep], atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(split_residual[:, :, 2]) == 0


def test_split_without_base_is_the_posterior_mean():
    # for a constant lambda and F frames, the error of the posterior-mean base has variance 1 / (1 + F lambda/(1-lambda))
    frames, ratio = 4, 0.5
    ratios = frame_ratios(ratio, frames)
    noise, base, _ = sample_decomposed_noise((64, 4, frames, 16, 16), ratios, torch.Generator().manual_seed(0))
    estimate, _ = split_noise(noise, ratios)
    expected_variance = 1 / (1 + frames * ratio / (1 - ratio))
    assert abs((estimate - base).var().item() - expected_variance) < 0.01
    assert abs(estimate.mean().item()) < 0.01


def test_combine_accepts_an_image_model_base():
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=0.3)
    generator = torch.Generator().manual_seed(0)
    base, residual = torch.randn(2, 3, 5, 5, generator=generator), torch.randn(SHAPE, generator=generator)
    combined = scheduler.combine(base, residual)
    torch.testing.assert_close(combined, math.sqrt(0.3) * base.unsqueeze(2) + math.sqrt(0.7) * residual)


def test_remove_base_noise_leaves_signal_plus_residual_noise():
    ratios = [0.2, 0.5, 0.8, 1.0]
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=ratios)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(SHAPE, generator=generator)
    noise, base, residual = scheduler.sample_noise(SHAPE, generator=generator)
    timesteps = torch.tensor([100, 700])
    noisy = scheduler.add_noise(clean, noise, timesteps)
    alpha, sigma = scheduler.alpha_sigma(timesteps)
    weights = torch.tensor(ratios).reshape(1, 1, -1, 1, 1)
    expected = alpha.reshape(-1, 1, 1, 1, 1) * clean + sigma.reshape(-1, 1, 1, 1, 1) * (1 - weights).sqrt() * residual
    torch.testing.assert_close(scheduler.remove_base_noise(noisy, base, timesteps), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        remove_base_noise(noisy, base[:, :, 0], sigma, frame_ratios(ratios, 4)), expected, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("zero_snr", [False, True])
def test_velocity_of_exact_estimates_is_every_frames_velocity_and_its_x0_and_residual(zero_snr):
    # v-prediction VideoFusion: exact base and residual estimates combine into v_i = alpha eps_i - sigma x0_i, also at
    # the key frame (lambda = 1) and at zero terminal SNR (alpha = 0), where an epsilon estimate fixes no x_0
    ratios = frame_ratios([0.5, 0.5, 1.0, 0.2], 4)
    scheduler = DecomposedNoiseScheduler(
        base_noise_ratio=[0.5, 0.5, 1.0, 0.2], prediction_type="v_prediction", rescale_betas_zero_snr=zero_snr
    )
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(SHAPE, generator=generator)
    noise, base, residual = scheduler.sample_noise(SHAPE, generator=generator)
    timesteps = torch.tensor([999, 400])
    alpha, sigma = scheduler.alpha_sigma(timesteps)
    assert (alpha[0] == 0) == zero_snr
    u = residual_velocity(clean, residual, alpha, sigma, ratios)
    velocity = combine_velocity(base, clean[:, :, 2:3], u, alpha, sigma, ratios)
    torch.testing.assert_close(velocity, scheduler.get_velocity(clean, noise, timesteps), atol=1e-5, rtol=1e-5)
    # u is the velocity of the sample with the base noise out: the v-rotation gives x_0 and the residual part back
    x_res = scheduler.remove_base_noise(scheduler.add_noise(clean, noise, timesteps), base, timesteps)
    a, s = alpha.reshape(-1, 1, 1, 1, 1), sigma.reshape(-1, 1, 1, 1, 1)
    torch.testing.assert_close(a * x_res - s * u, clean, atol=1e-5, rtol=1e-5)
    weights = (1 - ratios).sqrt().reshape(1, 1, -1, 1, 1)
    torch.testing.assert_close(s * x_res + a * u, weights * residual, atol=1e-5, rtol=1e-5)
    # the residual generator's output at the key frame is not used: the base's own velocity is
    changed = u.clone()
    changed[:, :, 2] += 1.0
    torch.testing.assert_close(combine_velocity(base, clean[:, :, 2:3], changed, alpha, sigma, ratios), velocity)


# ----------------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------------


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    scheduler = DecomposedNoiseScheduler(
        base_noise_ratio=[0.1, 0.5, 1.0], eta=0.3, beta_schedule="scaled_linear", prediction_type="v_prediction"
    )
    scheduler.save_pretrained(tmp_path)
    loaded = DecomposedNoiseScheduler.from_pretrained(tmp_path)
    public = lambda config: {key: value for key, value in config.items() if not key.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(scheduler.config)
    assert loaded.config.base_noise_ratio == [0.1, 0.5, 1.0]
    assert torch.equal(loaded.alphas_cumprod, scheduler.alphas_cumprod)


def test_from_config_of_ddim_and_back():
    scheduler = DecomposedNoiseScheduler.from_config(DDIMScheduler().config)
    assert isinstance(scheduler, DecomposedNoiseScheduler)
    assert scheduler.config.num_train_timesteps == 1000
    configured = DecomposedNoiseScheduler.from_config(DDIMScheduler(prediction_type="v_prediction").config)
    assert configured.config.prediction_type == "v_prediction"
    ddim = DDIMScheduler.from_config(DecomposedNoiseScheduler(base_noise_ratio=[0.5, 0.5]).config)
    assert isinstance(ddim, DDIMScheduler)


def test_contract_attributes():
    scheduler = DecomposedNoiseScheduler()
    assert scheduler.init_noise_sigma == 1.0 and scheduler.order == 1 and len(scheduler) == 1000
    sample = torch.randn(SHAPE)
    assert scheduler.scale_model_input(sample, 10) is sample
    scheduler.set_timesteps(4, device="cpu")
    assert scheduler.timesteps.tolist() == [999, 749, 499, 249]
    output = scheduler.step(torch.zeros(SHAPE), 999, sample, return_dict=False)
    assert isinstance(output, tuple) and len(output) == 2


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio, shown", [(1.5, "1.5"), (-0.1, "-0.1"), ([0.5, 1.2], "1.2"), (float("nan"), "nan")])
def test_base_noise_ratio_outside_unit_interval(ratio, shown):
    with pytest.raises(ValueError, match=r"`base_noise_ratio` must be in \[0, 1\] but is .*" + shown):
        DecomposedNoiseScheduler(base_noise_ratio=ratio)


def test_base_noise_ratio_of_wrong_type():
    with pytest.raises(TypeError, match="`base_noise_ratio`.*'half'"):
        DecomposedNoiseScheduler(base_noise_ratio="half")


def test_per_frame_ratio_list_must_match_frames():
    scheduler = DecomposedNoiseScheduler(base_noise_ratio=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"`base_noise_ratio` must have one value per frame \(4 frames\) but has 3"):
        scheduler.sample_noise(SHAPE)
    with pytest.raises(ValueError, match="`base_noise_ratio`.*4 frames"):
        scheduler.combine(torch.zeros(2, 3, 1, 5, 5), torch.zeros(SHAPE))
    scheduler.set_timesteps(5)
    with pytest.raises(ValueError, match="`base_noise_ratio`.*4 frames"):
        scheduler.step(torch.zeros(SHAPE), scheduler.timesteps[0], torch.zeros(SHAPE), eta=1.0)


@pytest.mark.parametrize("steps", [0, -3, 1001])
def test_num_inference_steps_out_of_range(steps):
    with pytest.raises(ValueError, match=rf"`num_inference_steps` must be in \[1, 1000\].* but is {steps}\."):
        DecomposedNoiseScheduler().set_timesteps(steps)


def test_num_inference_steps_not_an_integer():
    with pytest.raises(TypeError, match="`num_inference_steps` must be an integer but is 2.5"):
        DecomposedNoiseScheduler().set_timesteps(2.5)


def test_unknown_prediction_type():
    with pytest.raises(ValueError, match="`prediction_type` must be one of .* but is 'noise'"):
        DecomposedNoiseScheduler(prediction_type="noise")


def test_nan_in_model_output():
    scheduler = DecomposedNoiseScheduler()
    scheduler.set_timesteps(5)
    model_output = torch.zeros(SHAPE)
    model_output[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`model_output` must be finite but has 1 NaN .* at timestep 999"):
        scheduler.step(model_output, scheduler.timesteps[0], torch.zeros(SHAPE))


def test_other_bad_input():
    scheduler = DecomposedNoiseScheduler()
    with pytest.raises(ValueError, match="call `set_timesteps`"):
        scheduler.step(torch.zeros(SHAPE), 999, torch.zeros(SHAPE))
    scheduler.set_timesteps(5)
    with pytest.raises(ValueError, match="`timestep` must be one of `scheduler.timesteps` but is 998"):
        scheduler.step(torch.zeros(SHAPE), 998, torch.zeros(SHAPE))
    with pytest.raises(ValueError, match="`eta` must be a number >= 0 but is -1"):
        scheduler.step(torch.zeros(SHAPE), 999, torch.zeros(SHAPE), eta=-1.0)
    with pytest.raises(ValueError, match="`generator` and `variance_noise`"):
        scheduler.step(
            torch.zeros(SHAPE),
            999,
            torch.zeros(SHAPE),
            eta=1.0,
            generator=torch.Generator(),
            variance_noise=torch.zeros(SHAPE),
        )
    with pytest.raises(ValueError, match="`timesteps` must be strictly decreasing"):
        scheduler.set_timesteps(timesteps=[10, 20])
    with pytest.raises(ValueError, match="exactly one of `num_inference_steps` and `timesteps`"):
        scheduler.set_timesteps(5, timesteps=[10, 5])
    with pytest.raises(ValueError, match="`shape` must be"):
        scheduler.sample_noise((2, 3, 5, 5))
    with pytest.raises(ValueError, match="`timestep_spacing` must be one of .* but is 'even'"):
        DecomposedNoiseScheduler(timestep_spacing="even")
    with pytest.raises(ValueError, match="`beta_schedule` must be one of .* but is 'cubic'"):
        DecomposedNoiseScheduler(beta_schedule="cubic")


def test_epsilon_prediction_at_zero_snr_is_refused():
    scheduler = DecomposedNoiseScheduler(rescale_betas_zero_snr=True, prediction_type="epsilon")
    scheduler.set_timesteps(5)
    with pytest.raises(ValueError, match="`prediction_type`='epsilon' cannot predict x_0 at timestep 999"):
        scheduler.step(torch.zeros(SHAPE), 999, torch.zeros(SHAPE))
