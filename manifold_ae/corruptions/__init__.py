"""Corruptions returning ``(corrupted, mask)``: the shared interface (``base``), vector corruptions
(``vector``, re-exported here) and image corruptions (``manifold_ae.corruptions.image``)."""
from manifold_ae.corruptions.base import Corruption, Fill, Identity, MaskedCorruption, MaskSampler
from manifold_ae.corruptions.vector import (BlockMask, ConstantFill, FiniteMaskFamily, FullMask, GaussianFill,
                                            GaussianNoise, PartialCorruption, RandomSubsetMask, ShuffleFill,
                                            UniformFill, block_masks)

__all__ = ["Corruption", "Fill", "Identity", "MaskedCorruption", "MaskSampler", "BlockMask",
           "ConstantFill", "FullMask", "GaussianFill", "GaussianNoise", "RandomSubsetMask", "ShuffleFill",
           "UniformFill", "FiniteMaskFamily", "PartialCorruption", "block_masks"]
