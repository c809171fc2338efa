"""The paper's image model: a U-Net with a stacked-dilated-convolution bottleneck and gated skips.

Architecture (see ``docs/model.md`` for the diagram and parameter counts)::

    x (B, C, H, W) in [0, 1]
    stem + conv                      -> e_0 (B, c_0, H, W)           skip 0
    [stride-2 conv + conv] x depth   -> e_i (B, c_i, H/2^i, W/2^i)   skip i (i < depth)
    SDC layers (bottleneck)          -> z   (B, c_depth, H/2^depth, W/2^depth)
    [2x2 transposed conv, CCM gate with skip i-1, conv] for i = depth..1
    1x1 conv + sigmoid               -> x_hat (B, C, H, W) in [0, 1]

with c_i = min(width * 2^i, max_width).

* SDC (stacked dilated convolutions, Schuster et al., CVPR 2019): each SDC layer runs *parallel* 3x3
  convolutions with dilations 1, 2, 4, ..., 32 on the same input, concatenates them, fuses with a 1x1 conv and
  adds the input back (residual). We stack ``sdc_layers`` of them. Parallel rather than sequential because one
  layer then already sees every scale from 3 px to 65 px of the bottleneck grid (at 256^2 with depth 4 the grid
  is 16^2, so one layer is global): the decoder can in-paint a large corrupted region from context far away,
  which is what the self-supervised objective asks of it (T6), and the branches run side by side.
* CCM (convex-combination module): ``out = a * enc + (1 - a) * dec`` with ``a = sigmoid(conv1x1([enc, dec]))``
  per pixel and channel, so ``a`` in [0, 1]. The gate lets the network pass clean content through the skip
  (conservation, T7) and shut the skip where the input is corrupted (projection, T6).
* ``skips=False`` is the ablation without any skip path: the decoder sees the bottleneck only.
* Output: sigmoid, so ``x_hat`` lies in [0, 1] like the inputs (the residual is then bounded by 1 per pixel,
  and the reconstruction is always a valid image). ``output="linear"`` gives the unconstrained variant.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

from manifold_ae.checks import check_choice, check_int

__all__ = ["GatedUNet", "UNetCode", "ConvexGate", "SDCLayer", "NORMS", "OUTPUTS"]

NORMS = ("group", "batch", "none")
OUTPUTS = ("sigmoid", "linear")


def _norm(kind: str, channels: int) -> nn.Module:
    """Normalisation layer: GroupNorm with up to 8 groups (a divisor of ``channels``), BatchNorm, or none."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvNormAct(nn.Sequential):
    """3x3 (or ``kernel_size``) convolution -> normalisation -> SiLU; 'same' padding for stride 1."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: str, stride: int = 1, dilation: int = 1,
                 kernel_size: int = 3) -> None:
        padding = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      bias=norm == "none"),
            _norm(norm, out_channels),
            nn.SiLU(),
        )


class SDCLayer(nn.Module):
    """One stacked-dilated-convolution layer: parallel dilated 3x3 branches, concatenated, fused, residual.

    Parameters
    ----------
    channels : int
        Input and output channels ``c``.
    dilations : sequence of int
        One branch per dilation; each branch has ``max(4, c // len(dilations))`` channels.
    norm : {"group", "batch", "none"}
    """

    def __init__(self, channels: int, *, dilations: Sequence[int], norm: str) -> None:
        super().__init__()
        branch = max(4, channels // len(dilations))
        self.branches = nn.ModuleList(ConvNormAct(channels, branch, norm=norm, dilation=d) for d in dilations)
        self.fuse = nn.Sequential(nn.Conv2d(branch * len(dilations), channels, 1, bias=norm == "none"),
                                  _norm(norm, channels))
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c, h, w) -> (B, c, h, w)."""
        y = torch.cat([branch(x) for branch in self.branches], dim=1)  # (B, k * branch, h, w)
        return self.act(x + self.fuse(y))


class ConvexGate(nn.Module):
    """CCM skip: ``out = a * enc + (1 - a) * dec``, ``a = sigmoid(conv1x1([enc, dec]))`` in [0, 1]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.to_gate = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """enc, dec (B, c, h, w) -> (out (B, c, h, w), gate a (B, c, h, w))."""
        a = torch.sigmoid(self.to_gate(torch.cat([enc, dec], dim=1)))  # (B, c, h, w) in [0, 1]
        return a * enc + (1 - a) * dec, a


class UNetCode(NamedTuple):
    """What ``GatedUNet.encode`` returns: the bottleneck ``z`` and the encoder features at each level.

    ``z`` is (B, c_depth, H / 2^depth, W / 2^depth); ``skips[i]`` is (B, c_i, H / 2^i, W / 2^i), i < depth.
    """

    z: torch.Tensor
    skips: tuple[torch.Tensor, ...]


class GatedUNet(nn.Module):
    """U-Net-like autoencoder with an SDC bottleneck and gated convex-combination skips (the paper's model).

    Parameters
    ----------
    in_channels : int
        Image channels C (1 grayscale, 3 RGB); output has the same channels.
    width : int
        Channels at full resolution, doubled at every level up to ``max_width``.
    depth : int
        Number of stride-2 downsamplings; H and W must be divisible by ``2**depth``.
    dilations : sequence of int
        Dilations of the parallel branches of each SDC layer.
    skips : bool
        Gated skip connections (False: the ablation without any skip path).
    skip_from : int
        Finest level that keeps its gated skip: 0 keeps all of them; k drops the skips of levels 0..k-1, so the
        decoder cannot copy detail finer than 2**k pixels from the input (detail such as 1-px cracks).
    norm : {"group", "batch", "none"}
        Normalisation after each convolution.
    sdc_layers : int
        Number of stacked SDC layers in the bottleneck.
    max_width : int or None
        Channel cap (default ``8 * width``).
    output : {"sigmoid", "linear"}
        Output activation (sigmoid keeps reconstructions in [0, 1]).
    """

    def __init__(self, in_channels: int = 3, *, width: int = 32, depth: int = 4,
                 dilations: Sequence[int] = (1, 2, 4, 8, 16, 32), skips: bool = True, norm: str = "group",
                 sdc_layers: int = 2, max_width: int | None = None, output: str = "sigmoid",
                 skip_from: int = 0) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        self.width = check_int(width, "width", minimum=1)
        self.depth = check_int(depth, "depth", minimum=1, maximum=8)
        dilations = tuple(dilations)
        if not dilations:
            raise ValueError("dilations must be a non-empty sequence of positive integers, got ()")
        self.dilations = tuple(check_int(d, "dilations", minimum=1) for d in dilations)
        self.skips = bool(skips)
        self.skip_from = check_int(skip_from, "skip_from", minimum=0, maximum=self.depth - 1)
        self.norm = check_choice(norm, "norm", NORMS)
        self.output = check_choice(output, "output", OUTPUTS)
        sdc_layers = check_int(sdc_layers, "sdc_layers", minimum=0)
        max_width = 8 * width if max_width is None else check_int(max_width, "max_width", minimum=1)
        c = [min(width * 2 ** i, max_width) for i in range(depth + 1)]
        self.channels = tuple(c)

        self.stem = nn.Sequential(ConvNormAct(in_channels, c[0], norm=norm), ConvNormAct(c[0], c[0], norm=norm))
        self.down = nn.ModuleList(
            nn.Sequential(ConvNormAct(c[i - 1], c[i], norm=norm, stride=2), ConvNormAct(c[i], c[i], norm=norm))
            for i in range(1, depth + 1))
        self.bottleneck = nn.Sequential(*(SDCLayer(c[depth], dilations=self.dilations, norm=norm)
                                          for _ in range(sdc_layers)))
        # up[j] maps level depth - j to level depth - j - 1
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(c[i], c[i - 1], 2, stride=2, bias=norm == "none"),
                          _norm(norm, c[i - 1]), nn.SiLU())
            for i in range(depth, 0, -1))
        # gates[j] joins level depth - 1 - j; levels finer than skip_from have no skip
        self.gates = nn.ModuleList(ConvexGate(c[i - 1]) for i in range(depth, self.skip_from, -1)) \
            if self.skips else None
        self.refine = nn.ModuleList(ConvNormAct(c[i - 1], c[i - 1], norm=norm) for i in range(depth, 0, -1))
        self.head = nn.Conv2d(c[0], in_channels, 1)

    # ------------------------------------------------------------------ input checks
    def _check_input(self, x: torch.Tensor) -> None:
        factor = 2 ** self.depth
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (B, {self.in_channels}, H, W), got {got}")
        h, w = x.shape[-2:]
        if h % factor or w % factor or h == 0 or w == 0:
            raise ValueError(f"x must have H and W divisible by 2**depth = {factor} (depth={self.depth}), "
                             f"got H={h}, W={w}; resize or pad the images")

    # ------------------------------------------------------------------ encoder / decoder
    def encode(self, x: torch.Tensor) -> UNetCode:
        """Images (B, C, H, W) -> ``UNetCode(z, skips)`` (shapes in :class:`UNetCode`)."""
        self._check_input(x)
        h = self.stem(x)  # (B, c_0, H, W)
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)  # (B, c_i, H / 2^i, W / 2^i)
        z = self.bottleneck(h)  # (B, c_depth, H / 2^depth, W / 2^depth)
        return UNetCode(z, tuple(skips))

    def _decode(self, code: UNetCode, gate_maps: list[torch.Tensor] | None) -> torch.Tensor:
        h = code.z
        for j, (up, refine) in enumerate(zip(self.up, self.refine)):
            h = up(h)  # (B, c_{i-1}, H / 2^{i-1}, W / 2^{i-1})
            if self.gates is not None and j < len(self.gates):  # CCM; skips=False never reads the encoder
                enc = code.skips[self.depth - 1 - j]
                h, a = self.gates[j](enc, h)
                if gate_maps is not None:
                    gate_maps.append(a)
            h = refine(h)
        out = self.head(h)  # (B, C, H, W)
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def decode(self, code: UNetCode) -> torch.Tensor:
        """``UNetCode`` -> reconstruction (B, C, H, W) (in [0, 1] for ``output="sigmoid"``)."""
        if self.gates is not None and len(code.skips) != self.depth:  # all levels, even those without a gate
            raise ValueError(f"code.skips must hold {self.depth} feature maps (one per level), "
                             f"got {len(code.skips)}")
        return self._decode(code, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> reconstructions (B, C, H, W)."""
        return self._decode(self.encode(x), None)

    def gate_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The CCM gate values ``a`` for images x, coarsest level first; empty list when ``skips=False``."""
        maps: list[torch.Tensor] = []
        self._decode(self.encode(x), maps)
        return maps

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, width={self.width}, depth={self.depth}, "
                f"dilations={self.dilations}, skips={self.skips}, skip_from={self.skip_from}, norm={self.norm!r}, "
                f"output={self.output!r}")
