"""diffusers' I2VGen-XL -> diffusers-video, offline and exactly: [`convert`].

The source is a diffusers `I2VGenXLPipeline` folder (the public `ali-vilab/i2vgen-xl` layout: `model_index.json`,
`unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `image_encoder/`, `feature_extractor/`, `scheduler/`) or an
`I2VGenXLUNet` folder alone.

diffusers' `I2VGenXLUNet` is split in two models (see `models/i2vgen_xl_content.py` for why):

- `unet/`: a `UNet3DModel(temporal_layout="modelscope", scalar_conditions=["fps"])` with `in_channels` twice the
  sample's (the noisy sample and the concatenated image path). Its blocks, `conv_in`, `transformer_in`, time embedding
  and output keep their names; `fps_embedding.0` / `.2` (Linear, SiLU, Linear) become `scalar_embeddings.fps.linear_1`
  / `.linear_2` (a `TimestepEmbedding`: the same computation).
- `content_encoder/`: an `I2VGenXLContentEncoder` with the four image-conditioning modules under their own names
  (`image_latents_proj_in`, `image_latents_temporal_encoder`, `image_latents_context_embedding`,
  `context_embedding`).

Every key of the source goes to exactly one of them, and both are checked strictly against the models their configs
describe: an unexpected, missing or mis-shaped key is an error that names it. The other components (VAE, text and
image encoders, tokenizer, feature extractor, DDIM scheduler) are copied as they are; the pipeline folder becomes an
`I2VGenXLCascadePipeline` folder with no refiner (add one with `refiner_unet=` / `refiner_scheduler=`).

`vgen_image_path=True` reproduces VGen's original UNet, which adds the concatenated image path twice
(`tools/modules/unet/unet_i2vgen.py`: "This is a bug, but it doesn't matter"): the `conv_in` weights that read it are
doubled. diffusers' conversion adds it once, so the default (False) reproduces diffusers' `I2VGenXLPipeline`.

The command line is `diffusers-video convert i2vgen-xl` (`commands/convert.py`), also run by
`conversion_scripts/convert_i2vgen_xl.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import torch
from accelerate import init_empty_weights

from ..folders import INDEX_NAME, read_json
from ..models.i2vgen_xl_content import I2VGenXLContentEncoder
from ..models.unet_3d import UNet3DModel
from .common import ConversionError, ConvertedPipeline, first_keys, write_atomically
from .modelscope import expected_unet3d_shapes, load_unet_weights, unet3d_condition_config_to_unet3d

__all__ = [
    "CONTENT_ENCODER_PREFIXES",
    "I2VGenXLConversionSummary",
    "check_i2vgen_xl_pipeline_folder",
    "convert",
    "convert_i2vgen_xl_unet_folder",
    "convert_in_memory",
    "i2vgen_xl_config_to_content_encoder",
    "i2vgen_xl_config_to_unet3d",
    "i2vgen_xl_unet_folder_to_models",
    "split_i2vgen_xl_state_dict",
]

UNET_CLASS_NAME = "I2VGenXLUNet"
PIPELINE_CLASS_NAME = "I2VGenXLPipeline"
TARGET_PIPELINE = "I2VGenXLCascadePipeline"
CONTENT_ENCODER_PREFIXES = (
    "image_latents_proj_in.",
    "image_latents_temporal_encoder.",
    "image_latents_context_embedding.",
    "context_embedding.",
)
# fps_embedding (Linear, SiLU, Linear) -> the "fps" scalar condition's TimestepEmbedding
FPS_KEYS = {
    "fps_embedding.0.": "scalar_embeddings.fps.linear_1.",
    "fps_embedding.2.": "scalar_embeddings.fps.linear_2.",
}
# Components copied as they are; the feature extractor's class is taken from the source (its name differs between
# transformers versions: CLIPImageProcessor, CLIPImageProcessorPil).
COPIED_COMPONENTS = {
    "vae": ("diffusers", ("AutoencoderKL",)),
    "text_encoder": ("transformers", ("CLIPTextModel",)),
    "tokenizer": ("transformers", ("CLIPTokenizer", "CLIPTokenizerFast")),
    "image_encoder": ("transformers", ("CLIPVisionModelWithProjection",)),
    "feature_extractor": ("transformers", ("CLIPImageProcessor", "CLIPImageProcessorPil", "CLIPImageProcessorFast")),
    "scheduler": ("diffusers", ("DDIMScheduler",)),
}
_DEFAULTS = {  # I2VGenXLUNet's own defaults, for keys a config leaves out
    "sample_size": None,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "cross_attention_dim": 1024,
    "attention_head_dim": 64,
    "num_attention_heads": None,
}


@dataclass
class I2VGenXLConversionSummary:
    """What `convert` did, for the CLI to print and tests to check."""

    source: str
    source_kind: str
    output_dir: str
    unet_tensors: int = 0
    content_encoder_tensors: int = 0
    vgen_image_path: bool = False
    copied: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        target = TARGET_PIPELINE if self.source_kind == PIPELINE_CLASS_NAME else "unet/ + content_encoder/"
        lines = [
            f"Converted {self.source} ({self.source_kind}) -> {self.output_dir} ({target})",
            f"  UNet3DModel(temporal_layout='modelscope', scalar_conditions=['fps']): {self.unet_tensors} tensors",
            f"  I2VGenXLContentEncoder: {self.content_encoder_tensors} tensors",
        ]
        if self.vgen_image_path:
            lines.append("  conv_in's image-path weights doubled: VGen's original UNet (image path added twice)")
        if self.copied:
            lines.append(f"  copied as they are: {', '.join(self.copied)}")
        return lines


def _full_config(config: Mapping[str, Any]) -> dict[str, Any]:
    class_name = config.get("_class_name", UNET_CLASS_NAME)
    if class_name != UNET_CLASS_NAME:
        raise ConversionError(f"The config describes a {class_name}, not an {UNET_CLASS_NAME}.")
    unknown = sorted(key for key in config if not key.startswith("_") and key not in _DEFAULTS)
    if unknown:
        raise ConversionError(f"Unknown {UNET_CLASS_NAME} config key {first_keys(unknown)}.")
    return {**_DEFAULTS, **{key: value for key, value in config.items() if not key.startswith("_")}}


def i2vgen_xl_config_to_unet3d(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `UNet3DModel` config that computes what an `I2VGenXLUNet` with `config` computes after its image modules.

    `I2VGenXLUNet` builds its blocks as `UNet3DConditionModel` does (same block classes, the same reading of
    `attention_head_dim`, a `transformer_in` of 8 heads), so the conversion of `conversion.modelscope` applies, with
    `in_channels` doubled for the concatenated image path and an "fps" scalar condition.

    Raises:
        `ValueError`: naming the key and its value, for a config that cannot be reproduced exactly.
    """
    c = _full_config(config)
    if c["num_attention_heads"] is not None:
        raise ConversionError(
            f"An {UNET_CLASS_NAME} with `num_attention_heads={c['num_attention_heads']!r}` cannot be converted: it "
            "ignores the value, so the weights were not made with it."
        )
    if len(c["up_block_types"]) != len(c["down_block_types"]):
        raise ConversionError(
            f"An {UNET_CLASS_NAME} with `up_block_types={c['up_block_types']!r}` cannot be converted: it needs one "
            f"per down block ({len(c['down_block_types'])})."
        )
    modelscope_config = {
        "_class_name": "UNet3DConditionModel",
        "sample_size": c["sample_size"],
        "in_channels": 2 * c["in_channels"],
        "out_channels": c["out_channels"],
        "down_block_types": list(c["down_block_types"]),
        "up_block_types": list(c["up_block_types"]),
        "block_out_channels": list(c["block_out_channels"]),
        "layers_per_block": c["layers_per_block"],
        "norm_num_groups": c["norm_num_groups"],
        "norm_eps": 1e-5,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "act_fn": "silu",
        "cross_attention_dim": c["cross_attention_dim"],
        "attention_head_dim": c["attention_head_dim"],
    }
    unet_config = unet3d_condition_config_to_unet3d(modelscope_config)
    unet_config["scalar_conditions"] = ["fps"]
    return unet_config


