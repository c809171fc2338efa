"""scikit-learn anomaly detectors: a trained autoencoder's residual and the exact distance to M (T8).

Both follow scikit-learn's outlier-detector manners: ``__init__`` only stores, ``fit(X)`` returns self,
fitted state ends in ``_``, ``score_samples`` is higher for more normal samples, ``decision_function =
score_samples - offset_`` with ``offset_`` the ``contamination`` quantile of the training scores, and
``predict`` returns +1 (inlier) / -1 (outlier).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from manifold_ae.checks import check_choice, check_fraction, check_int, check_positive
from manifold_ae.corruptions.base import MaskedCorruption
from manifold_ae.corruptions.vector import GaussianFill, RandomSubsetMask
from manifold_ae.loop import fit as fit_objective
from manifold_ae.models.mlp import MLPAutoencoder
from manifold_ae.objectives import Denoising, Reconstruction, ReconstructionContractive, SelfSupervised
from manifold_ae.theory.linear import principal_components

__all__ = ["AutoencoderDetector", "ProjectionDetector", "DETECTOR_OBJECTIVES"]

DETECTOR_OBJECTIVES = ("selfsupervised", "denoising", "reconstruction", "contractive")


def _offset(scores: np.ndarray, contamination: float) -> float:
    """Threshold below which the ``contamination`` fraction of training scores lies."""
    return float(np.percentile(scores, 100.0 * contamination))


def _predict(decision: np.ndarray) -> np.ndarray:
    return np.where(decision >= 0, 1, -1).astype(int)


class _ScoringMixin:
    """``score_samples`` / ``decision_function`` / ``predict`` from a subclass's ``_scores`` and ``offset_``."""

    def score_samples(self, X: Any) -> np.ndarray:
        """Score of each sample, shape (n_samples,); higher = more normal (minus the residual or distance, T8)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._scores(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for predicted outliers, shape (n_samples,)."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, -1 for outliers, shape (n_samples,)."""
        return _predict(self.decision_function(X))


