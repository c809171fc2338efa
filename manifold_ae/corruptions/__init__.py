"""Corruptions returning ``(corrupted, mask)``: the shared interface (``base``), vector corruptions
(``vector``, re-exported here) and image corruptions (``manifold_ae.corruptions.image``)."""
from manifold_ae.corruptions.base import Compose, Corruption, Fill, Identity, MaskedCorruption, MaskSampler
from manifold_ae.corruptions.vector import (BlockMask, ConstantFill, FullMask, GaussianFill, GaussianNoise,
                                            RandomSubsetMask, ShuffleFill, UniformFill)

__all__ = ["Compose", "Corruption", "Fill", "Identity", "MaskedCorruption", "MaskSampler", "BlockMask",
           "ConstantFill", "FullMask", "GaussianFill", "GaussianNoise", "RandomSubsetMask", "ShuffleFill",
           "UniformFill"]
