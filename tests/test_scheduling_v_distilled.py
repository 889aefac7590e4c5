"""VDistilledScheduler and its maths: parameterisations, DDIM parity, the distillation target, thresholding, config."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusers_video import VDistilledScheduler
from diffusers_video.schedulers.diffusion_math import (
    cosine_alpha_sigma,
    ddim_step,
    distillation_step_counts,
    distillation_target,
    dynamic_threshold,
    eps_to_v,
    eps_to_x0,
    prediction_to_x0_eps,
    v_to_eps,
    v_to_x0,
    velocity,
    x0_to_eps,
    x0_to_prediction,
    x0_to_v,
)

SHAPE = (2, 3, 4, 5, 5)  # (B, C, F, H, W)
SCHEDULES = ["discrete", "continuous_cosine"]


def randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def saved_config(scheduler):
    """The config as save_pretrained writes it (in memory, from_config drops the source class's defaults)."""
    return {key: value for key, value in scheduler.config.items() if key != "_use_default_values"}


def toy_model(sample, timestep):
    """A deterministic stand-in for a v-prediction network."""
    return torch.tanh(sample) * 0.7 + 0.01 * float(timestep) / 1000


# ----------------------------------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(t=st.floats(0.02, 0.98), seed=st.integers(0, 2**31 - 1))
def test_parameterisations_are_consistent(t, seed):
    alpha, sigma = cosine_alpha_sigma(t)
    x0, eps = randn(*SHAPE, seed=seed), randn(*SHAPE, seed=seed + 1)
    x_t = alpha * x0 + sigma * eps
    v = velocity(x0, eps, alpha, sigma)
    tolerance = dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(v_to_x0(x_t, v, alpha, sigma), x0, **tolerance)
    torch.testing.assert_close(v_to_eps(x_t, v, alpha, sigma), eps, **tolerance)
    torch.testing.assert_close(x0_to_v(x_t, x0, alpha, sigma), v, **tolerance)
    torch.testing.assert_close(eps_to_v(x_t, eps, alpha, sigma), v, **tolerance)
    torch.testing.assert_close(eps_to_x0(x_t, eps, alpha, sigma), x0, **tolerance)
    torch.testing.assert_close(x0_to_eps(x_t, x0, alpha, sigma), eps, **tolerance)
    for prediction_type, prediction in [("epsilon", eps), ("v_prediction", v), ("sample", x0)]:
        predicted_x0, predicted_eps = prediction_to_x0_eps(prediction, x_t, alpha, sigma, prediction_type)
        torch.testing.assert_close(predicted_x0, x0, **tolerance)
        torch.testing.assert_close(predicted_eps, eps, **tolerance)
        torch.testing.assert_close(x0_to_prediction(x0, x_t, alpha, sigma, prediction_type), prediction, **tolerance)


def test_coefficients_may_be_given_per_batch_element():
    alpha, sigma = cosine_alpha_sigma(torch.tensor([0.2, 0.7]))
    x_t, v = randn(*SHAPE), randn(*SHAPE, seed=1)
    per_sample = v_to_x0(x_t, v, alpha, sigma)
    for b in range(2):
        torch.testing.assert_close(per_sample[b], v_to_x0(x_t[b], v[b], alpha[b].item(), sigma[b].item()))


def test_cosine_schedule():
    assert cosine_alpha_sigma(0.0) == (1.0, 0.0)
    alpha, sigma = cosine_alpha_sigma(1.0)
    assert alpha == 0.0 and sigma == 1.0  # exactly zero SNR at t = 1
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    alpha, sigma = cosine_alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))
    assert torch.all(alpha[1:] < alpha[:-1])  # strictly less signal as t grows
    assert math.isclose(cosine_alpha_sigma(0.3)[0], alpha[3].item())


