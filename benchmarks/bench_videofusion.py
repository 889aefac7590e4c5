"""VideoFusionPipeline at the pipeline level: diffusers' TextToVideoSDPipeline against its conversion, and long videos.

Two parts, each measuring its peers in fresh subprocesses (clean peak memory, no allocator state shared):

- `--part t2v`: a random `TextToVideoSDPipeline` (ModelScope's `UNet3DConditionModel`, a small `AutoencoderKL`, a small
  random CLIP text model) is saved to a temporary folder and converted with
  `conversion_scripts/convert_modelscope_to_videofusion.py`; then `TextToVideoSDPipeline.from_pretrained(source)` and
  `VideoFusionPipeline.from_pretrained(converted)` generate the same video (same prompt, arguments and seed; ours
  decodes `--decode_chunk_size` frames per VAE call). Prints the largest difference of their frames, the median wall
  time of a call (after a warm-up call), the peak memory of a call, and the ratios ours / peer against the targets of
  issue 6 (time <= 0.8x, memory <= 1.0x).
- `--part long`: a demo-scale `VideoFusionPipeline` (`pipelines/shapes_sd`'s image UNet as the base generator, its
  inflation `UNet3DModel.from_unet2d` as the residual generator, its VAE and text encoder) generates a short and a long
  video over frame windows; prints the peak memory and time of each and the ratio long / short against the target of
  issue 6 (128 frames within 1.2x of 16 frames' peak memory).

    python benchmarks/bench_videofusion.py --part t2v --threads 1
    python benchmarks/bench_videofusion.py --part long --threads 1
    python benchmarks/bench_videofusion.py --part t2v --preset tiny   # seconds: what tests/test_bench_videofusion.py runs

Peak memory on CPU is the process's peak resident set during the call (VmHWM, reset just before it) minus the resident
set before it, with `MALLOC_MMAP_THRESHOLD_` fixed so that the resident set follows live memory; on CUDA it is
`torch.cuda.max_memory_allocated` minus the memory allocated before it (see `benchmarks/_measure.py`), taken on a
worker's first call (whose frames are the ones compared); times are medians of `--repeats` calls after a warm-up call.
On a CPU shared with other jobs, `--threads 1` compares the computation rather than thread scheduling. `--steps`
overrides the preset's denoising steps of both parts: the time of a call is nearly proportional to them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

from _measure import (  # benchmarks/ is on sys.path when this runs as a script
    compare_in_workers,
    measure_pipeline_call,
    ratio_line,
    run_worker,
)

from diffusers_video.testing_utils import tiny_clip_text_models

ROOT = Path(__file__).resolve().parents[1]
CONVERTER = ROOT / "conversion_scripts" / "convert_modelscope_to_videofusion.py"
SHAPES_SD = ROOT / "pipelines" / "shapes_sd"
PROMPT = "a red circle moving right"

PRESETS = {
    # Small but not trivial: a latent video UNet of 4 blocks, 16 frames of 256x256 pixels (32x32 latents).
    "small": dict(
        t2v=dict(
            block_out_channels=(64, 128, 256, 256), layers_per_block=2, attention_head_dim=32, text_dim=128,
            vae_channels=(16, 32, 64, 64), frames=16, size=256, steps=10, guidance=9.0,
        ),
        long=dict(size=32, short=16, long=128, window_size=16, window_overlap=4, steps=4, guidance=9.0),
    ),
    # Seconds on two CPU cores, for the tests: the same code paths at toy sizes.
    "tiny": dict(
        t2v=dict(
            block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8, text_dim=32,
            vae_channels=(8, 16), frames=3, size=16, steps=2, guidance=9.0,
        ),
        long=dict(size=16, short=4, long=10, window_size=4, window_overlap=1, steps=1, guidance=9.0),
    ),
}  # fmt: skip


def _converter():
    spec = importlib.util.spec_from_file_location("convert_modelscope_to_videofusion", CONVERTER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------------- part "t2v"


def save_text_to_video_pipeline(preset: dict, folder: Path) -> None:
    """A `TextToVideoSDPipeline` with seeded random weights (temporal outputs included), saved to `folder`."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    n = len(preset["block_out_channels"])
    tokenizer, text_encoder = tiny_clip_text_models(preset["text_dim"])
    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        sample_size=preset["size"] // 2 ** (len(preset["vae_channels"]) - 1),
        down_block_types=("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1),
        block_out_channels=preset["block_out_channels"],
        layers_per_block=preset["layers_per_block"],
        cross_attention_dim=preset["text_dim"],
        attention_head_dim=preset["attention_head_dim"],
        norm_num_groups=min(32, preset["block_out_channels"][0] // 4),
    )
    with torch.no_grad():  # the zero-initialised temporal outputs too, so that every layer counts
        for name, param in unet.named_parameters():
            if ".conv4." in name:
                param.normal_(0, 0.02)
    m = len(preset["vae_channels"])
    vae = AutoencoderKL(
        block_out_channels=preset["vae_channels"], down_block_types=("DownEncoderBlock2D",) * m,
        up_block_types=("UpDecoderBlock2D",) * m, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        sample_size=preset["size"],
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        steps_offset=1,
    )  # fmt: skip
    TextToVideoSDPipeline(vae, text_encoder, tokenizer, unet.eval(), scheduler).save_pretrained(folder)


def _t2v_call(kind: str, folder: Path, preset: dict, decode_chunk_size: int | None):
    """The pipeline of `kind` loaded from `folder`, and a function that generates one video with it."""
    import torch
    from diffusers import TextToVideoSDPipeline

    from diffusers_video import VideoFusionPipeline

    cls = VideoFusionPipeline if kind == "ours" else TextToVideoSDPipeline
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    arguments = dict(
        num_frames=preset["frames"], height=preset["size"], width=preset["size"],
        num_inference_steps=preset["steps"], guidance_scale=preset["guidance"], output_type="np",
    )  # fmt: skip
    if kind == "ours":
        arguments["decode_chunk_size"] = decode_chunk_size

    def call():
        return pipe(PROMPT, generator=torch.Generator().manual_seed(0), **arguments).frames

    return call


# ------------------------------------------------------------------------------------------------------ part "long"


def build_long_pipeline():
    """A demo-scale `VideoFusionPipeline` from `pipelines/shapes_sd`: its image UNet as the base generator (it predicts
    v), its inflation as the residual generator, its VAE (4x downsampling) and CLIP text model."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from diffusers_video import DecomposedNoiseScheduler, UNet3DModel, VideoFusionPipeline

    base = UNet2DConditionModel.from_pretrained(SHAPES_SD, subfolder="unet").eval()
    residual = UNet3DModel.from_unet2d(base, temporal_attention_head_dim=16).eval()
    pipe = VideoFusionPipeline(
        vae=AutoencoderKL.from_pretrained(SHAPES_SD, subfolder="vae").eval(),
        text_encoder=CLIPTextModel.from_pretrained(SHAPES_SD, subfolder="text_encoder").eval(),
        tokenizer=CLIPTokenizer.from_pretrained(SHAPES_SD, subfolder="tokenizer"),
        residual_unet=residual,
        scheduler=DecomposedNoiseScheduler(prediction_type="epsilon", base_noise_ratio=0.5),
        base_unet=base,
        base_prediction_type="v_prediction",
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _long_call(num_frames: int, preset: dict):
    import torch

    pipe = build_long_pipeline()
    arguments = dict(
        num_frames=num_frames, height=preset["size"], width=preset["size"], num_inference_steps=preset["steps"],
        guidance_scale=preset["guidance"], window_size=preset["window_size"],
        window_overlap=preset["window_overlap"], decode_chunk_size=preset["window_size"], output_type="np",
    )  # fmt: skip

    def call():
        return pipe(PROMPT, generator=torch.Generator().manual_seed(0), **arguments).frames

    return call


# ------------------------------------------------------------------------------------------------------------ workers


def measure(args: argparse.Namespace) -> dict:
    """Runs in a subprocess: one peer's peak memory over its first call (`--_what memory`, which also saves the frames
    to `--_frames`) or its median time after a warm-up call (`--_what time`)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = _preset(args)
    if args.part == "t2v":
        folder = Path(args._folder) / ("videofusion" if args._worker == "ours" else "text-to-video")
        call = _t2v_call(args._worker, folder, preset, args.decode_chunk_size)
    else:
        call = _long_call(preset[args._worker], preset)
    return measure_pipeline_call(call, args._what, args.device, args.repeats, args._frames)


