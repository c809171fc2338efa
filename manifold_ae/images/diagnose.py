"""How projection-like is a trained image model? Measurements for ``manifold-ae diagnose`` (T1, T6, T7).

An exact orthogonal projection π onto a d-dimensional manifold M of normal images is idempotent (π∘π = π), its
Jacobian on M is the tangent projector (‖Dπ‖_F² = d), it removes a defect that leaves M and it keeps every pixel
a defect does not touch. Each function here measures one of these properties for any image map
``f: (B, C, H, W) -> (B, C, H, W)`` (a trained network, the PCA baseline, the identity), on clean images and on the
same images with exact synthetic defects (:mod:`manifold_ae.images.validation`):

* :func:`idempotence_ratio`  ‖f(f(x)) − f(x)‖ / ‖x − f(x)‖ per image (convention for 0/0 there);
* :func:`conservation_curve` removed fraction inside the mask and relative change outside it as the defect's
  opacity a grows, ``x̃ = (1 − a m) x + a m c`` with the same mask m and content c at every a;
* :func:`gate_aurocs`        the gated U-Net's skip gates against the defect mask, one AUROC per level;
* :func:`far_residual_ratio` the residual far from the defect over the clean image's there: 1 when the map
  answers the defect locally, as π_S does (T7 b), above 1 when it spreads its answer over the image;
* :func:`localisation_by_scale` the pixel AUROC of the residual compared at one block scale at a time: whether
  any scale of ``score.scales`` could localise the defect, or whether the model conserves it (T7, T8);
* :func:`hutchinson_frobenius` and :func:`jacobian_excess`: Jacobian probes by Jacobian-vector products with
  Rademacher vectors only (never the full Jacobian, which has (C H W)² entries).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from manifold_ae.anomaly.metrics import auroc
from manifold_ae.anomaly.scoring import pyramid_residuals, smooth
from manifold_ae.checks import check_int
from manifold_ae.images.pipeline import Pipeline
from manifold_ae.images.validation import DEFECT_KINDS, validation_corruption
from manifold_ae.rng import randint

__all__ = ["OPACITIES", "LOCALISATION_SCALES", "FAR_MARGIN", "ImageMap", "DefectBatch", "idempotence_ratio",
           "summarise", "make_defects", "conservation_curve", "detection_aurocs", "gate_aurocs",
           "localisation_by_scale", "far_residual_ratio", "rademacher", "hutchinson_frobenius", "jacobian_excess",
           "diagnose_model"]

#: opacities of the conservation curve, from a barely visible defect to a fully pasted one
OPACITIES = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)

#: pixels within this distance (Chebyshev, in px) of a defect pixel are not "far" for :func:`far_residual_ratio`
FAR_MARGIN = 4

#: block sizes of :func:`localisation_by_scale`, from the plain residual to 16 × 16 local means
LOCALISATION_SCALES = (1, 2, 4, 8, 16)

ImageMap = Callable[[torch.Tensor], torch.Tensor]


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of every sample: (B, ...) -> (B,)."""
    return t.flatten(1).norm(dim=1)


def _energy(t: torch.Tensor) -> torch.Tensor:
    """Squared norm of every sample: (B, ...) -> (B,)."""
    return t.flatten(1).pow(2).sum(dim=1)


@torch.no_grad()
def idempotence_ratio(f: ImageMap, x: torch.Tensor) -> torch.Tensor:
    """``‖f(f(x)) − f(x)‖ / ‖x − f(x)‖`` per image: 0 for a projection, 1 when a second pass moves as far as the first.

    Convention for a fixed point (``f(x) = x`` exactly, e.g. every x under the identity): the ratio is 0. The
    numerator vanishes there too (``f(f(x)) = f(x)``), and f is idempotent at x, so 0/0 is read as 0.

    Parameters
    ----------
    f : callable (B, C, H, W) -> (B, C, H, W)
    x : (B, C, H, W) tensor

    Returns
    -------
    (B,) float64 tensor of ratios >= 0.
    """
    fx = f(x)  # (B, C, H, W)
    num = _norms(f(fx) - fx).double()  # (B,)
    den = _norms(x - fx).double()  # (B,)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(num))


