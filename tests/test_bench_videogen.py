"""`benchmarks/bench_videogen.py` at toy size: the rows that must agree agree exactly, the floors are what they must be.

- upsampling: an untrained upsampler is linear blending (its row equals blending's) and, given the true flows, the
  average of the exact warps; repetition and blending use zero flow (the same end-point error); the true flows have
  none; the true middle latents have no latent error and an infinite PSNR against their own decoding; a trained-like
  upsampler (perturbed) read from a run's final folder differs from blending; x4 rounds by hand.
- decoder: the same VAE on both sides gives identical figures, and the identity inflation of the image VAE
  (`AutoencoderKLVideo.from_vae2d`) the image decoder's figures.
- reference: a tiny random `VideoGenPipeline` sampled with its text-made reference and with the zero reference: every
  row scores every video, the rows differ; the two-folder route on the same folder gives the same rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import load_script, tiny_clip_text_models, tiny_vae

ROOT = Path(__file__).resolve().parents[1]
bench = load_script(ROOT / "benchmarks" / "bench_videogen.py")

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["--num-clips", "3", "--clip-frames", "5", "--threads", "1"]
ZERO_FLOW = (bench.REPETITION, bench.BLENDING)


def _perturb(model, seed, scale):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    return model.eval()


def _without_time(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "seconds_per_video"}


# ------------------------------------------------------------------------------------------------- upsampling


def test_an_untrained_upsampler_is_linear_blending_and_the_floors_hold(tmp_path, capsys):
    out = tmp_path / "r.json"
    result = bench.main(["--parts", "upsampling", "--upsampler", "untrained", *SMALL, "--output", str(out)])
    assert set(result) == {"args", "upsampling", "wall_time_s"}
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    part = result["upsampling"]
    rows = part["rows"]
    assert part["latent_size"] == [8, 8] and part["vae_scale_factor"] == 4 and part["made_frames_per_clip"] == 2
    assert rows[bench.FLOW] == rows[bench.BLENDING]  # zero flow, mask 1/2, residual 0: bit for bit
    assert rows[bench.FLOW_TRUE] == rows[bench.WARPS]  # the same with the true flows: the two exact warps averaged
    assert rows[bench.FLOW] != rows[bench.WARPS]

    for name in ZERO_FLOW:  # no motion: the zero-flow floor, which is not zero on moving shapes
        assert rows[name]["epe_latent_moving"] == rows[bench.BLENDING]["epe_latent_moving"]
        assert rows[name]["epe_latent_moving"]["mean"] > rows[name]["epe_latent"]["mean"] > 0
    for name in (bench.FLOW_TRUE, bench.WARPS):
        assert rows[name]["epe_latent"]["mean"] == rows[name]["epe_latent_moving"]["mean"] == 0
    for name in (*ZERO_FLOW, bench.WARPS):  # image pixels are latent pixels times the VAE's factor
        assert rows[name]["epe_image_moving"]["mean"] == pytest.approx(4 * rows[name]["epe_latent_moving"]["mean"])
    truth = rows[bench.TRUTH]
    assert truth["latent_l1"]["mean"] == 0 and math.isinf(truth["psnr_vs_decoded_truth_db"]["mean"])
    assert "epe_latent" not in truth and 20 < truth["psnr_db"]["mean"] < math.inf  # the VAE's reconstruction
    # blending is closer than repetition, and the true latents closer than any made frame, in pixels too
    assert rows[bench.BLENDING]["latent_l1"]["mean"] < rows[bench.REPETITION]["latent_l1"]["mean"]
    for name in (*ZERO_FLOW, bench.WARPS):
        assert rows[name]["latent_l1"]["mean"] > 0 and rows[name]["psnr_db"]["mean"] < truth["psnr_db"]["mean"]
    for name, row in rows.items():  # every clip read by the scorer, in every row
        assert row["speed"]["n"] == row["direction"]["n"] == 3, name
    assert rows[bench.RENDERED]["all_correct"]["accuracy"] == 1.0

    printed = capsys.readouterr().out
    assert "| linear blending |" in printed and "| true middle frames |" in printed and "| inf |" in printed


def test_a_trained_upsampler_folder_differs_from_blending_and_keeps_exact_flows_exact(tmp_path):
    torch.manual_seed(0)
    model = bench.FlowTemporalUpsampler(4, block_out_channels=(8, 16), refine_channels=8)
    _perturb(model, 1, 0.05).save_pretrained(tmp_path / "final" / "flow_upsampler")  # a training run's final folder
    result = bench.main(["--parts", "upsampling", "--upsampler", str(tmp_path / "final"), *SMALL])
    rows = result["upsampling"]["rows"]
    assert result["upsampling"]["upsampler_config"]["block_out_channels"] == [8, 16]
    assert rows[bench.FLOW]["latent_l1"] != rows[bench.BLENDING]["latent_l1"]
    assert rows[bench.FLOW]["epe_latent"] != rows[bench.BLENDING]["epe_latent"]
    assert rows[bench.FLOW_TRUE]["epe_latent"]["mean"] == 0  # its flows are the true ones, whatever it estimates
    assert rows[bench.FLOW_TRUE]["latent_l1"] != rows[bench.WARPS]["latent_l1"]  # its own mask and residual


def test_rounds_of_repetition_and_blending_by_hand_and_the_end_point_error():
    given = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    flows = [torch.zeros(2, 4, 2, 8, 8), torch.zeros(2, 4, 4, 8, 8)]  # x4: two rounds
    video, used = bench.upsample(bench.REPETITION, given, flows, None)
    assert video.shape == (2, 4, 9, 8, 8) and len(used) == 2
    assert torch.equal(video, given.repeat_interleave(4, dim=2)[:, :, :9])  # frame i is given frame i // 4
    video, _ = bench.upsample(bench.BLENDING, given, flows, None)
    x0, x1 = given[:, :, 0], given[:, :, 1]
    for i, w in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):  # linear interpolation at quarters
        torch.testing.assert_close(video[:, :, i], (1 - w) * x0 + w * x1, rtol=0, atol=1e-6)

    true = torch.zeros(1, 4, 2, 2)
    true[0, :, 0, 0] = torch.tensor([-1.0, 0.0, 1.0, 0.0])  # one moving pixel of four
    estimate = torch.zeros(1, 4, 2, 2)
    estimate[0, :, 0, 0] = torch.tensor([-1.0, 0.0, 4.0, 4.0])  # flow_t0 exact, flow_t1 off by (3, 4): 5
    everywhere, moving = bench.end_point_error(estimate, true)
    assert (everywhere, moving) == (pytest.approx(2.5 / 4), pytest.approx(2.5))
    assert bench.end_point_error(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)) == (0.0, None)


# ---------------------------------------------------------------------------------------------------- decoder


def test_the_same_decoder_on_both_sides_gives_identical_figures(tmp_path):
    image_vae = str(ROOT / "pipelines" / "shapes_sd" / "vae")
    result = bench.main(["--parts", "decoder", "--video-vae", image_vae, *SMALL])["decoder"]
    rows = result["clips"]
    assert rows["image decoder"] == rows["video decoder"]
    assert result["flicker_reduction"] == 0 and result["psnr_gain_db"] == 0
    assert rows["image decoder"]["psnr_db"]["n"] == 3 and rows["image decoder"]["background_flicker"]["mean"] > 0
    assert rows["true clips"]["background_flicker"]["mean"] < rows["image decoder"]["background_flicker"]["mean"]

    inflated = bench.AutoencoderKLVideo.from_vae2d(bench.load_vae(image_vae, "cpu"))  # decodes as the image VAE
    inflated.save_pretrained(tmp_path / "video_vae")
    result = bench.main(["--parts", "decoder", "--video-vae", str(tmp_path / "video_vae"), *SMALL])["decoder"]
    image, video = result["clips"]["image decoder"], result["clips"]["video decoder"]
    for key, tolerance in (("psnr_db", 1e-2), ("background_flicker", 1e-5), ("temporal_error", 1e-5)):
        assert video[key]["mean"] == pytest.approx(image[key]["mean"], abs=tolerance), key


# -------------------------------------------------------------------------------------------------- reference


def tiny_videogen_pipeline():
    """A random `VideoGenPipeline` of 16x16 frames (2x VAE, 8x8 latents) with an image UNet and a flow upsampler."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from diffusers_video import UNet3DModel, VideoGenPipeline

    text_dim = 16
    tokenizer, text_encoder = tiny_clip_text_models(text_dim, 32)
    torch.manual_seed(0)
    unet = UNet3DModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1, attention_head_dim=2, cross_attention_dim=text_dim, norm_num_groups=4,
        temporal_attention_head_dim=4,
    )  # fmt: skip
    image_unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1, attention_head_dim=2, cross_attention_dim=text_dim, norm_num_groups=4,
    )  # fmt: skip
    pipe = VideoGenPipeline(
        vae=tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=_perturb(unet, 1, 0.05),
        scheduler=DDIMScheduler(), image_unet=_perturb(image_unet, 2, 0.05),
        flow_upsampler=bench.FlowTemporalUpsampler(4, block_out_channels=(8, 16), refine_channels=8),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videogen") / "pipeline"
    tiny_videogen_pipeline().save_pretrained(folder)
    return str(folder)


REFERENCE = ["--num-samples", "3", "--num-frames", "3", "--steps", "2", "--num-real", "4", "--batch-size", "2",
             "--guidance-scale", "4"]  # fmt: skip


def test_the_reference_part_scores_both_branches_of_one_pipeline_on_the_same_noise(pipeline_folder, capsys):
    result = bench.main(["--parts", "reference,decoder", "--pipeline", pipeline_folder, *REFERENCE, *SMALL,
                         "--reference-source", "text,first_frame"])  # fmt: skip
    part = result["reference"]
    rows = part["rows"]
    with_text, with_frame = rows["with reference: text"], rows["with reference: first_frame"]
    without = rows["without reference (zero latent)"]
    assert (part["output_frames"], part["height"], part["width"]) == (5, 16, 16)  # 3 base frames, x2 in time
    for row in (with_text, with_frame, without):
        assert row["all_correct"]["n"] == row["temporal_consistency"]["n"] == 3 and row["fsd"] is not None
    assert "mean_abs_difference_to_first_row" not in with_text  # the first row is the reference of the pairing
    assert without["mean_abs_difference_to_first_row"] > 0 and with_frame["mean_abs_difference_to_first_row"] > 0
    assert _without_time(with_text) != _without_time(without)
    assert "first_frame_psnr_db" in with_frame and "first_frame_psnr_db" not in with_text
    assert rows["rendered clips"]["all_correct"]["n"] == 3
    decoded = result["decoder"]["pipeline_latents"]  # the pipeline's latents through both decoders
    assert decoded["reference_source"] == "text"
    assert decoded["rows"]["image decoder"]["all_correct"]["n"] == 3
    printed = capsys.readouterr().out
    assert "| without reference (zero latent) |" in printed and "decoder on 3 videos' latents" in printed

    # the two-folder route on the same folder twice: the same rows as the one-folder route (same captions and noise)
    pair = bench.main(["--parts", "reference", "--with-reference", pipeline_folder, "--without-reference",
                       pipeline_folder, *REFERENCE])["reference"]["rows"]  # fmt: skip
    assert _without_time(pair["--with-reference: text"]) == _without_time(with_text)
    assert _without_time(pair["--without-reference (zero latent)"]) == _without_time(without)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--parts", "reference"], "part `reference` needs --pipeline"),
        (["--parts", "upsampling"], "part `upsampling` needs --upsampler"),
        (["--parts", "decoder,nope"], "unknown parts ['nope']"),
        (["--with-reference", "a"], "give both --with-reference and --without-reference"),
        (["--upsampler", "untrained", "--factor", "4", "--clip-frames", "7"], "must be a multiple of `--factor`"),
        (["--reference-source", "text,image"], "unknown sources ['image']"),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_the_default_parts_are_those_with_inputs():
    assert bench.parse_args([]).parts == ("decoder",)
    assert bench.parse_args(["--upsampler", "untrained"]).parts == ("upsampling", "decoder")
    assert bench.parse_args(["--pipeline", "p", "--upsampler", "u"]).parts == bench.PARTS
