"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this ImagenVideoPipeline pipeline. It only imports ImagenVideoPipeline from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.pipelines.imagen_video.pipeline_imagen_video import ImagenVideoPipeline

__all__ = ['ImagenVideoPipeline']