@settings(max_examples=40, deadline=None)
@given(
    times=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3, unique=True).map(sorted),
    seed=st.integers(0, 2**31 - 1),
)
def test_one_student_step_with_the_target_reproduces_two_teacher_steps(times, seed):
    s_time, mid_time, t_time = times
    t, mid, s = cosine_alpha_sigma(t_time), cosine_alpha_sigma(mid_time), cosine_alpha_sigma(s_time)
    if t[1] - s[1] < 1e-3:  # the target of a (near) zero-length step is ill-conditioned
        return
    x_t = randn(*SHAPE, seed=seed)
    x_mid = ddim_step(x_t, randn(*SHAPE, seed=seed + 1), t, mid)
    x_s = ddim_step(x_mid, randn(*SHAPE, seed=seed + 2), mid, s)
    target = distillation_target(x_t, t, x_s, s)
    torch.testing.assert_close(ddim_step(x_t, target, t, s), x_s, atol=1e-5, rtol=1e-5)
    # the target in the other parameterisations predicts the same x0
    x0_target = distillation_target(x_t, t, x_s, s, prediction_type="sample")
    torch.testing.assert_close(v_to_x0(x_t, target, *t), x0_target, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("noise_schedule", SCHEDULES)
def test_student_scheduler_step_with_target_equals_two_teacher_scheduler_steps(noise_schedule):
    teacher = VDistilledScheduler(noise_schedule=noise_schedule, distillation_base_steps=256)
    student = VDistilledScheduler.from_config(teacher.config)
    teacher.set_timesteps(16)
    student.set_timesteps(8)
    triples = student.distillation_timesteps(8)
    assert torch.equal(triples[:, 0], student.timesteps) and torch.equal(triples[:, 1], teacher.timesteps[1::2])
    x_teacher = x_student = randn(*SHAPE)
    for i, t in enumerate(student.timesteps):
        t_teacher, mid = teacher.timesteps[2 * i], teacher.timesteps[2 * i + 1]
        assert t_teacher == t
        x_mid = teacher.step(toy_model(x_teacher, t), t, x_teacher).prev_sample
        x_s = teacher.step(toy_model(x_mid, mid), mid, x_mid).prev_sample
        target = distillation_target(x_student, student.alpha_sigma(t), x_s, student.alpha_sigma(triples[i, 2]))
        x_student = student.step(target, t, x_student).prev_sample
        torch.testing.assert_close(x_student, x_s, atol=1e-5, rtol=1e-5)
        x_teacher = x_s


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=64),
    percentile=st.floats(0.5, 1.0),
)
def test_thresholding_leaves_in_range_x0_unchanged(values, percentile):
    x0 = torch.tensor(values).reshape(1, 1, -1, 1, 1)
    assert torch.equal(dynamic_threshold(x0, percentile), x0)


def test_thresholding_matches_diffusers_and_bounds_the_sample():
    ddim = DDIMScheduler(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=4.0)
    x0 = randn(*SHAPE) * 3
    thresholded = dynamic_threshold(x0, 0.9, max_value=4.0)
    torch.testing.assert_close(thresholded, ddim._threshold_sample(x0), atol=1e-6, rtol=0)
    assert thresholded.abs().max() <= 1.0
    # per sample: an in-range sample is left alone next to one that is scaled down
    mixed = torch.stack([x0[0] / x0[0].abs().max(), x0[1]])
    result = dynamic_threshold(mixed, 0.9)
    assert torch.equal(result[0], mixed[0]) and not torch.equal(result[1], mixed[1])
    # s is the quantile of |x0|: dividing a uniform ramp on [-2, 2] by s = 2 maps it to [-1, 1]
    ramp = torch.linspace(-2, 2, 101).reshape(1, 1, -1, 1, 1)
    torch.testing.assert_close(dynamic_threshold(ramp, 1.0), ramp / 2)


def test_thresholding_handles_more_values_than_torch_quantile_accepts():
    x0 = torch.zeros(1, 2**24 + 8)
    x0[0, :1000] = 3.0
    result = dynamic_threshold(x0, percentile=1.0)  # torch.quantile refuses more than 2**24 values
    assert result.max() == 1.0


def test_distillation_step_counts():
    assert distillation_step_counts(256) == [256, 128, 64, 32, 16, 8, 4, 2, 1]
    assert distillation_step_counts(96) == [96, 48, 24, 12, 6, 3]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 250), noise_schedule=st.sampled_from(SCHEDULES))
