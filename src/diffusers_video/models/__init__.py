from .flow_upsampler import FlowTemporalUpsampler, FlowTemporalUpsamplerOutput
from .frame_adaptors import AdaptedResnetBlock2D, ConvFrameAdaptors, FrameAdaptor
from .i2vgen_xl_content import I2VGenXLContentEncoder, I2VGenXLContentEncoderOutput
from .temporal import TemporalAttention, TemporalConv
from .unet_3d import UNet3DModel, UNet3DModelOutput
from .video_vae import AutoencoderKLVideo

__all__ = [
    "AdaptedResnetBlock2D",
    "AutoencoderKLVideo",
    "ConvFrameAdaptors",
    "FlowTemporalUpsampler",
    "FlowTemporalUpsamplerOutput",
    "FrameAdaptor",
    "I2VGenXLContentEncoder",
    "I2VGenXLContentEncoderOutput",
    "TemporalAttention",
    "TemporalConv",
    "UNet3DModel",
    "UNet3DModelOutput",
]
