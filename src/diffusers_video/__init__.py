"""diffusers-video: video diffusion systems for Hugging Face diffusers.

Every component module is imported eagerly here: diffusers resolves component classes through
``sys.modules`` and the module path saved in ``model_index.json``, so a saved folder loads only if the
module that defines its classes has been imported. ``hub`` is imported eagerly too: it registers the publisher
through which ``UNet3DModel.push_to_hub`` and ``VideoDiffusionPipeline.push_to_hub`` upload with our model card
(see ``diffusers_video.folders``).

This module is the top of the package's layers (see ``tests/test_layers.py``): it may import every module, and no
module of the package imports it.
"""

__version__ = "0.1.0.dev0"

from . import hub  # noqa: F401 (imported for its effect: it registers the Hub publisher)
from .models.flow_upsampler import FlowTemporalUpsampler, FlowTemporalUpsamplerOutput
from .models.i2vgen_xl_content import I2VGenXLContentEncoder, I2VGenXLContentEncoderOutput
from .models.unet_3d import UNet3DModel, UNet3DModelOutput
from .models.video_vae import AutoencoderKLVideo
from .pipelines.i2vgen_xl.pipeline_i2vgen_xl_cascade import I2VGenXLCascadePipeline
from .pipelines.i2vgen_xl.pipeline_video_refiner import VideoRefinerPipeline
from .pipelines.imagen_video.pipeline_imagen_video import ImagenVideoPipeline, ImagenVideoPipelineOutput
from .pipelines.magicvideo.pipeline_magicvideo import MagicVideoPipeline
from .pipelines.pipeline_utils import VideoPipelineOutput
from .pipelines.videofusion.pipeline_videofusion import VideoFusionPipeline
from .pipelines.videogen.pipeline_videogen import VideoGenPipeline
from .schedulers.scheduling_decomposed import DecomposedNoiseScheduler, DecomposedNoiseSchedulerOutput
from .schedulers.scheduling_v_distilled import VDistilledScheduler, VDistilledSchedulerOutput

__all__ = [
    "AutoencoderKLVideo",
    "FlowTemporalUpsampler",
    "FlowTemporalUpsamplerOutput",
    "UNet3DModel",
    "UNet3DModelOutput",
    "DecomposedNoiseScheduler",
    "DecomposedNoiseSchedulerOutput",
    "VDistilledScheduler",
    "VDistilledSchedulerOutput",
    "ImagenVideoPipeline",
    "ImagenVideoPipelineOutput",
    "MagicVideoPipeline",
    "VideoFusionPipeline",
    "VideoGenPipeline",
    "VideoPipelineOutput",
    "I2VGenXLContentEncoder",
    "I2VGenXLContentEncoderOutput",
    "I2VGenXLCascadePipeline",
    "VideoRefinerPipeline",
]
