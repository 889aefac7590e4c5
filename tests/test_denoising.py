"""The shared denoising loop (`pipelines/denoising.py`) and what both pipelines get from it: diffusers' callbacks that
change guidance really change it, interrupts stop, progress counts steps by `scheduler.order`, one guidance schedule,
`guidance_rescale` honoured, a distilled scheduler's own step count as the default, attention slicing."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, HeunDiscreteScheduler
from diffusers.callbacks import SDCFGCutoffCallback
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg as diffusers_rescale
from test_pipeline_imagen_video import ddim, tiny_unet
from test_pipeline_imagen_video import make_pipe as make_imagen_pipe
from test_pipeline_imagen_video import run as run_imagen
from test_pipeline_videofusion import make_pipe as make_videofusion_pipe
from test_pipeline_videofusion import run as run_videofusion

from diffusers_video import VDistilledScheduler
from diffusers_video.guidance import (
    ConstantGuidance,
    OscillatingGuidance,
    ScheduledGuidance,
    apply_guidance,
    oscillating_guidance_scales,
)
from diffusers_video.models.temporal import TemporalAttention
from diffusers_video.pipelines.denoising import DenoisingPipelineMixin, denoise, sdedit_steps
from diffusers_video.pipelines.i2vgen_xl.refine import sdedit_timesteps
from diffusers_video.pipelines.imagen_video.cascade import StageSpec
from diffusers_video.pipelines.videofusion.extension import start_from_given_frames

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def videofusion():
    return make_videofusion_pipe()


@pytest.fixture(scope="module")
def text_models():
    from test_pipeline_imagen_video import build_t5_text_encoder, build_t5_tokenizer

    tokenizer = build_t5_tokenizer(model_max_length=8)
    return tokenizer, build_t5_text_encoder(len(tokenizer), d_model=16, num_layers=1)


def record_batches(*models: torch.nn.Module) -> tuple[list[int], list]:
    batches = []
    hooks = [model.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0])) for model in models]
    return batches, hooks


# ---------------------------------------------------------------------------------------------------------------------
# the loop itself
# ---------------------------------------------------------------------------------------------------------------------


class _Pipe(DenoisingPipelineMixin):
    pass


def test_progress_counts_steps_by_scheduler_order():
    """Heun runs 2n - 1 timesteps for n steps; the bar advances n times, as in diffusers' pipelines."""
    updates = []

    class Bar:
        def update(self):
            updates.append(1)

    for scheduler, steps in ((HeunDiscreteScheduler(), 4), (DDIMScheduler(), 5)):
        updates.clear()
        scheduler.set_timesteps(steps)
        calls = []
        latents = torch.randn(1, 2, 3, 4, 4) * scheduler.init_noise_sigma
        predict = lambda x, t, i, s, calls=calls: calls.append(i) or torch.zeros_like(x)  # noqa: E731
        denoise(_Pipe(), scheduler, latents, predict, num_inference_steps=steps, progress_bar=Bar())
        assert len(calls) == len(scheduler.timesteps) == steps * scheduler.order - (scheduler.order - 1)
        assert len(updates) == steps


def test_the_loop_sets_the_step_weight_and_a_callback_can_override_it():
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(4)
    seen = []
    pipe = _Pipe()

    def predict(x, t, i, sample):
        seen.append((i, pipe.guidance_scale, pipe.do_classifier_free_guidance))
        return torch.zeros_like(x)

    def callback(p, i, t, kwargs):
        if i == 1:
            p._guidance_scale = 3.0  # from step 2 on
        return {}

    guidance = ScheduledGuidance([5.0, 1.0, 7.0, 7.0])
    denoise(pipe, scheduler, torch.randn(1, 1, 1, 2, 2), predict, num_inference_steps=4, guidance=guidance,
            callback_on_step_end=callback)  # fmt: skip
    assert seen == [(0, 5.0, True), (1, 1.0, False), (2, 3.0, True), (3, 3.0, True)]
    assert pipe.num_timesteps == 4


# ---------------------------------------------------------------------------------------------------------------------
# diffusers' callbacks in both pipelines
# ---------------------------------------------------------------------------------------------------------------------


