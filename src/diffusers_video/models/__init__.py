from .temporal import FrameAdaptor, TemporalAttention, TemporalConv
from .unet_3d import UNet3DModel, UNet3DModelOutput

__all__ = ["FrameAdaptor", "TemporalAttention", "TemporalConv", "UNet3DModel", "UNet3DModelOutput"]
