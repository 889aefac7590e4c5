"""Training: the accelerate training loop (`train`), progressive distillation (`distill`), VideoFusion's joint
base/residual training (a `videofusion` config section), the stages of an Imagen Video cascade (an `imagen_video`
config section), a temporal-aware VAE decoder (a `video_vae` config section), MagicVideo's interpolation model (a
`magicvideo` config section), configs, checkpoints.

See docs/training.md and docs/distillation.md for the command lines and the config keys. The paper modules
(`training.videofusion`, `training.imagen_video`, `training.video_vae`, `training.magicvideo`,
`training.i2vgen_xl`, `training.videogen`) are imported here on
purpose: importing them registers their trainers for their config sections (`training.registry`), which is how
`train` and `distill` find them.
"""

from . import i2vgen_xl, imagen_video, magicvideo, video_vae, videofusion, videogen  # noqa: F401 (imported to register their trainers)
from .checkpointing import latest_checkpoint, list_checkpoints, read_marker
from .components import TrainingComponents, load_components, save_components
from .config import (
    DataConfig,
    ImagenVideoConfig,
    MagicVideoConfig,
    ModelConfig,
    TrainingConfig,
    VideoFusionConfig,
    VideoVAEConfig,
)
from .data import VideoFolderDataset
from .distillation import DistillationConfig, distill
from .objectives import OBJECTIVES, TrainingNoise, sample_training_noise
from .registry import DISTILLATION_TRAINERS, TRAINERS, register_distillation_trainer, register_trainer
from .trainer import Trainer, export_checkpoint, train
from .video_vae import VideoVAETrainer
from .videofusion import VideoFusionTrainer

__all__ = [
    "DISTILLATION_TRAINERS",
    "DataConfig",
    "DistillationConfig",
    "ImagenVideoConfig",
    "MagicVideoConfig",
    "ModelConfig",
    "OBJECTIVES",
    "TRAINERS",
    "Trainer",
    "TrainingComponents",
    "TrainingConfig",
    "TrainingNoise",
    "VideoFolderDataset",
    "VideoFusionConfig",
    "VideoFusionTrainer",
    "VideoVAEConfig",
    "VideoVAETrainer",
    "distill",
    "export_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_components",
    "read_marker",
    "register_distillation_trainer",
    "register_trainer",
    "sample_training_noise",
    "save_components",
    "train",
]
