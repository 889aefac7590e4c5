"""`diffusers-video convert`: convert checkpoints to diffusers-video, offline.

    diffusers-video convert modelscope --checkpoint ./text-to-video-ms-1.7b --output_dir ./videofusion-ms
    diffusers-video convert sd --checkpoint ./stable-diffusion-2-1 --output_dir ./unet3d
    diffusers-video convert svd-decoder --checkpoint ./stable-video-diffusion --output_dir ./video-vae
    diffusers-video convert i2vgen-xl --checkpoint ./i2vgen-xl --output_dir ./i2vgen-xl-cascade
    diffusers-video convert video-refiner --checkpoint ./zeroscope_v2_XL --output_dir ./video-refiner

Each converter has its own options (`... convert sd --help`). The conversions are `diffusers_video.conversion.sd`,
`diffusers_video.conversion.modelscope`, `diffusers_video.conversion.svd_decoder`,
`diffusers_video.conversion.i2vgen_xl` and `diffusers_video.conversion.video_refiner`; the scripts of the repository's
`conversion_scripts/` run the same command lines ([`converter_main`]). A bad input is one line on stderr, `<prog>: error: <message>`, and exit status 1, with
nothing written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..conversion import i2vgen_xl, modelscope, sd, svd_decoder, video_refiner
from ..models.temporal import FRAME_POSITION_ENCODINGS, TEMPORAL_ATTENTION_TYPES, TEMPORAL_CONV_PADDINGS
from ..models.unet_3d_blocks import TEMPORAL_LAYOUTS
from . import PROG

# Options of `UNet3DModel.from_unet2d` that `convert sd` takes (absent unless given: UNet3DModel's defaults apply).
TEMPORAL_OPTIONS = (
    "temporal_attention", "temporal_attention_head_dim", "temporal_conv", "temporal_conv_kernel_size",
    "frame_position_encoding", "max_frames", "frame_adaptor", "scalar_conditions", "in_channels", "temporal_layout",
    "temporal_conv_padding",
)  # fmt: skip
# `--frame_adaptor` choices -> `UNet3DModel(frame_adaptor=...)`; a bare `--frame_adaptor` (its first, on/off spelling)
# is "resnet".
FRAME_ADAPTOR_CHOICES = {"none": False, "resnet": True, "conv": "conv"}


def add_sd_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `convert sd`."""
    parser.add_argument(
        "--checkpoint", required=True, help="Diffusers pipeline/UNet folder, or a single-file checkpoint."
    )
    parser.add_argument("--output_dir", required=True, help="Folder to save the UNet3DModel in.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config", help="For a single file: diffusers UNet (or pipeline) folder with the UNet config."
    )
    source.add_argument("--original_config", help="For a single file: the original LDM yaml.")
    parser.add_argument("--subfolder", help="The UNet's folder inside a pipeline folder (default: unet).")
    parser.add_argument("--variant", help="Weights variant of a diffusers folder, e.g. fp16.")
    parser.add_argument("--allow_pickle", action="store_true", help="Allow pickled .ckpt/.pt/.pth/.bin weights.")
    parser.add_argument("--dtype", choices=sorted(sd.DTYPES), default="float32", help="dtype of the saved weights.")

    temporal = parser.add_argument_group("temporal layers (defaults: those of UNet3DModel)")
    none_or = lambda choices: [*choices, "none"]  # noqa: E731
    temporal.add_argument("--temporal_attention", choices=none_or(TEMPORAL_ATTENTION_TYPES), default=argparse.SUPPRESS)
    temporal.add_argument("--temporal_attention_head_dim", type=int, default=argparse.SUPPRESS)
    temporal.add_argument(
        "--no_temporal_conv", dest="temporal_conv", action="store_false", default=argparse.SUPPRESS,
        help="No temporal convolutions.",
    )  # fmt: skip
    temporal.add_argument("--temporal_conv_kernel_size", type=int, default=argparse.SUPPRESS)
    temporal.add_argument(
        "--frame_position_encoding", choices=none_or(FRAME_POSITION_ENCODINGS), default=argparse.SUPPRESS
    )
    temporal.add_argument("--max_frames", type=int, default=argparse.SUPPRESS)
    temporal.add_argument(
        "--frame_adaptor", nargs="?", const="resnet", choices=list(FRAME_ADAPTOR_CHOICES), default=argparse.SUPPRESS,
        help="MagicVideo's per-frame scales and shifts: after each spatial resnet ('resnet'; a bare --frame_adaptor), "
        "after each 2D convolution of the resnets ('conv', the paper's), or none.",
    )  # fmt: skip
    temporal.add_argument(
        "--temporal_layout", choices=TEMPORAL_LAYOUTS, default=argparse.SUPPRESS,
        help="Where the temporal layers sit: after the spatial ones ('default'), ModelScope's blocks ('modelscope'), "
        "or temporal attention beside spatial attention, z + S(z) + T(z) ('parallel', MagicVideo's).",
    )  # fmt: skip
    temporal.add_argument(
        "--temporal_conv_padding", choices=TEMPORAL_CONV_PADDINGS, default=argparse.SUPPRESS,
        help="Temporal convolutions centred ('same') or over past frames only ('causal', for directed models).",
    )  # fmt: skip
    temporal.add_argument(
        "--scalar_conditions", nargs="+", metavar="NAME", default=argparse.SUPPRESS,
        help="Extra scalar conditions added to the time embedding, e.g. fps noise_aug.",
    )  # fmt: skip
    temporal.add_argument(
        "--in_channels", type=int, default=argparse.SUPPRESS,
        help="Input channels (more than the 2D UNet's for concatenated conditioning; the extra ones start at zero).",
    )  # fmt: skip


