"""VideoGenPipeline: the reference reaches every frame of the video model, the two-condition guidance, the stages'
frames and sizes, every accepted form of the reference image giving the same video, and bad input refused first.

Tiny real components: a character-level CLIP, a two-block VAE (2x), two-block UNets on 4x4 latents, a small flow
upsampler. Properties are exact where they can be: the reference channels equal the reference latent bit for bit,
temporal upsampling keeps the base frames at their indices, the forms of one image give the same frames.
"""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_clip_text_models, tiny_vae
from diffusers import DDIMScheduler, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from diffusers_video import AutoencoderKLVideo, FlowTemporalUpsampler, UNet3DModel, VideoGenPipeline
from diffusers_video.data.quality import infer_video_settings
from diffusers_video.pipelines.videogen.components import reference_guidance

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT_DIM = 16
PROMPT = "a red circle"


def _perturb(model, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def tiny_unet(in_channels=8, out_channels=4, text=True, seed=0, **extra):
    torch.manual_seed(seed)
    config = dict(
        sample_size=4, in_channels=in_channels, out_channels=out_channels, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D" if text else "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D" if text else "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn" if text else None, layers_per_block=1, attention_head_dim=2,
        cross_attention_dim=TEXT_DIM, norm_num_groups=4, temporal_attention_head_dim=4,
    )  # fmt: skip
    config.update(extra)
    return _perturb(UNet3DModel(**config), seed + 1)


def tiny_image_unet(seed=30):
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=4, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1, attention_head_dim=2, cross_attention_dim=TEXT_DIM, norm_num_groups=4,
    )  # fmt: skip
    return _perturb(unet, seed + 1)


def make_pipe(image=True, super_resolution=True, flow=True, vae=None):
    tokenizer, text_encoder = tiny_clip_text_models(TEXT_DIM, 16)
    pipe = VideoGenPipeline(
        vae=vae or tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=tiny_unet(),
        scheduler=DDIMScheduler(),
        image_unet=tiny_image_unet() if image else None,
        super_resolution_unet=tiny_unet(8, 4, text=False, seed=20, temporal_attention=None,
                                        scalar_conditions=("noise_aug_level",)) if super_resolution else None,
        flow_upsampler=_perturb(FlowTemporalUpsampler(4, block_out_channels=(8, 16), refine_channels=8), 40, 0.1)
        if flow else None,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


def run(pipe, seed=0, **kwargs):
    arguments = dict(prompt=PROMPT, num_frames=3, num_inference_steps=2, guidance_scale=4.0, output_type="latent")
    arguments["generator"] = torch.Generator().manual_seed(seed)
    arguments.update(kwargs)
    return pipe(**arguments).frames


def _inputs_of(module):
    records = []
    handle = module.register_forward_pre_hook(lambda m, args, kw: records.append((args, kw)), with_kwargs=True)
    return records, handle


def _image_uint8(seed=0, size=8, batch=1):
    return np.random.default_rng(seed).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)


def test_two_condition_guidance_is_text_guidance_at_unit_reference_weight_and_joint_guidance_at_equal_weights():
    g = torch.Generator().manual_seed(0)
    uncond, negative, full = (torch.randn(2, 4, 3, 4, 4, generator=g) for _ in range(3))
    torch.testing.assert_close(reference_guidance(None, negative, full, 5.0, 1.0), negative + 5.0 * (full - negative))
    assert reference_guidance(None, None, full, 1.0, 1.0) is full
    joint = reference_guidance(uncond, negative, full, 3.0, 3.0)  # both weights s: CFG of (ref, text) against (0, 0)
    torch.testing.assert_close(joint, uncond + 3.0 * (full - uncond), rtol=0, atol=1e-5)
    only_reference = reference_guidance(uncond, negative, full, 1.0, 2.5)
    torch.testing.assert_close(only_reference, uncond + 2.5 * (negative - uncond) + (full - negative))


