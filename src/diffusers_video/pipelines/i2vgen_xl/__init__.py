from .pipeline_video_refiner import VideoRefinerPipeline

__all__ = ["VideoRefinerPipeline"]