def summarise(values: torch.Tensor, *, quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> dict[str, float]:
    """Mean, quantiles (nearest rank below, so an ``inf`` stays an ``inf``) and maximum of a (N,) tensor.

    A non-finite value makes the mean and maximum non-finite, so it cannot hide behind a finite summary.
    """
    v = values.double().flatten()
    if v.numel() == 0:
        raise ValueError("values is empty; expected at least one value to summarise")
    out = {"mean": float(v.mean()), "max": float(v.max())}
    for q in quantiles:
        out[f"q{round(100 * q):02d}"] = float(torch.quantile(v, q, interpolation="lower"))
    out["n"] = int(v.numel())
    return out


@dataclass
class DefectBatch:
    """Clean images with one seeded defect each, kept apart so the opacity can vary (T6, T7).

    ``x`` (B, C, H, W) clean, ``mask`` (B, 1, H, W) exact defect mask in [0, 1], ``content`` (B, C, H, W) what the
    defect pastes; ``at(a)`` is ``(1 − a m) x + a m c``, the corruption of :class:`~manifold_ae.corruptions.base.
    MaskedCorruption` at the fixed opacity a.
    """

    x: torch.Tensor
    mask: torch.Tensor
    content: torch.Tensor
    kind: str

    def at(self, opacity: float) -> torch.Tensor:
        """The corrupted images at ``opacity`` in [0, 1]: (B, C, H, W)."""
        if not 0.0 <= float(opacity) <= 1.0:
            raise ValueError(f"opacity must lie in [0, 1], got {opacity!r}")
        am = float(opacity) * self.mask  # (B, 1, H, W)
        return (1 - am) * self.x + am * self.content


def make_defects(x: torch.Tensor, *, kind: str, seed: int) -> DefectBatch:
    """One defect of ``kind`` (a key of ``validation.DEFECT_KINDS``) per image of x (B, C, H, W), seeded."""
    corruption = validation_corruption(kind)
    generator = torch.Generator().manual_seed(seed)
    mask = corruption.mask(x, generator).to(x.dtype)  # (B, 1, H, W)
    content = corruption.fill(x, generator)  # (B, C, H, W)
    return DefectBatch(x, mask, content, kind)


@torch.no_grad()
def conservation_curve(f: ImageMap, defects: DefectBatch, *,
                       opacities: Sequence[float] = OPACITIES) -> list[dict[str, float]]:
    """Removed fraction inside the defect mask and relative change outside it, per opacity (T6, T7).

    For each opacity a, with x̃ = (1 − a m) x + a m c, pooled over the images (ratios of summed energies):

    * ``removed_inside = 1 − ‖(f(x̃) − x) ⊙ m‖² / ‖(x̃ − x) ⊙ m‖²``: 1 when f restores the clean pixels under the
      defect, 0 when it keeps the defect as it is (the identity), negative when it makes the defect worse;
    * ``passed_inside = ‖(f(x̃) − f(x)) ⊙ m‖² / ‖(x̃ − x) ⊙ m‖²``: the part of the defect that reaches the
      output, measured from the model's own reconstruction of the clean image (so its reconstruction error
      does not count): 1 for the identity, 0 for a map that ignores the defect;
    * ``changed_outside = ‖(f(x̃) − x̃) ⊙ (1 − m)‖² / ‖x ⊙ (1 − m)‖²``: 0 when f keeps every pixel the defect
      did not touch.

    Returns one ``{"opacity", "removed_inside", "passed_inside", "changed_outside"}`` row per opacity; a row with
    no defect energy (an empty mask, or a content equal to x) has ``removed_inside`` and ``passed_inside`` NaN.
    """
    m = defects.mask  # (B, 1, H, W)
    fx = f(defects.x)  # (B, C, H, W)
    rows = []
    for a in opacities:
        x_tilde = defects.at(a)  # (B, C, H, W)
        y = f(x_tilde)  # (B, C, H, W)
        defect_energy = float(_energy((x_tilde - defects.x) * m).sum())
        left = float(_energy((y - defects.x) * m).sum())
        outside = float(_energy(defects.x * (1 - m)).sum())
        passed = float(_energy((y - fx) * m).sum())
        rows.append({"opacity": float(a),
                     "removed_inside": 1 - left / defect_energy if defect_energy > 0 else math.nan,
                     "passed_inside": passed / defect_energy if defect_energy > 0 else math.nan,
                     "changed_outside": float(_energy((y - x_tilde) * (1 - m)).sum()) / outside
                     if outside > 0 else math.nan})
    return rows


@torch.no_grad()
def gate_aurocs(model: nn.Module, defects: DefectBatch, *, opacity: float = 1.0) -> list[dict[str, float]]:
    """Do the skip gates close on corrupted pixels? One AUROC per gate level of ``1 − a`` against the mask.

    ``a`` is the CCM gate of :class:`~manifold_ae.models.unet.GatedUNet` (``out = a enc + (1 − a) dec``), read by
    ``model.gate_maps``, averaged over channels and upsampled (nearest) to the image; an AUROC near 1 means the
    gate shuts the skip (``a`` → 0) on the defect and keeps it open elsewhere, 0.5 means the gate ignores it.
    Also reports the mean gate inside and outside the mask. Coarsest level first; ``[]`` for a model without
    gates. Images whose mask is empty do not count.
    """
    if not hasattr(model, "gate_maps"):
        return []
    x_tilde = defects.at(opacity)  # (B, C, H, W)
    labels = (defects.mask[:, 0] > 0.5).cpu()  # (B, H, W)
    if not bool(labels.any()) or bool(labels.all()):
        raise ValueError("the defect masks mark no pixel (or every pixel); expected both defect and clean pixels")
    rows = []
    for a in model.gate_maps(x_tilde):  # (B, c, h, w) each
        gate = a.float().mean(dim=1, keepdim=True)  # (B, 1, h, w)
        up = torch.nn.functional.interpolate(gate, size=labels.shape[-2:], mode="nearest")[:, 0].cpu()  # (B, H, W)
        rows.append({"level_size": int(a.shape[-1]), "channels": int(a.shape[1]),
                     "auroc_closed": auroc(labels.flatten().numpy(), (1 - up).flatten().numpy()),
                     "mean_gate_inside": float(up[labels].mean()), "mean_gate_outside": float(up[~labels].mean())})
    return rows


@torch.no_grad()
def localisation_by_scale(f: ImageMap, defects: DefectBatch, *, scales: Sequence[int] = LOCALISATION_SCALES,
                          sigma: float = 0.0, opacity: float = 1.0) -> list[dict[str, float]]:
    """Pixel AUROC of the residual compared at one block scale s at a time: could a score localise the defect?

    For each s, the heat map is the squared difference of the s × s local means of the image and of f's output
    (``anomaly.scoring.pyramid_residuals`` with ``scales=(s,)``: the level ``score.scales`` takes for s),
    smoothed by ``sigma``. Positives are the defect pixels (mask > 1/2) of the corrupted images at ``opacity``;
    negatives are their other pixels and every pixel of the clean images, as ``evaluate`` pools normal and
    defective images. A deviation d spread over a region much larger than s keeps its energy at scale s while
    uncorrelated residual noise of variance v falls to v / s²; so an AUROC that stays near 1/2 at every scale
    says the residual does not hold the defect: f passes it through (conservation, T7), and no choice of scales
    can localise it (T8). Scales larger than the images are left out.

    Returns one ``{"scale", "pixel_auroc"}`` row per scale.
    """
    h, w = defects.x.shape[-2:]
    scales = [int(s) for s in scales if 1 <= int(s) <= min(h, w)]
    if not scales:
        raise ValueError(f"scales must hold at least one int in [1, min(H, W) = {min(h, w)}]")
    x_tilde = defects.at(opacity)  # (B, C, H, W)
    positive = (defects.mask[:, 0] > 0.5).cpu()  # (B, H, W)
    if not bool(positive.any()):
        raise ValueError("the defect masks mark no pixel; expected at least one defect pixel")
    labels = torch.cat([torch.zeros_like(positive), positive]).flatten().numpy()
    fx, fy = f(defects.x), f(x_tilde)
    rows = []
    for s in scales:
        levels = [smooth(pyramid_residuals(a, b, scales=(s,))[:, 0], sigma=sigma).cpu()  # (B, H, W)
                  for a, b in ((defects.x, fx), (x_tilde, fy))]
        rows.append({"scale": s, "pixel_auroc": auroc(labels, torch.cat(levels).flatten().double().numpy())})
    return rows


@torch.no_grad()
def far_residual_ratio(f: ImageMap, defects: DefectBatch, *, opacity: float = 1.0,
                       margin: int = FAR_MARGIN) -> float:
    """Does the map answer a defect locally? ``Σ_far ‖x̃ − f(x̃)‖² / Σ_far ‖x − f(x)‖²`` pooled over the images.

    "Far" pixels are those whose (2 ``margin`` + 1)² neighbourhood has blend weight below 0.05 everywhere (a soft
    mask's shoulder is not far). There x̃ = x up to that weight, so π_S, which keeps every pixel outside the
    defect, has the clean image's residual: ratio 1. A map whose response to the defect reaches the rest of the
    image (a tile-wide gain change, say) has a ratio above 1. NaN when the clean residual there is 0 (the
    identity, an exact restorer) or no pixel is far.
    """
    check_int(margin, "margin", minimum=0)
    near = torch.nn.functional.max_pool2d(defects.mask.float(), 2 * margin + 1, stride=1, padding=margin)
    far = (near < 0.05).to(defects.x.dtype)  # (B, 1, H, W)
    clean = float(_energy((defects.x - f(defects.x)) * far).sum())
    x_tilde = defects.at(opacity)
    corrupted = float(_energy((x_tilde - f(x_tilde)) * far).sum())
    return corrupted / clean if clean > 0 else math.nan


def rademacher(shape: Sequence[int], *, generator: torch.Generator, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Independent ±1 entries of ``shape``, each with probability 1/2 (drawn on the generator's device)."""
    return (2 * randint(0, 2, shape, generator=generator, device=device) - 1).to(dtype)


def _jvp(f: ImageMap, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """J_f(x) v for every sample of a batch, by the double-backward trick (reverse mode only, any autograd map)."""
    _, jv = torch.autograd.functional.jvp(f, x, v)
    return jv.detach()


def hutchinson_frobenius(f: ImageMap, x: torch.Tensor, *, probes: int = 8,
                         generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Hutchinson estimate of ``‖J_f(x)‖_F² = E_v ‖J_f(x) v‖²`` per image, with its standard error.

    For an exact projection onto a d-dimensional manifold, at points on it, the value is d (J = P_T, T1); the
    identity gives the number of values ``D = C H W``; a rank-k PCA projection gives k.

    Parameters
    ----------
    f : callable (B, C, H, W) -> (B, C, H, W), acting on each image alone (no batch statistics)
    x : (B, C, H, W) tensor
    probes : int
        Rademacher probes per image (one batched JVP each).
    generator : torch.Generator
        Seeds the probes.

    Returns
    -------
    (estimate (B,), standard error (B,)) float64; the standard error is the probes' sample standard deviation
    over √probes (0 for a single probe).
    """
    probes = check_int(probes, "probes", minimum=1)
    samples = []
    for _ in range(probes):
        v = rademacher(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # (B, C, H, W)
        samples.append(_energy(_jvp(f, x, v)).double())  # (B,)
    s = torch.stack(samples)  # (probes, B)
    se = s.std(dim=0) / math.sqrt(probes) if probes > 1 else torch.zeros_like(s[0])
    return s.mean(dim=0), se


def jacobian_excess(f: ImageMap, x: torch.Tensor, *, region: torch.Tensor | None = None, probes: int = 8,
                    generator: torch.Generator) -> torch.Tensor:
    """``E ‖((J_f − I) v_r) ⊙ r‖² / E ‖v_r‖²`` per image, ``v_r = v ⊙ r``: how much of a perturbation of the
    pixels in ``region`` the map does not pass through unchanged.

    0 for a map that is the identity on the region (conservation, T7); ``1 − k/D`` for a rank-k PCA projection
    over the whole image (``region=None``), since ``E ‖(I − P) v‖² = D − k``.

    Parameters
    ----------
    f, x, probes, generator : as :func:`hutchinson_frobenius`
    region : (B, 1, H, W) tensor in [0, 1], optional
        Pixels probed and measured (e.g. ``1 − mask``: the clean part of a corrupted image); default everything.

    Returns
    -------
    (B,) float64; NaN for an image whose region is empty.
    """
    probes = check_int(probes, "probes", minimum=1)
    r = torch.ones_like(x[:, :1]) if region is None else region.to(x.dtype)  # (B, 1, H, W)
    excess = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    energy = torch.zeros_like(excess)
    for _ in range(probes):
        v = rademacher(x.shape, generator=generator, dtype=x.dtype, device=x.device) * r  # (B, C, H, W)
        excess += _energy((_jvp(f, x, v) - v) * r).double()
        energy += _energy(v).double()
    return torch.where(energy > 0, excess / energy.clamp_min(1e-300), torch.full_like(energy, math.nan)).cpu()


@torch.no_grad()
def detection_aurocs(pipe: Pipeline, defects: DefectBatch, *,
                     opacities: Sequence[float] = OPACITIES) -> list[float]:
    """Image-score AUROC of the clean images against their corrupted copies at each opacity, scored by the
    pipeline's own path (residual map, smoothing, reduction: exactly what ``evaluate`` scores, T8)."""
    clean = pipe(defects.x).score  # (B,)
    out = []
    for a in opacities:
        corrupted = pipe(defects.at(a)).score  # (B,)
        labels = torch.cat([torch.zeros_like(clean), torch.ones_like(corrupted)])
        out.append(auroc(labels.numpy(), torch.cat([clean, corrupted]).numpy()))
    return out


def _per_image(fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], x: torch.Tensor,
               region: torch.Tensor | None, *, batch: int) -> torch.Tensor:
    """``fn(chunk, region chunk)`` over chunks of ``batch`` images, concatenated: bounds the JVP's memory."""
    parts = [fn(x[i:i + batch], None if region is None else region[i:i + batch])
             for i in range(0, x.shape[0], batch)]
    return torch.cat([p.cpu() for p in parts])


def diagnose_model(pipe: Pipeline, x: torch.Tensor, *, kinds: Sequence[str] = tuple(DEFECT_KINDS),
                   opacities: Sequence[float] = OPACITIES, probes: int = 4, seed: int = 0,
                   step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every measurement of this module for the model of ``pipe`` on clean images x (B, C, H, W) in [0, 1].

    The defects (one per image and kind) and the Rademacher probes are seeded by ``seed`` alone, so two models
    diagnosed with the same x and seed see the same corrupted images and the same probes. ``step(name)`` is
    called after each part (a progress bar). The images go through ``pipe.reconstruct`` on ``pipe.device`` in
    float32: the map ``evaluate`` scores, i.e. the model in eval mode averaged over ``score.flips`` (the model
    itself for ``none``), in chunks of ``pipe.score_config.batch_size``; the gates are those of one pass of the
    model.

    Returns a JSON-ready dict: ``idempotence`` (summary over images, clean and at opacity 1), ``jacobian``
    (``frobenius_sq`` ≈ d of a projection, per image summary, ``frobenius_sq_per_value`` = ÷ C H W, standard
    error, ``excess_clean`` = :func:`jacobian_excess` on clean images and ``excess_outside_defect`` on the
    clean pixels of corrupted images), and per defect kind: ``conservation`` rows (+ ``detection_auroc``),
    ``gates`` rows, ``localisation`` rows (:func:`localisation_by_scale` at opacity 1, smoothed by
    ``score.sigma``) and ``far_residual_ratio`` (:func:`far_residual_ratio` at opacity 1); ``flips``: the
    ``score.flips`` the map was averaged over.
    """
    check_int(probes, "probes", minimum=1)
    model = pipe.model.eval()
    batch = pipe.score_config.batch_size
    x = x.to(pipe.device, torch.float32)  # (B, C, H, W)

    def f(t: torch.Tensor) -> torch.Tensor:
        return pipe.reconstruct(t)

    def mapped(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([f(c) for c in t.split(batch)])

    def tick(name: str) -> None:
        if step is not None:
            step(name)

    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    values = x[0].numel()
    defects = {kind: make_defects(x.cpu(), kind=kind, seed=seed + i) for i, kind in enumerate(kinds)}
    defects = {k: DefectBatch(d.x.to(pipe.device), d.mask.to(pipe.device), d.content.to(pipe.device), k)
               for k, d in defects.items()}
    result: dict[str, Any] = {"num_images": int(x.shape[0]), "values_per_image": int(values),
                              "flips": pipe.score_config.flips,
                              "idempotence": {"clean": summarise(idempotence_ratio(mapped, x))}}
    for kind, d in defects.items():
        result["idempotence"][kind] = summarise(idempotence_ratio(mapped, d.at(1.0)))
    tick("idempotence")
    est, se = [], []
    for i in range(0, x.shape[0], batch):
        e, s = hutchinson_frobenius(f, x[i:i + batch], probes=probes, generator=generator)
        est.append(e.cpu())
        se.append(s.cpu())
    frob, frob_se = torch.cat(est), torch.cat(se)  # (B,), (B,)
    clean_excess = _per_image(lambda c, r: jacobian_excess(f, c, probes=probes, generator=generator), x, None,
                              batch=batch)
    result["jacobian"] = {"probes": probes, "frobenius_sq": summarise(frob),
                          "frobenius_sq_mean_standard_error": float(frob_se.pow(2).sum().sqrt() / frob.numel()),
                          "frobenius_sq_per_value": summarise(frob / values),
                          "excess_clean": summarise(clean_excess), "excess_outside_defect": {}}
    tick("jacobian (clean)")
    result["defects"] = {}
    for kind, d in defects.items():
        outside = _per_image(lambda c, r: jacobian_excess(f, c, region=r, probes=probes, generator=generator),
                             d.at(1.0), 1 - d.mask, batch=batch)
        result["jacobian"]["excess_outside_defect"][kind] = summarise(outside)
        rows = conservation_curve(mapped, d, opacities=opacities)
        for row, value in zip(rows, detection_aurocs(pipe, d, opacities=opacities)):
            row["detection_auroc"] = value
        result["defects"][kind] = {"mask_fraction": float(d.mask.mean()), "conservation": rows,
                                   "gates": gate_aurocs(model, d),
                                   "localisation": localisation_by_scale(mapped, d, sigma=pipe.score_config.sigma),
                                   "far_residual_ratio": far_residual_ratio(mapped, d)}
        tick(kind)
    return result