def test_each_stage_makes_its_frames_and_sizes(pipe):
    assert run(pipe, super_resolution=False, temporal_upsampling=1).shape == (1, 4, 3, 4, 4)
    assert run(pipe, super_resolution=False).shape == (1, 4, 5, 4, 4)  # one x2 round by default: (3 - 1) * 2 + 1
    assert run(pipe, temporal_upsampling=8).shape == (1, 4, 17, 8, 8)  # SR x2 on the latents
    frames = run(pipe, output_type="np", num_videos_per_prompt=2, temporal_upsampling=4)
    assert frames.shape == (2, 9, 16, 16, 3) and 0 <= frames.min() and frames.max() <= 1  # 8x8 latents, VAE 2x


def test_the_default_size_is_the_output_of_the_cascade_and_the_benchmarks_ask_for_it(pipe):
    # sample_size 4 latents, VAE 2x, SR 2x: a call without a size makes 16x16 from 8 base frames, and `bench quality`
    # (infer_video_settings) asks for that, not for the base size (which would run the base stage at half its size)
    assert pipe.default_size() == (8, 16, 16)
    assert infer_video_settings(pipe) == {"num_frames": 8, "height": 16, "width": 16}
    assert run(pipe, num_frames=None, temporal_upsampling=1, output_type="np").shape == (1, 8, 16, 16, 3)
    base_only = make_pipe(super_resolution=False, flow=False)
    assert infer_video_settings(base_only) == {"num_frames": 8, "height": 8, "width": 8}
    assert infer_video_settings(make_pipe(image=False)) == {"num_frames": None, "height": None, "width": None}


def test_temporal_upsampling_keeps_the_frames_of_the_cascade_at_their_indices(pipe):
    base = run(pipe, temporal_upsampling=1)
    for factor in (2, 4, 8):
        assert torch.equal(run(pipe, temporal_upsampling=factor)[:, :, ::factor], base)


def test_the_reference_latent_is_on_every_frame_of_every_pass_and_dropped_only_in_the_unconditional_one(pipe):
    g = torch.Generator().manual_seed(1)
    reference = torch.randn(2, 4, 4, 4, generator=g)
    records, handle = _inputs_of(pipe.unet)
    try:
        run(pipe, prompt=[PROMPT, "a blue square"], reference_latents=reference, super_resolution=False,
            temporal_upsampling=1)  # fmt: skip
        text_only = len(records)
        run(pipe, prompt=[PROMPT, "a blue square"], reference_latents=reference, super_resolution=False,
            temporal_upsampling=1, reference_guidance_scale=2.0)  # fmt: skip
    finally:
        handle.remove()
    assert text_only == 2 and len(records) == 4  # two steps each
    for index, (args, kwargs) in enumerate(records):
        sample, text = args[0], kwargs["encoder_hidden_states"]
        passes = 2 if index < text_only else 3  # (ref, negative), (ref, prompt) [+ (0, negative) first]
        assert sample.shape == (2 * passes, 8, 3, 4, 4) and text.shape[0] == 2 * passes
        for frame in range(3):
            assert torch.equal(sample[-4:-2, 4:, frame], reference) and torch.equal(sample[-2:, 4:, frame], reference)
        assert torch.equal(text[-4:-2], text[:2] if passes == 2 else text[2:4])  # the negative prompt's embeddings
        assert not torch.equal(text[-4:-2], text[-2:])
        if passes == 3:
            assert not sample[:2, 4:].any()  # the unconditional pass: no reference
        assert torch.equal(sample[:2, :4], sample[-2:, :4])  # every pass sees the same noisy latents


def test_every_form_of_the_reference_image_gives_the_same_video(pipe):
    array = _image_uint8()  # 8-bit values, so that the PIL image holds exactly the tensor's values
    floats = array.astype(np.float32) / 255
    tensor = torch.from_numpy(floats).permute(0, 3, 1, 2).contiguous()  # (1, 3, 8, 8) in [0, 1]
    pil = PIL.Image.fromarray(array[0])
    arguments = dict(super_resolution=False, temporal_upsampling=1)
    expected = run(pipe, reference_image=tensor, **arguments)
    for image in (pil, [pil], floats, floats[0], tensor[0], ImagePipelineOutput(images=[pil]),
                  ImagePipelineOutput(images=floats)):  # fmt: skip
        assert torch.equal(run(pipe, reference_image=image, **arguments), expected)
    # the image reaches the video model as the VAE's latent (posterior mode times the scaling factor)
    with torch.no_grad():
        latents = pipe.vae.encode(tensor * 2 - 1).latent_dist.mode() * pipe.vae.config.scaling_factor
    assert torch.equal(run(pipe, reference_latents=latents, **arguments), expected)
    assert not torch.equal(run(pipe, reference_image=1 - tensor, **arguments), expected)
    # with super-resolution, an image of the output size is area-downsampled to the base size
    big = tensor.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 16x16, each pixel a 2x2 block
    torch.testing.assert_close(run(pipe, reference_image=big), run(pipe, reference_image=tensor), rtol=0, atol=1e-6)


