from .cascade import STAGE_KINDS, StageSpec
from .pipeline_imagen_video import CascadeStage, ImagenVideoPipeline, ImagenVideoPipelineOutput

__all__ = ["STAGE_KINDS", "CascadeStage", "ImagenVideoPipeline", "ImagenVideoPipelineOutput", "StageSpec"]
