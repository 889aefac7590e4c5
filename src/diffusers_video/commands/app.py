"""`diffusers-video app`: a web demo of any diffusers-video pipeline, in Gradio.

    diffusers-video app PIPELINE_DIR_OR_REPO_ID [--port 7860] [--host 127.0.0.1] [--lora PATH_OR_REPO_ID]

Needs the optional extra: `pip install "diffusers-video[app]"`. The page has a prompt, a negative prompt, the number
of steps, the guidance scale, a seed, and the number of frames, height and width where the pipeline's `__call__`
takes them (0 leaves them to the pipeline) (a cascade such as `ImagenVideoPipeline` takes steps and guidance per stage, comma-separated). Generate
shows a progress bar while the pipeline runs, then the video with its MP4 for download, and, when the prompt is a
caption of the moving-shapes world, the scorer's verdict (colour, shape, direction and speed it sees). Bad input (0
steps, a size the pipeline refuses) shows the pipeline's own one-line message in the page; a prompt the scorer cannot
read gets its reason instead of a verdict.

`PIPELINE` is a folder written by `save_pretrained`, a Hub repo id, or a demo name of `diffusers-video generate`
(`videofusion`, `imagen_video`).
"""

from __future__ import annotations

import argparse
import inspect
import os
import tempfile
from pathlib import Path

import numpy as np

from ..data.shapes_scorer import ShapesScorer
from .generate import _DTYPES, DEMO_PIPELINES, _device, _first_video, call_arguments, load_pipeline, write_video

