"""Corruptions returning ``(corrupted, mask)`` for vectors (``vector``) and images (``image``)."""
from manifold_ae.corruptions.base import Compose, Corruption, Fill, Identity, MaskedCorruption, MaskSampler

__all__ = ["Compose", "Corruption", "Fill", "Identity", "MaskedCorruption", "MaskSampler"]
