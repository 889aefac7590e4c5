from .pipeline_videogen import VideoGenPipeline

__all__ = ["VideoGenPipeline"]
