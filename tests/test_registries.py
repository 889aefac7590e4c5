"""The trainer registries (`training.registry`): the generic loop and distillation find the paper trainers by the
config section they train, without importing them."""

from __future__ import annotations

import pytest

from diffusers_video.training import (
    DISTILLATION_TRAINERS,
    TRAINERS,
    DistillationConfig,
    Trainer,
    TrainingConfig,
    VideoFusionTrainer,
    VideoVAETrainer,
)
from diffusers_video.training.distillation import DistillationTrainer
from diffusers_video.training.i2vgen_xl import I2VGenXLTrainer
from diffusers_video.training.imagen_video import ImagenVideoDistillationTrainer, ImagenVideoTrainer
from diffusers_video.training.magicvideo import MagicVideoInterpolationTrainer
from diffusers_video.training.registry import register_trainer, registered_class
from diffusers_video.training.videogen import VideoGenTrainer


def test_the_paper_trainers_are_registered_by_section():
    assert TRAINERS == {
        "videofusion": VideoFusionTrainer,
        "imagen_video": ImagenVideoTrainer,
        "video_vae": VideoVAETrainer,
        "magicvideo": MagicVideoInterpolationTrainer,
        "i2vgen_xl": I2VGenXLTrainer,
        "videogen": VideoGenTrainer,
    }
    assert DISTILLATION_TRAINERS == {"imagen_video": ImagenVideoDistillationTrainer}
    assert VideoFusionTrainer.config_section == "videofusion" and Trainer.config_section is None
    assert ImagenVideoDistillationTrainer.config_section == "imagen_video"


def test_registered_class_follows_the_section_a_config_sets():
    assert registered_class(TrainingConfig(), TRAINERS, Trainer) is Trainer
    assert registered_class(TrainingConfig(videofusion={}), TRAINERS, Trainer) is VideoFusionTrainer
    stage = TrainingConfig(imagen_video={}, prediction_type="v_prediction")
    assert registered_class(stage, TRAINERS, Trainer) is ImagenVideoTrainer
    distillation = DistillationConfig(imagen_video={"stage": {"kind": "base"}})
    assert registered_class(distillation, DISTILLATION_TRAINERS, DistillationTrainer) is ImagenVideoDistillationTrainer
    assert registered_class(DistillationConfig(), DISTILLATION_TRAINERS, DistillationTrainer) is DistillationTrainer


def test_register_trainer_refuses_unknown_sections_and_a_second_class():
    with pytest.raises(ValueError, match="`make_a_video` is not a section of TrainingConfig"):
        register_trainer("make_a_video")
    with pytest.raises(ValueError, match="VideoFusionTrainer is already registered for the `videofusion` section"):
        register_trainer("videofusion")(type("OtherTrainer", (Trainer,), {}))
    assert TRAINERS["videofusion"] is VideoFusionTrainer
    assert register_trainer("videofusion")(VideoFusionTrainer) is VideoFusionTrainer  # registering again is a no-op
