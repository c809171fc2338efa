"""Plain ``nn.Module`` autoencoders: MLPs for vectors (``mlp``) and the convolutional model for images."""
from manifold_ae.models.mlp import ACTIVATIONS, LinearAutoencoder, MLPAutoencoder

__all__ = ["ACTIVATIONS", "LinearAutoencoder", "MLPAutoencoder"]
