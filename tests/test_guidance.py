"""Guidance objects: per-step weights, combination, guidance rescale, dynamic thresholding of any parameterisation."""

import pytest
import torch
from diffusers import DDIMScheduler
from diffusers.guiders.guider_utils import rescale_noise_cfg as diffusers_rescale_noise_cfg
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusers_video import VDistilledScheduler
from diffusers_video.guidance import (
    ConstantGuidance,
    DynamicThresholding,
    GuidanceSchedule,
    OscillatingGuidance,
    ScheduledGuidance,
    as_guidance,
    rescale_noise_cfg,
    scheduler_alpha_sigma,
)
from diffusers_video.schedulers.diffusion_math import (
    dynamic_threshold,
    prediction_to_x0_eps,
    x0_to_prediction,
)

SHAPE = (2, 3, 4, 5, 5)  # (B, C, F, H, W)
PREDICTION_TYPES = ["epsilon", "v_prediction", "sample"]


def randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------------------------------


def test_constant_guidance_combines_like_diffusers():
    guidance = ConstantGuidance(4.0)
    uncond, cond = randn(*SHAPE), randn(*SHAPE, seed=1)
    assert guidance.scales(3) == [4.0, 4.0, 4.0]
    torch.testing.assert_close(guidance.combine(uncond, cond, 0, 3), uncond + 4.0 * (cond - uncond))
    torch.testing.assert_close(ConstantGuidance(1.0).combine(uncond, cond, 2, 3), cond)
    torch.testing.assert_close(ConstantGuidance(0.0).combine(uncond, cond, 2, 3), uncond)
    assert guidance.needs_unconditional(0, 3) and not ConstantGuidance(1.0).needs_unconditional(0, 3)