def test_the_image_model_makes_the_reference_from_the_prompt(pipe):
    seen = {}

    def callback(p, i, t, kwargs):
        seen.setdefault(p.stage, []).append(kwargs["latents"].clone())
        if p.stage == "base":
            seen.setdefault("reference_latents", []).append(kwargs["reference_latents"].clone())
        return {}

    run(pipe, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents", "reference_latents"],
        image_num_inference_steps=3)  # fmt: skip
    assert [len(seen[s]) for s in ("reference", "base", "super_resolution")] == [3, 2, 2]
    assert torch.equal(seen["reference_latents"][0], seen["reference"][-1])  # the image stage's final latents
    video = run(pipe, super_resolution=False, temporal_upsampling=1)
    given = run(pipe, super_resolution=False, temporal_upsampling=1, reference_latents=seen["reference"][-1])
    assert not torch.equal(video, given)  # the given reference replaces the image stage (and its noise draw)
    assert not torch.equal(run(pipe, prompt="a blue square"), run(pipe))


def test_super_resolution_reads_the_upsampled_base_latents_and_the_augmentation_level(pipe):
    base_records, base_handle = _inputs_of(pipe.unet)
    records, handle = _inputs_of(pipe.super_resolution_unet)
    seen = []
    try:
        run(pipe, temporal_upsampling=1, noise_aug_level=0.0,
            callback_on_step_end=lambda p, i, t, kw: seen.append((p.stage, kw["latents"].clone())) or {})  # fmt: skip
    finally:
        base_handle.remove(), handle.remove()
    base = [latents for stage, latents in seen if stage == "base"][-1]  # (1, 4, 3, 4, 4)
    sample, kwargs = records[0][0][0], records[0][1]
    assert sample.shape == (1, 8, 3, 8, 8) and kwargs["scalar_conds"] == {"noise_aug_level": 0.0}
    frames = base[0].transpose(0, 1)  # (F, C, h, w)
    upsampled = torch.nn.functional.interpolate(frames, scale_factor=2, mode="bilinear").transpose(0, 1)
    torch.testing.assert_close(sample[0, 4:], upsampled, rtol=0, atol=1e-6)  # level 0: the upsampling itself
    assert kwargs["encoder_hidden_states"] is None and len(base_records) == 2


def test_diffusers_cfg_cutoff_callback_switches_text_guidance_off(pipe):
    from diffusers.callbacks import SDCFGCutoffCallback

    records, handle = _inputs_of(pipe.unet)
    try:
        run(pipe, num_inference_steps=4, reference_latents=torch.zeros(1, 4, 4, 4), super_resolution=False,
            temporal_upsampling=1, callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=0.5))  # fmt: skip
    finally:
        handle.remove()
    # diffusers sets the weight in the callback of step int(4 * 0.5) = 2: steps 0-2 guided, step 3 conditional alone
    assert [args[0].shape[0] for args, _ in records] == [2, 2, 2, 1]


def test_a_seed_gives_the_same_video_and_one_generator_per_video_gives_each_its_own(pipe):
    first, again = run(pipe, output_type="np"), run(pipe, output_type="np")
    assert np.array_equal(first, again) and not torch.equal(run(pipe, seed=0), run(pipe, seed=1))
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    both = pipe(prompt=[PROMPT, PROMPT], num_frames=3, num_inference_steps=2, guidance_scale=4.0,
                output_type="latent", generator=generators).frames  # fmt: skip
    alone = run(pipe, seed=1)
    torch.testing.assert_close(both[1:], alone, rtol=0, atol=1e-4 * alone.abs().max().item())  # batch rounding


