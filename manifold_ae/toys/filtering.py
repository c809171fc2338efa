"""The Filtering Autoencoder: occlusions plus Gaussian noise, clean target (Bauer & Müller, arXiv 2511.07233).

docs/theory.md, section 5, "Filtering AE: occlusion plus noise". The corruption is the paper's occlusion followed
by noise on every entry, ``x̃ = (1 − m) x + m c + σ ε`` (``MaskedCorruption(..., noise_sigma=σ)``). The hypothesis:
the noise acts as a Jacobian (Tikhonov) penalty σ² ‖J_f‖_F² on top of the occlusion loss, so on clean inputs
‖J_f‖_F² moves from the value of a restorer that copies clean pixels (the identity's n) towards the projection's
d as σ grows, and below d (shrinkage) once σ² is comparable to the data's variances.

Linear-Gaussian toy (exact). x = U z, z ~ N(0, Λ) on a d-plane of R^n, masks S from a finite family with
probabilities P(S), fill c ~ N(0, τ² I), noise ε ~ N(0, I), all independent:

* moments (F.1): A = E[x x̃ᵀ] = Σ D̄ and C = E[x̃ x̃ᵀ] = Σ ∘ K + τ² diag(p) + σ² I, with Σ = U Λ Uᵀ,
  D̄ = diag(1 − p), p_j = P(j ∈ S), K_ij = P(i ∉ S and j ∉ S);
* the best linear map (F.2): W*(σ) = A C(σ)⁻¹, ‖W*‖_F² strictly decreasing in σ;
* gradient descent from the identity (F.3), the identity-anchored restorer: W_k = W* + (I − W*)(I − 2ηC)^k
  after k full-batch steps of size η on E‖W x̃ − x‖².

Image side: a ``GatedUNet`` trained with ``SelfSupervised`` on the translation manifold (``toys.image_tasks``)
with a square or rectangular occlusion pasted from other images of M, and its exact ‖J_f‖_F² on clean images.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from manifold_ae.checks import as_tensor, check_fraction, check_int, check_positive
from manifold_ae.corruptions.base import MaskedCorruption
from manifold_ae.corruptions.image import PatchFill, RectangleMask
from manifold_ae.corruptions.vector import FiniteMaskFamily, GaussianFill, block_masks
from manifold_ae.loop import fit
from manifold_ae.manifolds.translation import TranslationManifold
from manifold_ae.models import GatedUNet
from manifold_ae.objectives import SelfSupervised, jacobian_frobenius_sq

__all__ = ["FilteringToy", "filtering_toy", "moments", "best_linear_map", "descent_map", "frobenius_sq",
           "toy_corruption", "least_squares_map", "occlusion", "train_filtering_unet", "clean_frobenius"]


class FilteringToy(NamedTuple):
    """Gaussian data x = U z, z ~ N(0, diag(variances)), occluded by a finite mask family with fill N(0, τ²)."""

    basis: torch.Tensor       # (n, d) orthonormal columns U
    variances: torch.Tensor   # (d,) Λ
    masks: torch.Tensor       # (S, n) 0/1 rows, 1 = occluded
    probs: torch.Tensor       # (S,) P(S), summing to 1
    fill_std: float           # τ

    @property
    def covariance(self) -> torch.Tensor:
        """Σ = U Λ Uᵀ: (n, n)."""
        return (self.basis * self.variances) @ self.basis.T

    @property
    def ambient_dim(self) -> int:
        return int(self.basis.shape[0])

    @property
    def intrinsic_dim(self) -> int:
        return int(self.basis.shape[1])


def filtering_toy(*, ambient_dim: int = 16, intrinsic_dim: int = 2, variances: tuple[float, ...] | None = None,
                  mask_sizes: tuple[int, ...] = (2, 4), clean_fraction: float = 0.0, fill_std: float = 1.0,
                  seed: int = 0) -> FilteringToy:
    """A seeded toy: a random d-plane of R^n, cyclic blocks of ``mask_sizes`` (uniform), and with probability
    ``clean_fraction`` the empty mask (no occlusion, noise only).

    ``variances`` default: d values from 2 down to 1 (a plane with distinct principal axes).
    """
    n = check_int(ambient_dim, "ambient_dim", minimum=2)
    d = check_int(intrinsic_dim, "intrinsic_dim", minimum=1, maximum=n - 1)
    lam = (torch.linspace(2.0, 1.0, d, dtype=torch.float64) if variances is None
           else as_tensor(variances, name="variances", dtype=torch.float64))
    if lam.shape != (d,) or bool((lam <= 0).any()):
        raise ValueError(f"variances must hold intrinsic_dim = {d} positive values, got {lam.tolist()}")
    q = check_fraction(clean_fraction, "clean_fraction", high_inclusive=False)
    gen = torch.Generator().manual_seed(check_int(seed, "seed"))
    U, _ = torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=torch.float64))   # (n, d)
    masks = block_masks(n, tuple(mask_sizes))                                         # (S, n)
    probs = torch.full((masks.shape[0],), (1 - q) / masks.shape[0], dtype=torch.float64)
    if q > 0:
        masks = torch.cat([torch.zeros(1, n, dtype=torch.float64), masks])
        probs = torch.cat([torch.tensor([q], dtype=torch.float64), probs])
    return FilteringToy(U, lam, masks, probs, check_positive(fill_std, "fill_std"))


def moments(toy: FilteringToy, *, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A = E[x x̃ᵀ] and C = E[x̃ x̃ᵀ] (F.1), both (n, n), for noise σ >= 0 after the occlusion."""
    sigma = check_positive(sigma, "sigma", allow_zero=True)
    keep = 1 - toy.masks                                                   # (S, n) 1 = kept
    p = toy.probs @ toy.masks                                              # (n,) P(j ∈ S)
    K = torch.einsum("s,si,sj->ij", toy.probs, keep, keep)                 # (n, n) P(i, j both kept)
    Sigma = toy.covariance
    A = Sigma * (1 - p)[None, :]                                           # Σ D̄
    C = Sigma * K + torch.diag(toy.fill_std ** 2 * p + sigma ** 2)         # Σ ∘ K + τ² diag(p) + σ² I
    return A, C


