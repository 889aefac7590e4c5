"""LoRA for every diffusers-video pipeline, the diffusers way: [`VideoLoraLoaderMixin`].

`pipe.load_lora_weights(path_or_repo_or_dict, adapter_name=...)`, `set_adapters`, `fuse_lora` / `unfuse_lora`,
`disable_lora` / `enable_lora`, `delete_adapters`, `unload_lora_weights` and `save_lora_weights` work as on
diffusers' own pipelines (`diffusers.loaders.lora_pipeline`, whose `StableDiffusionLoraLoaderMixin` this follows),
through peft and the `PeftAdapterMixin` of each model.

## Which keys go where

A LoRA file is one safetensors state dict in peft's naming, `"<prefix>.<module path>.lora_A.weight"`, optionally with
diffusers' LoRA adapter metadata (rank, alpha, target modules) in its header, as `save_lora_weights` and diffusers'
training scripts write it (`pytorch_lora_weights.safetensors`). The prefix is the name of the pipeline component the
weights belong to, so a file that adapts several components loads each part into its own:

| pipeline | components a LoRA can adapt (prefixes) | `unet.` keys go to |
|---|---|---|
| `VideoFusionPipeline` | `residual_unet`, `base_unet`, `text_encoder` | `residual_unet` |
| `ImagenVideoPipeline` | `unet_0` (base) ... `unet_<n-1>` (super-resolution stages), `text_encoder` | `unet_0` |
| a pipeline with a `unet` | `unet`, any other `*unet*` / `*transformer*` component, `text_encoder*` | `unet` |

The prefix `unet` is the one of diffusers' Stable Diffusion LoRAs and of `diffusers-video train` with its default
`lora.prefix`: it goes to the pipeline's video UNet ([`VideoLoraLoaderMixin.lora_unet_component`]), so a LoRA trained
on a plain `UNet3DModel` loads into either system's main denoiser. A key whose prefix names no LoRA-loadable component
is an error that names it, never silently ignored.
"""

from __future__ import annotations

import os
from collections import defaultdict

import torch
from diffusers.loaders.lora_base import (
    LORA_WEIGHT_NAME_SAFE,
    LoraBaseMixin,
    _fetch_state_dict,
    _load_lora_into_text_encoder,
)
from diffusers.loaders.peft import PeftAdapterMixin
from diffusers.utils import logging
from transformers import PreTrainedModel

from ..models.unet_3d import UNet3DModel

logger = logging.get_logger(__name__)

__all__ = ["LORA_WEIGHT_NAME", "VideoLoraLoaderMixin"]

LORA_WEIGHT_NAME = LORA_WEIGHT_NAME_SAFE  # "pytorch_lora_weights.safetensors"
UNET_PREFIX = "unet"
_DENOISER_WORDS = ("unet", "transformer")
_LOAD_OPTIONS = (
    "weight_name", "subfolder", "revision", "cache_dir", "local_files_only", "token", "force_download", "proxies",
    "allow_pickle", "low_cpu_mem_usage",
)  # fmt: skip


