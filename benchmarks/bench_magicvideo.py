"""MagicVideo's claims in miniature (issue 26): what needs no training, and commands for trained folders.

No training (one command; `--parts` picks some):

- `flops`: FLOPs of one forward pass of MagicVideo's keyframe UNet (`UNet3DModel` with per-convolution frame adaptors,
  directed temporal attention in the parallel layout, no temporal convolutions) at Stable Diffusion 2.1's widths, in
  the latent space (32x32x4 latents of 256x256 frames, 16 frames) against the same UNet in pixel space (256x256x3,
  16 frames): the paper's "~64x fewer computations than VDM". Counted by `torch.utils.flop_counter.FlopCounterMode`
  on the meta device (shapes only, so the full widths count in seconds; on the meta device attention runs as plain
  matrix products, which the counter counts, while on a CPU its fused kernel goes uncounted). The counter counts
  matrix products, convolutions and attention at 2 FLOPs per multiply-accumulate; element-wise operations (norms,
  activations, the adaptors' scale and shift) are not in it. The ratio is printed in total and per kind of operation,
  and per generated video (`--steps` UNet passes, plus one decode of the 16 frames by SD's VAE in the latent case).
- `adaptor`: MagicVideo's frame adaptor (`x_f * (1 + S_f) + B_f`, per frame and channel, after a convolution) against
  a temporal convolution (`Conv3d` with kernel `(k, 1, 1)` over frames, as `TemporalConv`): parameters and FLOPs of
  one layer at each of SD 2.1's widths at the resolution it runs at, and over the whole UNet (adaptors after every
  resnet convolution against temporal convolutions after every resnet). Adaptor FLOPs are 2 per element (a multiply
  and an add, counted by hooks); convolution FLOPs by the counter.
- `speed`: seconds per video and UNet passes of generating `--speed-frames` frames directly with the keyframe UNet against
  `--speed-keyframes` keyframes plus interpolation (`--factors`), tiny random models (`--speed-widths`), both timed in the
  same run (median of `--repeats`), the ratio printed. UNet passes are the calls of each UNet and the frames they
  process (videos in the batch, classifier-free guidance included, times frames).

    python benchmarks/bench_magicvideo.py                                # the three parts (docs/magicvideo.md)
    python benchmarks/bench_magicvideo.py --parts flops --size 256 --frames 16 --steps 50

Trained comparisons (each needs folders trained with the recipes of `pipelines/magicvideo/`; none is committed yet),
scored by `data.quality.evaluate_pipeline` on held-out captions of the moving-shapes world (95% intervals):

    # directed vs bidirectional temporal attention: two keyframe folders trained with the same budget
    python benchmarks/bench_magicvideo.py directed --directed runs/kf_directed/final --bidirectional runs/kf_bi/final
    # VideoVAE vs the image decoder: the same latents decoded by both; background flicker (the paper's dithering)
    python benchmarks/bench_magicvideo.py decoder --keyframes runs/magicvideo_keyframes/final --video-vae DIR
    # keyframes + interpolation vs every frame by the keyframe model: quality and seconds per video
    python benchmarks/bench_magicvideo.py interpolation --keyframes runs/magicvideo_keyframes/final \\
        --interpolation runs/magicvideo_interpolation/final
    # pre-training on CLIP image embeddings vs none, at the same caption budget
    python benchmarks/bench_magicvideo.py pretraining --pretrained DIR --baseline DIR
    # frame adaptors vs temporal convolutions: two keyframe folders, the same budget (the quality half of `adaptor`)
    python benchmarks/bench_magicvideo.py adaptors --adaptors DIR --temporal-convs DIR
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler
from torch.utils.flop_counter import FlopCounterMode

from diffusers_video import AutoencoderKLVideo, MagicVideoPipeline, UNet3DModel
from diffusers_video.data.quality import evaluate_pipeline
from diffusers_video.models.frame_adaptors import FrameAdaptor
from diffusers_video.pipelines.magicvideo.inputs import DEFAULT_NUM_KEYFRAMES
from diffusers_video.testing_utils import tiny_clip_text_models

PARTS = ("flops", "adaptor", "speed")
# The comparisons of two keyframe folders: command -> the options that name them.
TRAINED_PAIRS = {
    "directed": ("directed", "bidirectional"),
    "adaptors": ("adaptors", "temporal_convs"),
    "pretraining": ("pretrained", "baseline"),
}
TRAINED = (*TRAINED_PAIRS, "decoder", "interpolation")

# Stable Diffusion 2.1's UNet (865M parameters) and VAE; MagicVideo's temporal options.
SD21_UNET = dict(
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024, use_linear_projection=True, upcast_attention=True,
)  # fmt: skip
SD21_VAE = dict(
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
)  # fmt: skip
# A toy UNet and VAE of the same kinds (2x VAE), for a quick run of `flops` and `adaptor` (`--preset tiny`).
TINY_UNET = dict(
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8, cross_attention_dim=32, norm_num_groups=8,
    temporal_attention_head_dim=8,
)  # fmt: skip
TINY_VAE = dict(
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
)  # fmt: skip
PRESETS = {"sd21": (SD21_UNET, SD21_VAE), "tiny": (TINY_UNET, TINY_VAE)}
MAGICVIDEO = dict(
    frame_adaptor="conv", temporal_conv=False, temporal_attention="directed", temporal_layout="parallel",
    max_frames=32,
)  # fmt: skip
TEXT_TOKENS = 77


# ------------------------------------------------------------------------------------------------------ part "flops"


def _by_kind(counter: FlopCounterMode) -> dict[str, int]:
    """The counter's global FLOPs by kind: convolutions, linear layers (mm, addmm), attention (bmm, baddbmm, sdpa)."""
    kinds = {"convolution": 0, "linear": 0, "attention": 0}
    for op, flops in counter.get_flop_counts()["Global"].items():
        name = str(op).removeprefix("aten.").split(".")[0]
        kind = "convolution" if "convolution" in name else "linear" if name in ("mm", "addmm") else "attention"
        kinds[kind] += flops
    return kinds


