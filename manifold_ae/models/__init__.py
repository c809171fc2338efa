"""Plain ``nn.Module`` autoencoders: MLPs for vectors (``mlp``) and the convolutional model for images (``unet``)."""
from manifold_ae.models.mlp import ACTIVATIONS, LinearAutoencoder, MLPAutoencoder
from manifold_ae.models.unet import GatedUNet

__all__ = ["ACTIVATIONS", "GatedUNet", "LinearAutoencoder", "MLPAutoencoder"]
