"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this pipeline's `interpolation_unet`. It only imports UNet3DModel from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.models.unet_3d import UNet3DModel

__all__ = ['UNet3DModel']
