"""The stages of an Imagen Video cascade as diffusers components: `unet_<i>` and `scheduler_<i>` for stage `i`.

diffusers registers a pipeline's components from its `__init__` signature. A cascade has a variable number of stages,
so the stage components are named `unet_<i>` and `scheduler_<i>` (`i` = 0 for the base) and the stage kinds and factors
are the `stages` entry of `model_index.json`. [`CascadeStagesMixin`] tells diffusers those names while a folder is
checked and loaded (`_components_context`, used by `VideoDiffusionPipeline.from_pretrained`) and, for a pipeline
instance, from its config (`_get_signature_keys`), so saving, loading, `.to()`, offloading and `components` see every
stage. It also holds the cascade's editing (`replace_stage`, `add_stage`, `drop_stage`) and size arithmetic.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from diffusers import DiffusionPipeline
from diffusers.configuration_utils import FrozenDict
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ...guidance import GUIDANCE_CONDITION
from ...models.unet_3d import UNet3DModel
from ..checks import is_int
from .cascade import NOISE_AUG_CONDITION, StageSpec, check_stage_unet

__all__ = ["DEFAULT_BASE_NUM_FRAMES", "CascadeStage", "CascadeStagesMixin", "stage_component_names"]

DEFAULT_BASE_NUM_FRAMES = 8
"""Frames of the base stage when `num_frames` is not given (the final count is this times the TSR factors)."""

# Names of the stage components in `model_index.json` and on the pipeline.
_STAGE_COMPONENT = re.compile(r"(unet|scheduler)_(\d+)")
# The stage components a folder being checked and loaded has (see `ImagenVideoPipeline._components_context`).
_LOADING_STAGES: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "imagen_video_loading_stages", default=None
)


def stage_component_names(num_stages: int) -> list[str]:
    """`["unet_0", "scheduler_0", "unet_1", ...]`: the component names of a cascade of `num_stages` stages."""
    return [f"{kind}_{i}" for i in range(num_stages) for kind in ("unet", "scheduler")]


class CascadeStage(NamedTuple):
    """One stage of the cascade: what it does to the size, its model and its scheduler."""

    spec: StageSpec
    unet: UNet3DModel
    scheduler: Any

    @property
    def reads_text(self) -> bool:
        """Whether the stage's UNet has text cross-attention. A fully convolutional SR stage does not: guidance
        would only repeat its pass, so it is sampled with weight 1."""
        config = self.unet.config
        blocks = [*config.down_block_types, *config.up_block_types, config.mid_block_type or ""]
        return any("CrossAttn" in block for block in blocks)


class _StageTypes(dict):
    """`_get_signature_types` of a cascade pipeline: stage components have the types of `unet_<i>` / `scheduler_<i>`."""

    def __missing__(self, key: str):
        match = _STAGE_COMPONENT.fullmatch(key)
        if match is None:
            raise KeyError(key)
        return (UNet3DModel,) if match.group(1) == "unet" else (SchedulerMixin,)


class CascadeStagesMixin:
    """The stage components of a cascade pipeline (`unet_<i>`, `scheduler_<i>`, the `stages` config entry)."""

    @classmethod
    def _components_context(cls, index: dict[str, Any]) -> contextlib.AbstractContextManager:
        """While a folder with this `model_index.json` is checked and loaded, its stage components are expected."""
        stages = index.get("stages")
        if isinstance(stages, list):
            count = len(stages)
        else:  # no readable `stages`: expect the stage components the folder has (loading then names the problem)
            indices = [int(m.group(2)) for m in map(_STAGE_COMPONENT.fullmatch, index) if m is not None]
            count = max(indices, default=-1) + 1

        @contextlib.contextmanager
        def context():
            token = _LOADING_STAGES.set(count)
            try:
                yield
            finally:
                _LOADING_STAGES.reset(token)

        return context()

    @classmethod
    def _get_signature_keys(cls, obj):
        expected, optional = super()._get_signature_keys(obj)
        if isinstance(obj, DiffusionPipeline):
            count = len(obj.config.get("stages", ()))
        else:
            count = _LOADING_STAGES.get() or 0
        return sorted({*expected, *stage_component_names(count)}), optional

    @classmethod
    def _get_signature_types(cls):
        types = _StageTypes(super()._get_signature_types())
        for name in stage_component_names(_LOADING_STAGES.get() or 0):
            types[name] = types[name]  # explicit entries for the folder being loaded (`dict.get` sees them)
        return types

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        # the stage components of `model_index.json` are `__init__` keyword arguments that its signature does not show
        stage_entries = {key: value for key, value in config_dict.items() if _STAGE_COMPONENT.fullmatch(key)}
        rest = {key: value for key, value in config_dict.items() if key not in stage_entries}
        init_dict, unused_kwargs, hidden = super().extract_init_dict(rest, **kwargs)
        return {**init_dict, **stage_entries}, unused_kwargs, hidden

    @property
    def model_cpu_offload_seq(self) -> str:
        return "->".join(["text_encoder", *(f"unet_{i}" for i in range(self.num_stages))])

    # ------------------------------------------------------------------ stages

    @property
    def num_stages(self) -> int:
        return len(self.config.stages)

    @property
    def stage_specs(self) -> tuple[StageSpec, ...]:
        """The kind and factor of every stage, base first."""
        return tuple(StageSpec.from_dict(spec) for spec in self.config.stages)

    @property
    def unets(self) -> tuple[UNet3DModel, ...]:
        """The UNet of every stage, base first."""
        return tuple(getattr(self, f"unet_{i}") for i in range(self.num_stages))

    @property
    def stages(self) -> tuple[CascadeStage, ...]:
        """Every stage as `(spec, unet, scheduler)`, base first."""
        return tuple(
            CascadeStage(spec, getattr(self, f"unet_{i}"), getattr(self, f"scheduler_{i}"))
            for i, spec in enumerate(self.stage_specs)
        )

    @staticmethod
    def check_stages(specs: Sequence[StageSpec], unets: Sequence[Any], schedulers: Sequence[Any]) -> None:
        """Raises a `ValueError` naming the stage when the stages cannot run as a cascade.

        Checked: one UNet and one scheduler per spec; stage 0 is the only "base" stage; each UNet's `in_channels`
        fits its sample and conditioning (`check_stage_unet`, the conditioning having the previous stage's
        `out_channels`); each UNet's scalar conditions are ones the pipeline gives ("noise_aug_level",
        "guidance_scale"); each scheduler has `set_timesteps` and `step`.
        """
        if not (len(specs) == len(unets) == len(schedulers)):
            raise ValueError(
                f"A cascade needs one UNet and one scheduler per stage, but has {len(specs)} stages, {len(unets)} "
                f"UNets and {len(schedulers)} schedulers."
            )
        if not specs:
            raise ValueError("A cascade needs at least one stage (the base).")
        kinds = [spec.kind for spec in specs]
        if kinds[0] != "base" or "base" in kinds[1:]:
            raise ValueError(
                f"Stage 0, and only stage 0, must be a 'base' stage, but the stages are {[str(s) for s in specs]}."
            )
        for i, (spec, unet, scheduler) in enumerate(zip(specs, unets, schedulers)):
            if unet is None or not hasattr(unet, "config"):
                raise ValueError(f"Stage {i} ({spec}) needs a UNet3DModel but has {unet!r}.")
            previous = unets[i - 1].config.out_channels if i > 0 else None
            check_stage_unet(unet, spec, i, condition_channels=previous)
            extra = set(getattr(unet.config, "scalar_conditions", ()) or ()) - {
                NOISE_AUG_CONDITION,
                GUIDANCE_CONDITION,
            }
            if extra:
                raise ValueError(
                    f"Stage {i} ({spec}) has a UNet with scalar conditions {sorted(extra)} that the pipeline cannot "
                    f"give (it gives {NOISE_AUG_CONDITION!r} and {GUIDANCE_CONDITION!r})."
                )
            if not (hasattr(scheduler, "set_timesteps") and hasattr(scheduler, "step")):
                raise ValueError(f"Stage {i} ({spec}) needs a diffusers scheduler but has {scheduler!r}.")

    def _set_stages(self, specs: Sequence[StageSpec], unets: Sequence[Any], schedulers: Sequence[Any]) -> None:
        """Checks the stages, then registers them as `unet_<i>`, `scheduler_<i>` and the `stages` config entry."""
        self.check_stages(specs, unets, schedulers)
        old = [key for key in self.config if _STAGE_COMPONENT.fullmatch(key)]
        if old:  # forget the previous stage components (the config is frozen: rebuild it without them)
            self._internal_dict = FrozenDict({k: v for k, v in self._internal_dict.items() if k not in old})
            for name in old:
                self.__dict__.pop(name, None)
        components = {}
        for i, (unet, scheduler) in enumerate(zip(unets, schedulers)):
            components[f"unet_{i}"], components[f"scheduler_{i}"] = unet, scheduler
        self.register_modules(**components)
        self.register_to_config(stages=[spec.to_dict() for spec in specs])

    def replace_stage(
        self,
        index: int,
        unet: UNet3DModel | None = None,
        scheduler: Any | None = None,
        spec: StageSpec | dict[str, Any] | None = None,
    ) -> None:
        """Replaces the UNet, the scheduler and/or the spec of stage `index` (what is None stays).

        Raises:
            ValueError: naming the stage, when the result cannot run (see [`check_stages`]); nothing is changed then.
        """
        stages = list(self.stages)
        index = self._check_stage_index(index, len(stages))
        old = stages[index]
        stages[index] = CascadeStage(
            old.spec if spec is None else StageSpec.from_dict(spec),
            old.unet if unet is None else unet,
            old.scheduler if scheduler is None else scheduler,
        )
        self._set_stages(*zip(*stages))

    def add_stage(
        self, spec: StageSpec | dict[str, Any], unet: UNet3DModel, scheduler: Any, index: int | None = None
    ) -> None:
        """Inserts a stage before stage `index` (at the end by default); later stages are renumbered."""
        stages = list(self.stages)
        position = len(stages) if index is None else self._check_stage_index(index, len(stages) + 1)
        stages.insert(position, CascadeStage(StageSpec.from_dict(spec), unet, scheduler))
        self._set_stages(*zip(*stages))

    def drop_stage(self, index: int) -> CascadeStage:
        """Removes stage `index` (later stages are renumbered) and returns it.

        Raises:
            ValueError: when the result cannot run, e.g. the base is dropped or an SR stage would follow a stage
                with other output channels.
        """
        stages = list(self.stages)
        index = self._check_stage_index(index, len(stages))
        dropped = stages.pop(index)
        if not stages:
            raise ValueError("Cannot drop the only stage of the cascade.")
        self._set_stages(*zip(*stages))
        return dropped

    @staticmethod
    def _check_stage_index(index: int, count: int) -> int:
        if not is_int(index) or not -count <= index < count:
            raise ValueError(f"Stage index must be an integer in [{-count}, {count}) but is {index!r}.")
        return index % count

    def stage_sizes(self, num_frames: int, height: int, width: int) -> list[tuple[int, int, int]]:
        """The `(frames, height, width)` each stage produces for a final output of this size, base first.

        Raises:
            ValueError: naming the argument (`num_frames` for a temporal factor, `height` and `width` for a spatial
                one), the stage and the sizes when a factor does not divide the size it must produce.
        """
        sizes = [(num_frames, height, width)]
        for i in range(self.num_stages - 1, 0, -1):
            spec = self.stage_specs[i]
            try:
                sizes.append(spec.input_size(*sizes[-1]))
            except ValueError as error:
                arguments = (
                    f"`num_frames`={num_frames} does"
                    if spec.kind == "tsr"
                    else f"`height` and `width` ({height}, {width}) do"
                )
                raise ValueError(
                    f"{arguments} not fit the cascade: Stage {i} ({spec}) cannot produce {sizes[-1][0]} frames of "
                    f"{sizes[-1][1]}x{sizes[-1][2]} for the requested output of {num_frames} frames of "
                    f"{height}x{width}: {error}"
                ) from error
        return sizes[::-1]

    def default_size(self) -> tuple[int, int, int]:
        """The final `(frames, height, width)` when none is given: the base stage's `sample_size` and
        `DEFAULT_BASE_NUM_FRAMES` frames, carried through every stage."""
        sample_size = self.unet_0.config.sample_size
        if sample_size is None:
            raise ValueError("The base UNet has no `sample_size`: pass `num_frames`, `height` and `width`.")
        height, width = (sample_size, sample_size) if is_int(sample_size) else tuple(sample_size)
        size = (DEFAULT_BASE_NUM_FRAMES, height, width)
        for spec in self.stage_specs:
            size = spec.output_size(*size)
        return size

    # ------------------------------------------------------------------ per-stage arguments

    def per_stage(self, value: Any, name: str, default: Any = None) -> list[Any]:
        """One value per stage from a call argument: a scalar (every stage), a list or tuple (one per stage), or a
        dict `{stage index: value}` (other stages get `default`).

        Raises:
            ValueError: naming the argument and the lengths or indices when they do not fit the stages.
        """
        count = self.num_stages
        if isinstance(value, dict):
            bad = [key for key in value if not is_int(key) or not 0 <= key < count]
            if bad:
                raise ValueError(
                    f"`{name}` is a dict by stage index, whose keys must be integers in [0, {count}), but has {bad}."
                )
            return [value.get(i, default) for i in range(count)]
        if isinstance(value, (list, tuple)):
            if len(value) != count:
                raise ValueError(
                    f"`{name}` has {len(value)} values but the cascade has {count} stages: pass one value per stage, "
                    "one value for all, or a dict {stage index: value}."
                )
            return list(value)
        return [value] * count

    # ------------------------------------------------------------------ checks