def test_sd_cfg_cutoff_callback_turns_videofusion_guidance_off(videofusion):
    """Before the shared loop the callback was accepted and had no effect: guidance stayed on."""
    batches, hooks = record_batches(videofusion.residual_unet)
    cut = run_videofusion(
        videofusion,
        num_inference_steps=4,
        callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=None, cutoff_step_index=1),
    )
    for hook in hooks:
        hook.remove()
    assert batches == [2, 2, 1, 1]  # guided steps 0 and 1, then the conditional pass alone
    scheduled = run_videofusion(videofusion, num_inference_steps=4, guidance_scale=[4.0, 4.0, 1.0, 1.0])
    torch.testing.assert_close(cut, scheduled, rtol=0, atol=0)
    assert videofusion.guidance_scale == 1.0


def test_sd_cfg_cutoff_callback_turns_imagen_video_guidance_off(text_models):
    pipe = make_imagen_pipe(text_models)
    batches, hooks = record_batches(pipe.unet_0)
    callback = SDCFGCutoffCallback(cutoff_step_ratio=0.5)  # int(num_timesteps * 0.5) of the stage being sampled
    cut = run_imagen(pipe, num_inference_steps=[4, 2, 2], guidance_scale=5.0, callback_on_step_end=callback).frames
    for hook in hooks:
        hook.remove()
    assert batches == [2, 2, 2, 1]  # the base: cut off after step 2 of 4
    # each stage starts from its own schedule; the callback cuts each off at half its steps (after the last of 2)
    guidance = [ScheduledGuidance([5.0, 5.0, 5.0, 1.0]), "constant", "constant"]
    scheduled = run_imagen(pipe, num_inference_steps=[4, 2, 2], guidance=guidance, guidance_scale=5.0).frames
    torch.testing.assert_close(cut, scheduled, rtol=0, atol=0)


def test_an_interrupt_skips_the_remaining_steps(videofusion):
    batches, hooks = record_batches(videofusion.residual_unet)

    def stop(pipe, i, t, kwargs):
        pipe._interrupt = True
        return {}

    run_videofusion(videofusion, num_inference_steps=4, callback_on_step_end=stop)
    for hook in hooks:
        hook.remove()
    assert batches == [2]


# ---------------------------------------------------------------------------------------------------------------------
# guidance: one oscillating schedule, guidance_rescale honoured
# ---------------------------------------------------------------------------------------------------------------------


def test_one_oscillating_schedule_with_the_warm_up_as_a_parameter():
    assert OscillatingGuidance(15.0, 1.0, warmup_fraction=0.1).scales(20) == oscillating_guidance_scales(20, 15.0)
    assert OscillatingGuidance(9.0, 2.0, warmup_fraction=0.25).scales(8) == [9.0, 9.0, 9.0, 2.0] + [2.0] * 4
    assert OscillatingGuidance(9.0, 2.0).scales(8) == oscillating_guidance_scales(8, 9.0, 2.0, warmup_fraction=0.0)
    with pytest.raises(ValueError, match="warmup_fraction"):
        OscillatingGuidance(warmup_fraction=-0.1)


def test_apply_guidance_rescales_as_diffusers_does():
    generator = torch.Generator().manual_seed(0)
    uncond, cond = torch.randn(2, 3, 4, 5, 5, generator=generator), torch.randn(2, 3, 4, 5, 5, generator=generator)
    plain = uncond + 6.0 * (cond - uncond)
    torch.testing.assert_close(apply_guidance(uncond, cond, 6.0), plain)
    torch.testing.assert_close(apply_guidance(uncond, cond, 6.0, 0.7), diffusers_rescale(plain, cond, 0.7))


def test_imagen_video_honours_a_guidance_objects_rescale(text_models):
    """Before, the pipeline read only the weights of a guidance object and dropped its `guidance_rescale`."""
    pipe = make_imagen_pipe(text_models)
    constant = run_imagen(pipe, guidance_scale=5.0).frames
    same = run_imagen(pipe, guidance=ConstantGuidance(5.0)).frames
    rescaled = run_imagen(pipe, guidance=ConstantGuidance(5.0, guidance_rescale=0.7)).frames
    torch.testing.assert_close(same, constant, rtol=0, atol=0)
    assert (rescaled - constant).abs().max() > 1e-3


def test_videofusion_honours_a_guidance_objects_rescale(videofusion):
    plain = run_videofusion(videofusion, guidance_scale=ConstantGuidance(4.0))
    rescaled = run_videofusion(videofusion, guidance_scale=ConstantGuidance(4.0, guidance_rescale=0.7))
    assert (rescaled - plain).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------------------------------
