"""`LoraTrainingConfig`: the `lora` section of a `TrainingConfig` (see `training.lora`).

Kept out of `training.config` for that module's size; `training.config` imports it, so
`from diffusers_video.training.config import ...` works too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..pipelines.checks import check_int_at_least
from .config_checks import _check_types


@dataclass
class LoraTrainingConfig:
    """LoRA fine-tuning: train low-rank adapters on the UNet's attention projections, the UNet itself frozen (see
    `training.lora`). The final folder holds `pytorch_lora_weights.safetensors`, which any diffusers-video pipeline
    loads with `load_lora_weights`.

    Args:
        rank (`int`, defaults to 4): The adapters' rank `r`.
        alpha (`float | None`, defaults to None): peft's `lora_alpha` (the update is scaled by `alpha / rank`); None
            uses `rank` (scale 1).
        target_modules (`list`, defaults to ["spatial_attention", "temporal_attention"]): The layers adapted: the
            groups "spatial_attention" and "temporal_attention" (`to_q`, `to_k`, `to_v`, `to_out.0` of either kind of
            attention), or module-name suffixes such as "attn2.to_k".
        dropout (`float`, defaults to 0.0): Dropout on the adapters' input, in [0, 1).
        prefix (`str`, defaults to "unet"): The key prefix in the LoRA file: the pipeline component it loads into.
            "unet" loads into a pipeline's video UNet (VideoFusion's `residual_unet`, Imagen Video's base `unet_0`);
            name another component (e.g. "unet_2" for an Imagen Video super-resolution stage) to load there.
    """

    rank: int = 4
    alpha: float | None = None
    target_modules: list = field(default_factory=lambda: ["spatial_attention", "temporal_attention"])
    dropout: float = 0.0
    prefix: str = "unet"

    def __post_init__(self):
        _check_types(self, "lora.")
        check_int_at_least(self.rank, "lora.rank", 1)
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"`lora.alpha` must be > 0 or None but is {self.alpha}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`lora.dropout` must be in [0, 1) but is {self.dropout}.")
        if not self.target_modules or not all(isinstance(name, str) and name for name in self.target_modules):
            raise ValueError(
                f"`lora.target_modules` must be a non-empty list of module names or groups but is "
                f"{self.target_modules!r}."
            )
        if not self.prefix.isidentifier():
            raise ValueError(f"`lora.prefix` must be a component name such as 'unet' but is {self.prefix!r}.")