def _preset(args: argparse.Namespace) -> dict:
    """The settings of `--part` in `--preset`, with `--steps` applied."""
    preset = dict(PRESETS[args.preset][args.part])
    if args.steps is not None:
        preset["steps"] = args.steps
    return preset


def run_t2v(args: argparse.Namespace, argv: list[str]) -> dict:
    """Build, save and convert the peer, then measure both pipelines in their own workers and print the comparison."""
    import numpy as np

    preset = _preset(args)
    with tempfile.TemporaryDirectory() as tmp:
        save_text_to_video_pipeline(preset, Path(tmp) / "text-to-video")
        converter = _converter()
        source, target = str(Path(tmp) / "text-to-video"), str(Path(tmp) / "videofusion")
        if converter.main(["--checkpoint", source, "--output_dir", target]) != 0:
            raise RuntimeError("the conversion failed (its message is above)")
        results = compare_in_workers(__file__, [*argv, "--_folder", tmp], tmp, args.rounds)

    frames = {kind: results[kind].pop("frames") for kind in ("peer", "ours")}
    max_diff = float(np.abs(frames["ours"] - frames["peer"]).max())
    latent = preset["size"] // 2 ** (len(preset["vae_channels"]) - 1)
    print(
        f"part=t2v preset={args.preset} device={args.device} threads={args.threads or 'default'} "
        f"frames={preset['frames']} pixels={preset['size']}x{preset['size']} latents={latent}x{latent} "
        f"unet={preset['block_out_channels']} layers={preset['layers_per_block']} "
        f"head_dim={preset['attention_head_dim']} text_dim={preset['text_dim']} vae={preset['vae_channels']} "
        f"steps={preset['steps']} guidance={preset['guidance']} seed=0 repeats={args.repeats} rounds={args.rounds}"
    )
    print(
        "settings: peer TextToVideoSDPipeline (decodes all frames at once); ours VideoFusionPipeline "
        f"(decode_chunk_size={args.decode_chunk_size}, one window: window_size = max_frames of the converted UNet)"
    )
    print(f"frames {tuple(frames['peer'].shape)}; max |ours - peer| over the frames: {max_diff:.2e}")
    print(f"{'pipeline':<48}{'median call (s)':>16}{'peak (MiB)':>12}")
    names = {"peer": "TextToVideoSDPipeline (diffusers)", "ours": "VideoFusionPipeline (converted)"}
    for kind in ("peer", "ours"):
        print(f"{names[kind]:<48}{results[kind]['seconds']:>16.3f}{results[kind]['peak_mb']:>12.1f}")
    time_ratio = results["ours"]["seconds"] / results["peer"]["seconds"]
    memory_ratio = results["ours"]["peak_mb"] / results["peer"]["peak_mb"]
    print(ratio_line("ours/peer time", time_ratio, 0.8))
    print(ratio_line("ours/peer peak memory", memory_ratio, 1.0))
    return {"results": results, "max_abs_diff": max_diff, "time_ratio": time_ratio, "memory_ratio": memory_ratio}


