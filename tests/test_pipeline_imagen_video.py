"""ImagenVideoPipeline and its cascade helpers: sizes and conditioning against the paper's operations, one sampling
step against a hand computation, the conditioning an SR stage receives, oscillating guidance, distilled students,
stage editing, save/load round trips, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline, EulerDiscreteScheduler

from diffusers_video import ImagenVideoPipeline, ImagenVideoPipelineOutput, UNet3DModel, VDistilledScheduler
from diffusers_video.folders import class_name_of
from diffusers_video.guidance import DynamicThresholding, ScheduledGuidance
from diffusers_video.pipelines.imagen_video.cascade import (
    NOISE_AUG_CONDITION,
    StageSpec,
    augment_condition,
    check_stage_unet,
    downsample_for_condition,
    noise_aug_condition_value,
    stage_model_input,
    upsample_condition,
)
from diffusers_video.pipelines.imagen_video.pipeline_imagen_video import (
    CascadeStage,
    oscillating_guidance_scales,
    stage_guidance_scales,
)
from diffusers_video.pipelines.pipeline_utils import VideoDiffusionPipeline
from diffusers_video.training.stand_in import build_t5_text_encoder, build_t5_tokenizer, vocabulary_words

TEXT_DIM = 16
PROMPT = "a red circle moving right"


pytestmark = pytest.mark.usefixtures("one_thread")


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """Random weights everywhere (zero-initialised temporal layers and scalar embeddings included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    return model


def tiny_unet(sr: bool = False, attention: bool = True, seed: int = 0, conditions: tuple = (), **overrides):
    """A two-block pixel-space UNet3DModel; an SR one takes 6 channels and a "noise_aug_level" condition."""
    down = ("CrossAttnDownBlock2D", "DownBlock2D") if attention else ("DownBlock2D", "DownBlock2D")
    up = ("UpBlock2D", "CrossAttnUpBlock2D") if attention else ("UpBlock2D", "UpBlock2D")
    config = dict(
        sample_size=8, in_channels=6 if sr else 3, out_channels=3, down_block_types=down, up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn" if attention else "UNetMidBlock2D", block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, cross_attention_dim=TEXT_DIM, attention_head_dim=2,
        temporal_attention="bidirectional" if attention else None, temporal_attention_head_dim=4,
        scalar_conditions=((NOISE_AUG_CONDITION,) if sr else ()) + tuple(conditions),
    )  # fmt: skip
    config.update(overrides)
    torch.manual_seed(seed)
    return _perturb(UNet3DModel(**config), seed).eval()


def ddim():
    return DDIMScheduler(
        prediction_type="v_prediction", clip_sample=False, timestep_spacing="trailing", set_alpha_to_one=False
    )


@pytest.fixture(scope="module")
def text_models():
    tokenizer = build_t5_tokenizer(model_max_length=8)
    return tokenizer, build_t5_text_encoder(len(tokenizer), d_model=TEXT_DIM, num_layers=1)


def make_pipe(text_models, stages=None) -> ImagenVideoPipeline:
    """base (8x8) -> TSR x2 -> SSR x2 (fully convolutional) unless `stages` is given."""
    tokenizer, text_encoder = text_models
    if stages is None:
        stages = [
            ("base", tiny_unet(seed=0), ddim()),
            (StageSpec("tsr", 2), tiny_unet(sr=True, seed=1), ddim()),
            (StageSpec("ssr", 2), tiny_unet(sr=True, attention=False, seed=2), ddim()),
        ]
    pipe = ImagenVideoPipeline.from_stages(text_encoder, tokenizer, stages)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, seed=0, **kwargs):
    arguments = dict(
        prompt=PROMPT, num_frames=4, height=16, width=16, num_inference_steps=2, output_type="latent",
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    arguments.update(kwargs)
    return pipe(**arguments)


# ---------------------------------------------------------------------------------------------------------------------
# cascade.py
# ---------------------------------------------------------------------------------------------------------------------


def test_stage_spec_sizes_and_dict_round_trip():
    tsr, ssr = StageSpec("tsr", 2), StageSpec("ssr", 4)
    assert tsr.output_size(8, 24, 40) == (16, 24, 40) and tsr.input_size(16, 24, 40) == (8, 24, 40)
    assert ssr.output_size(8, 24, 40) == (8, 96, 160) and ssr.input_size(8, 96, 160) == (8, 24, 40)
    assert StageSpec("base").output_size(3, 5, 7) == (3, 5, 7)
    for spec in (tsr, ssr, StageSpec("base")):
        assert StageSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="'zoom'"):
        StageSpec("zoom", 2)
    with pytest.raises(ValueError, match="factor` 1 but was given 2"):
        StageSpec("base", 2)
    with pytest.raises(ValueError, match=">= 2 but was given 1"):
        StageSpec("ssr", 1)
    with pytest.raises(ValueError, match="3 does not divide 16"):
        StageSpec("tsr", 3).input_size(16, 8, 8)
    with pytest.raises(ValueError, match="height 18 and width 16"):
        StageSpec("ssr", 4).input_size(4, 18, 16)
    with pytest.raises(ValueError, match="keys"):
        StageSpec.from_dict({"kind": "ssr", "scale": 2})