def test_student_grid_is_every_other_point_of_the_teacher_grid(n, noise_schedule):
    scheduler = VDistilledScheduler(noise_schedule=noise_schedule)
    scheduler.set_timesteps(2 * n)
    teacher = scheduler.timesteps.clone()
    scheduler.set_timesteps(n)
    assert torch.equal(teacher[0::2], scheduler.timesteps)
    assert scheduler.timesteps[0] == (999 if noise_schedule == "discrete" else 1000)


# ----------------------------------------------------------------------------------------------------------------------
# Parity with diffusers' DDIMScheduler (v-prediction, discrete schedule)
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        dict(timestep_spacing="trailing"),
        dict(timestep_spacing="leading", steps_offset=1),
        dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        dict(beta_schedule="squaredcos_cap_v2", set_alpha_to_one=False),
        dict(rescale_betas_zero_snr=True, timestep_spacing="trailing"),
    ],
)
@pytest.mark.parametrize("num_inference_steps", [50, 250])
def test_equals_ddim_v_prediction_step_for_step(options, num_inference_steps):
    ddim = DDIMScheduler(prediction_type="v_prediction", clip_sample=False, **options)
    scheduler = VDistilledScheduler.from_config(saved_config(ddim))
    ddim.set_timesteps(num_inference_steps)
    scheduler.set_timesteps(num_inference_steps)
    assert torch.equal(ddim.timesteps, scheduler.timesteps)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 2, 2, 3, 3, generator=generator)
    for timestep in ddim.timesteps:
        model_output = torch.randn(sample.shape, generator=generator)
        expected = ddim.step(model_output, timestep, sample)
        actual = scheduler.step(model_output, timestep, sample)
        torch.testing.assert_close(actual.prev_sample, expected.prev_sample, atol=1e-6, rtol=0)
        torch.testing.assert_close(actual.pred_original_sample, expected.pred_original_sample, atol=1e-6, rtol=0)
        sample = expected.prev_sample


@pytest.mark.parametrize("options", [dict(clip_sample=True), dict(thresholding=True, sample_max_value=3.0)])
def test_clipping_equals_ddim_with_clipped_model_output(options):
    ddim = DDIMScheduler(
        **{"prediction_type": "v_prediction", "timestep_spacing": "trailing", "clip_sample": False, **options}
    )
    scheduler = VDistilledScheduler.from_config(saved_config(ddim))
    ddim.set_timesteps(20)
    scheduler.set_timesteps(20)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(SHAPE, generator=generator)
    for timestep in ddim.timesteps:
        model_output = 2 * torch.randn(SHAPE, generator=generator)
        expected = ddim.step(model_output, timestep, sample, use_clipped_model_output=True).prev_sample
        actual = scheduler.step(model_output, timestep, sample).prev_sample
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
        sample = expected


@pytest.mark.parametrize("noise_schedule", SCHEDULES)
def test_sampling_with_an_exact_model_reaches_the_data(noise_schedule):
    scheduler = VDistilledScheduler(noise_schedule=noise_schedule)
    scheduler.set_timesteps(8)
    clean = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sample = randn(*SHAPE, seed=1)
    for timestep in scheduler.timesteps:
        alpha, sigma = scheduler.alpha_sigma(timestep)
        sample = scheduler.step(x0_to_v(sample, clean, alpha, sigma), timestep, sample).prev_sample
    torch.testing.assert_close(sample, clean, atol=1e-5, rtol=0)