def run_long(args: argparse.Namespace, argv: list[str]) -> dict:
    """Measure the short and the long video in their own workers and print the comparison."""
    preset = _preset(args)
    results = {kind: run_worker(__file__, kind, "memory", argv) for kind in ("short", "long")}
    for _ in range(args.rounds):
        for kind in ("short", "long"):
            seconds = run_worker(__file__, kind, "time", argv)["seconds"]
            results[kind]["seconds"] = min(results[kind].get("seconds", float("inf")), seconds)
    print(
        f"part=long preset={args.preset} device={args.device} threads={args.threads or 'default'} "
        f"pixels={preset['size']}x{preset['size']} (VAE 4x: latents {preset['size'] // 4}x{preset['size'] // 4}) "
        f"window_size={preset['window_size']} window_overlap={preset['window_overlap']} "
        f"decode_chunk_size={preset['window_size']} steps={preset['steps']} guidance={preset['guidance']} "
        f"repeats={args.repeats} rounds={args.rounds}"
    )
    print(
        "pipeline: VideoFusionPipeline(base_unet=pipelines/shapes_sd unet (v_prediction), residual_unet="
        "UNet3DModel.from_unet2d(base), DecomposedNoiseScheduler(base_noise_ratio=0.5))"
    )
    print(f"{'video':<24}{'median call (s)':>16}{'peak (MiB)':>12}")
    for kind in ("short", "long"):
        label = f"{preset[kind]} frames"
        print(f"{label:<24}{results[kind]['seconds']:>16.3f}{results[kind]['peak_mb']:>12.1f}")
    memory_ratio = results["long"]["peak_mb"] / results["short"]["peak_mb"]
    time_ratio = results["long"]["seconds"] / results["short"]["seconds"]
    print(ratio_line(f"{preset['long']}/{preset['short']} frames peak memory", memory_ratio, 1.2))
    print(
        f"ratio {preset['long']}/{preset['short']} frames time: {time_ratio:.2f}x "
        f"(for {preset['long'] / preset['short']:.1f}x the frames)"
    )
    return {"results": results, "memory_ratio": memory_ratio, "time_ratio": time_ratio}


def main(argv: list[str] | None = None) -> dict | None:
    """Run one part of the benchmark (or, with `--_worker`, one measurement of it); returns the part's results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("t2v", "long"), default="t2v")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--device", default="cpu", help="only the CPU is measured so far")
    parser.add_argument("--decode_chunk_size", type=int, default=4, help="frames per VAE call of ours (part t2v)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per worker, after a warm-up call")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the timing workers")
    parser.add_argument("--threads", type=int, help="torch threads of the workers (default: torch's default)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_what", help=argparse.SUPPRESS)
    parser.add_argument("--_folder", help=argparse.SUPPRESS)
    parser.add_argument("--_frames", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.device != "cpu":
        parser.error(f"`--device` must be cpu for now but is {args.device!r}.")

    if args._worker:
        print(json.dumps(measure(args)))
        return None
    report = (run_t2v if args.part == "t2v" else run_long)(args, argv)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
