"""`diffusers-video demo`: the main job of `make demo`, on the committed trained models.

1. the moving-shapes world renders ground-truth clips, and the scorer checks what they show;
2. the trained Stable Diffusion 2.1 stand-in (`pipelines/shapes_sd`) generates still frames with diffusers' own
   `StableDiffusionPipeline`, and the scorer reads their colour and shape;
3. its UNet is inflated into a `UNet3DModel` with `from_pretrained_2d` (the code path SD 2.1 weights take), checked
   against the image model frame by frame, saved and reloaded, and run through an 8-step `VDistilledScheduler` loop;
4. the committed VideoFusion demo (`pipelines/videofusion/demo`, trained on moving shapes with the stand-in as its
   base generator) generates "a red circle moving right" and two other prompts, and the scorer gives its verdict;
5. the committed Imagen Video demo cascade (`pipelines/imagen_video/demo`: distilled 8-step stages in pixel space)
   does the same (a folder without it is named, and the step skipped);
6. the committed I2VGen-XL demo cascade (`pipelines/i2vgen_xl/demo`: base stage at 32x32, refinement to 64x64)
   animates the first frame of a real clip of each prompt, and the scorer gives its verdict, with how closely the
   first frame keeps the image (PSNR); skipped where the folder is missing;
7. the committed MagicVideo demo (`pipelines/magicvideo/demo`: 4 latent keyframes, interpolated x2 x2 to 13 frames,
   super-resolved to 64x64 and decoded by the video VAE, when the folder has those stages) does the same as step 4;
   skipped where the folder is missing;
8. the committed VideoGen demo (`pipelines/videogen/demo`: the reference image from the stand-in's image UNet, the
   reference-guided video model, the flow upsampler doubling the frames, latent super-resolution to 64x64, the video
   decoder) does the same from text alone; skipped where the folder is missing.

It writes `shapes.gif` (and `shapes.mp4` when imageio-ffmpeg is installed), `stand_in.png` and one GIF and MP4 per
VideoFusion prompt (and Imagen Video prompt) to the output folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ..data.quality import infer_video_settings
from ..data.shapes import ShapesScorer, ShapesWorld
from ..folders import INDEX_NAME, TRAINING_CONFIG_NAME, read_json
from ..models.unet_3d import UNet3DModel
from ..pipelines.i2vgen_xl.pipeline_i2vgen_xl_cascade import I2VGenXLCascadePipeline
from ..pipelines.imagen_video.pipeline_imagen_video import ImagenVideoPipeline
from ..pipelines.magicvideo.pipeline_magicvideo import MagicVideoPipeline
from ..pipelines.magicvideo.stages import interpolated_frame_count
from ..pipelines.videofusion.pipeline_videofusion import VideoFusionPipeline
from ..pipelines.videogen.pipeline_videogen import VideoGenPipeline
from ..schedulers.scheduling_v_distilled import VDistilledScheduler
from ..training.stand_in_eval import evaluation_prompts, score_single_frames

# The trained stand-in for Stable Diffusion 2.1, relative to the repository root (where `make demo` runs).
STAND_IN = Path("pipelines") / "shapes_sd"
# The trained VideoFusion demo pipeline.
VIDEOFUSION_DEMO = Path("pipelines") / "videofusion" / "demo"
# The prompts both trained demos generate and the scorer checks.
DEMO_PROMPTS = ("a red circle moving right", "a blue square moving up slowly", "a yellow triangle moving left")
# The distilled Imagen Video demo cascade.
IMAGEN_VIDEO_DEMO = Path("pipelines") / "imagen_video" / "demo"
# The I2VGen-XL demo cascade (base stage and refiner).
I2VGEN_XL_DEMO = Path("pipelines") / "i2vgen_xl" / "demo"
# The demo's refinement: strength 0.6 without guidance (the base video already carries the content, as in Imagen
# Video's SR stages; at guidance 4 the refiner shifts colours and FSD rises above bilinear upsampling's). Measured in
# docs/i2vgen_xl.md, "The refiner".
REFINER_STRENGTH, REFINER_GUIDANCE = 0.6, 1.0
# The MagicVideo demo pipeline (the keyframe stage).
MAGICVIDEO_DEMO = Path("pipelines") / "magicvideo" / "demo"
# How the MagicVideo demo interpolates when the folder has an interpolation UNet (docs/magicvideo.md, "The demo"):
# 4 keyframes, two x2 rounds of 10 steps each: 13 frames in about the time of 13 frames by the keyframe model.
MAGICVIDEO_INTERPOLATION = {
    "num_keyframes": 4,
    "interpolation_factors": [2, 2],
    "interpolation_num_inference_steps": 10,
}
# The VideoGen demo pipeline (reference image, video model, flow upsampler).
VIDEOGEN_DEMO = Path("pipelines") / "videogen" / "demo"
# Its text guidance: 4, as the other demos (all correct 1.00 at 4 and at 7 on 64 held-out captions, FSD 0.59 against
# 0.72 at 7; docs/videogen.md, "The demo").
VIDEOGEN_GUIDANCE = 4.0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the main demo job", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default="demo_output", help="where to write the clips (default: demo_output)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--num_clips", type=int, default=8, help="ground-truth clips to render and score (default: 8)")
    parser.add_argument(
        "--stand_in", default=str(STAND_IN), help=f"the Stable Diffusion 2.1 stand-in folder (default: {STAND_IN})"
    )
    parser.add_argument(
        "--videofusion",
        default=str(VIDEOFUSION_DEMO),
        help=f"the VideoFusion demo pipeline folder (default: {VIDEOFUSION_DEMO})",
    )
    parser.add_argument(
        "--imagen_video",
        default=None,
        help=f"the Imagen Video demo cascade folder (default: {IMAGEN_VIDEO_DEMO}; the step is skipped where that folder is missing)",
    )
    for _, name, option, default, needs, _ in OPTIONAL_DEMOS:
        parser.add_argument(
            f"--{option}",
            default=None,
            help=f"the {name} demo folder, {needs} (default: {default}, skipped where missing; 'none' skips it)",
        )
    parser.set_defaults(func=run)


def _shapes_world(output_dir: Path, seed: int, num_clips: int) -> None:
    from diffusers.utils import export_to_gif

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


def _stand_in_images(output_dir: Path, stand_in: Path, seed: int) -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from PIL import Image

    pipe = StableDiffusionPipeline.from_pretrained(stand_in, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    prompts = evaluation_prompts(8, split="heldout", seed=seed)
    start = time.perf_counter()
    size = pipe.vae.config.sample_size
    images = pipe(
        prompts,
        height=size,
        width=size,
        num_inference_steps=25,
        guidance_scale=4.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).images
    seconds = time.perf_counter() - start
    result = score_single_frames(images, prompts)
    print(f"2. the Stable Diffusion 2.1 stand-in ({stand_in}) with diffusers' StableDiffusionPipeline, 25 steps")
    for prompt, image in zip(prompts, images):
        score = score_single_frames([image], [prompt])
        print(f"   {prompt!r:<52} colour and shape right: {bool(score['both'])}")
    print(
        f"   colour {result['color']:.2f}, shape {result['shape']:.2f} over {result['n']} held-out captions ({seconds:.1f} s)"
    )
    strip = np.concatenate(list(np.clip(images, 0, 1)), axis=1)  # (H, 8 W, 3)
    Image.fromarray((strip * 255).round().astype(np.uint8)).resize((strip.shape[1] * 2, strip.shape[0] * 2)).save(
        output_dir / "stand_in.png"
    )
    print(f"   wrote {output_dir / 'stand_in.png'}")


def _inflate_and_sample(output_dir: Path, stand_in: Path, seed: int) -> None:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet2d = UNet2DConditionModel.from_pretrained(stand_in, subfolder="unet", dtype=torch.float32).eval()
    start = time.perf_counter()
    unet3d = UNet3DModel.from_pretrained_2d(
        str(stand_in), torch_dtype=torch.float32, temporal_attention="directed", frame_adaptor=True
    ).eval()
    print(f"3. UNet3DModel.from_pretrained_2d({str(stand_in)!r}): the stand-in's UNet inflated to video")
    params2d = sum(p.numel() for p in unet2d.parameters())
    params3d = sum(p.numel() for p in unet3d.parameters())
    print(
        f"   image UNet {params2d / 1e6:.2f}M parameters -> video UNet {params3d / 1e6:.2f}M "
        f"({time.perf_counter() - start:.2f} s)"
    )

    g = torch.Generator().manual_seed(seed)
    batch, frames = 1, 8
    channels, size = unet2d.config.in_channels, unet2d.config.sample_size
    latents = torch.randn(batch, channels, frames, size, size, generator=g)
    text = torch.randn(batch, 7, unet2d.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        flat = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, size, size)
        expected = unet2d(flat, 500, text.repeat_interleave(frames, 0)).sample
        expected = expected.reshape(batch, frames, channels, size, size).permute(0, 2, 1, 3, 4)
        out = unet3d(latents, 500, text).sample
    print(
        f"   max |video UNet - image UNet frame by frame| = {(out - expected).abs().max().item():.2e} (identity at init)"
    )

    unet3d.save_pretrained(output_dir / "unet3d")
    reloaded = UNet3DModel.from_pretrained(output_dir / "unet3d").eval()
    with torch.no_grad():
        diff = (reloaded(latents, 500, text).sample - out).abs().max().item()
    print(f"   saved to {output_dir / 'unet3d'} and reloaded: max output difference {diff:.1e}")

    scheduler = VDistilledScheduler(prediction_type="v_prediction")
    scheduler.set_timesteps(8)
    sample = torch.randn(batch, channels, frames, size, size, generator=g)
    start = time.perf_counter()
    with torch.no_grad():
        for t in scheduler.timesteps:
            v = reloaded(sample, t, text).sample
            sample = scheduler.step(v, t, sample).prev_sample
    seconds = time.perf_counter() - start
    print(
        f"   8-step VDistilledScheduler loop on an 8-frame latent video: {seconds:.2f} s, output {tuple(sample.shape)}"
    )


def _write_clip(frames: np.ndarray, path: Path, fps: int = 8, scale: int = 4) -> list[Path]:
    """A `(F, H, W, 3)` clip in [0, 1] as `path.gif` and `path.mp4` (when imageio-ffmpeg is installed), enlarged."""
    from diffusers.utils import export_to_gif
    from PIL import Image

    frames = np.clip(frames, 0.0, 1.0).repeat(scale, axis=1).repeat(scale, axis=2)
    export_to_gif([Image.fromarray((f * 255).round().astype(np.uint8)) for f in frames], str(path) + ".gif", fps=fps)
    written = [Path(str(path) + ".gif")]
    try:
        from diffusers.utils import export_to_video

        export_to_video(list(frames), str(path) + ".mp4", fps=fps)
        written.append(Path(str(path) + ".mp4"))
    except ImportError:
        pass
    return written


def _sample_and_score(pipe, output_dir: Path, name: str, seed: int, scale: int, gap: int, **call_kwargs) -> None:
    """Generate `DEMO_PROMPTS` (seed `seed + i` for prompt `i`), print what the scorer sees in each video, write each
    as `<name>_<prompt>` and all side by side (`gap` white columns apart) as `<name>` (GIF and MP4, enlarged `scale`
    times), and print the time the pipeline call took and the files written."""
    scorer = ShapesScorer()
    start = time.perf_counter()
    videos = pipe(
        list(DEMO_PROMPTS),
        generator=[torch.Generator().manual_seed(seed + i) for i in range(len(DEMO_PROMPTS))],
        output_type="np",
        **call_kwargs,
    ).frames
    seconds = time.perf_counter() - start
    written = []
    for prompt, video in zip(DEMO_PROMPTS, videos):
        score = scorer.score(video, prompt)
        shown = f"{score.color} {score.shape} moving {score.direction} ({score.speed})"
        print(f"   {prompt!r:<36} scorer sees: {shown:<34} all correct: {score.all_ok}")
        written += _write_clip(video, output_dir / f"{name}_{prompt.replace(' ', '_')}", scale=scale)
    written += _write_strip(videos, output_dir / name, scale=scale, gap=gap)
    print(f"   sampled {len(DEMO_PROMPTS)} videos in {seconds:.1f} s; wrote {', '.join(p.name for p in written)}")


def _write_strip(videos: np.ndarray, path: Path, scale: int, gap: int) -> list[Path]:
    """The videos `(B, F, H, W, 3)` side by side, `gap` white columns between them, as one clip (GIF and MP4)."""
    white = np.ones((videos.shape[1], videos.shape[2], gap, 3), dtype=videos.dtype)
    # (F, H, W B + gap (B - 1), 3)
    strip = np.concatenate([part for video in videos for part in (video, white)][:-1], axis=2)
    return _write_clip(strip, path, scale=scale)


def _videofusion(output_dir: Path, folder: Path, seed: int) -> None:
    pipe = VideoFusionPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    sizes = infer_video_settings(pipe)
    trained = read_json(folder / TRAINING_CONFIG_NAME, missing_ok=True)  # the clip length the demo was trained on
    if trained is not None:
        sizes["num_frames"] = trained["data"]["num_frames"]
    print(
        f"4. VideoFusionPipeline.from_pretrained({str(folder)!r}): {sizes['num_frames']} frames of "
        f"{sizes['height']}x{sizes['width']}, 25 DDIM steps, guidance 4"
    )
    _sample_and_score(
        pipe, output_dir, "videofusion", seed, scale=4, gap=2, num_inference_steps=25, guidance_scale=4.0, **sizes
    )


def _imagen_video(output_dir: Path, folder: Path, seed: int) -> None:
    pipe = ImagenVideoPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    num_frames, height, width = pipe.default_size()
    scales = [4.0 if stage.reads_text else 1.0 for stage in pipe.stages]
    kinds = " -> ".join(spec.kind.upper() if spec.kind != "base" else "base" for spec in pipe.stage_specs)
    print(
        f"5. ImagenVideoPipeline.from_pretrained({str(folder)!r}): {kinds}, {num_frames} frames of {height}x{width}, "
        f"8 steps per stage, guidance {'/'.join(f'{w:g}' for w in scales)}"
    )
    # gap 4: the strip is 2 (3 x 64 + 2 x 4) = 400 wide, whole 16-pixel MP4 blocks
    _sample_and_score(
        pipe, output_dir, "imagen_video", seed, scale=2, gap=4, num_inference_steps=8, guidance_scale=scales
    )


def _i2vgen_xl(output_dir: Path, folder: Path, seed: int) -> None:
    from PIL import Image

    pipe = I2VGenXLCascadePipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    trained = read_json(folder / TRAINING_CONFIG_NAME, missing_ok=True) or {}
    num_frames = trained.get("data", {}).get("num_frames", 8)

    height, width = pipe.base_size()  # the base stage's size when asked nothing
    refined = pipe.default_size()[1:]  # the refiner's
    print(
        f"6. I2VGenXLCascadePipeline.from_pretrained({str(folder)!r}): the first frame of a real clip of each prompt, "
        f"{num_frames} frames of {height}x{width}, refined to {refined[0]}x{refined[1]} (strength {REFINER_STRENGTH}, "
        f"guidance {REFINER_GUIDANCE:g}); 25 steps, guidance 4"
    )
    world = ShapesWorld(height=height, width=width, num_frames=num_frames)
    scenes = [world.scene_for_prompt(prompt, seed=(seed, i)) for i, prompt in enumerate(DEMO_PROMPTS)]
    firsts = [world.render(scene, num_frames=1)[0] for scene in scenes]
    images = [Image.fromarray((frame * 255).round().astype(np.uint8)) for frame in firsts]
    start = time.perf_counter()
    base = pipe(list(DEMO_PROMPTS), image=images, num_frames=num_frames, num_inference_steps=25, guidance_scale=4.0,
                generator=[torch.Generator().manual_seed(seed + i) for i in range(len(DEMO_PROMPTS))],
                output_type="np", refine=False).frames  # fmt: skip
    for first, video in zip(firsts, base):
        error = float(np.mean((video[0] - first) ** 2))
        print(f"   first frame against the image: PSNR {10 * np.log10(1 / max(error, 1e-10)):.1f} dB")
    print(f"   base stage: {time.perf_counter() - start:.1f} s")
    _sample_and_score(
        pipe, output_dir, "i2vgen_xl", seed, scale=2, gap=4, image=images, num_frames=num_frames,
        num_inference_steps=25, guidance_scale=4.0, refiner_strength=REFINER_STRENGTH, refiner_guidance_scale=REFINER_GUIDANCE,
    )  # fmt: skip


def _magicvideo(output_dir: Path, folder: Path, seed: int) -> None:
    pipe = MagicVideoPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    trained = read_json(folder / TRAINING_CONFIG_NAME, missing_ok=True) or {}
    keyframes = trained.get("data", {}).get("num_frames", 8)  # the clip length the keyframe model was trained on
    call = {"num_keyframes": keyframes, "num_inference_steps": 25, "guidance_scale": 4.0}
    if pipe.interpolation_unet is not None:
        call.update(MAGICVIDEO_INTERPOLATION)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    stages = [
        f"{call['num_keyframes']} latent keyframes of {size}x{size} (frame adaptors with directed temporal attention)"
    ]
    if pipe.interpolation_unet is not None:
        frames = interpolated_frame_count(call["num_keyframes"], call["interpolation_factors"])
        stages.append(f"interpolated x{' x'.join(map(str, call['interpolation_factors']))} to {frames} frames")
    if pipe.super_resolution_unet is not None:
        size *= pipe.config.super_resolution_factor
        stages.append(f"super-resolved to {size}x{size}")
    print(f"7. MagicVideoPipeline.from_pretrained({str(folder)!r}): {', '.join(stages)}; 25 steps, guidance 4")
    _sample_and_score(pipe, output_dir, "magicvideo", seed, scale=4, gap=2, height=size, width=size, **call)


def _videogen(output_dir: Path, folder: Path, seed: int) -> None:
    pipe = VideoGenPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    trained = read_json(folder / TRAINING_CONFIG_NAME, missing_ok=True) or {}
    num_frames = trained.get("data", {}).get("num_frames", 8)  # the clip length the video model was trained on
    upsampling = 2 if pipe.flow_upsampler is not None else 1
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    if pipe.super_resolution_unet is not None:
        size *= pipe.config.super_resolution_factor
    print(
        f"8. VideoGenPipeline.from_pretrained({str(folder)!r}): reference image from its image UNet, {num_frames} latent "
        f"frames, x{upsampling} by the flow upsampler: {(num_frames - 1) * upsampling + 1} frames of {size}x{size}; "
        f"25 steps, guidance {VIDEOGEN_GUIDANCE:g}"
    )
    _sample_and_score(
        pipe, output_dir, "videogen", seed, scale=4, gap=2, num_frames=num_frames, temporal_upsampling=upsampling,
        num_inference_steps=25, guidance_scale=VIDEOGEN_GUIDANCE,
    )  # fmt: skip


# The demo steps whose folders may be missing: (step, name, option, default folder, what it needs, how to run it).
OPTIONAL_DEMOS = (
    (6, "I2VGen-XL", "i2vgen_xl", I2VGEN_XL_DEMO, "an I2VGenXLCascadePipeline", _i2vgen_xl),
    (7, "MagicVideo", "magicvideo", MAGICVIDEO_DEMO, "a MagicVideoPipeline", _magicvideo),
    (8, "VideoGen", "videogen", VIDEOGEN_DEMO, "a VideoGenPipeline", _videogen),
)


def run(args: argparse.Namespace) -> int:
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stand_in = Path(args.stand_in)
    if not (stand_in / INDEX_NAME).is_file():
        raise FileNotFoundError(
            f"`--stand_in` {str(stand_in)!r} is not a pipeline folder (no model_index.json); run the demo from the "
            "repository root or pass the folder of the Stable Diffusion 2.1 stand-in."
        )
    videofusion = Path(args.videofusion)
    if not (videofusion / INDEX_NAME).is_file():
        raise FileNotFoundError(
            f"`--videofusion` {str(videofusion)!r} is not a pipeline folder (no model_index.json); run the demo from "
            "the repository root or pass the folder of the VideoFusion demo."
        )
    imagen_video = Path(args.imagen_video) if args.imagen_video is not None else IMAGEN_VIDEO_DEMO
    if args.imagen_video is not None and not (imagen_video / INDEX_NAME).is_file():
        raise FileNotFoundError(
            f"`--imagen_video` {str(imagen_video)!r} is not a pipeline folder (no model_index.json); pass the folder "
            "of an ImagenVideoPipeline."
        )
    folders = [_optional_demo_folder(getattr(args, option), option, default, needs) for _, _, option, default, needs, _
               in OPTIONAL_DEMOS]  # fmt: skip
    _shapes_world(output_dir, args.seed, args.num_clips)
    _stand_in_images(output_dir, stand_in, args.seed)
    _inflate_and_sample(output_dir, stand_in, args.seed)
    _videofusion(output_dir, videofusion, args.seed)
    if (imagen_video / INDEX_NAME).is_file():
        _imagen_video(output_dir, imagen_video, args.seed)
    else:
        print(f"5. no Imagen Video demo cascade at {imagen_video}: skipped")
    for (step, name, option, _, _, demo), folder in zip(OPTIONAL_DEMOS, folders):
        if folder is None:
            print(f"{step}. the {name} demo: skipped (`--{option} none`)")
        elif (folder / INDEX_NAME).is_file():
            demo(output_dir, folder, args.seed)
        else:
            print(f"{step}. no {name} demo at {folder}: skipped")
    return 0


def _optional_demo_folder(value: str | None, option: str, default: Path, needs: str) -> Path | None:
    """The folder of an optional demo step: None for 'none', the default when not given (the step is skipped where
    it is missing); a given folder that is not a pipeline folder is refused."""
    if value == "none":
        return None
    if value is None:
        return default
    if not (Path(value) / INDEX_NAME).is_file():
        raise FileNotFoundError(
            f"`--{option}` {value!r} is not a pipeline folder (no model_index.json); pass the folder of {needs}, or "
            "'none'."
        )
    return Path(value)
