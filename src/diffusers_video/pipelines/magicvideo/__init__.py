from .pipeline_magicvideo import MagicVideoPipeline

__all__ = ["MagicVideoPipeline"]
