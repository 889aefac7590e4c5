"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this pipeline's `content_encoder`. It only imports I2VGenXLContentEncoder from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.models.i2vgen_xl_content import I2VGenXLContentEncoder

__all__ = ['I2VGenXLContentEncoder']