def test_embeddings_and_decode_chunks_give_the_same_frames(pipe):
    expected = run(pipe, output_type="pt", negative_prompt="a blue square")
    embeds, negative = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, True, "a blue square")
    from_embeds = run(pipe, prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative, output_type="pt")
    assert torch.equal(from_embeds, expected)
    chunked = run(pipe, output_type="pt", negative_prompt="a blue square", decode_chunk_size=2)
    torch.testing.assert_close(chunked, expected, rtol=0, atol=1e-6)


def test_offloading_keeps_the_result_and_a_saved_pipeline_loads_with_its_video_vae(tmp_path, pipe):
    expected = run(pipe)
    offloaded = make_pipe()
    offloaded.enable_model_cpu_offload(device="cpu")
    hooked = {name for name, model in offloaded.components.items() if hasattr(model, "_hf_hook")}
    assert hooked == {"text_encoder", "image_unet", "unet", "super_resolution_unet", "flow_upsampler", "vae"}
    assert torch.equal(run(offloaded), expected)

    saved = make_pipe(image=False, super_resolution=False, vae=AutoencoderKLVideo.from_vae2d(tiny_vae()).eval())
    reference = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    expected = run(saved, output_type="pt", reference_image=reference)
    assert expected.shape == (1, 5, 3, 8, 8)
    saved.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["image_unet"] == [None, None] and index["flow_upsampler"][1] == "FlowTemporalUpsampler"
    loaded = VideoGenPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.vae, AutoencoderKLVideo) and isinstance(loaded.flow_upsampler, FlowTemporalUpsampler)
    torch.testing.assert_close(run(loaded, output_type="pt", reference_image=reference), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"temporal_upsampling": 3}, ValueError, "`temporal_upsampling` must be a power of two up to 8"),
        ({"temporal_upsampling": 16}, ValueError, "but is 16"),
        ({"reference_image": torch.rand(1, 3, 12, 12)}, ValueError, "`reference_image` must be 8x8 or 16x16 pixels"),
        ({"reference_image": torch.rand(3, 3, 8, 8)}, ValueError, "`reference_image` holds 3 images but must hold 1"),
        ({"reference_image": "circle.png"}, TypeError, "`reference_image` must be a PIL image"),
        ({"reference_image": torch.rand(1, 4, 8, 8)}, ValueError, "must have 3 colour channels"),
        ({"reference_image": torch.rand(1, 3, 8, 8) * 2}, ValueError, "must hold values in [0, 1]"),
        ({"reference_image": np.zeros((8, 8, 3), np.uint8)}, TypeError, "must hold floats in [0, 1]"),
        ({"reference_image": [torch.rand(3, 8, 8), torch.rand(3, 16, 16)]}, ValueError, "must all have one size"),
        (
            {"reference_latents": torch.zeros(1, 4, 2, 2), "height": 16, "width": 16},
            ValueError,
            "`reference_latents` must have shape (1, 4, 4, 4)",
        ),
        ({"reference_latents": torch.zeros(2, 4, 4, 4)}, ValueError, "`reference_latents` has batch size 2 but must"),
        (
            {"reference_latents": torch.zeros(1, 4, 4, 4), "reference_image": torch.rand(1, 3, 8, 8)},
            ValueError,
            "Pass at most one of `reference_image` and `reference_latents`",
        ),
        ({"reference_guidance_scale": -1.0}, ValueError, "`reference_guidance_scale` must be a number >= 0"),
        ({"image_guidance_scale": -2.0}, ValueError, "`image_guidance_scale` must be >= 0"),
        ({"image_num_inference_steps": 0}, ValueError, "`image_num_inference_steps` must be in"),
        ({"height": 12, "width": 16}, ValueError, "`height` and `width` have to be positive multiples of 8"),
        ({"num_frames": 1}, ValueError, "`num_frames` must be at least 2 to upsample in time"),
        ({"noise_aug_level": 1.5}, ValueError, "`noise_aug_level` must lie in [0, 1] but is 1.5"),
        ({"latents": torch.zeros(1, 4, 2, 4, 4)}, ValueError, "`latents` must have shape (1, 4, 3, 4, 4)"),
        ({"super_resolution": "yes"}, TypeError, "`super_resolution` must be True or False"),
        ({"output_type": "gif"}, ValueError, "`output_type` must be one of"),
        ({"prompt": None}, ValueError, "Pass either `prompt` or `prompt_embeds`"),
        ({"generator": [torch.Generator()] * 3}, ValueError, "`generator` is a list of 3 generators"),
    ],
)
def test_bad_input_is_refused_before_any_model_runs(pipe, kwargs, error, message):
    modules = (pipe.text_encoder, pipe.unet, pipe.image_unet, pipe.vae, pipe.flow_upsampler)
    records = [_inputs_of(module) for module in modules]
    try:
        with pytest.raises(error) as raised:
            run(pipe, **kwargs)
    finally:
        for _, handle in records:
            handle.remove()
    assert message in str(raised.value)
    assert not any(calls for calls, _ in records)