def best_linear_map(toy: FilteringToy, *, sigma: float) -> torch.Tensor:
    """W*(σ) = A C⁻¹ (F.2): the minimiser of E‖W x̃ − x‖² over all n × n matrices; (n, n).

    C must be invertible: at σ = 0 every coordinate has to be occluded by some mask (else a direction outside
    the data plane is never excited and W* is not unique there).
    """
    A, C = moments(toy, sigma=sigma)
    if float(torch.linalg.eigvalsh(C).min()) <= 1e-12 * float(C.diagonal().max()):
        raise ValueError(f"E[x̃ x̃ᵀ] is singular at sigma={sigma!r}: some direction is never excited, so the best "
                         "linear map is not unique; use sigma > 0 or masks that cover every coordinate")
    return torch.linalg.solve(C, A.T).T                                    # A C⁻¹ (C symmetric)


def descent_map(toy: FilteringToy, *, sigma: float, steps: int, lr: float) -> torch.Tensor:
    """W_k (F.3): ``steps`` full-batch gradient steps of size ``lr`` on E‖W x̃ − x‖² from W₀ = I; (n, n).

    The gradient is 2 (W C − A), so W_{k+1} − W* = (W_k − W*)(I − 2ηC) and W_k = W* + (I − W*)(I − 2ηC)^k. In the
    eigenbasis of C = V diag(c) Vᵀ this reads W_k = V diag((1 − 2ηc)^k) Vᵀ + A V diag(g_k(c)) Vᵀ with
    g_k(c) = (1 − (1 − 2ηc)^k)/c, which needs no inverse: g_k → 2ηk as c → 0, so a direction the training
    inputs never excite keeps W₀ = I there (the copy map's value). Stable for η λ_max(C) < 1.
    """
    steps = check_int(steps, "steps", minimum=0)
    lr = check_positive(lr, "lr")
    A, C = moments(toy, sigma=sigma)
    c, V = torch.linalg.eigh(C)                                            # C = V diag(c) Vᵀ
    if lr * float(c.max()) >= 1:
        raise ValueError(f"lr={lr!r} diverges: gradient descent needs lr · λ_max(C) < 1, λ_max(C) = "
                         f"{float(c.max()):.4g}")
    decay = (1 - 2 * lr * c) ** steps                                      # (n,)
    safe = torch.where(c.abs() > 1e-300, c, torch.ones_like(c))
    gain = torch.where(c.abs() > 1e-14 * float(c.max()), (1 - decay) / safe,
                       torch.full_like(c, 2.0 * lr * steps))               # (1 − (1 − 2ηc)^k) / c
    return (V * decay + A @ V * gain) @ V.T


