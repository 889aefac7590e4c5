"""LoRA training: adapters on a UNet's attention projections, trained alone, saved as a diffusers LoRA file.

`add_lora(unet, config.lora)` freezes the UNet and adds one peft adapter (`PeftAdapterMixin.add_adapter`, as
diffusers' `train_text_to_image_lora.py` does); its parameters are all the run trains. `save_lora` writes the
adapter as `pytorch_lora_weights.safetensors` with diffusers' adapter metadata (rank, alpha, targets) and the prefix
`config.lora.prefix`, which every diffusers-video pipeline loads with `load_lora_weights` (`pipelines.lora`).

Target modules are module-name suffixes (`"to_q"`, `"attn2.to_k"`) or the two groups of a `UNet3DModel`:

- "spatial_attention": `to_q`, `to_k`, `to_v`, `to_out.0` of the spatial transformer blocks' self- and
  cross-attention (`attentions.<i>.transformer_blocks.<j>.attn1|attn2`), the layers Stable Diffusion LoRAs adapt;
- "temporal_attention": the same projections of the temporal attention layers (`temp_attentions.<i>...`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..pipelines.lora import LORA_WEIGHT_NAME, VideoLoraLoaderMixin
from .config import LoraTrainingConfig

ADAPTER_NAME = "default"
_PROJECTIONS = r"(to_q|to_k|to_v|to_out\.0)"
TARGET_GROUPS = {
    "spatial_attention": rf"(.*\.)?attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.{_PROJECTIONS}",
    "temporal_attention": rf"(.*\.)?temp_attentions\.\d+(\..+)?\.{_PROJECTIONS}",
}


def target_pattern(model: nn.Module, target_modules: list[str]) -> str:
    """The regular expression (peft's `target_modules` as a string: a full match of a module name) for the groups and
    suffixes of `target_modules`; a `ValueError` names an entry that matches no `nn.Linear` or `nn.Conv2d` of
    `model`."""
    names = [name for name, module in model.named_modules() if isinstance(module, (nn.Linear, nn.Conv2d))]
    patterns = []
    for entry in target_modules:
        pattern = TARGET_GROUPS.get(entry, rf"(.*\.)?{re.escape(entry)}")
        if not any(re.fullmatch(pattern, name) for name in names):
            raise ValueError(
                f"`lora.target_modules` entry {entry!r} matches no linear or 2D-conv layer of the "
                f"{type(model).__name__}; use {sorted(TARGET_GROUPS)} or a module-name suffix such as 'attn1.to_q'."
            )
        patterns.append(pattern)
    return "|".join(f"(?:{pattern})" for pattern in patterns)


def add_lora(model: nn.Module, config: LoraTrainingConfig) -> list[nn.Parameter]:
    """Freeze `model`, add the adapter `config` describes, and return its parameters (the only ones trained).

    The adapter starts as peft's "gaussian" initialisation (A random, B zero), so the adapted model equals the model.
    """
    if not hasattr(model, "add_adapter"):
        raise ValueError(f"LoRA training needs a diffusers model with PeftAdapterMixin, not {type(model).__name__}.")
    from peft import LoraConfig  # peft is optional: `pip install "diffusers-video[train]"`

    model.requires_grad_(False)
    lora_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha if config.alpha is not None else config.rank,
        lora_dropout=config.dropout,
        target_modules=target_pattern(model, config.target_modules),
        init_lora_weights="gaussian",
    )
    model.add_adapter(lora_config, adapter_name=ADAPTER_NAME)
    trainable = [parameter for name, parameter in model.named_parameters() if "lora_" in name]
    for parameter in trainable:
        parameter.requires_grad_(True)
    return trainable


def lora_weights(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """`(state_dict, metadata)` of the trained adapter: peft's keys (`<module>.lora_A.weight`), detached on the CPU,
    and its `LoraConfig` as a dict."""
    from peft import get_peft_model_state_dict  # peft is optional: `pip install "diffusers-video[train]"`

    state = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
    state = {key: value.detach().to("cpu", copy=True).contiguous() for key, value in state.items()}
    return state, model.peft_config[ADAPTER_NAME].to_dict()


def save_lora(folder: str | Path, models: dict[str, nn.Module]) -> Path:
    """Write the adapters of `models` (`{prefix: model}`, e.g. `{"unet": unet}` or VideoFusion's `{"residual_unet":
    ..., "base_unet": ...}`) as one `folder/pytorch_lora_weights.safetensors`, each model's keys prefixed `prefix.`."""
    states, metadata = {}, {}
    for prefix, model in models.items():
        states[prefix], metadata[prefix] = lora_weights(model)
    VideoLoraLoaderMixin.save_lora_weights(folder, states, metadata)
    return Path(folder) / LORA_WEIGHT_NAME