class AutoencoderDetector(_ScoringMixin, OutlierMixin, BaseEstimator):
    """Anomaly detector scoring ``-||x - f(x)||^2`` with an MLP autoencoder f trained on normal data (T8).

    Parameters
    ----------
    objective : {"selfsupervised", "denoising", "reconstruction", "contractive"}, default "selfsupervised"
        Training principle (``manifold_ae.objectives``): random-subset masks filled with Gaussian noise;
        Gaussian noise of scale ``sigma``; plain reconstruction; reconstruction-contractive penalty ``lam``
        on the full Jacobian (Alain & Bengio, exact).
    hidden : tuple of int, default (64, 64)
        Hidden widths of the MLP.
    bottleneck : int or None, default None
        Linear code width (None: no bottleneck).
    activation : str, default "softplus"
    sigma : float, default 0.1
        Noise scale for "denoising" (in standardised units when ``standardize``).
    mask_fraction : float in (0, 1], default 0.25
        Fraction of features corrupted for "selfsupervised" (at least one).
    fill_scale : float, default 1.0
        Standard deviation of the Gaussian fill for "selfsupervised".
    lam : float, default 0.01
        Jacobian penalty weight for "contractive".
    steps : int, default 1000
        Optimiser steps (AdamW with cosine decay, ``manifold_ae.loop.fit``).
    batch_size : int, default 128
    lr : float, default 1e-2
        Peak learning rate (1e-3 leaves a 64x64 MLP on a shrunk identity plateau on the toy circle).
    standardize : bool, default True
        Train on features scaled to zero mean and unit variance; scores are in the original units.
    contamination : float in (0, 0.5], default 0.1
        Expected fraction of outliers in the training data; sets ``offset_``.
    random_state : int, RandomState or None
        Seeds initialisation, mini-batches and corruptions (torch's global RNG is left untouched).

    Attributes
    ----------
    model_ : MLPAutoencoder
        The trained float64 model (acting on standardised features).
    mean_, scale_ : ndarray of shape (n_features,)
        Standardisation.
    loss_curve_ : list of float
        Training loss per step.
    offset_ : float
    n_features_in_ : int
    """

    def __init__(self, objective: str = "selfsupervised", *, hidden: tuple[int, ...] = (64, 64),
                 bottleneck: int | None = None, activation: str = "softplus", sigma: float = 0.1,
                 mask_fraction: float = 0.25, fill_scale: float = 1.0, lam: float = 0.01, steps: int = 1000,
                 batch_size: int = 128, lr: float = 1e-2, standardize: bool = True, contamination: float = 0.1,
                 random_state: Any = None) -> None:
        self.objective = objective
        self.hidden = hidden
        self.bottleneck = bottleneck
        self.activation = activation
        self.sigma = sigma
        self.mask_fraction = mask_fraction
        self.fill_scale = fill_scale
        self.lam = lam
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.standardize = standardize
        self.contamination = contamination
        self.random_state = random_state

    def _build_objective(self, model: MLPAutoencoder) -> torch.nn.Module:
        if self.objective == "reconstruction":
            return Reconstruction(model)
        if self.objective == "denoising":
            return Denoising(model, sigma=check_positive(self.sigma, "sigma"))
        if self.objective == "contractive":
            return ReconstructionContractive(model, lam=check_positive(self.lam, "lam", allow_zero=True))
        fraction = check_fraction(self.mask_fraction, "mask_fraction", low_inclusive=False)
        mask = RandomSubsetMask(fraction)
        return SelfSupervised(model, corruption=MaskedCorruption(mask, GaussianFill(self.fill_scale)))

    def fit(self, X: Any, y: Any = None) -> "AutoencoderDetector":
        """Train the autoencoder on ``X`` (n_samples, n_features), assumed (mostly) normal; returns self."""
        check_choice(self.objective, "objective", DETECTOR_OBJECTIVES)
        check_fraction(self.contamination, "contamination", low_inclusive=False, high=0.5)
        steps = check_int(self.steps, "steps", minimum=1)
        batch_size = check_int(self.batch_size, "batch_size", minimum=1)
        X = validate_data(self, X, dtype=np.float64)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.mean_ = X.mean(axis=0) if self.standardize else np.zeros(X.shape[1])
        std = X.std(axis=0) if self.standardize else np.ones(X.shape[1])
        self.scale_ = np.where(std > 0, std, 1.0)
        z = torch.tensor((X - self.mean_) / self.scale_, dtype=torch.float64)  # (N, n)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MLPAutoencoder(X.shape[1], hidden=tuple(self.hidden), bottleneck=self.bottleneck,
                                   activation=self.activation, dtype=torch.float64)
            objective = self._build_objective(model)
            self.loss_curve_ = fit_objective(objective, z, steps=steps, batch_size=batch_size, lr=self.lr,
                                             seed=seed)
        self.model_ = model.eval().requires_grad_(False)
        self.offset_ = _offset(self._scores(X), self.contamination)
        return self

    def reconstruct(self, X: Any) -> np.ndarray:
        """The reconstruction f(X) in the original units, shape (n_samples, n_features)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._reconstruct(X)

    def _reconstruct(self, X: np.ndarray) -> np.ndarray:
        z = torch.tensor((X - self.mean_) / self.scale_, dtype=torch.float64)  # (N, n)
        with torch.no_grad():
            z_hat = self.model_(z).numpy()  # (N, n)
        return z_hat * self.scale_ + self.mean_

    def _scores(self, X: np.ndarray) -> np.ndarray:
        return -((X - self._reconstruct(X)) ** 2).sum(axis=1)  # T8: minus the squared residual


class ProjectionDetector(_ScoringMixin, OutlierMixin, BaseEstimator):
    """The oracle detector: score ``-dist(x, M)`` with the exact nearest point on M (T1, T8).

    Parameters
    ----------
    manifold : Manifold or None, default None
        Any object with ``ambient_dim`` and a batched ``distance(x: Tensor (..., n)) -> Tensor (...)``
        (``manifold_ae.manifolds``). None: fit an affine subspace to the training data (PCA,
        ``theory.principal_components``), whose projection is exact as well.
    n_components : int or float, default 0.9
        For ``manifold=None``: the subspace dimension, or, as a float in (0, 1), the smallest dimension
        explaining at least that fraction of the training variance.
    contamination : float in (0, 0.5], default 0.1

    Attributes
    ----------
    mean_ : ndarray (n_features,) and components_ : ndarray (n_components_, n_features)
        The fitted subspace (``manifold=None`` only).
    n_components_ : int
    offset_ : float
    n_features_in_ : int
    """

    def __init__(self, manifold: Any = None, *, n_components: int | float = 0.9, contamination: float = 0.1) -> None:
        self.manifold = manifold
        self.n_components = n_components
        self.contamination = contamination

    def fit(self, X: Any, y: Any = None) -> "ProjectionDetector":
        """Fit the subspace (if no manifold was given) and the offset on ``X`` (n_samples, n_features)."""
        check_fraction(self.contamination, "contamination", low_inclusive=False, high=0.5)
        X = validate_data(self, X, dtype=np.float64)
        if isinstance(self.manifold, str):
            raise ValueError(f"manifold must be a Manifold object, not its name {self.manifold!r}: e.g. "
                             f"ProjectionDetector(make_manifold({self.manifold!r}, ambient_dim={X.shape[1]})) "
                             "with make_manifold from manifold_ae.manifolds")
        if self.manifold is not None:
            ambient_dim = getattr(self.manifold, "ambient_dim", None)
            if ambient_dim != X.shape[1]:
                raise ValueError(f"X has {X.shape[1]} features but manifold.ambient_dim is {ambient_dim!r}")
            if not callable(getattr(self.manifold, "distance", None)):
                raise ValueError(f"manifold must have a distance(x) method, got {type(self.manifold).__name__}")
        else:
            self._fit_subspace(X)
        self.offset_ = _offset(self._scores(X), self.contamination)
        return self

    def _fit_subspace(self, X: np.ndarray) -> None:
        pc = principal_components(torch.from_numpy(X), centre=True)  # all min(N, n) directions, T2
        var = pc.eigenvalues.numpy()  # (r,) descending
        k = self.n_components
        if isinstance(k, float) and not isinstance(k, bool):
            k = check_fraction(k, "n_components", low_inclusive=False, high_inclusive=False)
            total = var.sum()
            d = 0 if total == 0 else int(min(np.searchsorted(np.cumsum(var) / total, k) + 1, len(var)))
        else:
            d = check_int(k, "n_components", minimum=0, maximum=len(var))
        self.mean_ = pc.mean.numpy()
        self.n_components_ = d
        self.components_ = pc.basis[:, :d].T.numpy()  # (d, n) orthonormal rows

    def _scores(self, X: np.ndarray) -> np.ndarray:
        if self.manifold is not None:
            with torch.no_grad():
                dist = self.manifold.distance(torch.tensor(X, dtype=torch.float64))  # (N,)
            return -np.asarray(dist.detach().cpu().numpy(), dtype=np.float64).reshape(X.shape[0])
        centred = X - self.mean_  # (N, n)
        normal_part = centred - (centred @ self.components_.T) @ self.components_  # (N, n): (I - U U^T)(x - mu)
        return -np.linalg.norm(normal_part, axis=1)