def frobenius_sq(W: torch.Tensor) -> float:
    """‖W‖_F² of a matrix (n, n): for a map's Jacobian, n for the identity, d for an orthogonal projector."""
    return float(W.square().sum())


def toy_corruption(toy: FilteringToy, *, sigma: float) -> MaskedCorruption:
    """The toy's corruption as the package implements it: ``MaskedCorruption(FiniteMaskFamily, GaussianFill,
    noise_sigma=σ)`` (a vector batch (B, n) -> (x̃, mask))."""
    return MaskedCorruption(FiniteMaskFamily(toy.masks, toy.probs), GaussianFill(toy.fill_std),
                            noise_sigma=check_positive(sigma, "sigma", allow_zero=True))


def least_squares_map(x: torch.Tensor, x_tilde: torch.Tensor) -> torch.Tensor:
    """The linear map fitted by least squares on samples: argmin_W Σ_b ‖W x̃_b − x_b‖²; x, x̃ (B, n) -> (n, n)."""
    if x.shape != x_tilde.shape or x.ndim != 2:
        raise ValueError(f"x and x_tilde must both have shape (B, n), got {tuple(x.shape)} and {tuple(x_tilde.shape)}")
    return torch.linalg.lstsq(x_tilde.double(), x.double()).solution.T


# ------------------------------------------------------------------------------------------ image side


def occlusion(M: TranslationManifold, *, side: tuple[float, float], noise_sigma: float, bank: int = 64,
              seed: int = 0) -> MaskedCorruption:
    """One axis-aligned rectangle per image with sides ``side`` × N, filled with a patch of another image of M
    (a bank of ``bank`` samples drawn with ``seed``, independent of x), then noise σ on every pixel.

    The T9 corruption that separates π from π_S (docs/theory.md, T9 item 4): images (B, 1, N, N).
    """
    bank = check_int(bank, "bank", minimum=1)
    gen = torch.Generator().manual_seed(check_int(seed, "seed"))
    patches, _ = M.sample(bank, generator=gen)                             # (bank, n)
    fill = PatchFill(bank=patches.reshape(-1, 1, M.size, M.size).float())
    return MaskedCorruption(RectangleMask(count=(1, 1), size=side), fill, noise_sigma=noise_sigma)


def train_filtering_unet(M: TranslationManifold, *, noise_sigma: float, width: int, steps: int, batch_size: int,
                         num_train: int, seed: int, side: tuple[float, float] = (0.5, 0.7),
                         lr: float = 3e-3) -> GatedUNet:
    """``GatedUNet(1, width=, depth=2)`` trained with ``SelfSupervised(occlusion(M, noise_sigma=σ))`` on M's samples.

    The recipe of ``toys.image_tasks.train_unet_dae`` (linear output, no normalisation, one SDC layer with
    dilations 1, 2); only the corruption differs. Returns the float32 model in eval mode.
    """
    gen = torch.Generator().manual_seed(check_int(seed, "seed"))
    p, _ = M.sample(check_int(num_train, "num_train", minimum=1), generator=gen)   # (num_train, n)
    images = p.reshape(-1, 1, M.size, M.size).float()                                # (B, 1, N, N)
    corruption = occlusion(M, side=side, noise_sigma=noise_sigma, seed=seed + 1)
    torch.manual_seed(seed)                                                          # model initialisation
    model = GatedUNet(1, width=width, depth=2, dilations=(1, 2), sdc_layers=1, norm="none", output="linear")
    fit(SelfSupervised(model, corruption=corruption), images, steps=steps, batch_size=batch_size, lr=lr,
        seed=seed)
    return model.eval()


def clean_frobenius(model: torch.nn.Module, M: TranslationManifold, *, num: int, seed: int) -> torch.Tensor:
    """Exact ‖J_f(p)‖_F² of an image model at ``num`` clean images p of M (seeded): (num,) float64.

    d = 2 for the exact projection π (Dπ = P_T on M), n = N² for the identity.
    """
    p, _ = M.sample(check_int(num, "num", minimum=1), generator=torch.Generator().manual_seed(seed))
    images = p.reshape(-1, 1, M.size, M.size).float()                                # (num, 1, N, N)
    return jacobian_frobenius_sq(model, images, estimator="exact").detach().double()