def temporal_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `from_unet2d` arguments given on the command line ("none" -> None, `--frame_adaptor` by its choice)."""
    config = {name: getattr(args, name) for name in TEMPORAL_OPTIONS if hasattr(args, name)}
    if "frame_adaptor" in config:
        config["frame_adaptor"] = FRAME_ADAPTOR_CHOICES[config["frame_adaptor"]]
    for name in ("temporal_attention", "frame_position_encoding"):
        if config.get(name) == "none":
            config[name] = None
    if "scalar_conditions" in config:
        config["scalar_conditions"] = tuple(config["scalar_conditions"])
    return config


def convert_sd(args: argparse.Namespace) -> sd.ConversionSummary:
    """Run `conversion.sd.convert` with the options of `convert sd`."""
    return sd.convert(
        args.checkpoint,
        args.output_dir,
        config=args.config,
        original_config=args.original_config,
        subfolder=args.subfolder,
        variant=args.variant,
        allow_pickle=args.allow_pickle,
        dtype=args.dtype,
        temporal_config=temporal_config_from_args(args),
    )


def add_modelscope_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `convert modelscope`."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help=f"A {modelscope.PIPELINE_CLASS_NAME} folder or a {modelscope.UNET_CLASS_NAME} folder.",
    )
    parser.add_argument("--output_dir", required=True, help="The folder to write (absent or empty).")
    parser.add_argument("--variant", help="Weights variant of the UNet, e.g. fp16.")
    parser.add_argument("--allow_pickle", action="store_true", help="Allow pickled UNet weights (.bin).")


def convert_modelscope(args: argparse.Namespace) -> modelscope.ConversionSummary:
    """Run `conversion.modelscope.convert` with the options of `convert modelscope`."""
    return modelscope.convert(args.checkpoint, args.output_dir, variant=args.variant, allow_pickle=args.allow_pickle)


def add_svd_decoder_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `convert svd-decoder`."""
    parser.add_argument(
        "--checkpoint", required=True, help="An AutoencoderKLTemporalDecoder folder, or an SVD pipeline folder."
    )
    parser.add_argument("--output_dir", required=True, help="The folder to write the AutoencoderKLVideo in (new).")
    parser.add_argument("--subfolder", help="The VAE's folder inside --checkpoint (default: the folder or its vae/).")


def convert_svd_decoder(args: argparse.Namespace) -> svd_decoder.SVDDecoderConversion:
    """Run `conversion.svd_decoder.convert_svd_decoder` with the options of `convert svd-decoder`."""
    return svd_decoder.convert_svd_decoder(args.checkpoint, args.output_dir, subfolder=args.subfolder)


def add_i2vgen_xl_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `convert i2vgen-xl`."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help=f"An {i2vgen_xl.PIPELINE_CLASS_NAME} folder or an {i2vgen_xl.UNET_CLASS_NAME} folder.",
    )
    parser.add_argument("--output_dir", required=True, help="The folder to write (absent or empty).")
    parser.add_argument("--variant", help="Weights variant of the UNet, e.g. fp16.")
    parser.add_argument("--allow_pickle", action="store_true", help="Allow pickled UNet weights (.bin).")
    parser.add_argument(
        "--vgen_image_path",
        action="store_true",
        help="Reproduce VGen's original UNet, which adds the concatenated image path twice (diffusers adds it once).",
    )


def convert_i2vgen_xl(args: argparse.Namespace) -> i2vgen_xl.I2VGenXLConversionSummary:
    """Run `conversion.i2vgen_xl.convert` with the options of `convert i2vgen-xl`."""
    return i2vgen_xl.convert(
        args.checkpoint,
        args.output_dir,
        variant=args.variant,
        allow_pickle=args.allow_pickle,
        vgen_image_path=args.vgen_image_path,
    )


