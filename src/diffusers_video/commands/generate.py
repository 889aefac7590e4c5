"""`diffusers-video generate`: a video from any diffusers-video pipeline, from a folder or a Hub repo id.

    diffusers-video generate --pipeline PATH_OR_REPO_ID --prompt "a red circle moving right" --output video.mp4
    diffusers-video generate --pipeline imagen_video "a red circle moving right" --steps 8 --guidance_scale 4,4,1,1

Loads the pipeline class named in the folder's model_index.json (downloading a repo id into the Hub cache first;
`--local_files_only` reads the cache only), generates one video with a progress bar, and writes it as MP4 (needs
imageio-ffmpeg: `pip install "diffusers-video[video]"`) or GIF, chosen by the extension of `--output`. Options the
pipeline does not take are refused (e.g. `--image` for a text-to-video pipeline); options left out take the
pipeline's defaults.

`--pipeline` also takes the name of a committed demo pipeline, a folder relative to the repository root (run from
there): `videofusion` (pipelines/videofusion/demo) or `imagen_video` (pipelines/imagen_video/demo). The prompt can be
given as `--prompt` or as the last argument. A cascade (ImagenVideoPipeline) takes `--steps` and `--guidance_scale`
per stage, comma-separated, base first (one number is used for every stage).
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import numpy as np
import torch

from ..folders import INDEX_NAME, check_writable
from ..pipelines.pipeline_utils import VideoDiffusionPipeline

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_FORMATS = (".mp4", ".gif")

# The committed demo pipelines that `--pipeline NAME` loads, relative to the repository root (where commands run).
DEMO_PIPELINES = {
    "videofusion": Path("pipelines") / "videofusion" / "demo",
    "imagen_video": Path("pipelines") / "imagen_video" / "demo",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate a video with a pipeline from a folder or the Hub",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pipeline",
        required=True,
        metavar="NAME_PATH_OR_REPO_ID",
        help=f"a demo pipeline ({', '.join(DEMO_PIPELINES)}), a pipeline folder (save_pretrained) or a Hub repo id",
    )
    parser.add_argument("prompt_argument", nargs="?", default=None, metavar="PROMPT", help="what the video shows")
    parser.add_argument("--prompt", default=None, help="what the video shows (or give it as PROMPT)")
    parser.add_argument("--negative_prompt", "--negative-prompt", default=None, help="what it must not show")
    parser.add_argument(
        "--image", default=None, metavar="FILE", help="the first frame (image-to-video pipelines only)"
    )
    parser.add_argument("--num_frames", "--num-frames", type=int, default=None, help="default: the pipeline's")
    parser.add_argument("--height", type=int, default=None, help="frame height in pixels (default: the pipeline's)")
    parser.add_argument("--width", type=int, default=None, help="frame width in pixels (default: the pipeline's)")
    parser.add_argument(
        "--steps",
        default=None,
        help="denoising steps; per stage for a cascade, e.g. 64,32,32 (default: the pipeline's)",
    )
    parser.add_argument(
        "--guidance_scale",
        "--guidance-scale",
        default=None,
        help="classifier-free guidance weight; per stage for a cascade, e.g. 4,4,1,1",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--fps", type=int, default=8, help="frames per second of the file (default: 8)")
    parser.add_argument("--output", default="video.mp4", help="the file to write, .mp4 or .gif (default: video.mp4)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="weights dtype (default: float32)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub repo (default: main)")
    parser.add_argument(
        "--local_files_only", "--local-files-only", action="store_true", help="read a repo from the Hub cache only"
    )
    parser.add_argument("--no_progress", "--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def resolve_pipeline(value: str) -> str:
    """`--pipeline`: a demo name becomes its folder (`DEMO_PIPELINES`); a folder or repo id stays as it is.

    Raises:
        ValueError: the name of a demo is also a folder here (which one is meant is unclear).
        FileNotFoundError: the demo's folder does not exist (yet), e.g. outside the repository root.
    """
    folder = DEMO_PIPELINES.get(value)
    if folder is None:
        return value
    if Path(value).exists():
        raise ValueError(
            f"`--pipeline {value}` names the demo folder '{folder}' and a folder '{value}' here: pass './{value}' "
            f"for the folder or '{folder}' for the demo."
        )
    if not (folder / INDEX_NAME).is_file():
        raise FileNotFoundError(
            f"`--pipeline {value}` loads the demo folder '{folder}', which does not exist (yet) here: run from the "
            "repository root once the demo is committed, or pass a pipeline folder."
        )
    return str(folder)


def _numbers(text: str, option: str, kind: type, per_stage: bool, name: str) -> int | float | list:
    """`"8"` -> 8, and for a pipeline with per-stage arguments `"64,32,32"` -> [64, 32, 32]."""
    parts = text.split(",")
    if len(parts) > 1 and not per_stage:
        raise ValueError(f"`{option}` takes one number for {name} (it has no stages), but is {text!r}.")
    try:
        values = [kind(part) for part in parts]
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(
            f"`{option}` must be {what}, or one per stage separated by commas for a cascade, but is {text!r}."
        ) from None
    return values if len(parts) > 1 else values[0]


def call_arguments(pipeline, args: argparse.Namespace) -> dict:
    """The keyword arguments for `pipeline(...)`: the options given, each checked against what `__call__` takes.

    `--steps` and `--guidance_scale` are one number, or for a pipeline with per-stage arguments (a cascade such as
    `ImagenVideoPipeline`, which has `num_stages`) comma-separated numbers, one per stage.
    """
    parameters = inspect.signature(pipeline.__call__).parameters
    name = type(pipeline).__name__
    per_stage = getattr(pipeline, "num_stages", None) is not None
    prompt = getattr(args, "prompt", None)
    prompt_argument = getattr(args, "prompt_argument", None)
    if prompt is not None and prompt_argument is not None:
        raise ValueError(
            f"Give the prompt once, as PROMPT or as `--prompt`, but both were given: {prompt_argument!r} and "
            f"{prompt!r}."
        )
    prompt = prompt if prompt is not None else prompt_argument
    steps, scale = args.steps, args.guidance_scale
    if isinstance(steps, str):
        steps = _numbers(steps, "--steps", int, per_stage, name)
    if isinstance(scale, str):
        scale = _numbers(scale, "--guidance_scale", float, per_stage, name)
    if "image" in parameters and args.image is None:
        raise ValueError(f"`--image` is required: {name} generates a video from an image (its first frame).")
    given = {
        "prompt": ("--prompt", prompt),
        "negative_prompt": ("--negative_prompt", args.negative_prompt),
        "image": ("--image", args.image),
        "num_frames": ("--num_frames", args.num_frames),
        "height": ("--height", args.height),
        "width": ("--width", args.width),
        "num_inference_steps": ("--steps", steps),
        "guidance_scale": ("--guidance_scale", scale),
    }
    kwargs = {}
    for parameter, (option, value) in given.items():
        if value is None:
            continue
        if parameter not in parameters:
            kind = " (it is not an image-to-video pipeline)" if parameter == "image" else ""
            raise ValueError(f"`{option}` is not an option of {name}{kind}, but is {value!r}.")
        kwargs[parameter] = value
    if "image" in kwargs:
        from diffusers.utils import load_image

        if not Path(args.image).is_file():
            raise FileNotFoundError(f"`--image` {args.image!r} does not exist.")
        kwargs["image"] = load_image(args.image)
    if "prompt" in parameters and "prompt" not in kwargs and "image" not in parameters:
        raise ValueError(f"`--prompt` is required: {name} generates a video from text.")
    generator = torch.Generator("cpu").manual_seed(args.seed)  # on the CPU: the same video on every device
    if "generator" in parameters:
        kwargs["generator"] = generator
    if "output_type" in parameters:
        kwargs["output_type"] = "np"
    return kwargs


def write_video(frames: np.ndarray, output: Path, fps: int) -> None:
    """Writes `(frames, height, width, 3)` floats in [0, 1] as MP4 (imageio-ffmpeg) or GIF (PIL)."""
    from diffusers.utils import export_to_gif, export_to_video
    from PIL import Image

    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".gif":
        images = [Image.fromarray((np.clip(f, 0, 1) * 255).round().astype(np.uint8)) for f in frames]
        export_to_gif(images, str(output), fps=fps)
        return
    try:
        import imageio_ffmpeg  # noqa: F401  (diffusers' export_to_video writes MP4 through it)
    except ImportError as error:
        raise ValueError(
            f"writing '{output}' needs imageio-ffmpeg: `pip install \"diffusers-video[video]\"`, or write a .gif."
        ) from error
    export_to_video(list(np.clip(frames, 0, 1)), str(output), fps=fps)


def _first_video(frames) -> np.ndarray:
    """The first video of a pipeline's `frames` as `(frames, height, width, 3)` floats in [0, 1]."""
    video = frames[0]
    if isinstance(video, torch.Tensor):  # "pt": (frames, 3, height, width)
        return video.float().cpu().permute(0, 2, 3, 1).numpy()
    if isinstance(video, (list, tuple)):  # "pil"
        return np.stack([np.asarray(image, dtype=np.float32) / 255 for image in video])
    return np.asarray(video, dtype=np.float32)


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"`--device` must be a torch device such as cpu or cuda:0 but is {name!r}.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`--device` is {name!r}, but this machine has no CUDA device torch can use.")
    return device


