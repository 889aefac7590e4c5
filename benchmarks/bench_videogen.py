"""VideoGen's claims in miniature, in the moving-shapes world (issue 27).

Three parts (`--parts`; by default every part whose inputs are given: `decoder` always, `upsampling` with
`--upsampler`, `reference` with `--pipeline` or `--with-reference`/`--without-reference`). Rates come with 95% Wilson
intervals, means with 95% normal intervals over the clips or videos (`shapes_defects.mean_interval`).

- `reference`: a trained `VideoGenPipeline` (`--pipeline`) sampled with its reference and with the reference zeroed
  (the training's `reference_dropout` value, so both branches are trained), at the same budget: the same held-out
  captions and generator seeds as `data.quality.evaluate_pipeline` (scenes `(seed, 0, i)`, seed `seed + i`), and the
  same base-stage noise in every row (drawn apart, passed as `latents`), so the rows differ only by the reference.
  The reference is made from the caption by the pipeline's text-to-image model ("text", VideoGen's way), and/or is
  the scene's true first frame ("first_frame", the training's reference) (`--reference-source`). Or two folders,
  `--with-reference` sampled with its reference and `--without-reference` with the zero reference. Measures (the
  scorer's, via `data.quality.score_videos`): all-correct, direction and speed accuracy, temporal consistency,
  background flicker, FSD against real clips, the mean |difference| of each row's frames from the first row's
  (paired: same noise), first-frame PSNR against the scene's first frame (rows with the true first frame as
  reference), and the world's own renders of the same captions as the floor.
- `upsampling`: held-out clips (`ShapesWorld(split="heldout")`, scenes `(seed, 27, i)`, `--clip-frames` frames at
  `--size` pixels) encoded by the stand-in's VAE (`--vae`, posterior mode, scaled); the frames at multiples of
  `--factor` are given, every other frame is made in `log2(factor)` x2 rounds by: frame repetition (the previous
  frame), linear blending `(x0 + x1) / 2`, the flow upsampler (`--upsampler DIR`: a `FlowTemporalUpsampler` folder, a
  training run's final folder holding `flow_upsampler/`, or "untrained": the flow recipe's config at init, which is
  exact linear blending), the flow upsampler given the true flows (its mask and residual on exact warps), the average
  of the two exact warps (`backward_warp` with the true flows), and the true middle latents. The true flows are the
  world's exact motion (`training.videogen.true_middle_flows`, at the latent size, for each round's frame spacing).
  Measures: L1 of the made latents against the true ones; PSNR of the made frames decoded by `--vae` against the true
  rendered frames, and against the decoded true latents (infinite for the true latents); the scorer's speed,
  direction and all-correct accuracy and temporal consistency of the whole upsampled videos decoded; and the
  end-point error of the flows against the true motion, the mean over both intermediate flows of the Euclidean
  distance, on the moving pixels (where the true flow is not zero) and on all pixels, in latent pixels and in image
  pixels (times the VAE scale factor). Repetition and blending use no motion: their flow is zero, the floor.
- `decoder`: the same latents (the held-out clips encoded by the shared encoder, `--vae`) decoded by the image
  decoder (`--vae`, frame by frame) and the enhanced video decoder (`--video-vae`, `AutoencoderKLVideo`, whole clips):
  PSNR against the true clips, background flicker (`shapes_defects.background_flicker` of the scorer's foreground:
  the mean absolute frame-to-frame change of the background), the temporal-difference error `mean |diff(x_hat) -
  diff(x)|` (pixels in [0, 1]), the scorer's all-correct accuracy and temporal consistency; the true clips as the
  floor. With `--pipeline`, also a pipeline's latents (the `reference` part's captions, seeds and first reference
  source, `output_type="latent"`) decoded by both: flicker, all-correct accuracy, temporal consistency.

    python benchmarks/bench_videogen.py --parts upsampling,decoder --upsampler untrained --num-clips 64 --threads 1
    python benchmarks/bench_videogen.py --upsampler runs/videogen_flow_upsampler/final --num-clips 64 \\
        --output runs/videogen/bench_upsampling.json
    python benchmarks/bench_videogen.py --parts reference,decoder --pipeline runs/videogen_video/final \\
        --num-samples 64 --steps 25 --reference-source text,first_frame
    python benchmarks/bench_videogen.py --parts reference --with-reference DIR --without-reference DIR
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from _measure import write_result  # benchmarks/ is on sys.path when this runs as a script
from diffusers import AutoencoderKL

from diffusers_video import AutoencoderKLVideo, FlowTemporalUpsampler, VideoGenPipeline
from diffusers_video.data.metrics import psnr, wilson_interval
from diffusers_video.data.quality import heldout_scenes as quality_scenes
from diffusers_video.data.quality import score_videos
from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.data.shapes_defects import mean_interval
from diffusers_video.data.shapes_scorer import ShapesScorer
from diffusers_video.models.flow_upsampler import backward_warp, check_temporal_upsampling
from diffusers_video.pipelines.pipeline_utils import decode_latents
from diffusers_video.pipelines.videogen.inputs import plan_call

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = ROOT / "pipelines" / "shapes_sd"
FLOW_RECIPE = ROOT / "pipelines" / "videogen" / "train_flow_upsampler.json"
PARTS = ("reference", "upsampling", "decoder")
REFERENCE_SOURCES = ("text", "first_frame")
CLIP_STREAM = 27  # second key of the held-out scenes `(seed, 27, i)` of the upsampling and decoder parts

# the rows of the upsampling part, in table order
REPETITION, BLENDING, FLOW, FLOW_TRUE, WARPS, TRUTH, RENDERED = (
    "frame repetition",
    "linear blending",
    "flow upsampler",
    "flow upsampler, true flows",
    "average of the exact warps",
    "true middle frames",
    "rendered clips (no VAE)",
)


# ------------------------------------------------------------------------------------------------------ measures


def accuracy(values) -> dict:
    """A rate with its 95% Wilson interval: `accuracy`, `ci_low`, `ci_high`, `correct`, `n` (`None` values dropped)."""
    kept = [bool(v) for v in values if v is not None]
    low, high = wilson_interval(sum(kept), len(kept))
    rate = sum(kept) / len(kept) if kept else None
    return {"accuracy": rate, "ci_low": low, "ci_high": high, "correct": sum(kept), "n": len(kept)}


def mean_or_infinite(values) -> dict:
    """`mean_interval` of per-clip values, or an infinite mean without interval when a value is infinite (a PSNR of
    identical frames)."""
    kept = [float(v) for v in values if v is not None]
    if any(math.isinf(v) for v in kept):
        return {"mean": float("inf"), "ci_low": None, "ci_high": None, "n": len(kept)}
    return mean_interval(kept)


def scaled(entry: dict, factor: float) -> dict:
    """A `mean_interval` entry in other units (`mean`, `ci_low`, `ci_high` times `factor`)."""
    return {k: (v * factor if k != "n" and v is not None else v) for k, v in entry.items()}


def end_point_error(flows: torch.Tensor, true: torch.Tensor) -> tuple[float, float | None]:
    """End-point errors of intermediate flows `(R, 4, h, w)` (`flow_t0`, `flow_t1`) against the true ones: the mean
    over both flows of the Euclidean distance of `(dx, dy)`, on all pixels and on the moving ones (true flow not zero;
    `None` when nothing moves)."""
    error = ((flows[:, :2] - true[:, :2]).norm(dim=1) + (flows[:, 2:] - true[:, 2:]).norm(dim=1)) / 2  # (R, h, w)
    moving = true.abs().sum(dim=1) > 0
    return float(error.mean()), (float(error[moving].mean()) if moving.any() else None)


# ------------------------------------------------------------------------------------------------------ loading


def load_vae(path: str | Path, device: str) -> AutoencoderKL | AutoencoderKLVideo:
    """The VAE of a folder (`config.json`'s class: `AutoencoderKLVideo` or `AutoencoderKL`), or of its `vae/`."""
    folder = Path(path)
    if not (folder / "config.json").is_file() and (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    name = json.loads((folder / "config.json").read_text()).get("_class_name")
    cls = AutoencoderKLVideo if name == "AutoencoderKLVideo" else AutoencoderKL
    return cls.from_pretrained(folder).to(device).eval()


def load_upsampler(spec: str, in_channels: int, device: str) -> FlowTemporalUpsampler:
    """`--upsampler`: "untrained" (the flow recipe's config at init, seeded as the recipe seeds it: linear blending),
    a `FlowTemporalUpsampler` folder, or a folder holding one as `flow_upsampler/` (a training run's final folder, a
    `VideoGenPipeline` folder)."""
    if spec == "untrained":
        recipe = json.loads(FLOW_RECIPE.read_text())
        settings = recipe.get("videogen", {})
        torch.manual_seed(int(recipe.get("seed", 0)))
        model = FlowTemporalUpsampler(
            in_channels=in_channels,
            block_out_channels=tuple(settings.get("flow_block_out_channels", (32, 64))),
            refine_channels=int(settings.get("flow_refine_channels", 32)),
        )
    else:
        folder = Path(spec)
        if not (folder / "config.json").is_file() and (folder / "flow_upsampler" / "config.json").is_file():
            folder = folder / "flow_upsampler"
        model = FlowTemporalUpsampler.from_pretrained(folder)
    if model.config.in_channels != in_channels:
        raise ValueError(
            f"`--upsampler` {spec!r} has in_channels={model.config.in_channels} but `--vae` has {in_channels} latent "
            "channels."
        )
    return model.to(device).eval()


def load_pipeline(folder: str, device: str) -> VideoGenPipeline:
    pipe = VideoGenPipeline.from_pretrained(folder).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------------------------------------------ clips


def heldout_clips(num_clips: int, num_frames: int, size: int, seed: int):
    """`(scenes, clips (N, F, H, W, 3) in [0, 1])` of held-out scenes `(seed, 27, i)`."""
    world = ShapesWorld(height=size, width=size, num_frames=num_frames, split="heldout")
    scenes = [world.scene((seed, CLIP_STREAM, i)) for i in range(num_clips)]
    return scenes, np.stack([world.render(scene) for scene in scenes])


@torch.no_grad()
def encode(vae, clips: np.ndarray, device: str, batch: int = 64) -> torch.Tensor:
    """Scaled latents `(N, C, F, h, w)` of clips `(N, F, H, W, 3)` in [0, 1], frame by frame: the posterior mode,
    `(z - shift) * scaling_factor`, as the training data's latents (`ShapesDataset.cache_latents`)."""
    n, f = clips.shape[:2]
    pixels = torch.from_numpy(clips).reshape(n * f, *clips.shape[2:]).permute(0, 3, 1, 2) * 2 - 1  # (N F, 3, H, W)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    out = []
    for start in range(0, n * f, batch):
        z = vae.encode(pixels[start : start + batch].to(device)).latent_dist.mode()
        out.append(((z - shift) * vae.config.scaling_factor).float().cpu())
    z = torch.cat(out)
    return z.reshape(n, f, *z.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()


@torch.no_grad()
def decode(vae, latents: torch.Tensor, device: str, batch: int = 8) -> np.ndarray:
    """Videos `(N, F, H, W, 3)` in [0, 1] of latents `(N, C, F, h, w)` (`decode_latents`: an image VAE frame by frame,
    a video VAE as whole clips), `batch` clips per call."""
    videos = []
    for start in range(0, len(latents), batch):
        x = decode_latents(vae, latents[start : start + batch].to(device))  # (b, 3, F, H, W) about [-1, 1]
        videos.append((x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1).cpu().numpy())
    return np.concatenate(videos)


# ---------------------------------------------------------------------------------------------- part "upsampling"


def true_flows(scenes, num_frames: int, height: int, width: int, stride: int) -> torch.Tensor:
    """The world's true intermediate flows `(N, 4, P, h, w)` of the pairs `stride` frames apart, in latent pixels."""
    from diffusers_video.training.videogen import true_middle_flows  # imports the trainers: only when needed

    return torch.stack(
        [true_middle_flows(scene, num_frames, height, width, stride=stride).transpose(0, 1) for scene in scenes]
    )


def _interleave(video: torch.Tensor, middle: torch.Tensor) -> torch.Tensor:
    """`(B, C, F, h, w)` and `(B, C, F - 1, h, w)` -> `(B, C, 2F - 1, h, w)`, made frames at the odd indices."""
    batch, channels, frames, height, width = video.shape
    out = torch.stack([video[:, :, :-1], middle], dim=3).reshape(batch, channels, 2 * frames - 2, height, width)
    return torch.cat([out, video[:, :, -1:]], dim=2)


def _warp(frames: torch.Tensor, flow: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """`backward_warp` of every frame of `(N, C, P, h, w)` with its flow `(N, 2, P, h, w)`."""
    n, c, pairs, h, w = frames.shape
    flat = frames.transpose(1, 2).reshape(n * pairs, c, h, w)
    warped = backward_warp(flat, flow.transpose(1, 2).reshape(n * pairs, 2, h, w), padding_mode)
    return warped.reshape(n, pairs, c, h, w).transpose(1, 2)


@torch.no_grad()
def upsample(method: str, given: torch.Tensor, rounds_flows: list[torch.Tensor], model) -> tuple:
    """`log2(factor)` x2 rounds of one method on the given latents `(N, C, K, h, w)`; `rounds_flows[r]` are the true
    flows `(N, 4, P_r, h, w)` of round `r`. Returns the upsampled latents and the flows each round used `(N, 4,
    P_r, h, w)` (zero for repetition and blending, which use no motion)."""
    video, used = given, []
    for truth in rounds_flows:
        x0, x1 = video[:, :, :-1], video[:, :, 1:]
        if method in (REPETITION, BLENDING):
            middle, flows = (x0 if method == REPETITION else (x0 + x1) / 2), torch.zeros_like(truth)
        elif method in (FLOW, FLOW_TRUE):
            out = model(video, flows=truth if method == FLOW_TRUE else None)
            middle, flows = out.middle, out.flows
        elif method == WARPS:
            mode = model.config.padding_mode if model is not None else "border"
            middle, flows = (_warp(x0, truth[:, :2], mode) + _warp(x1, truth[:, 2:], mode)) / 2, truth
        else:
            raise ValueError(f"unknown method {method!r}")
        video = _interleave(video, middle)
        used.append(flows)
    return video, used


def _scores(scorer: ShapesScorer, videos: np.ndarray, scenes) -> dict:
    scores = [scorer.score(video, scene.caption) for video, scene in zip(videos, scenes)]
    return {
        "speed": accuracy([s.speed_ok for s in scores]),
        "direction": accuracy([s.direction_ok for s in scores]),
        "all_correct": accuracy([s.all_ok for s in scores]),
        "temporal_consistency": mean_interval([s.temporal_consistency for s in scores]),
    }


def run_upsampling(args: argparse.Namespace, vae, scorer: ShapesScorer) -> dict:
    device, factor = args.device, args.factor
    scenes, clips = heldout_clips(args.num_clips, args.clip_frames, args.size, args.seed)
    latents = encode(vae, clips, device)  # (N, C, F, h, w)
    _, channels, frames, height, width = latents.shape
    scale = args.size // height  # the VAE's scale factor
    model = load_upsampler(args.upsampler, channels, device)
    given = latents[:, :, ::factor]
    made = [i for i in range(frames) if i % factor]  # the indices of the made frames
    # round r runs on frames `factor / 2**r` apart of the clip
    rounds = check_temporal_upsampling(factor, "--factor")
    rounds_flows = [true_flows(scenes, frames, height, width, factor >> r).to(device) for r in range(rounds)]
    truth_pixels = clips[:, made]  # (N, M, H, W, 3)
    truth_decoded = decode(vae, latents, device)
    rows: dict[str, dict] = {}
    for method in (REPETITION, BLENDING, FLOW, FLOW_TRUE, WARPS, TRUTH):
        if method == TRUTH:
            video, used = latents, None
        else:
            video, used = upsample(method, given.to(device), rounds_flows, model)
            video = video.cpu()
        decoded = decode(vae, video, device)  # (N, F, H, W, 3)
        row = {
            "latent_l1": mean_interval(
                (video[:, :, made] - latents[:, :, made]).abs().mean(dim=(1, 2, 3, 4)).tolist()
            ),
            "psnr_db": mean_or_infinite([psnr(d[made], t) for d, t in zip(decoded, truth_pixels)]),
            "psnr_vs_decoded_truth_db": mean_or_infinite(
                [psnr(d[made], t[made]) for d, t in zip(decoded, truth_decoded)]
            ),
            **_scores(scorer, decoded, scenes),
        }
        if used is not None:
            errors = [
                end_point_error(torch.cat([f[i].transpose(0, 1) for f in used]).cpu(),
                                torch.cat([t[i].transpose(0, 1) for t in rounds_flows]).cpu())
                for i in range(len(scenes))
            ]  # fmt: skip
            row["epe_latent"] = mean_interval([e[0] for e in errors])
            row["epe_latent_moving"] = mean_interval([e[1] for e in errors])
            row["epe_image"], row["epe_image_moving"] = (
                scaled(row["epe_latent"], scale),
                scaled(row["epe_latent_moving"], scale),
            )
        rows[method] = row
    rows[RENDERED] = _scores(scorer, clips, scenes)
    return {
        "num_clips": args.num_clips, "clip_frames": frames, "size": args.size, "factor": factor,
        "latent_size": [height, width], "vae_scale_factor": scale, "upsampler": args.upsampler,
        "upsampler_config": {k: v for k, v in dict(model.config).items() if not k.startswith("_")},
        "made_frames_per_clip": len(made), "rows": rows,
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------- part "decoder"


def _decoder_row(videos: np.ndarray, scenes, clips: np.ndarray | None, scorer: ShapesScorer) -> dict:
    scores = [scorer.score(video, scene.caption) for video, scene in zip(videos, scenes)]
    row = {
        "background_flicker": mean_interval([s.background_flicker for s in scores]),
        "all_correct": accuracy([s.all_ok for s in scores]),
        "temporal_consistency": mean_interval([s.temporal_consistency for s in scores]),
    }
    if clips is not None:
        row["psnr_db"] = mean_or_infinite([psnr(v, c) for v, c in zip(videos, clips)])
        diffs = [np.abs(np.diff(v, axis=0) - np.diff(c, axis=0)).mean() for v, c in zip(videos, clips)]
        row["temporal_error"] = mean_interval([float(d) for d in diffs])
    return row


def _compare(rows: dict, image: str, video: str) -> dict:
    flicker = [rows[name]["background_flicker"]["mean"] for name in (image, video)]
    out = {"flicker_reduction": 1 - flicker[1] / flicker[0] if flicker[0] else None}
    if "psnr_db" in rows[image]:
        out["psnr_gain_db"] = rows[video]["psnr_db"]["mean"] - rows[image]["psnr_db"]["mean"]
    return out


def run_decoder(args: argparse.Namespace, vae, video_vae, scorer: ShapesScorer, pipelines: dict) -> dict:
    device = args.device
    scenes, clips = heldout_clips(args.num_clips, args.clip_frames, args.size, args.seed)
    latents = encode(vae, clips, device)
    rows = {
        "image decoder": _decoder_row(decode(vae, latents, device), scenes, clips, scorer),
        "video decoder": _decoder_row(decode(video_vae, latents, device), scenes, clips, scorer),
        "true clips": _decoder_row(clips, scenes, None, scorer),
    }
    result = {
        "num_clips": args.num_clips, "clip_frames": args.clip_frames, "size": args.size, "vae": str(args.vae),
        "video_vae": str(args.video_vae), "clips": rows, **_compare(rows, "image decoder", "video decoder"),
    }  # fmt: skip
    if pipelines:
        name, pipe = next(iter(pipelines.items()))
        source = reference_sources(args, pipe)[0]
        latents, scenes, _, _ = generate(pipe, args, source, output_type="latent")
        rows = {
            "image decoder": _decoder_row(decode(vae, latents, device), scenes, None, scorer),
            "video decoder": _decoder_row(decode(video_vae, latents, device), scenes, None, scorer),
        }
        result["pipeline_latents"] = {
            "pipeline": name, "reference_source": source, "num_samples": args.num_samples, "steps": args.steps,
            "rows": rows, **_compare(rows, "image decoder", "video decoder"),
        }  # fmt: skip
    return result


# ----------------------------------------------------------------------------------------------- part "reference"


def call_plan(pipe: VideoGenPipeline, args: argparse.Namespace):
    """The pipeline's plan of the benchmark's calls (sizes, frames); the reference is an image here only so that the
    plan needs no `image_unet` (the base size does not depend on it)."""
    return plan_call(pipe, args.height, args.width, args.num_frames, args.temporal_upsampling, None, True, None)


def reference_sources(args: argparse.Namespace, pipe: VideoGenPipeline) -> list[str]:
    """`--reference-source` resolved: "auto" is "text" with an `image_unet`, else "first_frame"."""
    if args.reference_source == "auto":
        return ["text" if pipe.image_unet is not None else "first_frame"]
    sources = args.reference_source.split(",")
    if "text" in sources and pipe.image_unet is None:
        raise ValueError("`--reference-source` text needs a pipeline with an `image_unet`; use first_frame.")
    return sources


@torch.no_grad()
def generate(pipe: VideoGenPipeline, args: argparse.Namespace, source: str, output_type: str = "np"):
    """Videos (or latents) of the held-out captions of `evaluate_pipeline` (scenes `(seed, 0, i)`, generators `seed +
    i`) with the reference from `source` ("text", "first_frame" or "zero"), the base noise drawn apart from the
    generator (from `seed + i` too), so every source starts from the same noise. Returns `(videos (N, F, H, W, 3) or
    latents (N, C, F, h, w), scenes, the world at the videos' size, seconds)`."""
    plan = call_plan(pipe, args)
    sizes = {"height": plan.height, "width": plan.width, "num_frames": plan.output_frames}
    world, scenes = quality_scenes(sizes, args.num_samples, args.seed)
    channels, base = pipe.unet.config.out_channels, plan.base_size
    reference_size = (base[0] * pipe.vae_scale_factor, base[1] * pipe.vae_scale_factor)
    out, seconds = [], 0.0
    for start in range(0, len(scenes), args.batch_size):
        batch = scenes[start : start + args.batch_size]
        seeds = [args.seed + start + j for j in range(len(batch))]
        noise = torch.cat(
            [
                torch.randn((1, channels, plan.num_frames, *base), generator=torch.Generator().manual_seed(s))
                for s in seeds
            ]
        )
        kwargs = {}
        if source == "zero":
            kwargs["reference_latents"] = torch.zeros(1, channels, *base)
        elif source == "first_frame":
            images = [world.render(scene, *reference_size, num_frames=1)[0] for scene in batch]  # (H, W, 3)
            kwargs["reference_image"] = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (B, 3, H, W)
        started = time.perf_counter()
        frames = pipe(
            [scene.caption for scene in batch], height=plan.height, width=plan.width, num_frames=plan.num_frames,
            temporal_upsampling=plan.temporal_upsampling, num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale, reference_guidance_scale=args.reference_guidance_scale,
            latents=noise.to(pipe.device), generator=[torch.Generator().manual_seed(s) for s in seeds],
            output_type=output_type, **kwargs,
        ).frames  # fmt: skip
        seconds += time.perf_counter() - started
        out.append(frames.cpu() if isinstance(frames, torch.Tensor) else np.asarray(frames))
    videos = torch.cat(out) if isinstance(out[0], torch.Tensor) else np.concatenate(out)
    return videos, scenes, world, seconds


def _reference_row(pipe, args, source: str, scorer: ShapesScorer, first: np.ndarray | None):
    videos, scenes, world, seconds = generate(pipe, args, source)
    height, width = videos.shape[2:4]
    settings = {"pipeline": type(pipe).__name__, "num_samples": len(scenes), "seed": args.seed}
    result = score_videos(list(videos), scenes, world, settings, seconds, num_real=args.num_real, seed=args.seed,
                          scorer=scorer)  # fmt: skip
    scores = result["scores"]
    row = {key: scores[key] for key in ("all_correct", "direction", "speed", "temporal_consistency")}
    row.update(background_flicker=scores["background_flicker"], fsd=result["fsd"], reference_source=source,
               seconds_per_video=result["seconds_per_video"])  # fmt: skip
    if source == "first_frame":
        row["first_frame_psnr_db"] = mean_or_infinite(
            [psnr(v[0], world.render(s, height, width, 1)[0]) for v, s in zip(videos, scenes)]
        )
    if first is not None:  # paired with the first row: the same captions and noise
        row["mean_abs_difference_to_first_row"] = float(np.abs(videos - first).mean())
    truth = result["ground_truth"]
    floor = {key: truth[key] for key in ("all_correct", "direction", "speed", "temporal_consistency")}
    return row, videos, floor | {"background_flicker": truth["background_flicker"]}


def run_reference(args: argparse.Namespace, scorer: ShapesScorer, pipelines: dict) -> dict:
    """Rows "with reference" (per source) and "without reference (zero latent)" of `--pipeline`, and/or the rows of
    `--with-reference` and `--without-reference`."""
    rows, first, floor = {}, None, None
    if "pipeline" in pipelines:
        pipe = pipelines["pipeline"]
        sides = [(f"with reference: {source}", source) for source in reference_sources(args, pipe)]
        for name, source in [*sides, ("without reference (zero latent)", "zero")]:
            rows[name], videos, floor = _reference_row(pipe, args, source, scorer, first)
            first = videos if first is None else first
    if "with_reference" in pipelines:
        pipe = pipelines["with_reference"]
        source = reference_sources(args, pipe)[0]
        rows[f"--with-reference: {source}"], videos, floor = _reference_row(pipe, args, source, scorer, None)
        rows["--without-reference (zero latent)"], _, _ = _reference_row(
            pipelines["without_reference"], args, "zero", scorer, videos
        )
    rows["rendered clips"] = floor
    plan = call_plan(next(iter(pipelines.values())), args)
    return {
        "num_samples": args.num_samples, "steps": args.steps, "guidance_scale": args.guidance_scale,
        "reference_guidance_scale": args.reference_guidance_scale, "num_frames": plan.num_frames,
        "output_frames": plan.output_frames, "height": plan.height, "width": plan.width, "rows": rows,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------- report


def _acc(entry: dict | None) -> str:
    if not entry or entry.get("accuracy") is None:
        return ""
    return f"{entry['accuracy']:.2f} [{entry['ci_low']:.2f}, {entry['ci_high']:.2f}]"


def _mean(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("mean") is None:
        return ""
    if math.isinf(entry["mean"]):
        return "inf"
    if entry.get("ci_low") is None:
        return f"{entry['mean']:.{digits}f}"
    return f"{entry['mean']:.{digits}f} [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"


def _table(title: str, columns: list[tuple[str, callable]], rows: dict) -> list[str]:
    lines = [f"\n{title}\n", "| row | " + " | ".join(c for c, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(row) for _, cell in columns) + " |")
    return lines


def markdown(result: dict) -> str:
    lines: list[str] = []
    if "reference" in result:
        part = result["reference"]
        title = (
            f"reference: {part['num_samples']} held-out captions, {part['steps']} steps, guidance "
            f"{part['guidance_scale']} (reference {part['reference_guidance_scale']}), {part['output_frames']} frames "
            f"of {part['height']}x{part['width']}"
        )
        lines += _table(title, [
            ("all correct", lambda r: _acc(r.get("all_correct"))),
            ("direction", lambda r: _acc(r.get("direction"))),
            ("speed", lambda r: _acc(r.get("speed"))),
            ("temporal consistency", lambda r: _mean(r.get("temporal_consistency"))),
            ("FSD", lambda r: "" if r.get("fsd") is None else f"{r['fsd']:.3f}"),
            ("background flicker", lambda r: _mean(r.get("background_flicker"), 4)),
            ("first-frame PSNR dB", lambda r: _mean(r.get("first_frame_psnr_db"), 2)),
            ("mean abs diff to row 1", lambda r: "" if "mean_abs_difference_to_first_row" not in r
             else f"{r['mean_abs_difference_to_first_row']:.4f}"),
        ], part["rows"])  # fmt: skip
    if "upsampling" in result:
        part = result["upsampling"]
        title = (
            f"upsampling: {part['num_clips']} held-out clips of {part['clip_frames']} frames at {part['size']} px "
            f"({part['latent_size'][0]}x{part['latent_size'][1]} latents), x{part['factor']} "
            f"({part['made_frames_per_clip']} made frames per clip), upsampler {part['upsampler']}; EPE on moving "
            f"pixels (all pixels), image px = latent px x {part['vae_scale_factor']}"
        )
        lines += _table(title, [
            ("latent L1", lambda r: _mean(r.get("latent_l1"))),
            ("PSNR dB", lambda r: _mean(r.get("psnr_db"), 2)),
            ("PSNR vs decoded truth dB", lambda r: _mean(r.get("psnr_vs_decoded_truth_db"), 2)),
            ("speed", lambda r: _acc(r.get("speed"))),
            ("direction", lambda r: _acc(r.get("direction"))),
            ("all correct", lambda r: _acc(r.get("all_correct"))),
            ("temporal consistency", lambda r: _mean(r.get("temporal_consistency"))),
            ("EPE latent px", lambda r: "" if "epe_latent" not in r else
             f"{_mean(r['epe_latent_moving'])} ({r['epe_latent']['mean']:.3f})"),
            ("EPE image px", lambda r: "" if "epe_image" not in r else
             f"{_mean(r['epe_image_moving'], 2)} ({r['epe_image']['mean']:.2f})"),
        ], part["rows"])  # fmt: skip
    if "decoder" in result:
        part = result["decoder"]
        columns = [
            ("PSNR dB", lambda r: _mean(r.get("psnr_db"), 2)),
            ("background flicker", lambda r: _mean(r.get("background_flicker"), 4)),
            ("temporal error", lambda r: _mean(r.get("temporal_error"), 4)),
            ("all correct", lambda r: _acc(r.get("all_correct"))),
            ("temporal consistency", lambda r: _mean(r.get("temporal_consistency"))),
        ]
        reduction = part["flicker_reduction"]
        title = (
            f"decoder: {part['num_clips']} held-out clips of {part['clip_frames']} frames at {part['size']} px, "
            f"encoded by {part['vae']}; flicker reduction "
            f"{'n/a' if reduction is None else f'{reduction:.1%}'}, PSNR gain {part['psnr_gain_db']:+.2f} dB"
        )
        lines += _table(title, columns, part["clips"])
        if "pipeline_latents" in part:
            sub = part["pipeline_latents"]
            reduction = sub["flicker_reduction"]
            title = (
                f"decoder on {sub['num_samples']} videos' latents of {sub['pipeline']} (reference: "
                f"{sub['reference_source']}); flicker reduction {'n/a' if reduction is None else f'{reduction:.1%}'}"
            )
            lines += _table(title, columns[1:2] + columns[3:], sub["rows"])
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=None, help=f"comma-separated, of {PARTS}; default: those with inputs")
    parser.add_argument("--pipeline", default=None, help="reference (and decoder): a trained VideoGenPipeline folder")
    parser.add_argument("--with-reference", default=None, help="reference: a folder sampled with its reference")
    parser.add_argument("--without-reference", default=None, help="reference: a folder sampled with zero reference")
    parser.add_argument("--reference-source", default="auto", help="auto, or comma-separated of text, first_frame")
    parser.add_argument("--num-samples", type=int, default=64, help="reference: videos per row")
    parser.add_argument("--num-frames", type=int, default=None, help="reference: base frames (pipeline default 8)")
    parser.add_argument("--temporal-upsampling", type=int, default=None, help="reference: the pipeline's default")
    parser.add_argument("--height", type=int, default=None, help="reference: output height (the pipeline's)")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=9.0)
    parser.add_argument("--reference-guidance-scale", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8, help="reference: videos per pipeline call")
    parser.add_argument("--num-real", type=int, default=64, help="reference: real clips for FSD")
    parser.add_argument("--upsampler", default=None, help='upsampling: a FlowTemporalUpsampler folder or "untrained"')
    parser.add_argument("--factor", type=int, default=2, help="upsampling: 2, 4 or 8 (x2 rounds)")
    parser.add_argument("--vae", default=str(STAND_IN / "vae"), help="the stand-in's image VAE (encoder, decoder)")
    parser.add_argument("--video-vae", default=str(STAND_IN / "video_vae"), help="decoder: the enhanced decoder")
    parser.add_argument("--num-clips", type=int, default=64, help="upsampling, decoder: held-out clips")
    parser.add_argument("--clip-frames", type=int, default=9, help="upsampling, decoder: frames per clip")
    parser.add_argument("--size", type=int, default=32, help="upsampling, decoder: clip size in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if (args.with_reference is None) != (args.without_reference is None):
        parser.error("give both --with-reference and --without-reference, or neither")
    has = {
        "reference": args.pipeline is not None or args.with_reference is not None,
        "upsampling": args.upsampler is not None,
        "decoder": True,
    }
    if args.parts is None:
        args.parts = tuple(part for part in PARTS if has[part])
    else:
        args.parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
        unknown = sorted(set(args.parts) - set(PARTS))
        if unknown:
            parser.error(f"`--parts` has unknown parts {unknown}; choose from {PARTS}.")
        if "reference" in args.parts and not has["reference"]:
            parser.error("part `reference` needs --pipeline, or --with-reference and --without-reference")
        if "upsampling" in args.parts and not has["upsampling"]:
            parser.error('part `upsampling` needs --upsampler (a folder, or "untrained")')
    if args.reference_source != "auto":
        unknown = sorted(set(args.reference_source.split(",")) - set(REFERENCE_SOURCES))
        if unknown:
            parser.error(f"`--reference-source` has unknown sources {unknown}; choose from {REFERENCE_SOURCES}.")
    try:
        check_temporal_upsampling(args.factor, "--factor")
    except ValueError as error:
        parser.error(str(error))
    if args.factor == 1 or (args.clip_frames - 1) % args.factor:
        parser.error(f"`--clip-frames` - 1 must be a multiple of `--factor` > 1, but are {args.clip_frames} and "
                     f"{args.factor}.")  # fmt: skip
    for name in ("num_samples", "num_clips", "steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"`--{name.replace('_', '-')}` must be >= 1 but is {getattr(args, name)}.")
    if "reference" in args.parts and args.num_samples < 2:
        parser.error(f"`--num-samples` must be >= 2 (FSD compares sets) but is {args.num_samples}.")
    return args


def run(args: argparse.Namespace) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    scorer = ShapesScorer()
    result: dict = {"args": {k: v for k, v in vars(args).items()}}
    pipelines = {}
    if "reference" in args.parts or ("decoder" in args.parts and args.pipeline is not None):
        for name in ("pipeline", "with_reference", "without_reference"):
            if getattr(args, name) is not None:
                pipelines[name] = load_pipeline(getattr(args, name), args.device)
    if "reference" in args.parts:
        result["reference"] = run_reference(args, scorer, pipelines)
    vae = load_vae(args.vae, args.device) if {"upsampling", "decoder"} & set(args.parts) else None
    if "upsampling" in args.parts:
        result["upsampling"] = run_upsampling(args, vae, scorer)
    if "decoder" in args.parts:
        decoder_pipelines = {args.pipeline: pipelines["pipeline"]} if args.pipeline is not None else {}
        result["decoder"] = run_decoder(args, vae, load_vae(args.video_vae, args.device), scorer, decoder_pipelines)
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark: prints the tables and returns the figures (also written to `--output`)."""
    args = parse_args(argv)
    result = run(args)
    print(markdown(result))
    if args.output:
        write_result(args.output, result)
    return result


if __name__ == "__main__":
    main()
