from .pipeline_i2vgen_xl_cascade import I2VGenXLCascadePipeline
from .pipeline_video_refiner import VideoRefinerPipeline

__all__ = ["I2VGenXLCascadePipeline", "VideoRefinerPipeline"]
