"""diffusers' `VideoToVideoSDPipeline` (zeroscope-XL, ModelScope's video-to-video) -> `VideoRefinerPipeline`.

[`convert`] does it.

The source folder has the components of ModelScope's text-to-video pipeline (`unet/` a `UNet3DConditionModel`,
`vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`) under `model_index.json`'s `VideoToVideoSDPipeline`. The UNet
becomes a `UNet3DModel(temporal_layout="modelscope")` with every key kept and checked strictly (the functions of
`conversion.modelscope`); the other components, the scheduler included (any diffusers scheduler: SDEdit runs it as
it is), are copied as they are. The result refines a video into the frames diffusers' pipeline makes for the same
arguments. The command line is `diffusers-video convert video-refiner`, also run by
`conversion_scripts/convert_video_to_video_to_refiner.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers

from ..folders import INDEX_NAME, read_json
from ..models.unet_3d import UNet3DModel
from .common import ConversionError, ConvertedPipeline, write_atomically
from .modelscope import COPIED_COMPONENTS, UNET_CLASS_NAME, _wrong_component, unet_folder_to_unet3d

__all__ = [
    "PIPELINE_CLASS_NAMES",
    "RefinerConversionSummary",
    "check_refiner_source_folder",
    "convert",
    "convert_in_memory",
]

# The diffusers pipelines whose folders hold a text-conditioned ModelScope UNet a refiner can use.
PIPELINE_CLASS_NAMES = ("VideoToVideoSDPipeline", "TextToVideoSDPipeline")
TARGET_PIPELINE = "VideoRefinerPipeline"


@dataclass
class RefinerConversionSummary:
    """What `convert` did, for the CLI to print and tests to check."""

    source: str
    source_kind: str
    output_dir: str
    unet_tensors: int = 0
    unet_config: dict[str, Any] = field(default_factory=dict)
    scheduler: str = ""
    copied: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"Converted {self.source} ({self.source_kind}) -> {self.output_dir} ({TARGET_PIPELINE})",
            f"  UNet: {self.unet_tensors} tensors, every name kept; UNet3DModel(temporal_layout='modelscope')",
            f"  scheduler: {self.scheduler}, copied as it is (SDEdit runs its schedule)",
            f"  copied as they are: {', '.join(self.copied)}",
        ]


def check_refiner_source_folder(folder: Path) -> dict[str, Any]:
    """Refuse a folder that is not a `VideoToVideoSDPipeline` (or `TextToVideoSDPipeline`) with the usual
    components; returns its `model_index.json`."""
    index = read_json(folder / INDEX_NAME)
    class_name = index.get("_class_name")
    if class_name not in PIPELINE_CLASS_NAMES:
        raise ConversionError(
            f"`{folder / INDEX_NAME}` describes a {class_name}, not a {' or '.join(PIPELINE_CLASS_NAMES)}."
        )
    for name, entry in {**COPIED_COMPONENTS, "unet": ("diffusers", UNET_CLASS_NAME)}.items():
        found = index.get(name)
        if not isinstance(found, list) or tuple(found) != entry:
            raise ConversionError(_wrong_component(folder, name, found, entry))
    scheduler = index.get("scheduler")
    if not isinstance(scheduler, list) or len(scheduler) != 2 or scheduler[0] != "diffusers":
        raise ConversionError(
            f"`{folder / INDEX_NAME}` has `scheduler`: {scheduler!r}, expected a diffusers scheduler."
        )
    if not hasattr(diffusers, str(scheduler[1])):
        raise ConversionError(f"`{folder / INDEX_NAME}` names the scheduler {scheduler[1]!r}, which diffusers lacks.")
    for name in (*COPIED_COMPONENTS, "unet", "scheduler"):
        if not (folder / name).is_dir():
            raise ConversionError(f"`{folder}` has no `{name}/` folder.")
    return index


def convert_in_memory(
    checkpoint: str | Path, *, variant: str | None = None, allow_pickle: bool = False
) -> ConvertedPipeline:
    """Convert a `VideoToVideoSDPipeline` (or `TextToVideoSDPipeline`) folder into a `VideoRefinerPipeline` in memory
    (what `convert` saves).

    Args:
        checkpoint (`str | Path`): The pipeline folder.
        variant (`str | None`): Weights variant of the UNet, e.g. "fp16".
        allow_pickle (`bool`, defaults to False): Allow pickled UNet weights (`.bin`).

    Returns:
        `ConvertedPipeline`: `unet` converted (a `UNet3DModel`); `vae`, `text_encoder`, `tokenizer` and `scheduler`
        to be taken from the folder as they are.
    """
    checkpoint = Path(checkpoint)
    index = check_refiner_source_folder(checkpoint)
    unet = unet_folder_to_unet3d(checkpoint / "unet", variant, allow_pickle)
    new_index = {
        "_class_name": TARGET_PIPELINE,
        "_diffusers_version": diffusers.__version__,
        "unet": [UNet3DModel.__module__, UNet3DModel.__name__],
        "scheduler": list(index["scheduler"]),
        **{name: list(entry) for name, entry in COPIED_COMPONENTS.items()},
    }
    copied = [*COPIED_COMPONENTS, "scheduler"]
    return ConvertedPipeline(
        checkpoint, index["_class_name"], new_index, {"unet": unet}, copied, {"unet": len(unet.state_dict())}
    )


def convert(
    checkpoint: str | Path, output_dir: str | Path, *, variant: str | None = None, allow_pickle: bool = False
) -> RefinerConversionSummary:
    """Convert a `VideoToVideoSDPipeline` (or `TextToVideoSDPipeline`) folder into a `VideoRefinerPipeline` folder.

    Args:
        checkpoint (`str | Path`): The pipeline folder.
        output_dir (`str | Path`): The folder to write (absent or empty).
        variant (`str | None`): Weights variant of the UNet, e.g. "fp16".
        allow_pickle (`bool`, defaults to False): Allow pickled UNet weights (`.bin`).

    Returns:
        `RefinerConversionSummary`.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    if not checkpoint.is_dir():
        what = "does not exist" if not checkpoint.exists() else "is a file"
        raise ConversionError(f"--checkpoint `{checkpoint}` {what}; expected a VideoToVideoSDPipeline folder.")
    if not (checkpoint / INDEX_NAME).is_file():
        raise ConversionError(f"`{checkpoint}` has no {INDEX_NAME}: it is not a diffusers pipeline folder.")
    converted = convert_in_memory(checkpoint, variant=variant, allow_pickle=allow_pickle)
    summary = RefinerConversionSummary(str(checkpoint), converted.source_class, str(output_dir))
    summary.scheduler = converted.index["scheduler"][1]
    summary.unet_tensors = converted.tensors["unet"]
    summary.unet_config = {k: v for k, v in converted.models["unet"].config.items() if not k.startswith("_")}
    summary.copied = list(converted.copied)
    write = converted.write

    write_atomically(output_dir, write)
    return summary
