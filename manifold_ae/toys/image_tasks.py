"""The image-scale experiments of T9 (docs/theory.md, "T9"): T1's exactness checks, the T4 rate of the Bayes
denoiser and a trained GatedUNet DAE, on the exact image manifolds of ``manifolds/translation.py`` and
``manifolds/grating.py``.

Points are flattened N×N images (..., N²); models see them as (B, 1, N, N).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from manifold_ae.loop import fit
from manifold_ae.manifolds import make_image_manifold
from manifold_ae.manifolds.base import Manifold
from manifold_ae.manifolds.translation import TranslationManifold
from manifold_ae.models import GatedUNet
from manifold_ae.objectives import Denoising
from manifold_ae.theory import idempotence_error, jacobian, jacobian_gap, projection_gap, residual_normal_angle
from manifold_ae.toys.measures import rms

__all__ = ["IMAGE_SIZE", "TEMPLATE_BANDWIDTH", "TEMPLATE_SEED", "image_manifolds", "exactness", "oracle_gaps",
           "DenoiserFit", "train_unet_dae", "denoiser_gaps"]

IMAGE_SIZE = 16          # N: n = 256 pixels
TEMPLATE_BANDWIDTH = 3   # K of the translation template
TEMPLATE_SEED = 3        # the template of the groundwork measurements (docs/theory.md, image manifolds)


def image_manifolds() -> dict[str, Manifold]:
    """The two families of T9 at N = ``IMAGE_SIZE``: the translation manifold and the six-orientation grating."""
    return {"translation": make_image_manifold("translation", size=IMAGE_SIZE, bandwidth=TEMPLATE_BANDWIDTH,
                                               seed=TEMPLATE_SEED),
            "grating": make_image_manifold("grating", size=IMAGE_SIZE)}


def exactness(M: Manifold, *, num: int, num_jacobian: int, generator: torch.Generator) -> dict[str, float]:
    """T1's four exactness measures on an image manifold, in units of the reach τ (Dπ − P_T absolute).

    Returns
    -------
    dict with ``normal_ray`` max ‖π(p + tν) − p‖/τ (t <= 0.9 τ), ``idempotence`` max ‖π(π(x)) − π(x)‖/τ for
    x = p + (τ/√n) ε, ``residual_normal`` max ‖P_T(π(x))(x − π(x))‖/τ on the rays, ``jacobian_on``
    max ‖Dπ(p) − P_T(p)‖_F on M.
    """
    tau = M.reach
    ray = M.sample_normal_ray(num, fraction=0.9, generator=generator)                 # (num, n)
    out = {"normal_ray": float(projection_gap(M.project, ray.x, ray.p).absolute.max()) / tau}
    p, _ = M.sample(num, generator=generator)
    x = p + tau / math.sqrt(M.ambient_dim) * torch.randn(p.shape, generator=generator, dtype=p.dtype)
    out["idempotence"] = float(idempotence_error(M.project, x).max()) / tau
    res = M.project_with_info(ray.x)
    angle = residual_normal_angle(ray.x, res.point, M.tangent_basis(res.point))       # ‖P_T r‖ = ‖r‖ sin∠(r, N)
    out["residual_normal"] = float((res.distance * torch.sin(angle)).max()) / tau
    q, _ = M.sample(num_jacobian, generator=generator)                                  # (k, n) on M
    out["jacobian_on"] = float(jacobian_gap(jacobian(M.project, q), M.tangent_projector(q)).max())
    return out


def oracle_gaps(M: TranslationManifold, sigmas: tuple[float, ...], *, num: int,
                generator: torch.Generator) -> list[float]:
    """RMS ‖r*(x) − π(x)‖ at fixed points x = p + tν, t ~ U[0, τ/2] (so π(x) = p), one value per σ (T4)."""
    ray = M.sample_normal_ray(num, fraction=0.5, generator=generator)
    return [rms(M.posterior_mean(ray.x, sigma=s) - ray.p) for s in sigmas]


class DenoiserFit(NamedTuple):
    """A GatedUNet trained with ``Denoising`` on samples of an image manifold."""

    model: GatedUNet          # float32, eval mode
    history: list[float]      # training losses
    sigma: float


def train_unet_dae(M: Manifold, *, sigma: float, width: int, steps: int, batch_size: int, num_train: int,
                   seed: int, lr: float = 3e-3) -> DenoiserFit:
    """Train ``GatedUNet(1, width=, depth=2)`` with ``Denoising(sigma=)`` and ``loop.fit`` on M's samples.

    Linear output (the images have zero mean and unit RMS, not values in [0, 1]), no normalisation (the map
    must act on each image alone), one SDC layer with dilations 1, 2 (the 4×4 bottleneck is then global).
    """
    gen = torch.Generator().manual_seed(seed)
    p, _ = M.sample(num_train, generator=gen)                                           # (num_train, n)
    images = p.reshape(-1, 1, M.size, M.size).float()                                   # (B, 1, N, N)
    torch.manual_seed(seed)                                                             # model initialisation
    model = GatedUNet(1, width=width, depth=2, dilations=(1, 2), sdc_layers=1, norm="none", output="linear")
    history = fit(Denoising(model, sigma=sigma), images, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    model.eval()
    return DenoiserFit(model, history, sigma)


def _band_pass(M: TranslationManifold, x: torch.Tensor) -> torch.Tensor:
    """P_B x: x (B, n) projected onto span M, the Fourier modes where the template's spectrum is non-zero."""
    spec = torch.fft.fft2(M.template.to(torch.float64))                                 # (N, N)
    band = spec.abs() > 1e-10 * spec.abs().max()
    X = torch.fft.fft2(x.reshape(-1, M.size, M.size).to(torch.float64))
    return torch.fft.ifft2(X * band).real.reshape(x.shape)


def denoiser_gaps(M: TranslationManifold, fitted: DenoiserFit, *, num: int, seed: int) -> dict[str, float]:
    """Relative gaps to r* on fresh noisy images x̃ = p + σε: ρ = RMS ‖f(x̃) − r*‖ / RMS ‖x̃ − r*‖ (the trained
    UNet) and the same for the band-pass P_B (closed form ≈ ((48 − 2)/(n − 2))^{1/2}, docs/theory.md T9)."""
    gen = torch.Generator().manual_seed(seed)
    sigma = fitted.sigma
    p, _ = M.sample(num, generator=gen)
    x_tilde = p + sigma * torch.randn(p.shape, generator=gen, dtype=p.dtype)            # (num, n)
    spacing = sigma / math.sqrt(float(torch.linalg.eigvalsh(M.metric.to(torch.float64)).max()))
    r_star = M.posterior_mean(x_tilde, sigma=sigma, grid=2 * math.ceil(M.size / spacing / 2))
    with torch.no_grad():
        f = fitted.model(x_tilde.reshape(-1, 1, M.size, M.size).float()).reshape(num, -1).double()
    noise = rms(x_tilde - r_star)
    return {"unet": rms(f - r_star) / noise, "band_pass": rms(_band_pass(M, x_tilde) - r_star) / noise,
            "rms_noise_to_rstar": noise}
