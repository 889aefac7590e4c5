from .pipeline_videofusion import VideoFusionPipeline
from .windows import frame_windows, predict_over_windows, window_blend_weights

__all__ = ["VideoFusionPipeline", "frame_windows", "predict_over_windows", "window_blend_weights"]