def unet_flops(config: dict, channels: int, frames: int, size: int, device: str = "meta") -> dict:
    """FLOPs of one forward pass of `UNet3DModel(in_channels=out_channels=channels, **config)` on one video of
    `frames` frames at `size` x `size` with `TEXT_TOKENS` text tokens: `{"total", "convolution", "linear",
    "attention", "parameters"}`. On the meta device nothing is computed."""
    with torch.device(device):
        model = UNet3DModel(in_channels=channels, out_channels=channels, sample_size=size, **config).eval()
        sample = torch.randn(1, channels, frames, size, size)  # (B, C, F, H, W)
        text = torch.randn(1, TEXT_TOKENS, config["cross_attention_dim"])
        timestep = torch.tensor([500])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(sample, timestep, text)
    return {"total": counter.get_total_flops(), **_by_kind(counter), "parameters": model.num_parameters()}


def vae_decode_flops(config: dict, frames: int, size: int) -> int:
    """FLOPs of decoding `frames` latents of a `size` x `size` video with `AutoencoderKL(**config)` (meta device)."""
    with torch.device("meta"):
        vae = AutoencoderKL(**config).eval()
        factor = 2 ** (len(config["block_out_channels"]) - 1)
        latents = torch.randn(frames, config["latent_channels"], size // factor, size // factor)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        vae.decode(latents)
    return counter.get_total_flops()


def run_flops(args: argparse.Namespace) -> dict:
    unet_config, vae_config = PRESETS[args.preset]
    config = {**unet_config, **MAGICVIDEO}
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)  # 8 for SD's VAE
    latent = unet_flops(config, vae_config["latent_channels"], args.frames, args.size // factor)
    pixel = unet_flops(config, 3, args.frames, args.size)
    decode = vae_decode_flops(vae_config, args.frames, args.size)
    result = {"preset": args.preset, "size": args.size, "frames": args.frames, "steps": args.steps, "device": "meta"}
    result["latent"], result["pixel"], result["vae_decode"] = latent, pixel, decode
    result["ratio"] = {kind: pixel[kind] / latent[kind] for kind in ("total", "convolution", "linear", "attention")}
    per_video_latent = args.steps * latent["total"] + decode
    result["per_video"] = {
        "latent": per_video_latent, "pixel": args.steps * pixel["total"],
        "ratio": args.steps * pixel["total"] / per_video_latent,
    }  # fmt: skip
    return result


# ---------------------------------------------------------------------------------------------------- part "adaptor"


def adaptor_layer(channels: int, frames: int, size: int) -> dict:
    """One frame adaptor after a convolution with `channels` outputs, at `frames` x `size` x `size`: parameters
    (`2 * max_frames * channels`, here `max_frames = frames`) and FLOPs (a multiply and an add per element)."""
    adaptor = FrameAdaptor(channels, max_frames=frames)
    return {"parameters": sum(p.numel() for p in adaptor.parameters()), "flops": 2 * channels * frames * size * size}


def temporal_conv_layer(channels: int, frames: int, size: int, kernel_size: int = 3) -> dict:
    """One temporal convolution `Conv3d(channels, channels, (k, 1, 1))` over `frames` at `size` x `size`: parameters
    and FLOPs as counted on the meta device."""
    with torch.device("meta"):
        conv = torch.nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0))
        x = torch.randn(1, channels, frames, size, size)  # (B, C, F, H, W)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        conv(x)
    return {"parameters": sum(p.numel() for p in conv.parameters()), "flops": counter.get_total_flops()}


