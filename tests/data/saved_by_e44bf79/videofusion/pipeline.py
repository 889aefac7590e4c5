"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this VideoFusionPipeline pipeline. It only imports VideoFusionPipeline from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.pipelines.videofusion.pipeline_videofusion import VideoFusionPipeline

__all__ = ['VideoFusionPipeline']