def run(args: argparse.Namespace) -> int:
    """Run `generate` from parsed arguments; returns the exit code."""
    output = Path(args.output)
    if output.suffix.lower() not in _FORMATS:
        raise ValueError(f"`--output` must end in .mp4 or .gif but is {args.output!r}.")
    if args.fps < 1:
        raise ValueError(f"`--fps` must be at least 1 but is {args.fps}.")
    check_writable(output.absolute().parent)  # before the pipeline is loaded
    device = _device(args.device)
    if args.no_progress:  # also the loading bars of diffusers and transformers
        import diffusers.utils.logging
        import transformers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
    source = resolve_pipeline(args.pipeline)
    try:
        pipeline = VideoDiffusionPipeline.from_pretrained(
            source,
            dtype=_DTYPES[args.dtype],
            revision=args.revision,
            local_files_only=args.local_files_only or None,
        )
    except OSError as error:  # missing or unreadable files, Hub errors: one line, no traceback
        first_line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        shown = repr(args.pipeline) if source == args.pipeline else f"{args.pipeline!r} ('{source}')"
        raise ValueError(f"cannot load `--pipeline` {shown}: {first_line}") from error
    kwargs = call_arguments(pipeline, args)
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=args.no_progress)
    video = _first_video(pipeline(**kwargs).frames)
    write_video(video, output, args.fps)
    print(f"wrote {output} ({len(video)} frames of {video.shape[1]}x{video.shape[2]}, seed {args.seed})")
    return 0