def test_upsample_and_downsample_follow_the_paper():
    video = torch.rand(2, 3, 4, 6, 8) * 2 - 1
    # TSR: every frame repeated `factor` times
    up = upsample_condition(video, StageSpec("tsr", 3))
    assert up.shape == (2, 3, 12, 6, 8)
    assert torch.equal(up[:, :, 7], video[:, :, 2])
    assert torch.equal(downsample_for_condition(up, StageSpec("tsr", 3)), video)
    # SSR: bilinear resizing of every frame
    up = upsample_condition(video, StageSpec("ssr", 2))
    frame = F.interpolate(video[:, :, 1], size=(12, 16), mode="bilinear", align_corners=False)
    assert up.shape == (2, 3, 4, 12, 16) and torch.allclose(up[:, :, 1], frame, atol=1e-6)
    # the training direction: area (block average) downsampling, frames kept every factor-th
    down = downsample_for_condition(video, StageSpec("ssr", 2))
    assert torch.allclose(down[0, 0, 0, 0, 0], video[0, 0, 0, :2, :2].mean(), atol=1e-6)
    assert torch.equal(downsample_for_condition(video, StageSpec("tsr", 2)), video[:, :, [0, 2]])
    with pytest.raises(ValueError, match="'base'"):
        upsample_condition(video, StageSpec("base"))
    with pytest.raises(ValueError, match="'base'"):
        downsample_for_condition(video, StageSpec("base"))


def test_augment_condition_is_the_cosine_forward_process():
    condition, noise = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    assert torch.equal(augment_condition(condition, 0.0, noise), condition)
    assert torch.allclose(augment_condition(condition, 1.0, noise), noise, atol=1e-7)
    mixed = augment_condition(condition, 0.25, noise)
    assert torch.allclose(mixed, math.cos(math.pi / 8) * condition + math.sin(math.pi / 8) * noise, atol=1e-6)
    per_sample = augment_condition(condition, torch.tensor([0.0, 0.25]), noise)
    assert torch.equal(per_sample[0], condition[0]) and torch.allclose(per_sample[1], mixed[1], atol=1e-6)
    assert noise_aug_condition_value(0.25) == 250.0
    for level in (1.5, -0.1, torch.tensor([0.2, 1.2])):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            augment_condition(condition, level, noise)


def test_stage_model_input_and_channel_check():
    sample, condition = torch.randn(1, 3, 2, 4, 4), torch.randn(1, 3, 2, 4, 4)
    assert torch.equal(stage_model_input(sample, condition)[:, 3:], condition)
    assert stage_model_input(sample, None) is sample
    check_stage_unet(tiny_unet(sr=True), StageSpec("ssr", 2), 1)
    with pytest.raises(ValueError, match=r"Stage 1 \(ssrx2\).*in_channels=6.*in_channels=3"):
        check_stage_unet(tiny_unet(), StageSpec("ssr", 2), 1)
    with pytest.raises(ValueError, match=r"Stage 0 \(base\).*in_channels=3.*in_channels=6"):
        check_stage_unet(tiny_unet(sr=True), StageSpec("base"), 0)