def _temporal_totals(config: dict, channels: int, frames: int, size: int) -> dict:
    """Parameters and FLOPs that the adaptors (or temporal convolutions) add to a whole UNet at these sizes."""
    with torch.device("meta"):
        model = UNet3DModel(in_channels=channels, out_channels=channels, sample_size=size, **config).eval()
        sample = torch.randn(1, channels, frames, size, size)
        text = torch.randn(1, TEXT_TOKENS, config["cross_attention_dim"])
    adaptor_elements = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: adaptor_elements.append(out.numel()))
        for m in model.modules()
        if isinstance(m, FrameAdaptor)
    ]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(sample, torch.tensor([500]), text)
    for hook in hooks:
        hook.remove()
    conv3d = sum(
        flops
        for name, ops in counter.get_flop_counts().items()
        if name.split(".")[-1] == "conv" and ".temp_convs." in f".{name}"
        for flops in ops.values()
    )
    adaptor_params = sum(p.numel() for n, p in model.named_parameters() if "frame_adaptors" in n)
    conv_params = sum(p.numel() for n, p in model.named_parameters() if ".temp_convs." in f".{n}" and ".conv." in n)
    return {
        "adaptor_parameters": adaptor_params, "adaptor_flops": 2 * sum(adaptor_elements),
        "temporal_conv_parameters": conv_params, "temporal_conv_flops": conv3d, "unet_flops": counter.get_total_flops(),
    }  # fmt: skip


def run_adaptor(args: argparse.Namespace) -> dict:
    unet_config, vae_config = PRESETS[args.preset]
    latent = args.size // 2 ** (len(vae_config["block_out_channels"]) - 1)
    layers = []
    for level, channels in enumerate(unet_config["block_out_channels"]):
        size = latent // 2**level
        adaptor, conv = adaptor_layer(channels, args.frames, size), temporal_conv_layer(channels, args.frames, size)
        layers.append({
            "channels": channels, "size": size, "adaptor": adaptor, "temporal_conv": conv,
            "parameter_ratio": conv["parameters"] / adaptor["parameters"], "flop_ratio": conv["flops"] / adaptor["flops"],
        })  # fmt: skip
    base, channels = {**unet_config, **MAGICVIDEO, "max_frames": args.frames}, vae_config["latent_channels"]
    adapted = _temporal_totals(base, channels, args.frames, latent)
    convolved = _temporal_totals(
        {**base, "frame_adaptor": False, "temporal_conv": True}, channels, args.frames, latent
    )
    unet = {
        "adaptors": {"parameters": adapted["adaptor_parameters"], "flops": adapted["adaptor_flops"]},
        "temporal_convs": {"parameters": convolved["temporal_conv_parameters"], "flops": convolved["temporal_conv_flops"]},
        "unet_flops_with_adaptors": adapted["unet_flops"], "unet_flops_with_temporal_convs": convolved["unet_flops"],
    }  # fmt: skip
    unet["parameter_ratio"] = unet["temporal_convs"]["parameters"] / unet["adaptors"]["parameters"]
    unet["flop_ratio"] = unet["temporal_convs"]["flops"] / unet["adaptors"]["flops"]
    return {"preset": args.preset, "frames": args.frames, "latent_size": latent, "per_layer": layers, "per_unet": unet}


# ------------------------------------------------------------------------------------------------------ part "speed"


def tiny_pipeline(widths: tuple[int, ...], max_frames: int, seed: int = 0) -> MagicVideoPipeline:
    """A MagicVideo pipeline of tiny random models: keyframe and interpolation UNets of `widths`, 2x VAE."""

    def unet(in_channels: int, **options) -> UNet3DModel:
        torch.manual_seed(seed)
        n = len(widths)
        return UNet3DModel(
            sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=widths,
            down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1), layers_per_block=1,
            attention_head_dim=8, cross_attention_dim=32, norm_num_groups=8, temporal_attention_head_dim=8,
            scalar_conditions=("fps",), max_frames=max_frames, **options,
        )  # fmt: skip

    tokenizer, text_encoder = tiny_clip_text_models(text_dim=32)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
    )  # fmt: skip
    keyframe_options = {key: value for key, value in MAGICVIDEO.items() if key != "max_frames"}
    pipe = MagicVideoPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet(4, **keyframe_options),
        scheduler=DDIMScheduler(), interpolation_unet=unet(9, frame_adaptor="conv", temporal_conv=False),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


