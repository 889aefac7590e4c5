"""Training: the accelerate training loop (`train`), progressive distillation (`distill`), VideoFusion's joint
base/residual training (a `videofusion` config section), the stages of an Imagen Video cascade (an `imagen_video`
config section), configs, checkpoints.

See the README ("Training", "Progressive distillation") for the command lines and the config keys. The Imagen Video
stage trainers and `assemble_cascade` are in `training.imagen_video` (not imported here, so that
`python -m diffusers_video.training.imagen_video` runs it cleanly; `train` and `distill` import it when needed).
"""

from .checkpointing import latest_checkpoint, list_checkpoints, read_marker
from .components import TrainingComponents, load_components, save_components
from .config import DataConfig, ImagenVideoConfig, ModelConfig, TrainingConfig, VideoFusionConfig
from .data import VideoFolderDataset
from .distillation import DistillationConfig, distill
from .objectives import OBJECTIVES, TrainingNoise, sample_training_noise
from .trainer import Trainer, export_checkpoint, train
from .videofusion import VideoFusionTrainer

__all__ = [
    "DataConfig",
    "DistillationConfig",
    "ImagenVideoConfig",
    "ModelConfig",
    "OBJECTIVES",
    "Trainer",
    "TrainingComponents",
    "TrainingConfig",
    "TrainingNoise",
    "VideoFolderDataset",
    "VideoFusionConfig",
    "VideoFusionTrainer",
    "distill",
    "export_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_components",
    "read_marker",
    "sample_training_noise",
    "save_components",
    "train",
]