def test_oscillating_guidance_alternates_then_stays_low():
    guidance = OscillatingGuidance(high=15.0, low=1.0, oscillate_fraction=0.5)
    assert guidance.scales(8) == [15.0, 1.0, 15.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert OscillatingGuidance(7.0, 2.0, oscillate_fraction=1.0).scales(5) == [7.0, 2.0, 7.0, 2.0, 7.0]
    assert OscillatingGuidance(7.0, 2.0, oscillate_fraction=0.0).scales(3) == [2.0, 2.0, 2.0]
    # steps with weight 1 can skip the unconditional pass
    assert [guidance.needs_unconditional(i, 8) for i in range(4)] == [True, False, True, False]


@settings(max_examples=50, deadline=None)
@given(num_steps=st.integers(1, 300), fraction=st.floats(0.0, 1.0))
def test_oscillating_guidance_properties(num_steps, fraction):
    scales = OscillatingGuidance(15.0, 1.0, oscillate_fraction=fraction).scales(num_steps)
    oscillating = int(fraction * num_steps)
    assert scales[oscillating:] == [1.0] * (num_steps - oscillating)
    assert scales[:oscillating] == [15.0 if i % 2 == 0 else 1.0 for i in range(oscillating)]


def test_scheduled_guidance_uses_one_weight_per_step():
    guidance = ScheduledGuidance([9.0, 5.0, 2.0])
    uncond, cond = randn(*SHAPE), randn(*SHAPE, seed=1)
    for step, weight in enumerate([9.0, 5.0, 2.0]):
        torch.testing.assert_close(guidance.combine(uncond, cond, step, 3), uncond + weight * (cond - uncond))
    with pytest.raises(ValueError, match=r"`num_steps` must equal the number of `scales` \(3\) but is 4"):
        guidance.scale(0, 4)


def test_guidance_rescale_is_diffusers_rescale_noise_cfg():
    uncond, cond = randn(*SHAPE), randn(*SHAPE, seed=1) * 2
    plain = ConstantGuidance(7.0).combine(uncond, cond, 0, 1)
    for rescale in [0.0, 0.7, 1.0]:
        expected = diffusers_rescale_noise_cfg(plain, cond, guidance_rescale=rescale)
        torch.testing.assert_close(rescale_noise_cfg(plain, cond, rescale), expected)
        torch.testing.assert_close(
            ConstantGuidance(7.0, guidance_rescale=rescale).combine(uncond, cond, 0, 1), expected
        )
    # full rescale gives each sample the standard deviation of its conditional prediction
    rescaled = ConstantGuidance(7.0, guidance_rescale=1.0).combine(uncond, cond, 0, 1)
    torch.testing.assert_close(rescaled.flatten(1).std(dim=1), cond.flatten(1).std(dim=1))


def test_guidance_is_the_same_on_every_parameterisation():
    # guidance is linear: guiding v predictions and guiding the x0 they imply give the same x0
    alpha, sigma = 0.6, 0.8
    sample, v_uncond, v_cond = randn(*SHAPE), randn(*SHAPE, seed=1), randn(*SHAPE, seed=2)
    guidance = ConstantGuidance(5.0)
    x0_from_guided_v, _ = prediction_to_x0_eps(
        guidance.combine(v_uncond, v_cond, 0, 1), sample, alpha, sigma, "v_prediction"
    )
    x0_uncond, _ = prediction_to_x0_eps(v_uncond, sample, alpha, sigma, "v_prediction")
    x0_cond, _ = prediction_to_x0_eps(v_cond, sample, alpha, sigma, "v_prediction")
    torch.testing.assert_close(x0_from_guided_v, guidance.combine(x0_uncond, x0_cond, 0, 1), atol=1e-5, rtol=1e-5)


def test_as_guidance():
    assert as_guidance(6.0).scales(2) == [6.0, 6.0]
    assert as_guidance(3).scales(1) == [3.0]
    assert as_guidance([4.0, 2.0]).scales(2) == [4.0, 2.0]
    oscillating = OscillatingGuidance()
    assert as_guidance(oscillating) is oscillating
    assert as_guidance(6.0, guidance_rescale=0.5).guidance_rescale == 0.5
    assert isinstance(as_guidance(2.0), GuidanceSchedule)
    with pytest.raises(TypeError, match="`guidance` must be a number, a sequence of numbers or a GuidanceSchedule"):
        as_guidance("strong")


# ----------------------------------------------------------------------------------------------------------------------
# Dynamic thresholding after guidance
# ----------------------------------------------------------------------------------------------------------------------


def levels():
    """(alpha, sigma) pairs from a diffusers scheduler and from both schedules of VDistilledScheduler."""
    yield scheduler_alpha_sigma(DDIMScheduler(beta_schedule="squaredcos_cap_v2"), 600)
    yield scheduler_alpha_sigma(VDistilledScheduler(), torch.tensor([20, 900]))
    yield scheduler_alpha_sigma(VDistilledScheduler(noise_schedule="continuous_cosine"), 250.0)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_thresholding_leaves_in_range_predictions_unchanged(prediction_type):
    thresholding = DynamicThresholding(percentile=0.995)
    for alpha, sigma in levels():
        x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1  # in [-1, 1]
        sample = x0 * alpha.reshape(-1, 1, 1, 1, 1) + randn(*SHAPE, seed=1) * sigma.reshape(-1, 1, 1, 1, 1)
        prediction = x0_to_prediction(x0, sample, alpha.flatten(), sigma.flatten(), prediction_type)
        assert torch.equal(
            thresholding(prediction, sample, alpha.flatten(), sigma.flatten(), prediction_type), prediction
        )


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_thresholding_acts_on_the_predicted_x0(prediction_type):
    thresholding = DynamicThresholding(percentile=0.9)
    for alpha, sigma in levels():
        alpha, sigma = alpha.flatten(), sigma.flatten()
        sample, prediction = randn(*SHAPE), randn(*SHAPE, seed=1) * 4  # x0 far outside [-1, 1]
        x0, _ = prediction_to_x0_eps(prediction, sample, alpha, sigma, prediction_type)
        thresholded = thresholding(prediction, sample, alpha, sigma, prediction_type)
        new_x0, _ = prediction_to_x0_eps(thresholded, sample, alpha, sigma, prediction_type)
        torch.testing.assert_close(new_x0, dynamic_threshold(x0, 0.9), atol=1e-4, rtol=1e-4)
        assert new_x0.abs().max() <= 1.0 + 1e-4


def test_thresholding_bounded_by_max_value_matches_diffusers():
    ddim = DDIMScheduler(thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=2.0)
    x0 = randn(*SHAPE) * 3
    torch.testing.assert_close(DynamicThresholding(0.95, max_value=2.0).threshold_x0(x0), ddim._threshold_sample(x0))


def test_scheduler_alpha_sigma():
    ddim = DDIMScheduler()
    alpha, sigma = scheduler_alpha_sigma(ddim, 500)
    torch.testing.assert_close(alpha, ddim.alphas_cumprod[500].sqrt())
    torch.testing.assert_close(sigma, (1 - ddim.alphas_cumprod[500]).sqrt())
    with pytest.raises(TypeError, match="`scheduler` must have `alpha_sigma` or `alphas_cumprod` but is a object"):
        scheduler_alpha_sigma(object(), 500)


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------


def test_bad_input():
    with pytest.raises(ValueError, match=r"`step_index` must be an integer in \[0, 4\) but is 4"):
        ConstantGuidance().combine(randn(2), randn(2), 4, 4)
    with pytest.raises(ValueError, match="`num_steps` must be a positive integer but is 0"):
        OscillatingGuidance().scale(0, 0)
    with pytest.raises(ValueError, match=r"`guidance_rescale` must be in \[0, 1\] but is 1.5"):
        ConstantGuidance(guidance_rescale=1.5)
    with pytest.raises(ValueError, match=r"`oscillate_fraction` must be in \[0, 1\] but is 2"):
        OscillatingGuidance(oscillate_fraction=2)
    with pytest.raises(ValueError, match="`guidance_scale` must be a finite number but is nan"):
        ConstantGuidance(float("nan"))
    with pytest.raises(ValueError, match="`scales` must be a non-empty sequence of numbers but is"):
        ScheduledGuidance([])
    with pytest.raises(ValueError, match="`pred_uncond` and `pred_cond` must have the same shape"):
        ConstantGuidance().combine(randn(2, 3), randn(3, 2), 0, 1)
    with pytest.raises(ValueError, match=r"`percentile` must be in \(0, 1\] but is 1.5"):
        DynamicThresholding(percentile=1.5)
    with pytest.raises(ValueError, match="`max_value` must be at least 1 but is 0.5"):
        DynamicThresholding(max_value=0.5)
    with pytest.raises(ValueError, match="`prediction_type` must be one of .* but is 'flow'"):
        DynamicThresholding()(randn(*SHAPE), randn(*SHAPE), 0.6, 0.8, "flow")
