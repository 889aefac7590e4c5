from .imagen_video import ImagenVideoPipeline, ImagenVideoPipelineOutput
from .pipeline_utils import VideoPipelineOutput
from .videofusion import VideoFusionPipeline

__all__ = ["ImagenVideoPipeline", "ImagenVideoPipelineOutput", "VideoFusionPipeline", "VideoPipelineOutput"]
