from .pipeline_utils import VideoPipelineOutput
from .videofusion import VideoFusionPipeline

__all__ = ["VideoFusionPipeline", "VideoPipelineOutput"]