def test_t5_stand_in_reads_every_caption_word_as_one_token(tmp_path, text_models):
    from transformers import AutoTokenizer

    tokenizer, text_encoder = text_models
    words = vocabulary_words()
    assert all(tokenizer.tokenize(word) == ["\u2581" + word] for word in words)
    assert tokenizer.tokenize("circle,") == ["\u2581circle", ","]
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(PROMPT).input_ids == tokenizer(PROMPT).input_ids
    ids = tokenizer([PROMPT], padding="max_length", max_length=8, return_tensors="pt").input_ids
    assert text_encoder(ids).last_hidden_state.shape == (1, 8, TEXT_DIM)


# ---------------------------------------------------------------------------------------------------------------------
# guidance schedules
# ---------------------------------------------------------------------------------------------------------------------


def test_oscillating_schedule_shape():
    assert oscillating_guidance_scales(8, 15.0) == [15.0, 1.0, 15.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    weights = oscillating_guidance_scales(20, 15.0, low=2.0)  # warm-up 2 steps, oscillation up to step 10
    assert (
        weights[:3] == [15.0, 15.0, 15.0] and weights[3:10] == [2.0, 15.0] * 3 + [2.0] and set(weights[10:]) == {2.0}
    )
    assert oscillating_guidance_scales(4, 9.0, oscillate_fraction=1.0, warmup_fraction=0.0) == [9.0, 1.0, 9.0, 1.0]
    assert stage_guidance_scales("constant", 6.0, 3) == [6.0, 6.0, 6.0]
    assert stage_guidance_scales("oscillating", 6.0, 8) == oscillating_guidance_scales(8, 6.0)
    assert stage_guidance_scales(ScheduledGuidance([3.0, 2.0]), 99.0, 2) == [3.0, 2.0]
    with pytest.raises(ValueError, match="oscillate_fraction"):
        oscillating_guidance_scales(8, 15.0, oscillate_fraction=1.5)


# ---------------------------------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------------------------------


def test_one_step_equals_hand_computed_v_prediction_guidance_and_thresholding(text_models):
    base = _perturb(tiny_unet(seed=3), seed=4, scale=0.2)  # predictions large enough to be thresholded
    pipe = make_pipe(text_models, [("base", base, ddim())])
    unet, scheduler = pipe.unet_0, pipe.scheduler_0
    w, percentile = 4.0, 0.9
    generator = torch.Generator().manual_seed(0)
    prompt_embeds, negative_embeds = torch.randn(2, 1, 8, TEXT_DIM, generator=generator)
    out = pipe(
        prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, num_frames=2, height=8, width=8,
        num_inference_steps=1, guidance_scale=w, dynamic_thresholding_percentile=percentile, output_type="latent",
        generator=torch.Generator().manual_seed(1),
    ).frames  # fmt: skip

    # by hand: x_T ~ N(0, 1); v = uncond + w (cond - uncond); x0 = alpha x - sigma v, thresholded; a DDIM step
    x = torch.randn(1, 3, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    t = 999  # one "trailing" step
    v_cond = unet(x, t, encoder_hidden_states=prompt_embeds).sample
    v_uncond = unet(x, t, encoder_hidden_states=negative_embeds).sample
    v = v_uncond + w * (v_cond - v_uncond)
    alpha_bar = scheduler.alphas_cumprod[t]
    alpha, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    x0 = alpha * x - sigma * v
    s = torch.quantile(x0.abs().flatten(), percentile).clamp(min=1.0)
    assert s > 1.0  # thresholding is active
    x0 = x0.clamp(-s, s) / s
    eps = (x - alpha * x0) / sigma
    alpha_bar_prev = scheduler.alphas_cumprod[0]  # set_alpha_to_one=False: the last step lands on alpha_bar_0
    expected = alpha_bar_prev.sqrt() * x0 + (1 - alpha_bar_prev).sqrt() * eps
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-4)
    # without thresholding the result differs (so the check above sees it)
    plain = pipe(
        prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, num_frames=2, height=8, width=8,
        num_inference_steps=1, guidance_scale=w, dynamic_thresholding_percentile=None, output_type="latent",
        generator=torch.Generator().manual_seed(1),
    ).frames  # fmt: skip
    assert not torch.allclose(plain, out, atol=1e-3)


def test_intermediate_outputs_have_each_stage_size(text_models):
    pipe = make_pipe(text_models)
    assert pipe.stage_sizes(4, 16, 16) == [(2, 8, 8), (4, 8, 8), (4, 16, 16)]
    out = run(pipe, return_intermediate=True)
    assert isinstance(out, ImagenVideoPipelineOutput)
    assert [tuple(v.shape) for v in out.intermediate_frames] == [(1, 3, 2, 8, 8), (1, 3, 4, 8, 8), (1, 3, 4, 16, 16)]
    assert out.intermediate_frames[-1] is out.frames
    frames = run(pipe, output_type="np", num_videos_per_prompt=2, return_intermediate=True)
    assert frames.frames.shape == (2, 4, 16, 16, 3) and frames.intermediate_frames[0].shape == (2, 2, 8, 8, 3)
    assert 0.0 <= frames.frames.min() and frames.frames.max() <= 1.0
    # defaults: the base UNet's sample_size and 8 base frames, carried through the stages
    assert pipe.default_size() == (16, 16, 16)
    frames, intermediates = run(
        pipe, num_frames=None, height=None, width=None, return_dict=False, return_intermediate=True
    )
    assert frames.shape == (1, 3, 16, 16, 16) and intermediates[0].shape == (1, 3, 8, 8, 8)


def test_sr_stage_receives_the_upsampled_augmented_previous_output(text_models):
    pipe = make_pipe(text_models)
    seen = []
    hook = pipe.unet_2.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((args[0].clone(), kwargs["scalar_conds"])), with_kwargs=True
    )
    level = 0.3
    out = run(pipe, noise_aug_level={2: level}, guidance_scale=1.0, return_intermediate=True)
    hook.remove()
    assert len(seen) == 2  # two steps, one pass each (weight 1)
    # replay the generator: stage 0 initial noise, stage 1 augmentation + initial noise, then stage 2's augmentation
    generator = torch.Generator().manual_seed(0)
    for shape in [(1, 3, 2, 8, 8), (1, 3, 4, 8, 8), (1, 3, 4, 8, 8)]:
        torch.randn(shape, generator=generator)
    noise = torch.randn(1, 3, 4, 16, 16, generator=generator)
    previous = out.intermediate_frames[1].clamp(-1, 1)
    upsampled = F.interpolate(previous[0].permute(1, 0, 2, 3), size=(16, 16), mode="bilinear", align_corners=False)
    upsampled = upsampled.permute(1, 0, 2, 3)[None]  # (1, 3, 4, 16, 16)
    expected = math.cos(math.pi / 2 * level) * upsampled + math.sin(math.pi / 2 * level) * noise
    for sample, conds in seen:
        torch.testing.assert_close(sample[:, 3:], expected, atol=1e-5, rtol=1e-5)
        assert torch.allclose(conds[NOISE_AUG_CONDITION], torch.tensor([300.0]))
    # stage 1 was left at the default level, 0.1
    seen.clear()
    hook = pipe.unet_1.register_forward_pre_hook(lambda m, a, k: seen.append(k["scalar_conds"]), with_kwargs=True)
    run(pipe, noise_aug_level={2: level}, guidance_scale=1.0, num_inference_steps=1)
    hook.remove()
    assert torch.allclose(seen[0][NOISE_AUG_CONDITION], torch.tensor([100.0]))