@pytest.mark.parametrize("noise_schedule", SCHEDULES)
def test_add_noise_and_get_velocity(noise_schedule):
    scheduler = VDistilledScheduler(noise_schedule=noise_schedule)
    clean, noise = randn(*SHAPE), randn(*SHAPE, seed=1)
    timesteps = torch.tensor([10, 990]) if noise_schedule == "discrete" else torch.tensor([12.5, 1000.0])
    noisy = scheduler.add_noise(clean, noise, timesteps)
    v = scheduler.get_velocity(clean, noise, timesteps)
    alpha, sigma = scheduler.alpha_sigma(timesteps)
    torch.testing.assert_close(v_to_x0(noisy, v, alpha, sigma), clean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v_to_eps(noisy, v, alpha, sigma), noise, atol=1e-5, rtol=1e-5)
    if noise_schedule == "discrete":
        ddpm = DDPMScheduler()
        torch.testing.assert_close(noisy, ddpm.add_noise(clean, noise, timesteps), atol=1e-6, rtol=0)
        torch.testing.assert_close(v, ddpm.get_velocity(clean, noise, timesteps), atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(alpha, torch.tensor([math.cos(math.pi / 160), 0.0]), atol=1e-7, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Config and contract
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_schedule", SCHEDULES)
def test_save_pretrained_from_pretrained_round_trip(tmp_path, noise_schedule):
    scheduler = VDistilledScheduler(noise_schedule=noise_schedule, distillation_base_steps=128, thresholding=True)
    scheduler.save_pretrained(tmp_path)
    loaded = VDistilledScheduler.from_pretrained(tmp_path)
    public = {key: value for key, value in scheduler.config.items() if not key.startswith("_")}
    assert {key: value for key, value in loaded.config.items() if not key.startswith("_")} == public
    loaded.set_timesteps(8)
    scheduler.set_timesteps(8)
    assert torch.equal(loaded.timesteps, scheduler.timesteps)


def test_from_config_of_ddim_and_back():
    scheduler = VDistilledScheduler.from_config(DDIMScheduler().config)
    assert isinstance(scheduler, VDistilledScheduler) and scheduler.config.noise_schedule == "discrete"
    configured = VDistilledScheduler.from_config(DDIMScheduler(beta_schedule="scaled_linear").config)
    assert configured.config.beta_schedule == "scaled_linear"
    assert isinstance(DDIMScheduler.from_config(VDistilledScheduler().config), DDIMScheduler)


def test_contract_attributes():
    scheduler = VDistilledScheduler(noise_schedule="continuous_cosine")
    assert scheduler.init_noise_sigma == 1.0 and scheduler.order == 1 and len(scheduler) == 1000
    sample = randn(*SHAPE)
    assert scheduler.scale_model_input(sample, 500.0) is sample
    scheduler.set_timesteps(4, device="cpu")
    assert scheduler.timesteps.tolist() == [1000.0, 750.0, 500.0, 250.0]
    last = scheduler.step(randn(*SHAPE, seed=1), 250.0, sample, generator=torch.Generator(), return_dict=False)
    assert isinstance(last, tuple) and torch.equal(last[0], last[1])  # the last step lands on x0
    scheduler.set_timesteps(timesteps=[900.0, 100.0])
    assert scheduler.previous_timestep(900.0) == 100.0 and scheduler.previous_timestep(100.0) == 0.0


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------


def test_student_step_count_off_the_distillation_grid():
    scheduler = VDistilledScheduler(distillation_base_steps=256)
    scheduler.set_timesteps(8)
    with pytest.raises(
        ValueError,
        match=r"`num_inference_steps` must be on the distillation grid of `distillation_base_steps`=256, one of"
        r" \[256, 128, .*, 1\], but is 10\.",
    ):
        scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match="`num_student_steps` must be on the distillation grid.* but is 12"):
        scheduler.distillation_timesteps(12)
    with pytest.raises(ValueError, match=r"`num_student_steps` must be in \[1, 500\].* but is 501"):
        VDistilledScheduler().distillation_timesteps(501)


def test_distillation_timesteps_need_nested_grids():
    with pytest.raises(ValueError, match="`timestep_spacing`='linspace'"):
        VDistilledScheduler(timestep_spacing="linspace").distillation_timesteps(8)


@pytest.mark.parametrize("steps", [0, 1001])
def test_num_inference_steps_out_of_range(steps):
    with pytest.raises(ValueError, match=rf"`num_inference_steps` must be in \[1, 1000\].* but is {steps}\."):
        VDistilledScheduler().set_timesteps(steps)


def test_unknown_prediction_type():
    with pytest.raises(ValueError, match="`prediction_type` must be one of .* but is 'velocity'"):
        VDistilledScheduler(prediction_type="velocity")
    with pytest.raises(ValueError, match="`prediction_type` must be one of .* but is 'x0'"):
        x0_to_prediction(randn(2), randn(2), 0.5, 0.5, "x0")


def test_nan_in_model_output():
    scheduler = VDistilledScheduler(noise_schedule="continuous_cosine")
    scheduler.set_timesteps(8)
    model_output = randn(*SHAPE)
    model_output[1, 2, 3, 4, 4] = float("nan")
    with pytest.raises(ValueError, match="`model_output` must be finite but has 1 NaN .* at timestep 1000"):
        scheduler.step(model_output, scheduler.timesteps[0], randn(*SHAPE))


def test_other_bad_input():
    with pytest.raises(ValueError, match="`noise_schedule` must be one of .* but is 'cosine'"):
        VDistilledScheduler(noise_schedule="cosine")
    with pytest.raises(TypeError, match="`num_inference_steps` must be an integer but is 8.0"):
        VDistilledScheduler().set_timesteps(8.0)
    with pytest.raises(ValueError, match=r"`distillation_base_steps` must be in \[1, 1000\].* but is 0"):
        VDistilledScheduler(distillation_base_steps=0)
    scheduler = VDistilledScheduler(noise_schedule="continuous_cosine", prediction_type="epsilon")
    scheduler.set_timesteps(4)
    with pytest.raises(ValueError, match="`prediction_type`='epsilon' cannot predict x_0 at timestep 1000"):
        scheduler.step(randn(*SHAPE), 1000.0, randn(*SHAPE))
    with pytest.raises(ValueError, match="`timestep` must be one of `scheduler.timesteps` but is 600"):
        scheduler.step(randn(*SHAPE), 600.0, randn(*SHAPE))
    with pytest.raises(ValueError, match=r"`timesteps` must lie in \(0, 1000\]"):
        scheduler.set_timesteps(timesteps=[1200.0, 10.0])
    with pytest.raises(ValueError, match="`timesteps` must be integers in"):
        VDistilledScheduler().set_timesteps(timesteps=[999, 10.5])
    with pytest.raises(ValueError, match="`percentile` must be in"):
        dynamic_threshold(randn(*SHAPE), percentile=0.0)
    with pytest.raises(ValueError, match="`s` must be less noisy than `t`"):
        distillation_target(randn(*SHAPE), (0.6, 0.8), randn(*SHAPE), (0.6, 0.8))


def test_restart_timestep_is_checked_and_saved(tmp_path):
    for value, message in [
        (-1.0, r"`restart_timestep` must be in \[0, 1000\) but is -1.0"),
        (1000, r"`restart_timestep` must be in \[0, 1000\) but is 1000"),
        (float("nan"), r"`restart_timestep` must be in \[0, 1000\) but is nan"),
        ("31", r"`restart_timestep` must be a number in \[0, 1000\) but is '31'"),
    ]:
        with pytest.raises(ValueError, match=message):
            VDistilledScheduler(noise_schedule="continuous_cosine", restart_timestep=value)
    with pytest.raises(ValueError, match="integer on a discrete noise schedule but is 31.25"):
        VDistilledScheduler(restart_timestep=31.25)
    scheduler = VDistilledScheduler(noise_schedule="continuous_cosine", restart_timestep=31.25)
    scheduler.save_pretrained(tmp_path)
    assert VDistilledScheduler.from_pretrained(tmp_path).config.restart_timestep == 31.25
    assert VDistilledScheduler().config.restart_timestep is None  # no restart unless a folder records one
    assert VDistilledScheduler().config.restart_antithetic is False
    with pytest.raises(TypeError, match="`restart_antithetic` must be True or False but is 'yes'"):
        VDistilledScheduler(restart_antithetic="yes")
    VDistilledScheduler(noise_schedule="continuous_cosine", restart_antithetic=True).save_pretrained(tmp_path)
    assert VDistilledScheduler.from_pretrained(tmp_path).config.restart_antithetic is True