def convert_video_refiner(args: argparse.Namespace) -> video_refiner.RefinerConversionSummary:
    """Run `conversion.video_refiner.convert` with the options of `convert video-refiner`."""
    return video_refiner.convert(
        args.checkpoint, args.output_dir, variant=args.variant, allow_pickle=args.allow_pickle
    )


@dataclass(frozen=True)
class Converter:
    """A converter of `diffusers-video convert`: its options, the conversion, and the script that wraps it."""

    script: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    convert: Callable[[argparse.Namespace], Any]


CONVERTERS = {
    "i2vgen-xl": Converter(
        script="convert_i2vgen_xl.py",
        help="diffusers' I2VGenXLPipeline / I2VGenXLUNet -> I2VGenXLCascadePipeline / UNet3DModel + content encoder",
        description=(
            f"Convert a diffusers {i2vgen_xl.PIPELINE_CLASS_NAME} folder (the public ali-vilab/i2vgen-xl layout) into "
            "an "
            f"I2VGenXLCascadePipeline folder, or an {i2vgen_xl.UNET_CLASS_NAME} folder into unet/ (UNet3DModel) and "
            "content_encoder/ (I2VGenXLContentEncoder) folders, with the same outputs. Works offline."
        ),
        add_arguments=add_i2vgen_xl_arguments,
        convert=convert_i2vgen_xl,
    ),
    "video-refiner": Converter(
        script="convert_video_to_video_to_refiner.py",
        help="diffusers' VideoToVideoSDPipeline (zeroscope-XL, ModelScope video-to-video) -> VideoRefinerPipeline",
        description=(
            "Convert a diffusers VideoToVideoSDPipeline (or TextToVideoSDPipeline) folder into a VideoRefinerPipeline "
            "folder that refines a video into the same frames. Works offline."
        ),
        add_arguments=add_modelscope_arguments,
        convert=convert_video_refiner,
    ),
    "modelscope": Converter(
        script="convert_modelscope_to_videofusion.py",
        help="diffusers' TextToVideoSDPipeline / UNet3DConditionModel (ModelScope) -> VideoFusionPipeline / UNet3DModel",
        description=(
            f"Convert a diffusers {modelscope.PIPELINE_CLASS_NAME} folder into a VideoFusionPipeline folder, or a "
            f"{modelscope.UNET_CLASS_NAME} folder into a UNet3DModel folder, with the same outputs. Works offline."
        ),
        add_arguments=add_modelscope_arguments,
        convert=convert_modelscope,
    ),
    "sd": Converter(
        script="convert_sd_to_unet3d.py",
        help="a Stable Diffusion UNet (diffusers folder or single file) -> UNet3DModel",
        description=(
            "Convert a Stable Diffusion UNet (diffusers folder or original single file) into a diffusers-video "
            "UNet3DModel that equals it frame by frame. Works offline."
        ),
        add_arguments=add_sd_arguments,
        convert=convert_sd,
    ),
    "svd-decoder": Converter(
        script="convert_svd_decoder_to_video_vae.py",
        help="Stable Video Diffusion's AutoencoderKLTemporalDecoder -> AutoencoderKLVideo",
        description=(
            "Convert a diffusers AutoencoderKLTemporalDecoder folder (SVD's VAE) into a diffusers-video "
            "AutoencoderKLVideo that decodes the same frames (its post_quant_conv the identity). Works offline."
        ),
        add_arguments=add_svd_decoder_arguments,
        convert=convert_svd_decoder,
    ),
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert checkpoints to diffusers-video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    converters = parser.add_subparsers(dest="converter", required=True, metavar="CONVERTER")
    for name, converter in sorted(CONVERTERS.items()):
        sub = converters.add_parser(name, help=converter.help, description=converter.description)
        converter.add_arguments(sub)
        sub.set_defaults(func=run)


def _convert(name: str, args: argparse.Namespace, prog: str) -> int:
    """Run converter `name`; prints its summary, or a bad input as one line on stderr; returns the exit status."""
    try:
        summary = CONVERTERS[name].convert(args)
    except (ValueError, OSError) as error:  # a bad input (ConversionError is a ValueError) or an unreadable file
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run `convert` from parsed arguments; returns the converter's exit status."""
    return _convert(args.converter, args, f"{PROG} convert {args.converter}")


def converter_main(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The command line of one converter alone, as the scripts of `conversion_scripts/` run it.

    Args:
        name (`str`): A key of `CONVERTERS`.
        argv (`Sequence[str]`, *optional*): The arguments (default: the process's).
        prog (`str`, *optional*): The program name in messages (default: the converter's script name).

    Returns:
        `int`: The exit status (1 with a one-line message on bad input).
    """
    converter = CONVERTERS[name]
    parser = argparse.ArgumentParser(prog=prog or converter.script, description=converter.description)
    converter.add_arguments(parser)
    return _convert(name, parser.parse_args(argv), parser.prog)