# a distilled scheduler knows its own step count
# ---------------------------------------------------------------------------------------------------------------------


def test_a_distilled_stage_samples_its_own_step_count_by_default(text_models):
    student = VDistilledScheduler(distillation_base_steps=8, default_num_inference_steps=2)
    pipe = make_imagen_pipe(
        text_models, [("base", tiny_unet(seed=0), student), (StageSpec("ssr", 2), tiny_unet(sr=True), ddim())]
    )
    batches, hooks = record_batches(pipe.unet_0, pipe.unet_1)
    run_imagen(pipe, num_inference_steps=None, guidance_scale=1.0, num_frames=2)
    for hook in hooks:
        hook.remove()
    assert len(batches) == 2 + 50  # the student's 2 steps, then the teacher SR stage's default 50
    assert VDistilledScheduler(distillation_base_steps=64).default_num_inference_steps == 64
    assert VDistilledScheduler().default_num_inference_steps is None
    with pytest.raises(ValueError, match="default_num_inference_steps.*grid.*8"):
        VDistilledScheduler(distillation_base_steps=8, default_num_inference_steps=3)


def test_the_committed_imagen_video_demo_knows_its_step_counts():
    """`ImagenVideoPipeline.from_pretrained("pipelines/imagen_video/demo")(prompt)` used to raise that 50 steps do
    not fit stage 0's scheduler; each stage now samples its 8 distilled steps by default."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "pipelines" / "imagen_video" / "demo"
    for i in range(4):
        scheduler = VDistilledScheduler.from_pretrained(folder, subfolder=f"scheduler_{i}")
        assert scheduler.default_num_inference_steps == 8
        scheduler.set_timesteps(scheduler.default_num_inference_steps)  # on its distillation grid


# ---------------------------------------------------------------------------------------------------------------------
# attention slicing
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temporal_attention", ["bidirectional", "directed"])
def test_attention_slicing_keeps_the_output(temporal_attention):
    unet = tiny_unet(seed=3, temporal_attention=temporal_attention)
    sample = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = unet(sample, 500, text).sample
        for size in ("auto", "max", 1):
            unet.set_attention_slice(size)
            torch.testing.assert_close(unet(sample, 500, text).sample, reference, atol=1e-5, rtol=1e-5)
        unet.set_attention_slice(None)
        torch.testing.assert_close(unet(sample, 500, text).sample, reference, atol=1e-6, rtol=1e-6)
    for bad in ("half", 0, [1]):
        with pytest.raises(ValueError, match="slice_size"):
            unet.set_attention_slice(bad)


def test_a_sliced_directed_temporal_attention_stays_causal():
    torch.manual_seed(0)
    layer = TemporalAttention(8, num_heads=2, attention_type="directed").eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        frames = torch.randn(4, 8, 3, 3)  # (B*F, C, H, W), 4 frames
        reference = layer(frames, num_frames=4)
        layer.attn.set_attention_slice(1)
        torch.testing.assert_close(layer(frames, num_frames=4), reference, atol=1e-5, rtol=1e-5)
        changed = frames.clone()
        changed[2:] += 1.0  # frames 2 and 3
        out = layer(changed, num_frames=4)
    torch.testing.assert_close(out[:2], reference[:2], atol=1e-6, rtol=1e-6)
    assert (out[2:] - reference[2:]).abs().max() > 1e-3


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, HeunDiscreteScheduler])
def test_the_refiner_and_the_videofusion_windows_start_sdedit_at_the_same_step(scheduler_class):
    """One convention (diffusers' image-to-image one): `strength` s of n steps runs the last max(int(n s), 1)."""
    scheduler = scheduler_class()
    given, noise = torch.zeros(1, 1, 1, 2, 2), torch.ones(1, 1, 3, 2, 2)
    for n in (1, 2, 7, 25, 50):
        for strength in (0.01, 0.3, 0.5, 0.6, 0.61, 0.99, 1.0):
            scheduler.set_timesteps(n)
            timesteps, steps = sdedit_timesteps(scheduler, n, strength)
            assert steps == sdedit_steps(n, strength) == min(max(int(n * strength), 1), n)
            start, _ = start_from_given_frames(scheduler, given, noise, strength, n)
            assert torch.equal(scheduler.timesteps[start:], timesteps), (n, strength)