# The fields of the form, by the `__call__` argument each one needs (None: always shown).
FIELDS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "steps": "num_inference_steps",
    "guidance_scale": "guidance_scale",
    "seed": None,
    "num_frames": "num_frames",
    "height": "height",
    "width": "width",
}
VERDICT_ATTRIBUTES = ("color", "shape", "direction", "speed")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "app",
        help="a Gradio web demo of a pipeline (pip install 'diffusers-video[app]')",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "pipeline",
        metavar="PIPELINE_DIR_OR_REPO_ID",
        help=f"a pipeline folder, a Hub repo id, or a demo ({', '.join(DEMO_PIPELINES)})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address to serve on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="the port (default: 7860)")
    parser.add_argument("--fps", type=int, default=8, help="frames per second of the MP4 (default: 8)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="weights dtype (default: float32)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub repo (default: main)")
    parser.add_argument(
        "--local_files_only", "--local-files-only", action="store_true", help="read a repo from the Hub cache only"
    )
    parser.add_argument("--lora", default=None, metavar="PATH_OR_REPO_ID", help="load this LoRA into the pipeline")
    parser.add_argument("--lora_scale", "--lora-scale", type=float, default=1.0, help="its weight (default: 1)")
    parser.set_defaults(func=run)


def pipeline_defaults(pipeline) -> dict:
    """The form's initial values: the `__call__` defaults the pipeline has (None where it picks one itself)."""
    parameters = inspect.signature(pipeline.__call__).parameters
    defaults = {}
    for field, argument in FIELDS.items():
        if argument is not None and argument in parameters:
            default = parameters[argument].default
            defaults[field] = None if default is inspect.Parameter.empty else default
    return defaults


def verdict(video: np.ndarray, prompt: str) -> str:
    """The scorer's verdict as Markdown: what it sees for each attribute the prompt names, or why it cannot score."""
    try:
        score = ShapesScorer().score(video, prompt)
    except ValueError as error:  # not a moving-shapes caption (an unknown word, ...)
        return f"**Scorer:** cannot score this prompt: {error}"
    parts = []
    for attribute in VERDICT_ATTRIBUTES:
        ok = getattr(score, f"{attribute}_ok")
        if ok is not None:
            parts.append(f"{attribute} {getattr(score, attribute) or 'none'} {'✓' if ok else '✗'}")
    summary = "matches the prompt" if score.all_ok else "does not match the prompt"
    return f"**Scorer:** {summary} ({', '.join(parts)}; temporal consistency {score.temporal_consistency:.2f})"


def generate(pipeline, values: dict, fps: int, folder: Path, progress=None) -> tuple[str, str, str]:
    """One video for the form's `values`: `(mp4 path, mp4 path, verdict)`; bad input raises `ValueError`.

    `progress(done, total)` is called after every denoising step (through the pipeline's `callback_on_step_end`;
    `total` counts the steps of every stage, None when the pipeline picks the steps itself)."""
    per_stage = getattr(pipeline, "num_stages", None) is not None
    prompt = (values.get("prompt") or "").strip()
    if not prompt:
        raise ValueError("Write a prompt first: the video is generated from it.")
    seed = values.get("seed")
    if seed is None or int(seed) != seed or seed < 0:
        raise ValueError(f"The seed must be a whole number >= 0 but is {seed!r}.")
    args = argparse.Namespace(
        prompt=prompt, prompt_argument=None, image=None, seed=int(seed),
        negative_prompt=(values.get("negative_prompt") or "").strip() or None,
        num_frames=_whole(values.get("num_frames"), "frames"), height=_whole(values.get("height"), "height"),
        width=_whole(values.get("width"), "width"),
        steps=_text(values.get("steps"), per_stage, int), guidance_scale=_text(values.get("guidance_scale"), per_stage),
    )  # fmt: skip
    kwargs = call_arguments(pipeline, args)
    if progress is not None and "callback_on_step_end" in inspect.signature(pipeline.__call__).parameters:
        steps = kwargs.get("num_inference_steps")
        total = sum(steps) if isinstance(steps, list) else steps
        done = iter(range(1, 1 << 30))

        def on_step_end(pipe, step, timestep, callback_kwargs):
            progress(next(done), total)
            return {}

        kwargs["callback_on_step_end"] = on_step_end
    video = _first_video(pipeline(**kwargs).frames)  # (F, H, W, 3) in [0, 1]
    output = folder / f"video_{len(list(folder.glob('*.mp4'))):05d}_seed{seed}.mp4"
    write_video(video, output, fps)
    return str(output), str(output), verdict(video, prompt)


def _whole(value, name: str) -> int | None:
    """A frames/height/width field: 0 or empty is the pipeline's default (None)."""
    if value is None or value == "" or value == 0:
        return None
    if int(value) != value:
        raise ValueError(f"The {name} must be a whole number but is {value!r}.")
    return int(value)


def _text(value, per_stage: bool, kind: type = float) -> str | None:
    """A number field as `call_arguments` reads it: text, comma-separated per stage for a cascade."""
    if value is None or value == "":
        return None
    if per_stage:
        return str(value).strip()
    return str(int(value)) if kind is int and float(value) == int(value) else str(value)


def build_app(pipeline, title: str, fps: int = 8):
    """The Gradio `Blocks` of the demo for `pipeline` (not launched)."""
    import gradio as gr  # optional: `pip install "diffusers-video[app]"`

    defaults = pipeline_defaults(pipeline)
    per_stage = getattr(pipeline, "num_stages", None) is not None
    folder = Path(tempfile.mkdtemp(prefix="diffusers_video_app_"))
    with gr.Blocks(title=f"diffusers-video: {title}") as demo:
        gr.Markdown(f"# {type(pipeline).__name__}\n`{title}`")
        with gr.Row():
            with gr.Column():
                shown = {name: FIELDS[name] is None or name in defaults for name in FIELDS}
                fields = {
                    "prompt": gr.Textbox(
                        label="Prompt", value="a red circle moving right", elem_id="prompt", visible=shown["prompt"]
                    ),
                    "negative_prompt": gr.Textbox(
                        label="Negative prompt", elem_id="negative_prompt", visible=shown["negative_prompt"]
                    ),
                }
                stage_note = " (per stage, comma-separated)" if per_stage else ""
                for name, label in (("steps", "Steps"), ("guidance_scale", "Guidance scale")):
                    value = defaults.get(name)
                    if per_stage:
                        text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value
                        fields[name] = gr.Textbox(
                            label=label + stage_note, value=text or "", elem_id=name, visible=shown[name]
                        )
                    else:
                        fields[name] = gr.Number(label=label, value=value, elem_id=name, visible=shown[name])
                fields["seed"] = gr.Number(label="Seed", value=0, precision=0, elem_id="seed")
                for name, label in (("num_frames", "Frames"), ("height", "Height"), ("width", "Width")):
                    fields[name] = gr.Number(
                        label=f"{label} (0: the pipeline's default)", value=defaults.get(name) or 0, precision=0,
                        elem_id=name, visible=shown[name],
                    )  # fmt: skip
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Video", elem_id="video", autoplay=True, loop=True)
                download = gr.File(label="MP4", elem_id="download")
                scored = gr.Markdown(elem_id="verdict")
        names = list(fields)

        def on_generate(*values, progress=gr.Progress()):  # noqa: B008 (gradio's own idiom)
            progress(0, desc="generating")

            def step_done(done: int, total: int | None) -> None:
                progress((done, total), desc="denoising", unit="steps")

            try:
                return generate(pipeline, dict(zip(names, values)), fps, folder, step_done)
            except (ValueError, TypeError) as error:  # the user's input: one line in the page, no traceback
                raise gr.Error(str(error), print_exception=False) from None

        button.click(on_generate, inputs=[fields[name] for name in names], outputs=[video, download, scored])
    return demo


def run(args: argparse.Namespace) -> int:
    """Load the pipeline and serve the demo until interrupted; returns the exit code."""
    if not 0 < args.port < 65536:
        raise ValueError(f"`--port` must be in 1..65535 but is {args.port}.")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no usage reports
    try:
        import gradio  # optional
    except ImportError as error:
        raise ValueError('`diffusers-video app` needs Gradio: `pip install "diffusers-video[app]"`.') from error
    args.no_progress = False
    pipeline = load_pipeline(args).to(_device(args.device))
    pipeline.set_progress_bar_config(leave=False)
    demo = build_app(pipeline, args.pipeline, fps=args.fps)
    demo.queue(default_concurrency_limit=1)  # one generation at a time: a pipeline is not thread-safe
    theme = gradio.themes.Base(font=["sans-serif"], font_mono=["monospace"])  # no web fonts: works offline
    demo.launch(
        server_name=args.host, server_port=args.port, show_error=True, ssr_mode=False, share=False, theme=theme
    )
    return 0
