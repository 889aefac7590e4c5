"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`
load this pipeline's `vae`. It only imports AutoencoderKLVideo from the installed `diffusers_video` package (`pip install
diffusers-video`); it defines nothing itself. Written by diffusers-video's `save_pretrained`."""

from diffusers_video.models.video_vae import AutoencoderKLVideo

__all__ = ['AutoencoderKLVideo']