def test_teacher_guidance_passes_and_callbacks(text_models):
    pipe = make_pipe(text_models)
    batches = []
    hooks = [
        getattr(pipe, f"unet_{i}").register_forward_pre_hook(lambda m, a, i=i: batches.append((i, a[0].shape[0])))
        for i in range(3)
    ]
    calls = []

    def callback(p, step, t, kwargs):
        calls.append((p.stage_index, step, p.num_timesteps))
        return {"latents": kwargs["latents"]}

    run(pipe, num_inference_steps=[8, 1, 2], guidance=["oscillating", "constant", "constant"], guidance_scale={2: 1.0},
        callback_on_step_end=callback)  # fmt: skip
    for hook in hooks:
        hook.remove()
    # base: oscillating 6, 1, 6, 1, 1, ... -> a doubled batch at the guided steps; stage 2 at weight 1: single passes
    assert batches == [(0, 2), (0, 1), (0, 2)] + [(0, 1)] * 5 + [(1, 2), (2, 1), (2, 1)]
    assert calls == [(0, i, 8) for i in range(8)] + [(1, 0, 1), (2, 0, 2), (2, 1, 2)]


def test_distilled_student_stage_runs_one_pass_per_step(text_models):
    student = tiny_unet(seed=5, conditions=("guidance_scale",))
    scheduler = VDistilledScheduler(distillation_base_steps=8)
    pipe = make_pipe(text_models, [("base", student, scheduler), (StageSpec("ssr", 2), tiny_unet(sr=True), ddim())])
    seen = []
    hook = student.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0].shape[0], float(kwargs["scalar_conds"]["guidance_scale"]))),
        with_kwargs=True,
    )
    out = run(pipe, num_frames=2, num_inference_steps={0: 8, 1: 1}, guidance={0: "oscillating"}, guidance_scale=5.0)
    hook.remove()
    assert [batch for batch, _ in seen] == [1] * 8  # one pass per step, no unconditional batch
    assert [value for _, value in seen] == [100.0 * w for w in oscillating_guidance_scales(8, 5.0)]
    assert out.frames.shape == (1, 3, 2, 16, 16)
    with pytest.raises(ValueError, match="stage 0's scheduler"):  # a step count off the distillation grid
        run(pipe, num_frames=2, num_inference_steps=3)


