"""Plain autoencoders for vectors: a configurable MLP and a linear autoencoder (docs/theory.md, T2-T5).

Both are ordinary ``nn.Module`` s with ``encode``, ``decode`` and ``forward`` acting on points of shape
(..., n); no training glue lives here (that is ``manifold_ae.objectives`` and ``manifold_ae.loop``).

The models check only the *shape* of their input: they are called inside ``torch.func`` transforms (vmap,
jacrev) where a data-dependent check such as "all values finite" cannot run. The objectives and detectors
that feed them reject NaN/Inf before the first forward pass.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from manifold_ae.checks import check_choice, check_int

__all__ = ["ACTIVATIONS", "MLPAutoencoder", "LinearAutoencoder"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softplus": F.softplus,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
    "gelu": F.gelu,
    "elu": F.elu,
    "relu": F.relu,
}


def _check_last_dim(x: torch.Tensor, ambient_dim: int, owner: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.shape[-1] != ambient_dim:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else f"{type(x).__name__}"
        raise ValueError(f"{owner}: x must be a tensor of shape (..., {ambient_dim}) "
                         f"(last axis = ambient_dim), got {got}")


class MLPAutoencoder(nn.Module):
    """Multilayer-perceptron autoencoder ``f = decode . encode`` on R^n.

    Layer widths are ``[n, *hidden]`` plus ``bottleneck`` when given. The encoder applies the activation
    after every layer except a bottleneck layer (the code is linear); the decoder mirrors the widths and
    applies the activation after every layer except the last (the output is linear).

    Parameters
    ----------
    ambient_dim : int
        Input and output dimension n.
    hidden : tuple of int, default (128, 128)
        Hidden widths of the encoder (the decoder uses them in reverse order).
    bottleneck : int or None, default None
        Width of a linear code layer; None means the last hidden layer is the code.
    activation : str, default "softplus"
        One of ``ACTIVATIONS``; smooth activations give smooth Jacobians (T5).
    tied : bool, default False
        Decoder weight matrices are the transposes of the encoder's (Rifai et al.'s CAE); the decoder keeps
        its own biases.
    dtype : torch.dtype or None, default None
        Parameter dtype (None: torch's default dtype).
    """

    def __init__(self, ambient_dim: int, *, hidden: tuple[int, ...] = (128, 128), bottleneck: int | None = None,
                 activation: str = "softplus", tied: bool = False, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.ambient_dim = check_int(ambient_dim, "ambient_dim", minimum=1)
        hidden = tuple(hidden)
        if not hidden and bottleneck is None:
            raise ValueError("MLPAutoencoder needs at least one layer: hidden is empty and bottleneck is None")
        self.hidden = tuple(check_int(h, f"hidden[{i}]", minimum=1) for i, h in enumerate(hidden))
        self.bottleneck = None if bottleneck is None else check_int(bottleneck, "bottleneck", minimum=1)
        self.activation = check_choice(activation, "activation", tuple(ACTIVATIONS))
        self.tied = bool(tied)
        self._act = ACTIVATIONS[activation]

        widths = [self.ambient_dim, *self.hidden] + ([self.bottleneck] if self.bottleneck is not None else [])
        self.widths = tuple(widths)
        # encoder layer i maps widths[i] -> widths[i + 1]
        self.encoder = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(widths[:-1], widths[1:]))
        if self.tied:
            # decoder layer j maps widths[L - j] -> widths[L - j - 1] with weight encoder[L - 1 - j].weight^T
            self.decoder_bias = nn.ParameterList(
                nn.Parameter(torch.zeros(w, dtype=dtype)) for w in reversed(widths[:-1]))
            self.decoder = None
        else:
            rev = widths[::-1]
            self.decoder = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(rev[:-1], rev[1:]))
            self.decoder_bias = None

    @property
    def code_dim(self) -> int:
        """Dimension of the code ``encode(x)``."""
        return self.widths[-1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Code of ``x``: (..., n) -> (..., code_dim)."""
        _check_last_dim(x, self.ambient_dim, "MLPAutoencoder.encode")
        h = x
        last = len(self.encoder) - 1
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if not (i == last and self.bottleneck is not None):  # the bottleneck code stays linear
                h = self._act(h)
        return h  # (..., code_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction from a code: (..., code_dim) -> (..., n)."""
        _check_last_dim(z, self.code_dim, "MLPAutoencoder.decode")
        h = z
        num = len(self.encoder)
        for j in range(num):
            if self.tied:
                weight = self.encoder[num - 1 - j].weight  # (out_enc, in_enc), used transposed
                h = F.linear(h, weight.t(), self.decoder_bias[j])
            else:
                h = self.decoder[j](h)
            if j < num - 1:  # the output layer stays linear
                h = self._act(h)
        return h  # (..., n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``f(x) = decode(encode(x))``: (..., n) -> (..., n)."""
        return self.decode(self.encode(x))

    def extra_repr(self) -> str:
        return (f"ambient_dim={self.ambient_dim}, hidden={self.hidden}, bottleneck={self.bottleneck}, "
                f"activation={self.activation!r}, tied={self.tied}")


class LinearAutoencoder(nn.Module):
    """Linear autoencoder ``f(x) = D (E x + b_E) + b_D`` with rank-``rank`` maps (T2: trains to PCA; T3).

    Parameters
    ----------
    ambient_dim : int
        Input and output dimension n.
    rank : int
        Code dimension k (1 <= k <= n).
    tied : bool, default False
        Use ``D = E^T``.
    bias : bool, default False
        Add encoder and decoder biases (off: the map is linear, as in the T2/T3 closed forms).
    dtype : torch.dtype or None, default None
        Parameter dtype.
    """

    def __init__(self, ambient_dim: int, rank: int, *, tied: bool = False, bias: bool = False,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.ambient_dim = check_int(ambient_dim, "ambient_dim", minimum=1)
        self.rank = check_int(rank, "rank", minimum=1, maximum=self.ambient_dim)
        self.tied = bool(tied)
        self.encoder = nn.Linear(self.ambient_dim, self.rank, bias=bias, dtype=dtype)  # E: (k, n)
        if self.tied:
            self.decoder = None
            self.decoder_bias = nn.Parameter(torch.zeros(self.ambient_dim, dtype=dtype)) if bias else None
        else:
            self.decoder = nn.Linear(self.rank, self.ambient_dim, bias=bias, dtype=dtype)  # D: (n, k)
            self.decoder_bias = None

    @property
    def code_dim(self) -> int:
        return self.rank

    @property
    def decoder_weight(self) -> torch.Tensor:
        """D, shape (n, k)."""
        return self.encoder.weight.t() if self.tied else self.decoder.weight

    @property
    def matrix(self) -> torch.Tensor:
        """The linear part W = D E of the reconstruction map, shape (n, n)."""
        return self.decoder_weight @ self.encoder.weight

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n) -> (..., k)."""
        _check_last_dim(x, self.ambient_dim, "LinearAutoencoder.encode")
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(..., k) -> (..., n)."""
        _check_last_dim(z, self.rank, "LinearAutoencoder.decode")
        if self.tied:
            return F.linear(z, self.encoder.weight.t(), self.decoder_bias)
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n) -> (..., n)."""
        return self.decode(self.encode(x))

    def extra_repr(self) -> str:
        return f"ambient_dim={self.ambient_dim}, rank={self.rank}, tied={self.tied}"