def i2vgen_xl_config_to_content_encoder(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `I2VGenXLContentEncoder` config of an `I2VGenXLUNet` config (its image-conditioning modules)."""
    c = _full_config(config)
    return {
        "latent_channels": 4,  # I2VGenXLUNet's image modules read 4 channels whatever `in_channels` is
        "conditioning_channels": c["in_channels"],
        "cross_attention_dim": c["cross_attention_dim"],
        "image_embed_dim": c["cross_attention_dim"],
        "num_image_tokens": c["in_channels"],
        "hidden_dim": 4 * c["block_out_channels"][0],
        "latent_token_grid": 32,
        "temporal_encoder_heads": 2,
    }


def _expected_shapes(model_class: type, model_config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    if model_class is UNet3DModel:
        return expected_unet3d_shapes(model_config)
    with init_empty_weights():
        model = model_class(**model_config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _check_strictly(weights: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], what: str) -> None:
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise ConversionError(f"Missing key {first_keys(missing)} in the {UNET_CLASS_NAME} weights (for the {what}).")
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise ConversionError(f"Unexpected key {first_keys(unexpected)} in the {UNET_CLASS_NAME} weights.")
    for key, shape in expected.items():
        if tuple(weights[key].shape) != shape:
            raise ConversionError(
                f"Shape mismatch for `{key}` ({what}): {tuple(weights[key].shape)} in the weights vs {shape} in the "
                "config."
            )


def split_i2vgen_xl_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], vgen_image_path: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """`I2VGenXLUNet` weights -> `(UNet3DModel weights, I2VGenXLContentEncoder weights)`.

    Args:
        state_dict (`Mapping[str, torch.Tensor]`): The `I2VGenXLUNet` state dict.
        config (`Mapping[str, Any]`): Its config.
        vgen_image_path (`bool`, defaults to False): Double `conv_in`'s weights on the image path (VGen's original
            UNet adds that path twice).

    Returns:
        `tuple[dict, dict]`: The UNet's and the content encoder's weights, every source key in exactly one.

    Raises:
        `ValueError`: naming the first unexpected, missing or mis-shaped key.
    """
    unet, content = {}, {}
    for key, value in state_dict.items():
        if key.startswith(CONTENT_ENCODER_PREFIXES):
            content[key] = value
            continue
        for prefix, target in FPS_KEYS.items():
            if key.startswith(prefix):
                key = target + key[len(prefix) :]
                break
        unet[key] = value
    if "scalar_embeddings.fps.linear_1.weight" not in unet and any(k.startswith("fps_embedding.") for k in state_dict):
        odd = sorted(k for k in state_dict if k.startswith("fps_embedding."))
        raise ConversionError(f"Unexpected key {first_keys(odd)} in the {UNET_CLASS_NAME} weights.")
    _check_strictly(unet, _expected_shapes(UNet3DModel, i2vgen_xl_config_to_unet3d(config)), "UNet3DModel")
    encoder_config = i2vgen_xl_config_to_content_encoder(config)
    _check_strictly(content, _expected_shapes(I2VGenXLContentEncoder, encoder_config), "I2VGenXLContentEncoder")
    if vgen_image_path:
        weight = unet["conv_in.weight"].clone()
        sample_channels = weight.shape[1] // 2
        weight[:, sample_channels:] *= 2  # VGen: `concat += _ximg` twice
        unet["conv_in.weight"] = weight
    return unet, content


def i2vgen_xl_unet_folder_to_models(
    unet_folder: Path, variant: str | None = None, allow_pickle: bool = False, vgen_image_path: bool = False
) -> tuple[UNet3DModel, I2VGenXLContentEncoder]:
    """Convert an `I2VGenXLUNet` folder into a `UNet3DModel` and an `I2VGenXLContentEncoder` in memory (on the CPU,
    in the weights' dtype)."""
    config = read_json(unet_folder / "config.json")
    unet_weights, content_weights = split_i2vgen_xl_state_dict(
        load_unet_weights(unet_folder, variant, allow_pickle), config, vgen_image_path
    )
    models = []
    for model_class, model_config, weights in (
        (UNet3DModel, i2vgen_xl_config_to_unet3d(config), unet_weights),
        (I2VGenXLContentEncoder, i2vgen_xl_config_to_content_encoder(config), content_weights),
    ):
        with init_empty_weights():
            model = model_class(**model_config)
        model.load_state_dict(weights, strict=True, assign=True)
        models.append(model.eval())  # as diffusers' `from_pretrained` returns models
    return models[0], models[1]


def convert_i2vgen_xl_unet_folder(
    unet_folder: Path,
    unet_output: Path,
    content_encoder_output: Path,
    variant: str | None = None,
    allow_pickle: bool = False,
    vgen_image_path: bool = False,
) -> tuple[int, int]:
    """Convert an `I2VGenXLUNet` folder into a `UNet3DModel` folder and an `I2VGenXLContentEncoder` folder.

    Returns:
        `(UNet tensors, content encoder tensors)`.
    """
    unet, encoder = i2vgen_xl_unet_folder_to_models(unet_folder, variant, allow_pickle, vgen_image_path)
    unet.save_pretrained(unet_output, safe_serialization=True)
    encoder.save_pretrained(content_encoder_output, safe_serialization=True)
    return len(unet.state_dict()), len(encoder.state_dict())


def check_i2vgen_xl_pipeline_folder(folder: Path) -> dict[str, list]:
    """Refuse a pipeline folder that is not an `I2VGenXLPipeline` with the usual components; returns its index."""
    index = read_json(folder / INDEX_NAME)
    class_name = index.get("_class_name")
    if class_name != PIPELINE_CLASS_NAME:
        raise ConversionError(f"`{folder / INDEX_NAME}` describes a {class_name}, not an {PIPELINE_CLASS_NAME}.")
    expected = {**COPIED_COMPONENTS, "unet": ("diffusers", (UNET_CLASS_NAME,))}
    for name, (library, classes) in expected.items():
        found = index.get(name)
        if not isinstance(found, list) or len(found) != 2 or found[0] != library or found[1] not in classes:
            raise ConversionError(
                f"`{folder / INDEX_NAME}` has `{name}`: {found!r}, expected {library} {' or '.join(classes)}."
            )
        if not (folder / name).is_dir():
            raise ConversionError(f"`{folder}` has no `{name}/` folder.")
    return index


def convert_in_memory(
    checkpoint: str | Path,
    *,
    variant: str | None = None,
    allow_pickle: bool = False,
    vgen_image_path: bool = False,
) -> ConvertedPipeline:
    """Convert an `I2VGenXLPipeline` folder into an `I2VGenXLCascadePipeline` (no refiner) in memory (what `convert`
    saves).

    Args:
        checkpoint (`str | Path`): The pipeline folder.
        variant (`str | None`): Weights variant of the UNet, e.g. "fp16".
        allow_pickle (`bool`, defaults to False): Allow pickled UNet weights (`.bin`).
        vgen_image_path (`bool`, defaults to False): Reproduce VGen's original UNet rather than diffusers'.

    Returns:
        `ConvertedPipeline`: `unet` (a `UNet3DModel`) and `content_encoder` (an `I2VGenXLContentEncoder`) converted;
        the VAE, text and image encoders, tokenizer, feature extractor and scheduler to be taken as they are.
    """
    checkpoint = Path(checkpoint)
    index = check_i2vgen_xl_pipeline_folder(checkpoint)
    unet, encoder = i2vgen_xl_unet_folder_to_models(checkpoint / "unet", variant, allow_pickle, vgen_image_path)
    # diffusers resolves a class of a library it does not know through the module that defines it
    new_index = {
        "_class_name": TARGET_PIPELINE,
        "_diffusers_version": diffusers.__version__,
        "unet": [UNet3DModel.__module__, UNet3DModel.__name__],
        "content_encoder": [I2VGenXLContentEncoder.__module__, I2VGenXLContentEncoder.__name__],
        "refiner_unet": [None, None],
        "refiner_scheduler": [None, None],
        # the size diffusers' `I2VGenXLPipeline` makes by default (the public weights were trained at it)
        "default_height": 704,
        "default_width": 1280,
        **{name: list(index[name]) for name in COPIED_COMPONENTS},
    }
    models = {"unet": unet, "content_encoder": encoder}
    tensors = {name: len(model.state_dict()) for name, model in models.items()}
    return ConvertedPipeline(checkpoint, PIPELINE_CLASS_NAME, new_index, models, list(COPIED_COMPONENTS), tensors)


def convert(
    checkpoint: str | Path,
    output_dir: str | Path,
    *,
    variant: str | None = None,
    allow_pickle: bool = False,
    vgen_image_path: bool = False,
) -> I2VGenXLConversionSummary:
    """Convert an `I2VGenXLPipeline` folder into an `I2VGenXLCascadePipeline` folder, or an `I2VGenXLUNet` folder
    into `unet/` (`UNet3DModel`) and `content_encoder/` (`I2VGenXLContentEncoder`) folders.

    Args:
        checkpoint (`str | Path`): The pipeline folder or the UNet folder.
        output_dir (`str | Path`): The folder to write (absent or empty).
        variant (`str | None`): Weights variant of the UNet, e.g. "fp16".
        allow_pickle (`bool`, defaults to False): Allow pickled UNet weights (`.bin`).
        vgen_image_path (`bool`, defaults to False): Reproduce VGen's original UNet (image path added twice) rather
            than diffusers'.

    Returns:
        `I2VGenXLConversionSummary`.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    if not checkpoint.exists():
        raise ConversionError(f"--checkpoint `{checkpoint}` does not exist.")
    if not checkpoint.is_dir():
        raise ConversionError(
            f"--checkpoint `{checkpoint}` is a file; expected an {PIPELINE_CLASS_NAME} or {UNET_CLASS_NAME} folder."
        )
    if (checkpoint / INDEX_NAME).is_file():
        converted = convert_in_memory(
            checkpoint, variant=variant, allow_pickle=allow_pickle, vgen_image_path=vgen_image_path
        )
        summary = I2VGenXLConversionSummary(str(checkpoint), PIPELINE_CLASS_NAME, str(output_dir))
        summary.unet_tensors, summary.content_encoder_tensors = converted.tensors.values()
        summary.copied = list(converted.copied)
        write = converted.write
    elif (checkpoint / "config.json").is_file():
        summary = I2VGenXLConversionSummary(str(checkpoint), UNET_CLASS_NAME, str(output_dir))

        def write(folder: Path) -> None:
            summary.unet_tensors, summary.content_encoder_tensors = convert_i2vgen_xl_unet_folder(
                checkpoint, folder / "unet", folder / "content_encoder", variant, allow_pickle, vgen_image_path
            )

    else:
        raise ConversionError(
            f"`{checkpoint}` is neither an {PIPELINE_CLASS_NAME} folder (model_index.json) nor an {UNET_CLASS_NAME} "
            "folder (config.json)."
        )
    summary.vgen_image_path = vgen_image_path
    write_atomically(output_dir, write)
    return summary
