"""The diffusers-format folders of the public checkpoints, loaded by our pipelines' `from_pretrained` and converted in
memory: swap the class name and nothing else.

| our class | loads (besides its own folders) | converted by |
|---|---|---|
| `VideoFusionPipeline` | `TextToVideoSDPipeline` (ModelScope 1.7B, zeroscope v2 576w) | `conversion.modelscope` |
| `VideoRefinerPipeline` | `VideoToVideoSDPipeline` (zeroscope v2 XL), `TextToVideoSDPipeline` | `conversion.video_refiner` |
| `I2VGenXLCascadePipeline` | `I2VGenXLPipeline` (ali-vilab/i2vgen-xl) | `conversion.i2vgen_xl` |

[`foreign_folder`] is the one step `VideoDiffusionPipeline.from_pretrained` adds: for such a folder it runs the
conversion's in-memory function (the same strict key maps as `diffusers-video convert`, one code path), and yields a
temporary folder holding our `model_index.json` and links to the components taken as they are (VAE, text encoder,
tokenizer, ...), with the converted components to pass to diffusers' loader. diffusers then loads the linked
components with the user's `dtype`/`torch_dtype`, `variant`, ... as it loads any folder; the converted models are cast
to the same dtype. One line is logged saying what was converted; `save_pretrained` afterwards writes our format.
`AutoencoderKLVideo.from_pretrained` does the same for Stable Video Diffusion's VAE (`conversion.svd_decoder`).

A diffusers pipeline folder of another kind is refused with a `ValueError` naming the class found and the class that
loads it; a key the conversion does not know is a `ValueError` naming it (`conversion.common.ConversionError`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers.utils import logging

from ..conversion import i2vgen_xl, modelscope, svd_decoder, video_refiner
from ..conversion.common import ConversionError, ConvertedPipeline
from ..folders import INDEX_NAME, read_json

__all__ = ["CONVERTED_FOLDERS", "foreign_folder"]

logger = logging.get_logger(__name__)

# Our pipeline class -> {diffusers pipeline class whose folders it converts: the in-memory conversion}.
CONVERTED_FOLDERS: dict[str, dict[str, Callable[..., ConvertedPipeline]]] = {
    "VideoFusionPipeline": {"TextToVideoSDPipeline": modelscope.convert_pipeline_in_memory},
    "VideoRefinerPipeline": {
        "VideoToVideoSDPipeline": video_refiner.convert_in_memory,
        "TextToVideoSDPipeline": video_refiner.convert_in_memory,
    },
    "I2VGenXLCascadePipeline": {"I2VGenXLPipeline": i2vgen_xl.convert_in_memory},
}
# What `VideoDiffusionPipeline.from_pretrained` (any of our classes) makes of a diffusers folder.
_DEFAULT_TARGETS = {
    "TextToVideoSDPipeline": "VideoFusionPipeline",
    "VideoToVideoSDPipeline": "VideoRefinerPipeline",
    "I2VGenXLPipeline": "I2VGenXLCascadePipeline",
}
# A hint for diffusers folders none of our pipelines converts, but a part of which one of our classes loads.
_PARTS_WE_LOAD = {
    "StableVideoDiffusionPipeline": f' (its VAE: `AutoencoderKLVideo.from_pretrained(..., subfolder="vae")`, '
    f"converted from {svd_decoder.SVD_CLASS_NAME})",
}


def _target_dtype(kwargs: Mapping[str, Any], name: str) -> torch.dtype:
    """The dtype diffusers would load component `name` in: `dtype` (or the deprecated `torch_dtype`), a dict of them
    by component name with a "default", or float32."""
    dtype = kwargs.get("dtype") if kwargs.get("dtype") is not None else kwargs.get("torch_dtype")
    if isinstance(dtype, Mapping):
        dtype = dtype.get(name, dtype.get("default"))
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


@contextlib.contextmanager
def foreign_folder(
    folder: str | os.PathLike,
    pipeline_class: type,
    kwargs: Mapping[str, Any],
    *,
    source: str,
    allow_pickle: bool = False,
    pipeline_classes: Mapping[str, type] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The folder for diffusers to load and the components to pass it: `folder` and nothing when it is not a foreign
    folder, else a temporary folder of the converted pipeline (see the module docstring).

    Args:
        folder (`str` or `os.PathLike`): A local folder (downloaded already for a repo id).
        pipeline_class (`type`): The class `from_pretrained` was called on.
        kwargs (`Mapping[str, Any]`): The keywords of `from_pretrained`: `variant`, `dtype`/`torch_dtype`, and
            components given by the user (not converted then).
        source (`str`): The folder or repo id as the user named it, for the log line and errors.
        allow_pickle (`bool`, defaults to False): Allow pickled UNet weights.
        pipeline_classes (`Mapping[str, type]`, *optional*): For `VideoDiffusionPipeline` itself: our classes by
            name; a diffusers folder is then loaded by the class `_DEFAULT_TARGETS` names.

    Yields:
        `tuple[str, dict]`: The folder, and the converted components by name.

    Raises:
        ValueError: a diffusers pipeline folder this class does not convert (naming the class found and the class
            that loads it), or a folder the conversion refuses (naming the key or component).
    """
    index = read_json(Path(folder) / INDEX_NAME, missing_ok=True) if Path(folder).is_dir() else None
    found = index.get("_class_name") if isinstance(index, dict) else None
    names = {c.__name__ for c in pipeline_class.__mro__} | set(pipeline_classes or ())
    ours = not isinstance(found, str) or found in names or not hasattr(diffusers, found)
    if ours or (pipeline_classes is not None and found not in _DEFAULT_TARGETS):
        yield os.fspath(folder), {}  # our own folder (or one `check_pipeline_folder` reports on)
        return
    target = _DEFAULT_TARGETS.get(found) if pipeline_classes is not None else pipeline_class.__name__
    convert = CONVERTED_FOLDERS.get(target or "", {}).get(found)
    if convert is None:
        loaders = sorted(f"{theirs} ({mine})" for mine, sources in CONVERTED_FOLDERS.items() for theirs in sources)
        raise ValueError(
            f"'{Path(folder) / INDEX_NAME}' holds a {found}, not a {pipeline_class.__name__}: load it with "
            f"`{found}.from_pretrained`"
            f"{_PARTS_WE_LOAD.get(found, '')}. diffusers-video converts these diffusers pipelines: {', '.join(loaders)}."
        )
    try:
        converted = convert(Path(folder), variant=kwargs.get("variant"), allow_pickle=allow_pickle)
    except ConversionError as error:
        raise ConversionError(f"'{source}' ({found}) cannot be loaded as a {target}: {error}") from error
    models = {
        name: torch.nn.Module.to(model, _target_dtype(kwargs, name)) if isinstance(model, torch.nn.Module) else model
        for name, model in converted.models.items()
        if name not in kwargs  # a component the user passes wins over the converted one
    }
    with tempfile.TemporaryDirectory(prefix="diffusers-video-converted-") as temporary:
        shadow = Path(temporary)
        for name in converted.copied:  # linked, not copied: nothing large is written
            (shadow / name).symlink_to(Path(folder).resolve() / name, target_is_directory=True)
        (shadow / INDEX_NAME).write_text(json.dumps(converted.index, indent=2, sort_keys=True) + "\n")
        logger.warning(
            f"'{source}': {converted.description()} save_pretrained writes the {target} format, which loads without "
            "converting."
        )
        yield str(shadow), models