def test_components_and_stages_that_do_not_fit_are_refused():
    pipe = make_pipe(image=False, super_resolution=False, flow=False)
    components = {name: getattr(pipe, name) for name in ("vae", "text_encoder", "tokenizer", "scheduler")}
    with pytest.raises(ValueError, match="so it needs in_channels=8 and out_channels=4, but has in_channels=4"):
        VideoGenPipeline(**components, unet=tiny_unet(4, 4))
    with pytest.raises(ValueError, match="`flow_upsampler` has in_channels=3 but the latents have 4 channels"):
        VideoGenPipeline(**components, unet=pipe.unet, flow_upsampler=FlowTemporalUpsampler(3, (8,), 8))
    with pytest.raises(ValueError, match="`super_resolution_unet` reads .* needs in_channels=8 and out_channels=4"):
        VideoGenPipeline(**components, unet=pipe.unet, super_resolution_unet=tiny_unet(12, 4, text=False))
    with pytest.raises(ValueError, match="no `image_unet` to make the reference image from the prompt"):
        run(pipe)
    reference = torch.zeros(1, 4, 4, 4)
    with pytest.raises(ValueError, match="`temporal_upsampling` is 2 but the pipeline has no `flow_upsampler`"):
        run(pipe, reference_latents=reference, temporal_upsampling=2)
    with pytest.raises(ValueError, match="`super_resolution` is True but the pipeline has no"):
        run(pipe, reference_latents=reference, super_resolution=True)
    assert run(pipe, reference_latents=reference).shape == (1, 4, 3, 4, 4)  # no optional stage: the base alone


def test_the_demo_step_generates_the_demo_prompts_from_text_at_the_trained_length_and_scores_them(tmp_path, capsys):
    """`make demo`'s step 8 on a tiny folder: the reference from its image UNet, the clip length the folder was trained
    on (its `training_config.json`), doubled by its flow upsampler; the three demo prompts scored and written; a bad
    `--videogen` folder is refused in one line."""
    from diffusers_video.cli import main as cli_main
    from diffusers_video.commands.demo import DEMO_PROMPTS
    from diffusers_video.commands.demo import _videogen as videogen_demo

    make_pipe(super_resolution=False).save_pretrained(tmp_path / "small")
    (tmp_path / "small" / "training_config.json").write_text(json.dumps({"data": {"num_frames": 3}}))
    videogen_demo(tmp_path, tmp_path / "small", 0)
    out = capsys.readouterr().out
    assert "3 latent frames, x2 by the flow upsampler: 5 frames of 8x8" in out
    assert out.count("scorer sees: ") == len(DEMO_PROMPTS)
    strip = tmp_path / "videogen.gif"
    assert strip.stat().st_size > 200 and (tmp_path / "videogen_a_red_circle_moving_right.gif").is_file()
    assert PIL.Image.open(strip).n_frames == 5
    assert cli_main(["demo", "--output_dir", str(tmp_path), "--videogen", str(tmp_path / "none_here")]) == 1
    assert "none_here' is not a pipeline folder" in capsys.readouterr().err
