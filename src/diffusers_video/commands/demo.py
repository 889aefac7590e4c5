"""`diffusers-video demo`: the main job of `make demo`.

Until the pipelines ship trained demo checkpoints, the demo runs the foundation end to end on real (tiny) models:

1. the moving-shapes world renders ground-truth clips, and the scorer checks what they show;
2. a tiny image UNet with Stable Diffusion 2.1's block structure is inflated into a `UNet3DModel` through the same
   `from_unet2d` code path SD 2.1 weights take, checked against the image model frame by frame, saved and reloaded;
3. the inflated model runs an 8-step deterministic sampling loop (`VDistilledScheduler`) on a video.

It writes `shapes.gif` (and `shapes.mp4` when imageio-ffmpeg is installed) to the output folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

# Stable Diffusion 2.1's UNet block structure at a tiny width (SD 2.1: channels (320, 640, 1280, 1280), heads
# (5, 10, 20, 20), cross_attention_dim 1024).
TINY_SD21_UNET = dict(
    sample_size=16,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64, 64, 64),
    layers_per_block=2,
    attention_head_dim=(2, 4, 4, 4),
    cross_attention_dim=64,
    use_linear_projection=True,
    upcast_attention=True,
    norm_num_groups=16,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the main demo job", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default="demo_output", help="where to write the clips (default: demo_output)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--num_clips", type=int, default=8, help="ground-truth clips to render and score (default: 8)")
    parser.set_defaults(func=run)


def _shapes_world(output_dir: Path, seed: int, num_clips: int) -> None:
    from diffusers.utils import export_to_gif

    from ..data.shapes import ShapesScorer, ShapesWorld

    if num_clips < 1:
        raise ValueError(f"`--num_clips` must be at least 1 but is {num_clips}.")
    world = ShapesWorld(height=64, width=64, num_frames=16)
    scorer = ShapesScorer()
    samples = [world.sample((seed, i)) for i in range(num_clips)]
    scores = [scorer.score(s.video, s.caption) for s in samples]
    print("1. moving-shapes world: ground-truth clips, 64x64 x 16 frames")
    for sample, score in zip(samples, scores):
        shown = f"{score.color} {score.shape} moving {score.direction} ({score.speed})"
        print(f"   {sample.caption!r:<68} scorer sees: {shown:<34} all correct: {score.all_ok}")
    accuracy = scorer.aggregate(scores)
    all_correct = accuracy["all_correct"]
    print(
        f"   all-correct accuracy: {all_correct['accuracy']:.2f} over {len(scores)} clips "
        f"(95% CI {all_correct['ci_low']:.2f}-{all_correct['ci_high']:.2f})"
    )

    # A 2 x 4 grid of clips, one GIF.
    columns = min(4, num_clips)
    rows = -(-num_clips // columns)
    videos = np.stack([s.video for s in samples] + [np.zeros_like(samples[0].video)] * (rows * columns - num_clips))
    frames, height, width = videos.shape[1:4]
    grid = videos.reshape(rows, columns, frames, height, width, 3).transpose(2, 0, 3, 1, 4, 5)
    grid = grid.reshape(frames, rows * height, columns * width, 3)
    from PIL import Image

    export_to_gif(
        [Image.fromarray((f * 255).round().astype(np.uint8)) for f in grid], str(output_dir / "shapes.gif"), fps=8
    )
    written = [output_dir / "shapes.gif"]
    try:
        from diffusers.utils import export_to_video

        export_to_video(list(grid), str(output_dir / "shapes.mp4"), fps=8)
        written.append(output_dir / "shapes.mp4")
    except ImportError:
        pass
    print(f"   wrote {', '.join(str(p) for p in written)}")


def _inflate_and_sample(output_dir: Path, seed: int) -> None:
    from diffusers import UNet2DConditionModel

    from .. import UNet3DModel, VDistilledScheduler

    torch.manual_seed(seed)
    unet2d = UNet2DConditionModel(**TINY_SD21_UNET).eval()
    start = time.perf_counter()
    unet3d = UNet3DModel.from_unet2d(unet2d, temporal_attention="directed", frame_adaptor=True).eval()
    print("2. UNet3DModel.from_unet2d on a tiny UNet with Stable Diffusion 2.1's block structure")
    params2d = sum(p.numel() for p in unet2d.parameters())
    params3d = sum(p.numel() for p in unet3d.parameters())
    print(
        f"   image UNet {params2d / 1e6:.2f}M parameters -> video UNet {params3d / 1e6:.2f}M ({time.perf_counter() - start:.2f} s)"
    )

    g = torch.Generator().manual_seed(seed)
    batch, frames = 1, 8
    latents = torch.randn(batch, 4, frames, 16, 16, generator=g)
    text = torch.randn(batch, 7, TINY_SD21_UNET["cross_attention_dim"], generator=g)
    with torch.no_grad():
        flat = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, 4, 16, 16)
        expected = unet2d(flat, 500, text.repeat_interleave(frames, 0)).sample
        expected = expected.reshape(batch, frames, 4, 16, 16).permute(0, 2, 1, 3, 4)
        out = unet3d(latents, 500, text).sample
    print(
        f"   max |video UNet - image UNet frame by frame| = {(out - expected).abs().max().item():.2e} (identity at init)"
    )

    unet3d.save_pretrained(output_dir / "unet3d")
    reloaded = UNet3DModel.from_pretrained(output_dir / "unet3d").eval()
    with torch.no_grad():
        diff = (reloaded(latents, 500, text).sample - out).abs().max().item()
    print(f"   saved to {output_dir / 'unet3d'} and reloaded: max output difference {diff:.1e}")

    scheduler = VDistilledScheduler(noise_schedule="continuous_cosine", prediction_type="v_prediction")
    scheduler.set_timesteps(8)
    sample = torch.randn(batch, 4, frames, 16, 16, generator=g)
    start = time.perf_counter()
    with torch.no_grad():
        for t in scheduler.timesteps:
            v = reloaded(sample, t, text).sample
            sample = scheduler.step(v, t, sample).prev_sample
    seconds = time.perf_counter() - start
    print(
        f"3. 8-step VDistilledScheduler sampling of an 8-frame latent video: {seconds:.2f} s, output {tuple(sample.shape)}"
    )


def run(args: argparse.Namespace) -> int:
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _shapes_world(output_dir, args.seed, args.num_clips)
    _inflate_and_sample(output_dir, args.seed)
    return 0
