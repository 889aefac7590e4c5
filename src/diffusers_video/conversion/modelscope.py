"""diffusers' ModelScope text-to-video model -> diffusers-video, offline and exactly: [`convert`].

The source is a diffusers `TextToVideoSDPipeline` folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`,
`tokenizer/`, `scheduler/`) or a `UNet3DConditionModel` folder alone (`config.json` and its weights).

A UNet folder becomes a `UNet3DModel` folder; a pipeline folder becomes a `VideoFusionPipeline` folder: `vae/`,
`text_encoder/` and `tokenizer/` copied as they are, the converted UNet as `residual_unet/`, the DDIM scheduler as a
`DecomposedNoiseScheduler` with `base_noise_ratio=0` (DDIM itself), no base generator. Its outputs are those of the
source pipeline.

The UNet becomes a `UNet3DModel` with `temporal_layout="modelscope"`, whose parameters have exactly the names of
`UNet3DConditionModel`'s: the state-dict conversion keeps every key and checks them strictly (an unexpected, missing
or mis-shaped key is an error that names it). Steps, each a small function:
    1. the config (`unet3d_condition_config_to_unet3d`) and the weights (`load_unet_weights`,
       `convert_unet3d_condition_state_dict`) of the UNet;
    2. the scheduler config (`ddim_config_to_decomposed`);
    3. everything written to a temporary folder next to `output_dir`, renamed at the end (`write_atomically`), so
       that a failure leaves no half-written output.

The pipeline folder's `model_index.json` names the classes by their module paths (`diffusers_video.models.unet_3d`,
`diffusers_video.schedulers.scheduling_decomposed`) and the pipeline class by name; the pipeline class itself is not
imported here (this package sits just above the models and schedulers). The command line is
`diffusers-video convert modelscope` (`commands/convert.py`), also run by
`conversion_scripts/convert_modelscope_to_videofusion.py`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import torch
from accelerate import init_empty_weights
from diffusers import DDIMScheduler, UNet3DConditionModel

from ..folders import INDEX_NAME, read_json
from ..models.temporal import MODELSCOPE_INPUT_HEADS
from ..models.unet_3d import UNet3DModel
from ..schedulers.scheduling_decomposed import DecomposedNoiseScheduler
from .common import (
    ConversionError,
    ConvertedPipeline,
    first_keys,
    read_safetensors,
    safetensors_files,
    write_atomically,
)

__all__ = [
    "ConversionSummary",
    "check_pipeline_folder",
    "convert",
    "convert_pipeline_in_memory",
    "convert_unet3d_condition_state_dict",
    "convert_unet_folder",
    "ddim_config_to_decomposed",
    "expected_unet3d_shapes",
    "load_unet_weights",
    "unet3d_condition_config_to_unet3d",
    "unet_folder_to_unet3d",
    "write_atomically",
]

UNET_CLASS_NAME = "UNet3DConditionModel"
PIPELINE_CLASS_NAME = "TextToVideoSDPipeline"
WEIGHTS_NAME = "diffusion_pytorch_model"
DOWN_BLOCK_TYPES = {"CrossAttnDownBlock3D": "CrossAttnDownBlock2D", "DownBlock3D": "DownBlock2D"}
UP_BLOCK_TYPES = {"CrossAttnUpBlock3D": "CrossAttnUpBlock2D", "UpBlock3D": "UpBlock2D"}
# Components copied as they are, with the (library, class) that both pipelines give them.
COPIED_COMPONENTS = {
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
}
# Schedulers that `DecomposedNoiseScheduler(base_noise_ratio=0)` reproduces step for step.
CONVERTIBLE_SCHEDULERS = ("DDIMScheduler",)


@dataclass
class ConversionSummary:
    """What `convert` did, for the CLI to print and tests to check."""

    source: str
    source_kind: str
    output_dir: str
    unet_tensors: int
    unet_config: dict[str, Any]
    scheduler: str | None = None
    ignored_scheduler_keys: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        target = "VideoFusionPipeline" if self.source_kind == PIPELINE_CLASS_NAME else "UNet3DModel"
        shown = ("block_out_channels", "layers_per_block", "num_attention_heads", "temporal_attention_head_dim")
        lines = [
            f"Converted {self.source} ({self.source_kind}) -> {self.output_dir} ({target})",
            f"  UNet: {self.unet_tensors} tensors, every name kept; UNet3DModel(temporal_layout='modelscope', "
            + ", ".join(f"{key}={self.unet_config[key]}" for key in shown)
            + ")",
        ]
        if self.scheduler is not None:
            ignored = f" (ignored keys DDIM does not use: {self.ignored_scheduler_keys})"
            lines.append(
                f"  scheduler: {self.scheduler} -> DecomposedNoiseScheduler(base_noise_ratio=0)"
                + (ignored if self.ignored_scheduler_keys else "")
            )
        if self.copied:
            lines.append(f"  copied as they are: {', '.join(self.copied)}")
        return lines


def _signature_defaults(cls) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}


# ---------------------------------------------------------------------------------------------------------- the UNet


def unet3d_condition_config_to_unet3d(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `UNet3DModel` config that computes what a `UNet3DConditionModel` with `config` computes.

    Missing keys take `UNet3DConditionModel`'s defaults, as diffusers does. `UNet3DConditionModel`'s
    `attention_head_dim=d` is a real head width, for spatial and temporal attention alike; the result says so with
    `attention_head_dim=d`, `num_attention_heads=[c // d for c in block_out_channels]` and
    `temporal_attention_head_dim=d`. The options `UNet3DConditionModel` fixes (linear projections, no upcasting, ...)
    are written out.

    Args:
        config (`Mapping[str, Any]`): A `UNet3DConditionModel` config (`config.json`; `_`-keys are ignored).

    Returns:
        `dict[str, Any]`: Arguments of `UNet3DModel`.

    Raises:
        `ValueError`: naming the key and its value, for a config that `UNet3DModel` cannot reproduce exactly.
    """
    class_name = config.get("_class_name", UNET_CLASS_NAME)
    if class_name != UNET_CLASS_NAME:
        raise ConversionError(f"The config describes a {class_name}, not a {UNET_CLASS_NAME}.")
    defaults = _signature_defaults(UNet3DConditionModel)
    unknown = sorted(key for key in config if not key.startswith("_") and key not in defaults)
    if unknown:
        raise ConversionError(f"Unknown {UNET_CLASS_NAME} config key {first_keys(unknown)}.")
    c = {**defaults, **{key: value for key, value in config.items() if not key.startswith("_")}}

    def refuse(key: str, why: str) -> ConversionError:
        return ConversionError(f"A {UNET_CLASS_NAME} with `{key}={c[key]!r}` cannot be converted: {why}.")

    if c["num_attention_heads"] is not None:
        raise refuse("num_attention_heads", f"{UNET_CLASS_NAME} itself refuses it")
    if c["act_fn"] != "silu":
        raise refuse("act_fn", "its output activation is SiLU whatever `act_fn` says, UNet3DModel's follows `act_fn`")
    if not isinstance(c["norm_num_groups"], int) or isinstance(c["norm_num_groups"], bool):
        raise refuse("norm_num_groups", "UNet3DModel always normalises")
    head_dim = c["attention_head_dim"]
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 1:
        raise refuse(
            "attention_head_dim", f"its `transformer_in` needs one positive int ({MODELSCOPE_INPUT_HEADS} heads of it)"
        )
    if not isinstance(c["layers_per_block"], int):
        raise refuse("layers_per_block", "it must be one int")
    channels = list(c["block_out_channels"])
    down, up = list(c["down_block_types"]), list(c["up_block_types"])
    if not len(down) == len(up) == len(channels):
        raise refuse("block_out_channels", f"it needs one value per block ({len(down)} down, {len(up)} up)")
    for key, types, mapping in (("down_block_types", down, DOWN_BLOCK_TYPES), ("up_block_types", up, UP_BLOCK_TYPES)):
        for block_type in types:
            if block_type not in mapping:
                raise refuse(key, f"supported block types are {sorted(mapping)}, not {block_type!r}")
    for width in channels:
        if width % head_dim:
            raise refuse("attention_head_dim", f"it does not divide the block width {width}")

    return {
        "sample_size": c["sample_size"],
        "in_channels": c["in_channels"],
        "out_channels": c["out_channels"],
        "center_input_sample": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "down_block_types": [DOWN_BLOCK_TYPES[t] for t in down],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": [UP_BLOCK_TYPES[t] for t in up],
        "only_cross_attention": False,
        "block_out_channels": channels,
        "layers_per_block": c["layers_per_block"],
        "downsample_padding": c["downsample_padding"],
        "mid_block_scale_factor": c["mid_block_scale_factor"],
        "dropout": 0.0,
        "act_fn": "silu",
        "norm_num_groups": c["norm_num_groups"],
        "norm_eps": c["norm_eps"],
        "cross_attention_dim": c["cross_attention_dim"],
        "transformer_layers_per_block": 1,
        "attention_head_dim": head_dim,
        "num_attention_heads": [width // head_dim for width in channels],
        "use_linear_projection": True,
        "upcast_attention": False,
        "resnet_time_scale_shift": "default",
        "time_cond_proj_dim": c["time_cond_proj_dim"],
        "conv_in_kernel": 3,
        "conv_out_kernel": 3,
        "temporal_layout": "modelscope",
        "temporal_conv": True,
        "temporal_conv_kernel_size": 3,
        "temporal_attention": "bidirectional",
        "temporal_attention_head_dim": head_dim,
        "frame_position_encoding": None,
        "frame_adaptor": False,
        "scalar_conditions": [],
    }


_BLOCK_INDEX = re.compile(r"^(down|up)_blocks\.(\d+)\.(\w+)\.(\d+)\.")


def _key_equivalent_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A `UNet3DConditionModel` config with the parameter names and shapes of `state_dict`, read from them.

    GroupNorm groups change no name or shape, so they are left at 1; an absent key that the reading needs is reported
    as missing.
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise ConversionError(f"Missing key `{key}` in the UNet3DConditionModel weights.")
        return tuple(state_dict[key].shape)

    blocks: dict[str, set[int]] = {"down": set(), "up": set()}
    attention_blocks: dict[str, set[int]] = {"down": set(), "up": set()}
    resnets = [0]
    for key in state_dict:
        match = _BLOCK_INDEX.match(key)
        if match:
            side, index, kind, layer = match[1], int(match[2]), match[3], int(match[4])
            blocks[side].add(index)
            if kind == "attentions":
                attention_blocks[side].add(index)
            if side == "down" and kind == "resnets":
                resnets.append(layer + 1)
    num_blocks = max([len(blocks["down"]), len(blocks["up"]), 1])
    channels = [shape(f"down_blocks.{i}.resnets.0.conv1.weight")[0] for i in range(num_blocks)]
    head_dim = shape("transformer_in.proj_in.weight")[0] // MODELSCOPE_INPUT_HEADS
    cond = "time_embedding.cond_proj.weight"
    return {
        "in_channels": shape("conv_in.weight")[1],
        "out_channels": shape("conv_out.weight")[0],
        "down_block_types": [
            "CrossAttnDownBlock3D" if i in attention_blocks["down"] else "DownBlock3D" for i in range(num_blocks)
        ],
        "up_block_types": [
            "CrossAttnUpBlock3D" if i in attention_blocks["up"] else "UpBlock3D" for i in range(num_blocks)
        ],
        "block_out_channels": channels,
        "layers_per_block": max(resnets),
        "norm_num_groups": 1,
        "cross_attention_dim": shape("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight")[1],
        "attention_head_dim": max(head_dim, 1),
        "time_cond_proj_dim": shape(cond)[1] if cond in state_dict else None,
    }


def expected_unet3d_shapes(unet3d_config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of a `UNet3DModel` with this config (built on the meta device: no memory)."""
    try:
        with init_empty_weights():
            model = UNet3DModel(**unet3d_config)
    except (ValueError, TypeError) as error:
        raise ConversionError(f"The converted UNet config is not valid: {error}") from error
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def convert_unet3d_condition_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """`UNet3DConditionModel` weights -> `UNet3DModel(temporal_layout="modelscope")` weights.

    Every parameter keeps its name (the key map is the identity); the keys are checked strictly against the
    `UNet3DModel` that `unet3d_condition_config_to_unet3d(config)` describes.

    Args:
        state_dict (`Mapping[str, torch.Tensor]`): The `UNet3DConditionModel` state dict.
        config (`Mapping[str, Any] | None`): Its config; without it, the architecture is read from the weights'
            names and shapes.

    Returns:
        `dict[str, torch.Tensor]`: The same tensors under the `UNet3DModel` names.

    Raises:
        `ValueError`: naming the first unexpected, missing or mis-shaped key.
    """
    if config is None:
        config = _key_equivalent_config(state_dict)
    expected = expected_unet3d_shapes(unet3d_condition_config_to_unet3d(config))
    unexpected = sorted(set(state_dict) - set(expected))
    if unexpected:
        raise ConversionError(f"Unexpected key {first_keys(unexpected)} in the UNet3DConditionModel weights.")
    missing = sorted(set(expected) - set(state_dict))
    if missing:
        raise ConversionError(f"Missing key {first_keys(missing)} in the UNet3DConditionModel weights.")
    for key, shape in expected.items():
        if tuple(state_dict[key].shape) != shape:
            raise ConversionError(
                f"Shape mismatch for `{key}`: {tuple(state_dict[key].shape)} in the weights vs {shape} in the config."
            )
    return {key: state_dict[key] for key in expected}


def load_unet_weights(folder: Path, variant: str | None = None, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read the weights of a diffusers model folder: single or sharded safetensors (`.bin` only with `allow_pickle`).

    Args:
        folder (`Path`): The folder with `config.json`.
        variant (`str | None`): Weights variant, e.g. "fp16" for `diffusion_pytorch_model.fp16.safetensors`.
        allow_pickle (`bool`, defaults to False): Allow `diffusion_pytorch_model.bin` (read with `weights_only`).
    """
    stem = f"{WEIGHTS_NAME}.{variant}" if variant else WEIGHTS_NAME
    files, pickle = safetensors_files(folder, stem), folder / f"{stem}.bin"
    if files is not None:
        return read_safetensors(files)
    if pickle.is_file():
        if not allow_pickle:
            raise ConversionError(
                f"`{folder}` only has pickled weights `{pickle.name}`; pickles can run code when loaded. Pass "
                "--allow_pickle if you trust them."
            )
        try:
            weights = torch.load(pickle, map_location="cpu", weights_only=True)
        except Exception as error:  # any unpickling failure is a bad input file
            raise ConversionError(f"Could not read `{pickle}`: {error}") from error
        if not isinstance(weights, dict):
            raise ConversionError(f"`{pickle}` does not hold a state dict but a {type(weights).__name__}.")
        return {key: value for key, value in weights.items() if isinstance(value, torch.Tensor)}
    present = sorted(path.name for path in folder.glob(f"{WEIGHTS_NAME}*"))
    raise ConversionError(
        f"`{folder}` has no `{stem}.safetensors`" + (f" (found {present}; see --variant)." if present else ".")
    )


def unet_folder_to_unet3d(unet_folder: Path, variant: str | None = None, allow_pickle: bool = False) -> UNet3DModel:
    """Convert a `UNet3DConditionModel` folder into a `UNet3DModel` in memory (on the CPU, in the weights' dtype)."""
    config = read_json(unet_folder / "config.json")
    class_name = config.get("_class_name", UNET_CLASS_NAME)
    if class_name != UNET_CLASS_NAME:
        raise ConversionError(
            f"`{unet_folder / 'config.json'}` describes a {class_name}, not a {UNET_CLASS_NAME}: a {class_name} is not "
            f"converted; load it with `{class_name}.from_pretrained`."
        )
    unet3d_config = unet3d_condition_config_to_unet3d(config)
    weights = convert_unet3d_condition_state_dict(load_unet_weights(unet_folder, variant, allow_pickle), config)
    with init_empty_weights():
        model = UNet3DModel(**unet3d_config)
    model.load_state_dict(weights, strict=True, assign=True)
    return model.eval()  # as diffusers' `from_pretrained` returns models


def convert_unet_folder(
    unet_folder: Path, output_folder: Path, variant: str | None = None, allow_pickle: bool = False
) -> tuple[int, dict[str, Any]]:
    """Convert a `UNet3DConditionModel` folder and save the `UNet3DModel` in `output_folder` (safetensors).

    Returns:
        `(number of tensors, UNet3DModel config)`.
    """
    model = unet_folder_to_unet3d(unet_folder, variant, allow_pickle)
    model.save_pretrained(output_folder, safe_serialization=True)
    return len(model.state_dict()), _public_config(model)


def _public_config(model: UNet3DModel) -> dict[str, Any]:
    return {key: value for key, value in model.config.items() if not key.startswith("_")}


# ------------------------------------------------------------------------------------------------------ the scheduler


def ddim_config_to_decomposed(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The `DecomposedNoiseScheduler` config that samples as the given `DDIMScheduler` does.

    Every `DDIMScheduler` argument is kept (missing ones take DDIM's defaults, not DecomposedNoiseScheduler's),
    `base_noise_ratio=0` switches the shared base noise off and `eta=0` is DDIM's default.

    Args:
        config (`Mapping[str, Any]`): A scheduler config (`scheduler_config.json`).

    Returns:
        `(config, ignored)`: the DecomposedNoiseScheduler config, and the keys of `config` that DDIMScheduler does not
        use either (such as `skip_prk_steps` in ModelScope's file).

    Raises:
        `ValueError`: for another scheduler class (named), or a DDIM config DecomposedNoiseScheduler refuses.
    """
    class_name = config.get("_class_name")
    if class_name is None:
        raise ConversionError(
            f"The scheduler config names no scheduler class (`_class_name`); expected {CONVERTIBLE_SCHEDULERS[0]}."
        )
    if class_name not in CONVERTIBLE_SCHEDULERS:
        raise ConversionError(
            f"A {class_name} cannot be converted exactly: DecomposedNoiseScheduler(base_noise_ratio=0) reproduces "
            f"{', '.join(CONVERTIBLE_SCHEDULERS)} only."
        )
    ddim = _signature_defaults(DDIMScheduler)
    decomposed = _signature_defaults(DecomposedNoiseScheduler)
    lacking = sorted(set(ddim) - set(decomposed))
    if lacking:
        raise ConversionError(f"DecomposedNoiseScheduler has no DDIM option {first_keys(lacking)}.")
    result = {name: config.get(name, default) for name, default in ddim.items()}
    result.update(base_noise_ratio=0.0, eta=0.0)
    try:
        DecomposedNoiseScheduler(**result)
    except (ValueError, TypeError) as error:
        raise ConversionError(f"The DDIM config cannot be converted: {error}") from error
    ignored = sorted(key for key in config if not key.startswith("_") and key not in ddim)
    return result, ignored


# ----------------------------------------------------------------------------------------------------- the whole


def _wrong_component(folder: Path, name: str, found: Any, entry: tuple[str, str]) -> str:
    """The error for a component of another class: it names the class found and the class that loads it."""
    message = f"`{folder / INDEX_NAME}` has `{name}`: {found!r}, expected {list(entry)}"
    if isinstance(found, list) and len(found) == 2 and isinstance(found[1], str):
        message += f": a {found[1]} is not converted; load it with `{found[1]}.from_pretrained`"
    return message + "."


def check_pipeline_folder(folder: Path) -> None:
    """Refuse a pipeline folder that is not a `TextToVideoSDPipeline` with the usual components."""
    index = read_json(folder / INDEX_NAME)
    class_name = index.get("_class_name")
    if class_name != PIPELINE_CLASS_NAME:
        raise ConversionError(f"`{folder / INDEX_NAME}` describes a {class_name}, not a {PIPELINE_CLASS_NAME}.")
    expected = {**COPIED_COMPONENTS, "unet": ("diffusers", UNET_CLASS_NAME)}
    for name, entry in expected.items():
        found = index.get(name)
        if not isinstance(found, list) or tuple(found) != entry:
            raise ConversionError(_wrong_component(folder, name, found, entry))
    for name in (*COPIED_COMPONENTS, "unet", "scheduler"):
        if not (folder / name).is_dir():
            raise ConversionError(f"`{folder}` has no `{name}/` folder.")


def convert_pipeline_in_memory(
    checkpoint: str | Path, *, variant: str | None = None, allow_pickle: bool = False
) -> ConvertedPipeline:
    """Convert a `TextToVideoSDPipeline` folder into a `VideoFusionPipeline` in memory (what `convert` saves).

    Args:
        checkpoint (`str | Path`): The pipeline folder.
        variant (`str | None`): Weights variant of the UNet, e.g. "fp16".
        allow_pickle (`bool`, defaults to False): Allow pickled UNet weights (`.bin`).

    Returns:
        `ConvertedPipeline`: `residual_unet` (a `UNet3DModel`) and `scheduler` (a `DecomposedNoiseScheduler`) converted;
        `vae`, `text_encoder` and `tokenizer` to be taken from the folder as they are.

    Raises:
        `ValueError`: naming what does not fit (another pipeline or component class, a key the map does not know).
    """
    checkpoint = Path(checkpoint)
    check_pipeline_folder(checkpoint)
    decomposed_config, _ = ddim_config_to_decomposed(read_json(checkpoint / "scheduler" / "scheduler_config.json"))
    unet = unet_folder_to_unet3d(checkpoint / "unet", variant, allow_pickle)
    # diffusers resolves a class of a library it does not know through the module that defines it, so the entries
    # name modules, as `DiffusionPipeline.save_pretrained` writes them.
    index = {
        "_class_name": "VideoFusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "base_prediction_type": "epsilon",
        "base_unet": [None, None],
        "residual_unet": [UNet3DModel.__module__, UNet3DModel.__name__],
        "scheduler": [DecomposedNoiseScheduler.__module__, DecomposedNoiseScheduler.__name__],
        **{name: list(entry) for name, entry in COPIED_COMPONENTS.items()},
    }
    models = {"residual_unet": unet, "scheduler": DecomposedNoiseScheduler(**decomposed_config)}
    return ConvertedPipeline(
        checkpoint,
        PIPELINE_CLASS_NAME,
        index,
        models,
        list(COPIED_COMPONENTS),
        {"residual_unet": len(unet.state_dict())},
    )


def convert(
    checkpoint: str | Path, output_dir: str | Path, *, variant: str | None = None, allow_pickle: bool = False
) -> ConversionSummary:
    """Convert a `TextToVideoSDPipeline` folder into a `VideoFusionPipeline` folder, or a `UNet3DConditionModel` folder
    into a `UNet3DModel` folder.

    Args:
        checkpoint (`str | Path`): The pipeline folder or the UNet folder.
        output_dir (`str | Path`): The folder to write (absent or empty).
        variant (`str | None`): Weights variant of the UNet, e.g. "fp16".
        allow_pickle (`bool`, defaults to False): Allow pickled UNet weights (`.bin`).

    Returns:
        `ConversionSummary`.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    if not checkpoint.exists():
        raise ConversionError(f"--checkpoint `{checkpoint}` does not exist.")
    if not checkpoint.is_dir():
        raise ConversionError(
            f"--checkpoint `{checkpoint}` is a file; expected a {PIPELINE_CLASS_NAME} or {UNET_CLASS_NAME} folder."
        )

    if (checkpoint / INDEX_NAME).is_file():
        converted = convert_pipeline_in_memory(checkpoint, variant=variant, allow_pickle=allow_pickle)
        unet = converted.models["residual_unet"]
        summary = ConversionSummary(
            str(checkpoint),
            PIPELINE_CLASS_NAME,
            str(output_dir),
            converted.tensors["residual_unet"],
            _public_config(unet),
        )
        scheduler_config = read_json(checkpoint / "scheduler" / "scheduler_config.json")
        summary.scheduler = scheduler_config["_class_name"]
        summary.ignored_scheduler_keys = ddim_config_to_decomposed(scheduler_config)[1]
        summary.copied = list(converted.copied)
        write = converted.write

    elif (checkpoint / "config.json").is_file():
        summary = ConversionSummary(str(checkpoint), UNET_CLASS_NAME, str(output_dir), 0, {})

        def write(folder: Path) -> None:
            summary.unet_tensors, summary.unet_config = convert_unet_folder(checkpoint, folder, variant, allow_pickle)

    else:
        raise ConversionError(
            f"`{checkpoint}` is neither a {PIPELINE_CLASS_NAME} folder (model_index.json) nor a {UNET_CLASS_NAME} "
            "folder (config.json)."
        )
    write_atomically(output_dir, write)
    return summary
