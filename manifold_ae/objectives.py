"""Training objectives: one loss-returning ``nn.Module`` per principle (docs/theory.md, T2-T6).

Every objective owns its model and maps a clean batch ``x`` of any shape (B, ...) — vectors (B, n) or images
(B, C, H, W) — to a scalar loss, so one training loop (``manifold_ae.loop``) serves all of them.

Normalisation: squared errors are averaged over the batch *and* the D = x[0].numel() features, and every
Jacobian penalty is divided by D as well. The whole loss is thus the per-sample loss of the papers divided by
D: optima and the meaning of ``lam`` are unchanged, and for a linear model ``Denoising(sigma)`` and
``ReconstructionContractive(lam=sigma**2)`` have exactly the same expected loss (T3).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from manifold_ae.checks import as_tensor, check_choice, check_int, check_positive
from manifold_ae.corruptions.base import Corruption, corrupt_per_sample
from manifold_ae.corruptions.vector import GaussianNoise
from manifold_ae.rng import randint, randn
from manifold_ae.theory.diagnostics import jacobian

__all__ = ["jacobian_frobenius_sq", "Reconstruction", "SelfSupervised", "Denoising", "Contractive",
           "ReconstructionContractive", "ESTIMATORS"]

ESTIMATORS = ("exact", "hutchinson")
_DISTRIBUTIONS = ("rademacher", "gaussian")
_MODES = ("vjp", "jvp")

Function = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------ Jacobian helpers


def _probe(shape: tuple[int, ...], like: torch.Tensor, distribution: str,
           generator: torch.Generator | None) -> torch.Tensor:
    if distribution == "rademacher":
        return randint(0, 2, shape, generator=generator, device=like.device).to(like.dtype) * 2 - 1
    return randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def _frobenius_sq_and_output(f: Function, x: torch.Tensor, *, estimator: str, probes: int, distribution: str,
                             mode: str, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x) of shape (B, ...), ||J_f(x_b)||_F^2 or its Hutchinson estimate of shape (B,))."""
    if estimator == "exact":
        jac, y = jacobian(f, x, event_dims=x.ndim - 1, return_output=True)  # (B, *out, *in), (B, *out)
        return y, jac.flatten(1).pow(2).sum(1)
    if mode == "jvp":  # E_v ||J v||^2, v in input space (forward mode)
        total, y = None, None
        for _ in range(probes):
            v = _probe(tuple(x.shape), x, distribution, generator)  # (B, *in)
            y_k, jv = torch.func.jvp(f, (x,), (v,))  # (B, *out), (B, *out)
            y = y_k if y is None else y
            sq = jv.flatten(1).pow(2).sum(1)  # (B,)
            total = sq if total is None else total + sq
        return y, total / probes
    # mode == "vjp": E_u ||J^T u||^2, u in output space (reverse mode, works for every op)
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        y = f(xg)  # (B, *out)
        total = None
        for _ in range(probes):
            u = _probe(tuple(y.shape), y, distribution, generator)  # (B, *out)
            (g,) = torch.autograd.grad(y, xg, u, create_graph=create_graph, retain_graph=True)  # (B, *in)
            sq = g.flatten(1).pow(2).sum(1)  # (B,)
            total = sq if total is None else total + sq
    return y, total / probes


