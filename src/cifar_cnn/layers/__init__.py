"""cifar-cnn's Keras layers and initialisers, one per module, each registered with Keras.

They are the parts the network builders in `cifar_cnn.models` take as arguments, so a
variant of a network (another norm, conv or activation) is built through public arguments.
"""

from cifar_cnn.layers.fused_batch_norm import FusedBatchNormalization
from cifar_cnn.layers.fused_gelu import ErfGELU, FusedGELU
from cifar_cnn.layers.partial_dirac import PartialDirac
from cifar_cnn.layers.patch_whitening import PatchWhitening
from cifar_cnn.layers.small_map_conv import SmallMapConv2D

__all__ = [
    "ErfGELU",
    "FusedBatchNormalization",
    "FusedGELU",
    "PartialDirac",
    "PatchWhitening",
    "SmallMapConv2D",
]
