"""The paper trainers, found by the config section they train.

The generic loop (`training.trainer`) and progressive distillation (`training.distillation`) never import a paper's
trainer. Each paper module registers its trainers with a class decorator instead: `@register_trainer("videofusion")`
on `VideoFusionTrainer` records it in [`TRAINERS`], `@register_distillation_trainer("imagen_video")` on
`ImagenVideoDistillationTrainer` in [`DISTILLATION_TRAINERS`]; `train(config)` and `distill(config)` run the class
registered for the section the config sets ([`registered_class`]). `diffusers_video.training` imports the paper
modules, so the registries are filled whenever the package is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from .config import TrainingConfig

__all__ = [
    "DISTILLATION_TRAINERS",
    "TRAINERS",
    "register_distillation_trainer",
    "register_trainer",
    "registered_class",
]

TRAINERS: dict[str, type] = {}
"""The trainers of `train(config)`, by the `TrainingConfig` section they train (a `Trainer` subclass each)."""

DISTILLATION_TRAINERS: dict[str, type] = {}
"""The trainers of a distillation round, by section (a `DistillationTrainer` subclass each)."""

_Class = TypeVar("_Class", bound=type)


def _register(section: str, registry: dict[str, type]) -> Callable[[_Class], _Class]:
    if section not in {field.name for field in dataclasses.fields(TrainingConfig)}:
        raise ValueError(f"`{section}` is not a section of TrainingConfig; a trainer is registered for one.")

    def register(cls: _Class) -> _Class:
        if section in registry and registry[section] is not cls:
            raise ValueError(f"{registry[section].__name__} is already registered for the `{section}` section.")
        cls.config_section = section
        registry[section] = cls
        return cls

    return register


def register_trainer(section: str) -> Callable[[_Class], _Class]:
    """Class decorator: the decorated `Trainer` subclass trains the configs whose `section` is set.

    Sets the class's `config_section` (a `Trainer` refuses a config that sets another registered section) and records
    it in [`TRAINERS`].

    Args:
        section (`str`): A field of `TrainingConfig` that holds a paper's settings, e.g. "videofusion".

    Raises:
        ValueError: `section` is not a `TrainingConfig` field, or another class is registered for it.
    """
    return _register(section, TRAINERS)


def register_distillation_trainer(section: str) -> Callable[[_Class], _Class]:
    """Class decorator: the decorated `DistillationTrainer` subclass distils the models of configs whose `section`
    is set; recorded in [`DISTILLATION_TRAINERS`] (see [`register_trainer`])."""
    return _register(section, DISTILLATION_TRAINERS)


def registered_class(config: TrainingConfig, registry: dict[str, type], default: type) -> type:
    """The class of `registry` registered for the section that `config` sets, or `default` when it sets none.

    A registered class with a `class_for_config(config)` class method may name another class for some configs of its
    section (`MagicVideoInterpolationTrainer` names `MagicVideoPretrainTrainer` for the "pretrain" stage).

    Raises:
        ValueError: `config` sets more than one registered section.
    """
    sections = [section for section in registry if getattr(config, section, None) is not None]
    if len(sections) > 1:
        raise ValueError(f"Only one of the sections {sections} can be set in a config.")
    if not sections:
        return default
    cls = registry[sections[0]]
    choose = getattr(cls, "class_for_config", None)
    return choose(config) if choose is not None else cls
