from .cascade import STAGE_KINDS, StageSpec
from .pipeline_imagen_video import ImagenVideoPipeline, ImagenVideoPipelineOutput
from .stages import CascadeStage

__all__ = ["STAGE_KINDS", "CascadeStage", "ImagenVideoPipeline", "ImagenVideoPipelineOutput", "StageSpec"]
