"""I2VGen-XL's claims in miniature, on a trained cascade of the moving-shapes world (issue 25).

    python benchmarks/bench_i2vgen_xl.py --folder runs/i2vgen_xl_refiner/final --num-samples 64 \\
        --steps 25 --guidance-scale 4 --output runs/i2vgen_xl/bench.json

Every row animates the same held-out scenes (`ShapesWorld(split="heldout")`: colour, shape, direction and speed
combinations no training clip has): the image is the scene's first frame, the prompt its caption, and each video has
its own seed, the same in every row. `ShapesScorer` reads every video. Parts (`--parts`):

- `encoders` (the "two hierarchical encoders" claim): the base stage as trained, then with one image pathway zeroed
  at a time inside the content encoder: the 4 CLIP-image tokens (`context_embedding`), the image-latent tokens
  (`image_latents_context_embedding`), the concatenated image path (`image_latents_temporal_encoder`). Measures: PSNR
  of frame 0 against the input image (target >= 28 dB), all-correct and direction accuracy (95% Wilson intervals),
  FSD against the true clips of the same scenes.
- `refiner` (needs a folder with `refiner_unet/`): the base videos brought to the refiner's size by bilinear
  upsampling (the baseline), then refined by `VideoRefinerPipeline` (the cascade's refinement, on the same base
  videos) at `strength` 0.4 / 0.6 / 0.8 x `guidance_rescale` 0 / 0.2, with guidance `--refiner-guidance-scale`
  (default: the base stage's). Measures: FSD against the true clips rendered at
  that size (target: refined below bilinear), high-frequency energy (the mean squared 4-neighbour Laplacian per pixel,
  next to the true clips'), all-correct accuracy.
- `spacing`: the base stage sampled with "leading" timesteps (how the public I2VGen-XL weights were sampled: the
  zero-SNR step t = 999 is never visited) and with "trailing" ones (which start there), on the same zero-terminal-SNR
  schedule. Measures as for `encoders`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from _measure import write_result  # benchmarks/ is on sys.path when this runs as a script
from diffusers import DDIMScheduler

from diffusers_video import I2VGenXLCascadePipeline, VideoRefinerPipeline
from diffusers_video.data.metrics import psnr, wilson_interval
from diffusers_video.data.shapes import ShapesWorld
from diffusers_video.data.shapes_scorer import ShapesScorer

PARTS = ("encoders", "refiner", "spacing")
# the content encoder's module whose output is zeroed to drop one image pathway
ABLATIONS = {
    "full": None,
    "no CLIP-image tokens": "context_embedding",
    "no image-latent tokens": "image_latents_context_embedding",
    "no concatenated image path": "image_latents_temporal_encoder",
}
STRENGTHS, RESCALES = (0.4, 0.6, 0.8), (0.0, 0.2)


@contextlib.contextmanager
def zeroed(module: torch.nn.Module | None):
    """Within the block, `module` returns zeros of its output's shape (nothing changes for None)."""
    if module is None:
        yield
        return
    handle = module.register_forward_hook(lambda _module, _inputs, output: torch.zeros_like(output))
    try:
        yield
    finally:
        handle.remove()


def heldout_scenes(num_samples: int, num_frames: int, height: int, width: int, seed: int = 0):
    """`(scenes, first frames (N, H, W, 3), true clips (N, F, H, W, 3))` of held-out scenes `(seed, 25, i)`."""
    world = ShapesWorld(height=height, width=width, num_frames=num_frames, split="heldout")
    scenes = [world.scene((seed, 25, i)) for i in range(num_samples)]
    clips = np.stack([world.render(scene) for scene in scenes])
    return scenes, clips[:, 0], clips