def test_restart_noises_the_finished_stage_once_and_returns_the_clean_prediction(text_models):
    # a stage that restarts at t: one more UNet call, at t, on alpha_t x + sigma_t n of the finished video, and the
    # stage's output is that call's x0 (v-prediction: x0 = alpha z - sigma v); the generator's next draw is n
    scheduler = VDistilledScheduler(noise_schedule="continuous_cosine", distillation_base_steps=8)
    student = tiny_unet(seed=5, conditions=("guidance_scale",))
    pipe = make_pipe(text_models, [("base", student, scheduler)])
    seen = []
    student.register_forward_hook(
        lambda m, args, kwargs, out: seen.append((args[0].clone(), float(args[1]), out.sample.clone())),
        with_kwargs=True,
    )

    def go(**kwargs):
        return run(pipe, num_frames=2, num_inference_steps=4, guidance_scale=3.0, **kwargs).frames

    plain = go(dynamic_thresholding_percentile=None)
    assert len(seen) == 4
    restarted = go(dynamic_thresholding_percentile=None, restart_timestep=125.0)
    assert len(seen) == 4 + 5
    torch.testing.assert_close(seen[-2][0], seen[3][0])  # the same loop before the restart
    z, t, v = seen[-1]
    assert t == 125.0
    alpha, sigma = scheduler.alpha_sigma(125.0)
    generator = torch.Generator().manual_seed(0)
    torch.randn(plain.shape, generator=generator)  # the initial noise, then the restart's
    noise = torch.randn(plain.shape, generator=generator)
    torch.testing.assert_close(z, alpha * plain + sigma * noise)
    torch.testing.assert_close(restarted, alpha * z - sigma * v)
    assert not torch.allclose(restarted, plain, atol=1e-3)
    # the restart's prediction is thresholded as every step's is
    thresholded = go(dynamic_thresholding_percentile=0.6, restart_timestep=125.0)
    z, _, v = seen[-1]
    x0 = alpha * z - sigma * v
    assert (x0.abs() > 1).any()  # so the threshold acts
    torch.testing.assert_close(thresholded, DynamicThresholding(0.6).threshold_x0(x0))
    # 0 is no restart, bit for bit; the scheduler's config is the default, and the call overrides it
    assert torch.equal(go(dynamic_thresholding_percentile=None, restart_timestep=0), plain)
    pipe.scheduler_0 = VDistilledScheduler.from_config(scheduler.config, restart_timestep=125.0)
    assert torch.equal(go(dynamic_thresholding_percentile=None), restarted)
    assert torch.equal(go(dynamic_thresholding_percentile=None, restart_timestep=0), plain)
    with pytest.raises(ValueError, match=r"restart_timestep` of stage `0` must be in \[0, 1000\) but is 1000"):
        go(restart_timestep=1000)

    # an antithetic restart: two calls at t, on alpha x + sigma n and alpha x - sigma n with the same n, and the
    # output is the mean of their clean predictions; from the call or the scheduler's config
    pipe.scheduler_0 = scheduler
    seen.clear()
    paired = go(dynamic_thresholding_percentile=None, restart_timestep=125.0, restart_antithetic=True)
    assert len(seen) == 4 + 2 and [t for _, t, _ in seen[-2:]] == [125.0, 125.0]
    (z_plus, _, v_plus), (z_minus, _, v_minus) = seen[-2:]
    torch.testing.assert_close(z_plus, alpha * plain + sigma * noise)
    torch.testing.assert_close(z_minus, alpha * plain - sigma * noise)
    torch.testing.assert_close(paired, ((alpha * z_plus - sigma * v_plus) + (alpha * z_minus - sigma * v_minus)) / 2)
    assert not torch.allclose(paired, restarted, atol=1e-4)
    pipe.scheduler_0 = VDistilledScheduler.from_config(
        scheduler.config, restart_timestep=125.0, restart_antithetic=True
    )
    assert torch.equal(go(dynamic_thresholding_percentile=None), paired)
    assert torch.equal(go(dynamic_thresholding_percentile=None, restart_antithetic=False), restarted)
    assert torch.equal(go(dynamic_thresholding_percentile=None, restart_timestep=0), plain)  # nothing to pair
    with pytest.raises(TypeError, match="restart_antithetic` of stage `0` must be True or False but is 1"):
        go(restart_antithetic=1)