def jacobian_frobenius_sq(f: Function, x: torch.Tensor, *, estimator: str = "exact", probes: int = 1,
                          distribution: str = "rademacher", mode: str = "vjp",
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Squared Frobenius norm of the per-sample Jacobian ``||J_f(x_b)||_F^2`` (T5).

    ``"exact"`` builds every Jacobian with ``theory.jacobian`` (cost ~ output size backward passes, batched).
    ``"hutchinson"`` averages ``probes`` unbiased random-projection estimates: ``||J^T u||^2`` with u in output
    space (``mode="vjp"``) or ``||J v||^2`` with v in input space (``mode="jvp"``), since
    E[v v^T] = I gives E||J v||^2 = tr(J^T J). Rademacher probes have lower variance than Gaussian ones. Both
    are differentiable with respect to ``f``'s parameters, so they serve as training penalties.

    Parameters
    ----------
    f : callable
        Batched map (B, *in_shape) -> (B, *out_shape) acting on each sample independently.
    x : torch.Tensor
        Shape (B, *in_shape).
    estimator : {"exact", "hutchinson"}
    probes : int, default 1
        Number of random probes per sample (Hutchinson only).
    distribution : {"rademacher", "gaussian"}
    mode : {"vjp", "jvp"}
    generator : torch.Generator, optional
        Source of the probes.

    Returns
    -------
    torch.Tensor
        Shape (B,).
    """
    _check_estimator(estimator, probes, distribution, mode)
    return _frobenius_sq_and_output(f, x, estimator=estimator, probes=probes, distribution=distribution,
                                    mode=mode, generator=generator)[1]


def _check_estimator(estimator: str, probes: int, distribution: str, mode: str) -> None:
    check_choice(estimator, "estimator", ESTIMATORS)
    check_int(probes, "probes", minimum=1)
    check_choice(distribution, "distribution", _DISTRIBUTIONS)
    check_choice(mode, "mode", _MODES)


# ------------------------------------------------------------------------------------------ objectives


class Objective(nn.Module):
    """Base class: holds ``model`` and validates batches. Subclasses implement ``forward(x) -> loss``.

    The batch check looks at shapes only: a finiteness test of the batch would read a device value on every
    step (a host synchronisation on CUDA). A non-finite input makes the loss non-finite, and the training loops
    check the loss (``loop.check_finite``: every step in ``loop.fit``, at log steps in ``commands.train``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        x = as_tensor(x, name="x", dtype=None, allow_nonfinite=True)
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: x must be a batch of shape (B, ...) with B >= 1, "
                             f"got shape {tuple(x.shape)}")
        return x


class Reconstruction(Objective):
    """Plain reconstruction: ``mean ||f(x) - x||^2 / D``. Never penalises reconstructing anomalies."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check(x)
        return (self.model(x) - x).pow(2).mean()


class SelfSupervised(Objective):
    """Regress the clean batch from a corrupted one: ``mean w * (f(x_tilde) - x)^2`` (T6, the paper's method).

    Parameters
    ----------
    model : nn.Module
    corruption : callable
        ``corruption(x, generator) -> (x_tilde, mask)`` (``manifold_ae.corruptions``).
    weight_corrupted : float >= 0 or None
        Weight of the squared error on corrupted entries (mask = 1) relative to clean ones; None: uniform.
    generator : torch.Generator, optional
        Randomness of the corruption (None: torch's global RNG, which ``loop.fit`` seeds). Ignored when
        ``forward`` is given per-sample ``seeds``.
    """

    def __init__(self, model: nn.Module, *, corruption: Corruption, weight_corrupted: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(model)
        if not callable(corruption):
            raise ValueError(f"corruption must be callable as corruption(x, generator) -> (x_tilde, mask), "
                             f"got {type(corruption).__name__}")
        self.corruption = corruption
        self.weight_corrupted = (None if weight_corrupted is None
                                 else check_positive(weight_corrupted, "weight_corrupted", allow_zero=True))
        self.generator = generator

    def forward(self, x: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """The loss of the clean batch ``x`` (B, ...).

        ``seeds`` (B integers), when given, corrupts every sample alone from its own seed
        (:func:`~manifold_ae.corruptions.base.corrupt_per_sample`), so a sample's corruption does not depend on
        the batch it is in: K processes with shards of a batch corrupt it exactly like one process.
        """
        x = self._check(x)
        if seeds is None:
            x_tilde, mask = self.corruption(x, self.generator)  # (B, ...), broadcastable to x
        else:
            x_tilde, mask = corrupt_per_sample(self.corruption, x, seeds)
        sq = (self.model(x_tilde) - x).pow(2)  # (B, ...)
        if self.weight_corrupted is None:
            return sq.mean()
        weight = 1 + (self.weight_corrupted - 1) * mask  # (B, ...) broadcastable
        return (weight * sq).mean()  # mask broadcasts to x, so the product has x's shape


class Denoising(SelfSupervised):
    """Denoising AE (Vincent et al.): ``mean ||f(x + sigma eps) - x||^2 / D`` (T3, T4).

    ``sigma`` > 0 gives isotropic noise. A tensor ``sigma`` broadcastable to one sample (entries >= 0) gives
    anisotropic noise, the negative control whose optimum is *not* the orthogonal projection. This is
    ``SelfSupervised`` with the ``GaussianNoise`` corruption.
    """

    def __init__(self, model: nn.Module, *, sigma: float | torch.Tensor,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(model, corruption=GaussianNoise(sigma), generator=generator)

    @property
    def sigma(self) -> float | torch.Tensor:
        return self.corruption.sigma


class _JacobianPenalty(Objective):
    """Reconstruction plus ``lam * ||J_g(x)||_F^2 / D`` for a map g chosen by the subclass."""

    def __init__(self, model: nn.Module, *, lam: float, estimator: str = "exact", probes: int = 1,
                 distribution: str = "rademacher", mode: str = "vjp",
                 generator: torch.Generator | None = None) -> None:
        super().__init__(model)
        self.lam = check_positive(lam, "lam", allow_zero=True)
        _check_estimator(estimator, probes, distribution, mode)
        self.estimator, self.probes, self.distribution, self.mode = estimator, probes, distribution, mode
        self.generator = generator

    def _penalised(self) -> Function:
        raise NotImplementedError

    def _reconstruct_from(self, g_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample ``||J_g(x_b)||_F^2`` (exact or estimated), shape (B,)."""
        x = self._check(x)
        return jacobian_frobenius_sq(self._penalised(), x, estimator=self.estimator, probes=self.probes,
                                     distribution=self.distribution, mode=self.mode, generator=self.generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check(x)
        if self.lam == 0:
            return (self.model(x) - x).pow(2).mean()
        g_out, jac_sq = _frobenius_sq_and_output(  # shares the forward pass with the reconstruction
            self._penalised(), x, estimator=self.estimator, probes=self.probes, distribution=self.distribution,
            mode=self.mode, generator=self.generator)
        num_features = x[0].numel()
        recon = (self._reconstruct_from(g_out) - x).pow(2).mean()
        return recon + self.lam * jac_sq.mean() / num_features


class Contractive(_JacobianPenalty):
    """Rifai et al.'s contractive AE: reconstruction + ``lam ||J_encode(x)||_F^2 / D`` (T5).

    The model must expose ``encode`` and ``decode``. With untied weights the encoder-only penalty can be
    gamed by shrinking the code and growing the decoder (T5c); use ``tied=True`` models or
    ``ReconstructionContractive``.
    """

    def __init__(self, model: nn.Module, *, lam: float, estimator: str = "exact", probes: int = 1,
                 distribution: str = "rademacher", mode: str = "vjp",
                 generator: torch.Generator | None = None) -> None:
        for name in ("encode", "decode"):
            if not callable(getattr(model, name, None)):
                raise ValueError(f"Contractive needs a model with {name}(); {type(model).__name__} has none")
        super().__init__(model, lam=lam, estimator=estimator, probes=probes, distribution=distribution,
                         mode=mode, generator=generator)

    def _penalised(self) -> Function:
        return self.model.encode

    def _reconstruct_from(self, g_out: torch.Tensor) -> torch.Tensor:
        return self.model.decode(g_out)


class ReconstructionContractive(_JacobianPenalty):
    """Alain & Bengio's reconstruction-contractive AE: reconstruction + ``lam ||J_f(x)||_F^2 / D`` (T3, T5).

    The penalty is on the Jacobian of the whole reconstruction f, so it cannot be gamed by rescaling; for a
    linear model and ``lam = sigma**2`` it equals the denoising loss in expectation (T3). ``estimator="exact"``
    is for vectors; ``"hutchinson"`` (random projections, any shape) is the one for images.
    """

    def _penalised(self) -> Function:
        return self.model

    def _reconstruct_from(self, g_out: torch.Tensor) -> torch.Tensor:
        return g_out