class PassCounter:
    """Counts the forward calls of a UNet and the frames they process (batch x frames of each call's sample)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = self.frames = 0
        self.hook = module.register_forward_pre_hook(self._count, with_kwargs=True)  # `.hook.remove()` stops it

    def _count(self, _module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]  # (B, C, F, H, W)
        self.calls += 1
        self.frames += sample.shape[0] * sample.shape[2]

    def take(self) -> dict:
        counts, self.calls, self.frames = {"calls": self.calls, "frames": self.frames}, 0, 0
        return counts


def run_speed(args: argparse.Namespace) -> dict:
    factors = [int(f) for f in args.factors.split(",")]
    pipe = tiny_pipeline(tuple(int(w) for w in args.speed_widths.split(",")), max_frames=max(args.speed_frames, 16))
    counters = {"keyframes": PassCounter(pipe.unet), "interpolation": PassCounter(pipe.interpolation_unet)}
    size = args.speed_size * pipe.vae_scale_factor
    common = dict(height=size, width=size, num_inference_steps=args.speed_steps, guidance_scale=args.guidance_scale)
    ways = {
        "every_frame": dict(num_keyframes=args.speed_frames, stages=["keyframes"]),
        "keyframes_interpolation": dict(
            num_keyframes=args.speed_keyframes,
            interpolation_factors=factors,
            stages=["keyframes", "interpolation"],
            interpolation_num_inference_steps=args.interpolation_steps,
        ),
    }
    result = {
        "frames": args.speed_frames, "keyframes": args.speed_keyframes, "factors": factors, "steps": args.speed_steps,
        "latent_size": args.speed_size, "widths": args.speed_widths, "repeats": args.repeats,
        "interpolation_steps": args.interpolation_steps,
    }  # fmt: skip
    prompt = "a red circle moving right"
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for name, options in ways.items():  # a warm-up call of each, whose UNet passes are counted
        frames = pipe(prompt, **common, **options, generator=torch.Generator().manual_seed(0)).frames
        if frames.shape[1] != args.speed_frames:
            raise ValueError(f"`{name}` made {frames.shape[1]} frames, not `--speed-frames` {args.speed_frames}.")
        result[name] = {"unet_passes": {stage: counter.take() for stage, counter in counters.items()}}
    for counter in counters.values():
        counter.hook.remove()
    for _ in range(args.repeats):  # the two ways take turns, so that both see the same load of a shared machine
        for name, options in ways.items():
            start = time.perf_counter()
            pipe(prompt, **common, **options, generator=torch.Generator().manual_seed(0))
            seconds[name].append(time.perf_counter() - start)
    for name in ways:
        result[name]["seconds_per_video"] = statistics.median(seconds[name])
    result["time_ratio"] = (
        result["every_frame"]["seconds_per_video"] / result["keyframes_interpolation"]["seconds_per_video"]
    )
    frames = {name: sum(p["frames"] for p in result[name]["unet_passes"].values()) for name in ways}
    result["frame_pass_ratio"] = frames["every_frame"] / frames["keyframes_interpolation"]
    return result


# ------------------------------------------------------------------------------------------- trained comparisons


def _load(folder: str, device: str, **components) -> MagicVideoPipeline:
    pipe = MagicVideoPipeline.from_pretrained(folder, **components).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unet(folder: str) -> UNet3DModel:
    folder = Path(folder)
    return UNet3DModel.from_pretrained(folder / "unet" if (folder / "unet").is_dir() else folder)


def _summary(evaluation: dict) -> dict:
    """What the comparisons print of an `evaluate_pipeline` result: accuracies and measures with 95% intervals."""
    scores = evaluation["scores"]
    keys = ("all_correct", "direction", "temporal_consistency", "background_flicker")
    sizes = {key: evaluation[key] for key in ("num_frames", "height", "width")}
    return {**{key: scores[key] for key in keys}, "fsd": evaluation["fsd"],
            "seconds_per_video": evaluation["seconds_per_video"], **sizes}  # fmt: skip


def run_trained(args: argparse.Namespace) -> dict:
    """The comparison `args.command` of trained folders, each side scored by `evaluate_pipeline`."""
    device = args.device
    if args.command == "interpolation" and args.num_frames is None:
        args.num_frames = 17
    # The keyframe stage alone (a folder may be a whole cascade, as the committed demo is), at the keyframe size;
    # the interpolation comparison adds its stage below.
    evaluate = dict(
        num_samples=args.num_samples, num_inference_steps=args.steps, seed=args.seed, progress=False,
        call_kwargs={"guidance_scale": args.guidance_scale, "stages": ["keyframes"]},
    )  # fmt: skip
    sides = {}
    if args.command in TRAINED_PAIRS:
        sides = {name: _load(getattr(args, name), device) for name in TRAINED_PAIRS[args.command]}
    elif args.command == "decoder":
        video_vae = AutoencoderKLVideo.from_pretrained(args.video_vae)
        sides = {  # the same latents (the same seeds), two decoders
            "image_decoder": _load(args.keyframes, device),
            "video_vae": _load(args.keyframes, device, vae=video_vae),
        }
    elif args.command == "interpolation":
        pipe = _load(args.keyframes, device, interpolation_unet=_unet(args.interpolation))
        factors = [int(f) for f in args.factors.split(",")]
        keyframes = (args.num_frames - 1) // math.prod(factors) + 1
        runs = {
            "every_frame": {"num_keyframes": args.num_frames, "stages": ["keyframes"]},
            "keyframes_interpolation": {
                "stages": ["keyframes", "interpolation"],
                "num_keyframes": keyframes,
                "interpolation_factors": factors,
                "interpolation_num_inference_steps": args.interpolation_steps,
            },
        }
        result = {"command": args.command, "num_frames": args.num_frames, "keyframes": keyframes, "factors": factors}
        for name, extra in runs.items():
            kwargs = {**evaluate, **_keyframe_size(pipe, args.num_frames)}
            kwargs["call_kwargs"] = {**evaluate["call_kwargs"], **extra}
            result[name] = _summary(evaluate_pipeline(pipe, **kwargs))
        return result
    result = {"command": args.command, "num_samples": args.num_samples, "steps": args.steps}
    for name, pipe in sides.items():
        result[name] = _summary(evaluate_pipeline(pipe, **evaluate, **_keyframe_size(pipe, args.num_frames)))
    return result


def _keyframe_size(pipe: MagicVideoPipeline, num_frames: int | None) -> dict:
    """The size of the keyframe stage (not the size a cascade folder's last stage makes, which `evaluate_pipeline`
    would infer), and its default frame count."""
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return {"height": size, "width": size, "num_frames": num_frames or DEFAULT_NUM_KEYFRAMES}


# ----------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="untrained", choices=("untrained", *TRAINED))
    parser.add_argument("--parts", default=",".join(PARTS), help="untrained parts, of " + ", ".join(PARTS))
    parser.add_argument("--preset", choices=sorted(PRESETS), default="sd21", help="flops, adaptor: the widths")
    parser.add_argument("--size", type=int, default=256, help="flops, adaptor: frame size in pixels")
    parser.add_argument("--frames", type=int, default=16, help="flops, adaptor: frames")
    parser.add_argument("--steps", type=int, default=50, help="flops: UNet passes per video; trained: sampling steps")
    parser.add_argument("--speed-frames", type=int, default=17)
    parser.add_argument("--speed-keyframes", type=int, default=5)
    parser.add_argument("--factors", default="4", help="interpolation factors per round, comma-separated")
    parser.add_argument("--speed-steps", type=int, default=10)
    parser.add_argument("--speed-size", type=int, default=16, help="speed: latent size")
    parser.add_argument("--speed-widths", default="32,64", help="speed: the tiny UNets' block widths")
    parser.add_argument("--interpolation-steps", type=int, default=None, help="default: those of the keyframes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guidance-scale", type=float, default=9.0)
    folders = [name for pair in TRAINED_PAIRS.values() for name in pair] + ["keyframes", "interpolation", "video_vae"]
    for name in folders:
        parser.add_argument(f"--{name.replace('_', '-')}", default=None, help="a trained folder")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument(
        "--num-frames",
        type=int,
        default=None,
        help="trained: frames per video (default: the pipeline's; 17 for interpolation)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts.split(",")) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {list(PARTS)}")
    needs = {
        **TRAINED_PAIRS,
        "decoder": ("keyframes", "video_vae"), "interpolation": ("keyframes", "interpolation"),
    }.get(args.command, ())  # fmt: skip
    missing = [f"--{name.replace('_', '-')}" for name in needs if getattr(args, name) is None]
    if missing:
        parser.error(f"`{args.command}` compares trained folders: give {' and '.join(missing)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; prints one JSON object and returns it."""
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.command != "untrained":
        result = run_trained(args)
    else:
        parts, result = args.parts.split(","), {}
        for name, run in (("flops", run_flops), ("adaptor", run_adaptor), ("speed", run_speed)):
            if name in parts:
                result[name] = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