def high_frequency_energy(videos: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian per pixel of `(N, F, H, W, 3)` videos in [0, 1]."""
    v = np.asarray(videos, np.float64)
    lap = 4 * v[:, :, 1:-1, 1:-1] - v[:, :, :-2, 1:-1] - v[:, :, 2:, 1:-1] - v[:, :, 1:-1, :-2] - v[:, :, 1:-1, 2:]
    return float(np.mean(lap**2))


def accuracy(values: list[bool]) -> dict:
    low, high = wilson_interval(int(sum(values)), len(values))
    return {"accuracy": float(np.mean(values)), "ci_low": low, "ci_high": high, "n": len(values)}


def measure(videos: np.ndarray, scenes, images: np.ndarray | None, clips: np.ndarray, scorer: ShapesScorer) -> dict:
    """The scorer's verdicts, FSD against `clips`, HF energy and (with `images`) the first frame's PSNR."""
    scores = [scorer.score(video, scene.caption) for video, scene in zip(videos, scenes)]
    row = {
        "all_correct": accuracy([s.all_ok for s in scores]),
        "direction": accuracy([bool(s.direction_ok) for s in scores if s.direction_ok is not None]),
        "fsd": float(scorer.fsd(videos, clips)),
        "hf_energy": high_frequency_energy(videos),
    }
    if images is not None:
        row["first_frame_psnr"] = float(np.mean([psnr(v[0], im) for v, im in zip(videos, images)]))
    return row


def animate(pipe, scenes, images, args, batch: int = 8) -> np.ndarray:
    """Base-stage videos `(N, F, H, W, 3)` of the scenes, each from its own seed `args.seed + i`."""
    videos = []
    for start in range(0, len(scenes), batch):
        chunk = range(start, min(start + batch, len(scenes)))
        frames = pipe(
            [scenes[i].caption for i in chunk], image=[images[i] for i in chunk], height=args.height, width=args.width,
            num_frames=args.num_frames, target_fps=args.fps, num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale, refine=False, output_type="np",
            generator=[torch.Generator().manual_seed(args.seed + i) for i in chunk],
        ).frames  # fmt: skip
        videos.append(np.asarray(frames))
    return np.concatenate(videos)


def refiner_guidance(args: argparse.Namespace) -> float:
    """The refiner's guidance weight: `--refiner-guidance-scale`, else the base stage's."""
    value = getattr(args, "refiner_guidance_scale", None)
    return args.guidance_scale if value is None else value


def refine(refiner: VideoRefinerPipeline, videos, scenes, height, width, strength, rescale, args, batch=8):
    out = []
    for start in range(0, len(scenes), batch):
        chunk = range(start, min(start + batch, len(scenes)))
        frames = refiner(
            [scenes[i].caption for i in chunk], video=videos[start : start + len(chunk)], strength=strength,
            num_inference_steps=args.steps, guidance_scale=refiner_guidance(args), guidance_rescale=rescale,
            height=height, width=width, output_type="np", clip_skip=1,
            generator=[torch.Generator().manual_seed(args.seed + 10_000 + i) for i in chunk],
        ).frames  # fmt: skip
        out.append(np.asarray(frames))
    return np.concatenate(out)


def bilinear(videos: np.ndarray, height: int, width: int) -> np.ndarray:
    x = torch.from_numpy(videos).permute(0, 1, 4, 2, 3).flatten(0, 1)  # (N*F, 3, H, W)
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.reshape(*videos.shape[:2], 3, height, width).permute(0, 1, 3, 4, 2).numpy()


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    pipe = I2VGenXLCascadePipeline.from_pretrained(args.folder, torch_dtype=torch.float32).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    args.height = args.height or pipe.default_size(None, None)[0]
    args.width = args.width or pipe.default_size(None, None)[1]
    scenes, images, clips = heldout_scenes(args.num_samples, args.num_frames, args.height, args.width, args.seed)
    scorer, result = ShapesScorer(), {"args": {k: v for k, v in vars(args).items() if k != "func"}}
    start = time.perf_counter()
    if "encoders" in args.parts or "refiner" in args.parts:
        rows = {}
        for name, module_name in ABLATIONS.items():
            if "encoders" not in args.parts and module_name is not None:
                continue
            module = None if module_name is None else getattr(pipe.content_encoder, module_name)
            with zeroed(module):
                videos = animate(pipe, scenes, images, args)
            rows[name] = measure(videos, scenes, images, clips, scorer)
            if module_name is None:
                base_videos = videos
            print(f"{name}: {json.dumps(rows[name])}", flush=True)
        result["encoders"] = rows
    if "refiner" in args.parts:
        if pipe.refiner_unet is None:
            raise ValueError(f"`--folder` {args.folder!r} has no refiner_unet: drop 'refiner' from `--parts`.")
        height, width = pipe.refiner_size(None, None, args.height, args.width)
        big = np.stack([ShapesWorld(height=height, width=width).render(s, num_frames=args.num_frames) for s in scenes])
        refiner = VideoRefinerPipeline(
            vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.refiner_unet,
            scheduler=pipe.refiner_scheduler,
        )  # fmt: skip
        refiner.set_progress_bar_config(disable=True)
        rows = {"bilinear": measure(bilinear(base_videos, height, width), scenes, None, big, scorer)}
        rows["true clips"] = {"hf_energy": high_frequency_energy(big)}
        for strength in args.strengths:
            for rescale in args.guidance_rescales:
                videos = refine(refiner, base_videos, scenes, height, width, strength, rescale, args)
                name = f"strength {strength}, rescale {rescale}"
                rows[name] = measure(videos, scenes, None, big, scorer)
                print(f"{name}: {json.dumps(rows[name])}", flush=True)
        result["refiner"] = rows
    if "spacing" in args.parts:
        original, rows = pipe.scheduler, {}
        for spacing in ("leading", "trailing"):
            pipe.scheduler = DDIMScheduler.from_config(original.config, timestep_spacing=spacing, steps_offset=1)
            rows[spacing] = measure(animate(pipe, scenes, images, args), scenes, images, clips, scorer)
            print(f"{spacing}: {json.dumps(rows[spacing])}", flush=True)
        pipe.scheduler = original
        result["spacing"] = rows
    result["wall_time_s"] = round(time.perf_counter() - start, 1)
    return result


def _numbers(text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers (`--strengths`, `--guidance-rescales`)."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers but got {text!r}") from None


def markdown(result: dict) -> str:
    lines = []
    for part, rows in result.items():
        if part not in PARTS:
            continue
        lines += [
            f"\n{part}\n",
            "| row | first-frame PSNR | all correct | direction | FSD | HF energy |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in rows.items():
            cells = [f"{row['first_frame_psnr']:.2f} dB" if "first_frame_psnr" in row else ""]
            for key in ("all_correct", "direction"):
                r = row.get(key)
                cells.append(f"{r['accuracy']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if r else "")
            cells.append(f"{row['fsd']:.2f}" if "fsd" in row else "")
            cells.append(f"{row['hf_energy']:.5f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="an I2VGenXLCascadePipeline folder (a training run's final/)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument(
        "--refiner-guidance-scale", type=float, default=None, help="the refiner's guidance (default: --guidance-scale)"
    )
    parser.add_argument(
        "--strengths", type=_numbers, default=STRENGTHS, help="the refiner's strengths, comma-separated (0.4,0.6,0.8)"
    )
    parser.add_argument(
        "--guidance-rescales", type=_numbers, default=RESCALES, help="the refiner's guidance rescales (0,0.2)"
    )
    parser.add_argument("--fps", type=int, default=16)
    parser.add_argument("--height", type=int, default=None, help="base size; default the folder's")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    args.parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"`--parts` has unknown parts {unknown}; choose from {PARTS}.")
    for name in ("num_samples", "num_frames", "steps"):
        if getattr(args, name) < 1 + (name == "num_frames"):
            parser.error(
                f"`--{name.replace('_', '-')}` must be >= {1 + (name == 'num_frames')} but is {getattr(args, name)}."
            )
    if args.num_samples < 2:
        parser.error(f"`--num-samples` must be >= 2 (FSD compares sets) but is {args.num_samples}.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(markdown(result))
    if args.output:
        write_result(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
