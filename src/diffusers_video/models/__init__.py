from .frame_adaptors import ConvFrameAdaptors, FrameAdaptor
from .temporal import TemporalAttention, TemporalConv
from .unet_3d import UNet3DModel, UNet3DModelOutput
from .video_vae import AutoencoderKLVideo

__all__ = [
    "AutoencoderKLVideo",
    "ConvFrameAdaptors",
    "FrameAdaptor",
    "TemporalAttention",
    "TemporalConv",
    "UNet3DModel",
    "UNet3DModelOutput",
]
