from .temporal import FrameAdaptor, TemporalAttention, TemporalConv
from .unet_3d import UNet3DModel, UNet3DModelOutput
from .video_vae import AutoencoderKLVideo

__all__ = [
    "AutoencoderKLVideo",
    "FrameAdaptor",
    "TemporalAttention",
    "TemporalConv",
    "UNet3DModel",
    "UNet3DModelOutput",
]