def test_fully_convolutional_sr_stage_runs_above_its_training_size(text_models):
    sr = tiny_unet(sr=True, attention=False, seed=6)  # sample_size 8, no attention
    pipe = make_pipe(
        text_models, [("base", tiny_unet(seed=0, sample_size=16), ddim()), (StageSpec("ssr", 4), sr, ddim())]
    )
    out = run(pipe, num_frames=2, height=64, width=64, num_inference_steps=1, return_intermediate=True)
    assert out.frames.shape == (1, 3, 2, 64, 64)  # 8x its training size
    assert torch.isfinite(out.frames).all()
    assert sr.config.sample_size == 8 and out.intermediate_frames[0].shape == (1, 3, 2, 16, 16)


# ---------------------------------------------------------------------------------------------------------------------
# stage editing, saving
# ---------------------------------------------------------------------------------------------------------------------


def test_stage_swap_and_drop(text_models):
    pipe = make_pipe(text_models)
    before = run(pipe, return_intermediate=True)
    # swap the last stage's UNet: the earlier stages' outputs stay, the final one changes
    pipe.replace_stage(2, unet=tiny_unet(sr=True, attention=False, seed=9))
    swapped = run(pipe, return_intermediate=True)
    for i in (0, 1):
        assert torch.equal(swapped.intermediate_frames[i], before.intermediate_frames[i])
    assert not torch.allclose(swapped.frames, before.frames, atol=1e-3)
    # drop it: the cascade ends at the TSR stage, with the same draws
    dropped = pipe.drop_stage(2)
    assert dropped.spec == StageSpec("ssr", 2) and pipe.num_stages == 2 and not hasattr(pipe, "unet_2")
    assert sorted(pipe.components) == ["scheduler_0", "scheduler_1", "text_encoder", "tokenizer", "unet_0", "unet_1"]
    short = run(pipe, height=8, width=8)
    assert torch.equal(short.frames, before.intermediate_frames[1])
    # add it back in front of nothing: the original final output again
    pipe.add_stage(StageSpec("ssr", 2), dropped.unet, dropped.scheduler)
    assert torch.equal(run(pipe).frames, swapped.frames)
    # bad edits name the stage and change nothing
    with pytest.raises(ValueError, match=r"Stage 2 \(ssrx2\).*in_channels=6"):
        pipe.replace_stage(2, unet=tiny_unet())
    with pytest.raises(ValueError, match="Stage 0, and only stage 0"):
        pipe.drop_stage(0)
    with pytest.raises(ValueError, match="Stage index"):
        pipe.drop_stage(3)
    assert pipe.num_stages == 3 and pipe.unet_2 is dropped.unet


