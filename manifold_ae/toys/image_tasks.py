"""The image-scale experiments of T9 and T10 (docs/theory.md, "T9", "T10"): T1's exactness checks, the T4 rate of
the Bayes denoiser, a trained GatedUNet DAE, the self-supervised in-painting U-Net against π_S and π (T6/T7), the
residual as anomaly score against the exact distance (T8), on the exact image manifolds of
``manifolds/translation.py`` and ``manifolds/grating.py``.

Points are flattened N×N images (..., N²); models see them as (B, 1, N, N). The trainers are memoised per
process (:func:`trained_once`), so T9 and T10 inside one ``verify`` share their models; a returned model is in
eval mode and must not be trained further.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from manifold_ae.anomaly.metrics import auroc
from manifold_ae.checks import check_fraction, check_int
from manifold_ae.corruptions import MaskedCorruption
from manifold_ae.corruptions.image import PatchFill, RectangleMask
from manifold_ae.loop import fit
from manifold_ae.manifolds import make_image_manifold
from manifold_ae.manifolds.base import Manifold
from manifold_ae.manifolds.translation import TranslationManifold
from manifold_ae.models import GatedUNet
from manifold_ae.objectives import Denoising, Reconstruction, SelfSupervised
from manifold_ae.theory import principal_components
from manifold_ae.theory import idempotence_error, jacobian, jacobian_gap, projection_gap, residual_normal_angle
from manifold_ae.toys.measures import rms

__all__ = ["IMAGE_SIZE", "TEMPLATE_BANDWIDTH", "TEMPLATE_SEED", "PATCH_SIDES", "BANK_SIZE", "image_manifolds",
           "exactness", "oracle_gaps", "DenoiserFit", "train_unet_dae", "denoiser_gaps", "trained_once",
           "patch_bank", "patch_corruption", "InpainterFit", "train_unet_inpainter", "CorruptedImages",
           "corrupted_images", "dilate_periodic", "image_map", "projection_map", "band_pass_map", "support_size",
           "pca_map",
           "inpainting_measures", "anomaly_aurocs"]

IMAGE_SIZE = 16          # N: n = 256 pixels
TEMPLATE_BANDWIDTH = 3   # K of the translation template
TEMPLATE_SEED = 3        # the template of the groundwork measurements (docs/theory.md, image manifolds)
PATCH_SIDES = (0.5, 0.7)  # rectangle sides ÷ N of the T6/T7 corruption: 8-11 px at N = 16 (T9 item 5)
BANK_SIZE = 64           # samples of M the pasted patches come from

#: an image map on flattened points: (B, n) float64 -> (B, n) float64
PointMap = Callable[[torch.Tensor], torch.Tensor]


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


_TRAINED: dict[tuple, object] = {}


def _manifold_key(M: Manifold) -> tuple:
    """What identifies an image manifold for the memo: its class, size and template (or repr)."""
    template = getattr(M, "template", None)
    return (type(M).__name__, M.ambient_dim, repr(M) if template is None else template.numpy().tobytes())


def trained_once(train: Callable[..., object], M: Manifold, **recipe: object) -> object:
    """``train(M, **recipe)``, computed once per process for the same trainer, manifold and recipe.

    T9 and T10 check different properties of the same trained models; inside one ``verify`` run the second
    claim gets the first one's models instead of training them again. Training is seeded by the recipe, so a
    memoised model is the one a fresh call would train (up to the nondeterminism of the threads' reductions).
    """
    key = (train.__module__, train.__qualname__, _manifold_key(M), tuple(sorted(recipe.items())))
    if key not in _TRAINED:
        _TRAINED[key] = train(M, **recipe)
    return _TRAINED[key]


def _images(p: torch.Tensor, size: int) -> torch.Tensor:
    """Points (B, n) -> float32 images (B, 1, N, N)."""
    return p.reshape(-1, 1, size, size).float()


def patch_bank(M: Manifold, *, num: int = BANK_SIZE, seed: int) -> torch.Tensor:
    """``num`` samples of M as float64 images (num, 1, N, N): the source of the pasted patches (T9 item 5)."""
    p, _ = M.sample(check_int(num, "num", minimum=1), generator=torch.Generator().manual_seed(seed))
    return p.reshape(-1, 1, M.size, M.size)


def patch_corruption(bank: torch.Tensor, *, opacity: float = 1.0) -> MaskedCorruption:
    """One rectangle of sides ``PATCH_SIDES`` × N per image, filled with a cyclically shifted bank image.

    An integer shift of a point of M is a point of M, so the content is another image of M, independent of x.
    """
    a = check_fraction(opacity, "opacity")
    return MaskedCorruption(RectangleMask(count=(1, 1), size=PATCH_SIDES), PatchFill(bank=bank, translate=True),
                            opacity=(a, a))


class InpainterFit(NamedTuple):
    """A GatedUNet trained on samples of M: ``SelfSupervised`` with :func:`patch_corruption` or a plain AE."""

    model: GatedUNet          # float32, eval mode
    history: list[float]      # training losses
    objective: str            # "selfsupervised" or "reconstruction"
    train_points: torch.Tensor  # (num_train, n) float64: the training images (for PCA of the same data)
    bank: torch.Tensor        # (BANK_SIZE, 1, N, N) float64: where the training patches came from


def train_unet_inpainter(M: Manifold, *, objective: str, width: int, steps: int, batch_size: int, num_train: int,
                         seed: int, lr: float = 3e-3) -> InpainterFit:
    """Train the GatedUNet of :func:`train_unet_dae` with ``SelfSupervised`` (``objective="selfsupervised"``,
    corruption :func:`patch_corruption` with a bank drawn from ``seed + 1``) or ``Reconstruction`` on clean
    images (``"reconstruction"``), on the same ``num_train`` samples of M (drawn from ``seed``) (T9 item 5)."""
    if objective not in ("selfsupervised", "reconstruction"):
        raise ValueError(f"objective must be 'selfsupervised' or 'reconstruction', got {objective!r}")
    p, _ = M.sample(num_train, generator=torch.Generator().manual_seed(seed))           # (num_train, n)
    bank = patch_bank(M, seed=seed + 1)                                                 # (64, 1, N, N)
    torch.manual_seed(seed)                                                             # model initialisation
    model = GatedUNet(1, width=width, depth=2, dilations=(1, 2), sdc_layers=1, norm="none", output="linear")
    loss = (SelfSupervised(model, corruption=patch_corruption(bank.float())) if objective == "selfsupervised"
            else Reconstruction(model))
    history = fit(loss, _images(p, M.size), steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    model.eval()
    return InpainterFit(model, history, objective, p, bank)


class CorruptedImages(NamedTuple):
    """Clean points of M, the pasted content and mask, and the corrupted points, all (B, n) float64."""

    x: torch.Tensor        # clean
    x_hat: torch.Tensor    # (1 − a m) x + a m c
    mask: torch.Tensor     # m in {0, 1}
    content: torch.Tensor  # c, a shifted bank image
    opacity: float


def corrupted_images(M: Manifold, *, bank: torch.Tensor, num: int, seed: int,
                     opacity: float = 1.0) -> CorruptedImages:
    """``num`` fresh samples of M, each with one pasted rectangle of :func:`patch_corruption` (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    x, _ = M.sample(check_int(num, "num", minimum=1), generator=gen)                    # (num, n)
    images = x.reshape(-1, 1, M.size, M.size)                                          # (num, 1, N, N)
    corruption = patch_corruption(bank.to(x.dtype), opacity=opacity)
    mask = corruption.mask(images, gen).to(x.dtype)                                    # (num, 1, N, N)
    content = corruption.fill(images, gen)                                             # (num, 1, N, N)
    a = float(opacity)
    x_hat = (1 - a * mask) * images + a * mask * content
    return CorruptedImages(x, x_hat.reshape(num, -1), mask.reshape(num, -1), content.reshape(num, -1), a)


def dilate_periodic(mask: torch.Tensor, *, size: int, radius: int) -> torch.Tensor:
    """Masks (B, n) of N×N images dilated by a (2 radius + 1)² square on the periodic grid: (B, n) in {0, 1}."""
    images = mask.reshape(-1, 1, size, size)
    padded = torch.nn.functional.pad(images, (radius,) * 4, mode="circular")
    return torch.nn.functional.max_pool2d(padded, 2 * radius + 1, stride=1).reshape(mask.shape)


def image_map(model: torch.nn.Module, size: int) -> PointMap:
    """A float32 image model as a map on float64 points (B, n) -> (B, n), without gradients."""
    def f(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(_images(x, size)).reshape(x.shape).double()
    return f


def projection_map(M: Manifold) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exact projection π as a map on images (B, 1, N, N) -> (B, 1, N, N), differentiable (for JVPs)."""
    def f(images: torch.Tensor) -> torch.Tensor:
        return M.project(images.reshape(images.shape[0], -1)).reshape(images.shape).to(images.dtype)
    return f


def support_size(M: TranslationManifold) -> int:
    """Number of Fourier modes where the template's spectrum is non-zero: the dimension of span M."""
    spec = torch.fft.fft2(M.template.to(torch.float64)).abs()
    return int((spec > 1e-10 * spec.max()).sum())


def band_pass_map(M: TranslationManifold) -> PointMap:
    """P_B: the orthogonal projection onto span M (the template's Fourier support), on points (B, n)."""
    return lambda x: _band_pass(M, x)


def pca_map(points: torch.Tensor, *, rank: int) -> PointMap:
    """x ↦ U Uᵀ x with U the top-``rank`` directions of the second moment of ``points`` (N, n) (no centring)."""
    U = principal_components(points.to(torch.float64), rank=rank).basis                # (n, rank)
    return lambda x: (x.to(torch.float64) @ U) @ U.T


def inpainting_measures(M: TranslationManifold, maps: dict[str, PointMap],
                        test: CorruptedImages) -> dict[str, dict[str, float]]:
    """q, ι and e of every map on the corrupted test images, plus the identity and π as references (T9 item 5).

    q = RMS ‖f − π_S‖ / RMS ‖f − π‖, ι = RMS ‖f − π_S‖ / RMS ‖x̂ − π_S‖,
    e = RMS ‖(1 − m)(f − x̂)‖ / RMS ‖(1 − m) x̂‖ (``outside``) and the same on the clean pixels farther than
    2 px from the mask (``outside_far``, :func:`dilate_periodic`), with π_S by ``masked_project`` with the true
    mask and π by ``project``. π's own q (a division by zero) is left out. Also ``rms_pi_minus_pi_s``, ``rms_x_hat_minus_pi_s``
    and ``pi_s_to_clean`` (RMS ‖π_S − x‖ / RMS ‖x̂ − x‖: 0 when the kept pixels fix the shift).
    """
    x_hat, keep = test.x_hat, 1 - test.mask
    far = 1 - dilate_periodic(test.mask, size=M.size, radius=2)                        # clean, > 2 px from m
    pi_s = M.masked_project(x_hat, test.mask).point                                    # (B, n)
    pi = M.project(x_hat)
    scale = rms(x_hat - pi_s)
    outputs = {"identity": x_hat, **{name: f(x_hat) for name, f in maps.items()}, "projection": pi}
    out: dict[str, dict[str, float]] = {}
    for name, y in outputs.items():
        row = {"iota": rms(y - pi_s) / scale, "outside": rms(keep * (y - x_hat)) / rms(keep * x_hat),
               "outside_far": rms(far * (y - x_hat)) / rms(far * x_hat)}
        if name != "projection":
            row = {"q": rms(y - pi_s) / rms(y - pi), **row}
        out[name] = row
    out["references"] = {"rms_pi_minus_pi_s": rms(pi - pi_s), "rms_x_hat_minus_pi_s": scale,
                         "pi_s_to_clean": rms(pi_s - test.x) / rms(x_hat - test.x)}
    return out


def anomaly_aurocs(M: TranslationManifold, maps: dict[str, PointMap], *, bank: torch.Tensor, num: int,
                   noise: float, seed: int, opacity: float = 1.0, brute_nodes: int | None = None
                   ) -> dict[str, float]:
    """Image AUROC of each score on normals p + σ₀ε against corrupted images (:func:`corrupted_images`) + σ₀ε.

    Scores: ``oracle`` the exact distance ‖x − π(x)‖, ``brute_force`` (when ``brute_nodes`` is given) the distance
    by ``brute_force_distance`` over that many shifts, ``identity`` (residual 0: AUROC 0.5 by the tie rule), and
    the residual norm ‖x − f(x)‖ of every map (T9 item 6, T8 at image scale). ``num`` images per class.
    """
    gen = torch.Generator().manual_seed(seed)
    p, _ = M.sample(check_int(num, "num", minimum=1), generator=gen)
    anomalous = corrupted_images(M, bank=bank, num=num, seed=seed + 1, opacity=opacity).x_hat
    x = torch.cat([p, anomalous])                                                      # (2 num, n)
    x = x + noise * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    labels = torch.cat([torch.zeros(num), torch.ones(num)]).numpy()
    scores = {"oracle": M.distance(x), "identity": torch.zeros(2 * num, dtype=x.dtype)}
    if brute_nodes is not None:
        scores["brute_force"] = M.brute_force_distance(x, nodes=brute_nodes)
    scores.update({name: (x - f(x)).norm(dim=-1) for name, f in maps.items()})
    return {name: auroc(labels, s.numpy()) for name, s in scores.items()}