class VideoLoraLoaderMixin(LoraBaseMixin):
    r"""Loads, mixes, fuses and removes LoRA adapters in a pipeline's denoisers and text encoders.

    The LoRA-loadable components (`_lora_loadable_modules`) are found on the pipeline itself, not listed per class:
    every component that is a peft-capable diffusers model with "unet" or "transformer" in its name, and every
    `text_encoder*` that is a transformers model. A file's key prefixes map to them as the module docstring says.
    """

    # The component that keys prefixed `unet.` go to; None: the pipeline's `unet`, else its first UNet3DModel by name.
    lora_unet_alias: str | None = None

    @property
    def _lora_loadable_modules(self) -> list[str]:
        names = []
        for name, component in self.components.items():
            denoiser = isinstance(component, PeftAdapterMixin) and any(word in name for word in _DENOISER_WORDS)
            text_encoder = isinstance(component, PreTrainedModel) and name.startswith("text_encoder")
            if denoiser or text_encoder:
                names.append(name)
        return sorted(names)

    @property
    def lora_unet_component(self) -> str | None:
        """The component that a LoRA's `unet.` keys load into: `lora_unet_alias`, else `unet`, else the first
        `UNet3DModel` component by name (VideoFusion's `residual_unet`, Imagen Video's `unet_0`), else None."""
        if self.lora_unet_alias is not None:
            return self.lora_unet_alias
        loadable = self._lora_loadable_modules
        if UNET_PREFIX in loadable:
            return UNET_PREFIX
        videos = [name for name in loadable if isinstance(getattr(self, name), UNet3DModel)]
        return videos[0] if videos else None

    # ----------------------------------------------------------------------------------------------------- loading

    @classmethod
    def lora_state_dict(
        cls, pretrained_model_name_or_path_or_dict: str | os.PathLike | dict[str, torch.Tensor], **kwargs
    ) -> tuple[dict[str, torch.Tensor], dict | None]:
        """The state dict and LoRA adapter metadata of a LoRA file, folder or Hub repo (or a state dict as it is).

        Args:
            pretrained_model_name_or_path_or_dict (`str`, `os.PathLike` or `dict`): A folder or Hub repo id holding
                `pytorch_lora_weights.safetensors` (or the one safetensors file there), a `.safetensors` file, or a
                state dict.
            weight_name (`str`, *optional*): The file's name in the folder or repo.
            subfolder, revision, cache_dir, local_files_only, token, force_download, proxies: As in diffusers'
                `lora_state_dict`.
            allow_pickle (`bool`, defaults to False): Also read pickled `.bin` files (they run code when loaded).

        Returns:
            `(state_dict, metadata)`: metadata is None when the file has none (or a dict was given).
        """
        unknown = sorted(set(kwargs) - set(_LOAD_OPTIONS))
        if unknown:
            raise ValueError(f"Unknown LoRA loading options {unknown}; known are {sorted(_LOAD_OPTIONS)}.")
        source = pretrained_model_name_or_path_or_dict
        weight_name = kwargs.get("weight_name")
        if not isinstance(source, dict) and os.path.isfile(source):  # a file: its folder and name
            source, weight_name = os.path.dirname(os.path.abspath(source)), os.path.basename(source)
        allow_pickle = bool(kwargs.get("allow_pickle", False))
        if weight_name is not None and not weight_name.endswith(".safetensors") and not allow_pickle:
            raise ValueError(f"`weight_name` {weight_name!r} is not a safetensors file: pass `allow_pickle=True`.")
        state_dict, metadata = _fetch_state_dict(
            pretrained_model_name_or_path_or_dict=source,
            weight_name=weight_name,
            use_safetensors=True,
            local_files_only=kwargs.get("local_files_only"),
            cache_dir=kwargs.get("cache_dir"),
            force_download=kwargs.get("force_download", False),
            proxies=kwargs.get("proxies"),
            token=kwargs.get("token"),
            revision=kwargs.get("revision"),
            subfolder=kwargs.get("subfolder"),
            user_agent={"file_type": "attn_procs_weights", "framework": "pytorch"},
            allow_pickle=allow_pickle,
        )
        return dict(state_dict), metadata

    def load_lora_weights(
        self,
        pretrained_model_name_or_path_or_dict: str | os.PathLike | dict[str, torch.Tensor],
        adapter_name: str | None = None,
        hotswap: bool = False,
        **kwargs,
    ) -> None:
        """Loads a LoRA into the components its keys name (see the module docstring for the prefixes).

        Args:
            pretrained_model_name_or_path_or_dict (`str`, `os.PathLike` or `dict`): See [`lora_state_dict`].
            adapter_name (`str`, *optional*): The adapter's name, for `set_adapters` and `delete_adapters`; defaults to
                `default_<n>`, `n` the number of adapters the pipeline has.
            hotswap (`bool`, defaults to False): Replace the weights of the loaded adapter `adapter_name` in place.
            kwargs: The options of [`lora_state_dict`], and `low_cpu_mem_usage`.

        Raises:
            ValueError: a key without "lora" in it or whose prefix names no LoRA-loadable component, an
                `adapter_name` already in use, unknown options.
        """
        low_cpu_mem_usage = bool(kwargs.pop("low_cpu_mem_usage", False))
        if isinstance(pretrained_model_name_or_path_or_dict, dict):
            pretrained_model_name_or_path_or_dict = dict(pretrained_model_name_or_path_or_dict)
        state_dict, metadata = self.lora_state_dict(pretrained_model_name_or_path_or_dict, **kwargs)
        if not state_dict:
            raise ValueError(f"The LoRA {_describe(pretrained_model_name_or_path_or_dict)} holds no weights.")
        not_lora = [key for key in state_dict if "lora" not in key]
        if not_lora:
            raise ValueError(
                f"Invalid LoRA {_describe(pretrained_model_name_or_path_or_dict)}: every key must contain 'lora', "
                f"but {not_lora[:3]} do not."
            )
        parts, part_metadata = self._split_by_component(state_dict, metadata, pretrained_model_name_or_path_or_dict)
        present = {name for names in self.get_list_adapters().values() for name in names}
        if adapter_name is None:
            adapter_name = f"default_{len(present)}"
            while adapter_name in present:
                adapter_name += "_"
        elif adapter_name in present and not hotswap:
            raise ValueError(
                f"`adapter_name` {adapter_name!r} is already loaded in this pipeline: choose another name, or pass "
                "`hotswap=True` to replace its weights."
            )
        for component, weights in parts.items():
            model = getattr(self, component)
            logger.info(f"Loading LoRA {adapter_name!r} into `{component}`.")
            if isinstance(model, PreTrainedModel):
                _load_lora_into_text_encoder(
                    state_dict=weights, network_alphas=None, text_encoder=model, prefix=component,
                    text_encoder_name=component, lora_scale=self.lora_scale, adapter_name=adapter_name,
                    metadata=part_metadata.get(component), _pipeline=self, low_cpu_mem_usage=low_cpu_mem_usage,
                    hotswap=hotswap,
                )  # fmt: skip
            else:
                model.load_lora_adapter(
                    weights, prefix=component, network_alphas=None, adapter_name=adapter_name,
                    metadata=part_metadata.get(component), _pipeline=self, low_cpu_mem_usage=low_cpu_mem_usage,
                    hotswap=hotswap,
                )  # fmt: skip

    def _split_by_component(
        self, state_dict: dict[str, torch.Tensor], metadata: dict | None, source
    ) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, dict]]:
        """`({component: its keys, prefixed}, {component: its metadata, prefixed})`; `unet.` renamed to the pipeline's
        video UNet."""
        loadable = self._lora_loadable_modules
        unet_target = self.lora_unet_component

        def target(prefix: str) -> str | None:
            if prefix in loadable:
                return prefix
            return unet_target if prefix == UNET_PREFIX else None

        parts: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
        unknown = set()
        for key, value in state_dict.items():
            prefix, _, rest = key.partition(".")
            component = target(prefix)
            if component is None or not rest:
                unknown.add(prefix if rest else key)
                continue
            parts[component][f"{component}.{rest}"] = value
        if unknown:
            raise ValueError(
                f"The LoRA {_describe(source)} has keys for {sorted(unknown)}, which name no LoRA-loadable component "
                f"of {type(self).__name__}: its keys must start with one of {loadable}"
                + (f" (or 'unet', which loads into `{unet_target}`)." if unet_target else ".")
            )
        prefixes = {key.partition(".")[0] for key in state_dict}
        if unet_target not in (None, UNET_PREFIX) and {UNET_PREFIX, unet_target} <= prefixes:
            raise ValueError(
                f"The LoRA {_describe(source)} has keys for both 'unet' and '{unet_target}', which are the same "
                f"component of {type(self).__name__}."
            )
        part_metadata: dict[str, dict] = defaultdict(dict)
        for key, value in (metadata or {}).items():
            prefix, _, rest = key.partition(".")
            component = target(prefix)
            if component is not None and component in parts:
                part_metadata[component][f"{component}.{rest}"] = value
        return dict(parts), {name: values for name, values in part_metadata.items() if values}

    # ------------------------------------------------------------------------------------ using loaded adapters

    def _models_with_lora(self) -> dict[str, torch.nn.Module]:
        """The LoRA-loadable components that have adapters loaded, by name."""
        models = {}
        for name in self._lora_loadable_modules:
            model = getattr(self, name, None)
            if model is not None and getattr(model, "peft_config", None):
                models[name] = model
        return models

    def fuse_lora(
        self,
        components: list[str] | None = None,
        lora_scale: float = 1.0,
        safe_fusing: bool = False,
        adapter_names: list[str] | None = None,
        **kwargs,
    ) -> None:
        """Merges the active adapters into the weights of `components` (default: every component that has some).

        See [`diffusers.loaders.LoraBaseMixin.fuse_lora`]; `unfuse_lora` reverses it (to float rounding).
        """
        components = list(self._models_with_lora()) if components is None else components
        if not components:
            raise ValueError("`fuse_lora` found no LoRA to fuse: load one with `load_lora_weights` first.")
        super().fuse_lora(components, lora_scale=lora_scale, safe_fusing=safe_fusing, adapter_names=adapter_names)

    def unfuse_lora(self, components: list[str] | None = None, **kwargs) -> None:
        """Takes fused adapters out of the weights of `components` (default: every component that has adapters)."""
        components = list(self._models_with_lora()) if components is None else components
        if components:
            super().unfuse_lora(components)

    def set_adapters(
        self,
        adapter_names: list[str] | str,
        adapter_weights: float | dict | list[float] | list[dict] | None = None,
    ) -> None:
        """Activates `adapter_names` with `adapter_weights` (one number, one per adapter, or per adapter a dict
        `{component: weight}`) in each component that has them; the others are deactivated."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        weights = adapter_weights if isinstance(adapter_weights, list) else [adapter_weights] * len(names)
        if len(weights) != len(names):
            raise ValueError(
                f"`adapter_weights` must give one weight per adapter ({len(names)}) but gives {len(weights)}."
            )
        available = self.get_list_adapters()
        missing = sorted(set(names) - {name for loaded in available.values() for name in loaded})
        if missing:
            raise ValueError(f"`adapter_names` {missing} are not loaded; loaded adapters: {available}.")
        for component, model in self._models_with_lora().items():
            chosen = [(n, w) for n, w in zip(names, weights) if n in available[component]]
            chosen = [(n, w.get(component, 1.0) if isinstance(w, dict) else w) for n, w in chosen]
            if chosen:
                model.set_adapters([n for n, _ in chosen], [w for _, w in chosen])
            else:
                model.disable_lora()

    def disable_lora(self) -> None:
        """Switches every loaded adapter off (they stay loaded)."""
        for model in self._models_with_lora().values():
            model.disable_lora()

    def enable_lora(self) -> None:
        """Switches the loaded adapters back on."""
        for model in self._models_with_lora().values():
            model.enable_lora()

    def delete_adapters(self, adapter_names: list[str] | str) -> None:
        """Removes the adapters `adapter_names` from every component that has them."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        for model in self._models_with_lora().values():
            present = [name for name in names if name in model.peft_config]
            if present:
                model.delete_adapters(present)

    def unload_lora_weights(self) -> None:
        """Removes every adapter: each component is again exactly the model it was before the first LoRA loaded
        (fused adapters are unfused first)."""
        fused = [name for name, model in self._models_with_lora().items() if _has_merged_layers(model)]
        if fused:
            self.unfuse_lora(fused)
        self._merged_adapters = set()
        super().unload_lora_weights()

    # ------------------------------------------------------------------------------------------------------ saving

    @classmethod
    def save_lora_weights(
        cls,
        save_directory: str | os.PathLike,
        lora_layers: dict[str, dict[str, torch.Tensor] | torch.nn.Module],
        lora_metadata: dict[str, dict | None] | None = None,
        weight_name: str = LORA_WEIGHT_NAME,
        is_main_process: bool = True,
    ) -> None:
        """Writes a LoRA file (safetensors) with one prefix per component, as `load_lora_weights` reads it.

        Args:
            save_directory (`str` or `os.PathLike`): The folder; created if needed.
            lora_layers (`dict`): Per component name (the prefix, e.g. "residual_unet" or "unet"), its peft LoRA
                state dict (`peft.get_peft_model_state_dict(model)`) or a module whose `state_dict()` it is.
            lora_metadata (`dict`, *optional*): Per component, its `LoraConfig.to_dict()` (rank, alpha, targets),
                written into the file's header as diffusers does, so that loading rebuilds the same scaling.
            weight_name (`str`, defaults to "pytorch_lora_weights.safetensors"): The file name.
            is_main_process (`bool`, defaults to True): Only the main process writes.
        """
        if not lora_layers:
            raise ValueError("`lora_layers` is empty: give at least one component's LoRA state dict.")
        if not weight_name.endswith(".safetensors"):
            raise ValueError(f"`weight_name` must end in .safetensors but is {weight_name!r}.")
        if not is_main_process:
            return
        cls._save_lora_weights(
            save_directory=save_directory,
            lora_layers=lora_layers,
            lora_metadata={name: _json_ready(values) for name, values in (lora_metadata or {}).items()},
            weight_name=weight_name,
            safe_serialization=True,
        )


def _json_ready(metadata: dict | None) -> dict | None:
    """A `LoraConfig.to_dict()` as JSON can hold it (sets as sorted lists)."""
    if metadata is None:
        return None
    return {key: sorted(value) if isinstance(value, set) else value for key, value in metadata.items()}


def _has_merged_layers(model: torch.nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer  # peft is optional (`pip install "diffusers-video[train]"`)

    return any(isinstance(module, BaseTunerLayer) and module.merged for module in model.modules())


def _describe(source) -> str:
    return "state dict" if isinstance(source, dict) else repr(os.fspath(source))