def test_save_load_round_trip(tmp_path, text_models):
    pipe = make_pipe(text_models)
    pipe.replace_stage(1, scheduler=VDistilledScheduler())
    expected = run(pipe).frames
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert class_name_of(index, "model_index.json") == "ImagenVideoPipeline"
    assert index["stages"] == [
        {"kind": "base", "factor": 1},
        {"kind": "tsr", "factor": 2},
        {"kind": "ssr", "factor": 2},
    ]
    assert index["unet_2"] == ["diffusers_video.models.unet_3d", "UNet3DModel"]
    assert index["scheduler_1"] == ["diffusers_video.schedulers.scheduling_v_distilled", "VDistilledScheduler"]
    assert (tmp_path / "unet_2" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = ImagenVideoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.stage_specs == pipe.stage_specs and isinstance(loaded.scheduler_1, VDistilledScheduler)
    assert torch.equal(run(loaded).frames, expected)
    # the base class returns the class the folder names, and diffusers loads it through the remote-code shims
    assert type(VideoDiffusionPipeline.from_pretrained(tmp_path)) is ImagenVideoPipeline
    remote = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    remote.set_progress_bar_config(disable=True)
    assert type(remote) is ImagenVideoPipeline and torch.equal(run(remote).frames, expected)
    # a stage passed as a keyword replaces the saved one
    other = tiny_unet(sr=True, attention=False, seed=11)
    assert ImagenVideoPipeline.from_pretrained(tmp_path, unet_2=other).unet_2 is other
    # a folder whose stage list and components disagree is refused before loading
    index["stages"] = index["stages"][:2]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="unet_2"):
        ImagenVideoPipeline.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_inference_steps": [2, 2]}, "has 2 values but the cascade has 3 stages"),
        ({"guidance_scale": {5: 2.0}}, r"integers in \[0, 3\), but has \[5\]"),
        ({"height": 17, "width": 16}, r"Stage 2 \(ssrx2\) cannot produce.*height 17 and width 16"),
        ({"num_frames": 5}, r"Stage 1 \(tsrx2\) cannot produce 5 frames"),
        ({"height": 10, "width": 12}, r"Stage 0 \(base\) produces 5x6 frames.*downsampling 2x"),
        ({"noise_aug_level": [0.0, 0.5, 1.5]}, r"noise_aug_level` of stage `2` must lie in \[0, 1\] but is 1.5"),
        ({"noise_aug_level": -0.1}, r"must lie in \[0, 1\] but is -0.1"),
        ({"dynamic_thresholding_percentile": 0.0}, r"stage 0 must be in \(0, 1\] or None but is 0.0"),
        ({"dynamic_thresholding_percentile": {1: 1.5}}, r"stage 1 must be in \(0, 1\] or None but is 1.5"),
        ({"num_inference_steps": 0}, "integer >= 1 but is 0"),
        ({"restart_timestep": -1}, r"restart_timestep` of stage `0` must be in \[0, 1000\) but is -1"),
        ({"restart_timestep": {2: 31.5}}, "stage `2` must be an integer on a discrete noise schedule but is 31.5"),
        ({"restart_timestep": "late"}, "stage `0` must be a number in \\[0, 1000\\) but is 'late'"),
        ({"restart_timestep": True}, "stage `0` must be a number in \\[0, 1000\\) but is True"),
        ({"guidance_scale": -1.0}, "must be a number >= 0 but is -1.0"),
        ({"guidance": "wavy"}, "'wavy'"),
        ({"guidance": ScheduledGuidance([3.0, 2.0, 1.0])}, "stage 0 does not fit its 2 steps"),
        ({"noise_aug_level": torch.tensor([0.1, 0.2])}, "stage 0 must be a number"),
        ({"output_type": "gif"}, "'gif'"),
        ({"prompt_embeds": torch.zeros(1, 8, TEXT_DIM)}, "either `prompt` or `prompt_embeds`"),
        ({"prompt": None}, "both are None"),
        ({"prompt_embeds": torch.zeros(1, 8, 5), "prompt": None}, r"\(batch, tokens, 16\)"),
        ({"negative_prompt": ["a", "b"]}, "2 prompts but `prompt` has batch size 1"),
        ({"generator": [torch.Generator()] * 2}, "list of 2 generators"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, "noise"),
    ],
)
def test_bad_input_is_refused_before_sampling(text_models, kwargs, message):
    pipe = make_pipe(text_models)
    calls = []
    pipe.unet_0.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=message):
        run(pipe, **kwargs)
    assert not calls


