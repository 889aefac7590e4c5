"""`diffusers-video imagen-video`: the folders of an Imagen Video cascade's training.

    diffusers-video imagen-video text-encoder --output_dir runs/imagen_video_t5 [--text_steps 600]
    diffusers-video imagen-video assemble STAGE_FOLDER ... --output_dir runs/imagen_video/cascade [--fp16]
    diffusers-video imagen-video extract CASCADE --stage 3 --output_dir runs/imagen_video/ssr64/final

`text-encoder` writes the folder every stage run starts from (`model.pretrained_model_name_or_path`): the T5 stand-in
and the training scheduler. `assemble` saves stage folders (the `final/` of stage runs or distilled students, base
first) as one `ImagenVideoPipeline` folder; `extract` writes one stage of a cascade folder back as a stage folder, to
distil it. See `diffusers_video.training.imagen_video` and pipelines/imagen_video/README.md. Also runs as
`python -m diffusers_video.commands.imagen_video ...`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..training.imagen_video import assemble_cascade, extract_stage, write_text_encoder_folder
from . import action_subparsers, standalone_main

NAME = "imagen-video"


def register(subparsers) -> None:
    sub = action_subparsers(
        subparsers, NAME, "write, assemble and extract the folders of an Imagen Video cascade", __doc__, run
    )
    folder = sub.add_parser("text-encoder", help="write tokenizer/, text_encoder/ (T5 stand-in) and scheduler/")
    folder.add_argument("--output_dir", required=True)
    folder.add_argument("--d_model", type=int, default=64)
    folder.add_argument("--num_layers", type=int, default=2)
    folder.add_argument("--seed", type=int, default=0)
    folder.add_argument("--text_steps", type=int, default=0, help="contrastive pre-training steps (0: random)")
    folder.add_argument("--text_num_clips", type=int, default=8000)
    assemble = sub.add_parser("assemble", help="save stage folders (base first) as one ImagenVideoPipeline folder")
    assemble.add_argument("stage_folders", nargs="+")
    assemble.add_argument("--output_dir", required=True)
    assemble.add_argument("--fp16", action="store_true", help="save the UNets' weights in float16")
    extract = sub.add_parser("extract", help="save one stage of a cascade folder as a stage folder (to distil it)")
    extract.add_argument("cascade")
    extract.add_argument("--stage", type=int, required=True, help="the stage's index, 0 for the base")
    extract.add_argument("--output_dir", required=True)
    extract.add_argument("--num_frames", type=int, default=None, help="the cascade's final size (default: its own)")
    extract.add_argument("--height", type=int, default=None)
    extract.add_argument("--width", type=int, default=None)
    extract.add_argument("--noise_aug_level", type=float, default=0.1)


def run(args: argparse.Namespace) -> int:
    """Run `imagen-video` from parsed arguments; returns the exit code."""
    if args.action == "text-encoder":
        written = write_text_encoder_folder(
            args.output_dir, args.d_model, args.num_layers, args.seed, args.text_steps, args.text_num_clips
        )
    elif args.action == "extract":
        written = extract_stage(
            args.cascade, args.stage, args.output_dir, args.num_frames, args.height, args.width, args.noise_aug_level
        )
    else:
        assemble_cascade(args.stage_folders, args.output_dir, fp16=args.fp16)
        written = args.output_dir
    print(f"Wrote {written}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m diffusers_video.commands.imagen_video ACTION ...`: `diffusers-video imagen-video ACTION ...`."""
    return standalone_main(NAME, register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
