"""Plain ``nn.Module`` autoencoders: MLPs for vectors (``mlp``) and the convolutional model for images (``unet``);
their symmetrisation over image flips (``flips``)."""
from manifold_ae.models.flips import FLIPS, flip_average
from manifold_ae.models.mlp import ACTIVATIONS, LinearAutoencoder, MLPAutoencoder
from manifold_ae.models.unet import GatedUNet

__all__ = ["ACTIVATIONS", "FLIPS", "GatedUNet", "LinearAutoencoder", "MLPAutoencoder", "flip_average"]