def test_bad_cascades_are_refused(text_models):
    tokenizer, text_encoder = text_models
    with pytest.raises(ValueError, match=r"Stage 1 \(tsrx2\).*in_channels=6.*in_channels=3"):
        make_pipe(text_models, [("base", tiny_unet(), ddim()), (StageSpec("tsr", 2), tiny_unet(), ddim())])
    with pytest.raises(ValueError, match="Stage 0, and only stage 0"):
        make_pipe(text_models, [(StageSpec("ssr", 2), tiny_unet(sr=True), ddim())])
    with pytest.raises(ValueError, match=r"scalar conditions \['fps'\]"):
        make_pipe(text_models, [("base", tiny_unet(conditions=("fps",)), ddim())])
    with pytest.raises(ValueError, match=r"unexpected: \['unet_7'\], missing: \['scheduler_0'\]"):
        ImagenVideoPipeline(text_encoder, tokenizer, stages=[StageSpec("base")], unet_0=tiny_unet(), unet_7=None)
    pipe = make_pipe(text_models)
    pipe.replace_stage(0, scheduler=EulerDiscreteScheduler(prediction_type="v_prediction"))
    with pytest.raises(ValueError, match="variance-preserving"):  # thresholding assumes x_t = alpha x_0 + sigma eps
        run(pipe)
    assert np.isfinite(run(pipe, dynamic_thresholding_percentile={0: None}).frames.numpy()).all()


def test_stage_reads_text_only_with_cross_attention():
    text = CascadeStage(StageSpec("ssr", 2), tiny_unet(sr=True, attention=True), ddim())
    convolutional = CascadeStage(StageSpec("ssr", 2), tiny_unet(sr=True, attention=False), ddim())
    mid_only = tiny_unet(attention=False, mid_block_type="UNetMidBlock2DCrossAttn")
    assert text.reads_text and not convolutional.reads_text
    assert CascadeStage(StageSpec("base"), mid_only, ddim()).reads_text


def test_a_scheduler_that_would_change_the_noise_schedule_is_refused(text_models):
    # diffusers' schedulers keep `noise_schedule` in their config but ignore it: the swap would sample the discrete
    # betas instead of the cosine schedule the stage was trained on
    cosine = VDistilledScheduler(noise_schedule="continuous_cosine", prediction_type="v_prediction")
    pipe = make_pipe(text_models, stages=[("base", tiny_unet(seed=0), cosine)])
    run(pipe, height=8, width=8)  # its own scheduler samples
    pipe.scheduler_0 = DDIMScheduler.from_config(cosine.config)
    with pytest.raises(
        ValueError, match="Stage 0's scheduler is a DDIMScheduler.*`noise_schedule`='continuous_cosine'"
    ):
        run(pipe, height=8, width=8)
    pipe.scheduler_0 = VDistilledScheduler.from_config(cosine.config)  # the way to swap
    run(pipe, height=8, width=8)
