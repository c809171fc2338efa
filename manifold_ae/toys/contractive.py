"""The contractive toy experiments (T5): trained reconstruction-contractive AEs and the Jacobian measurements.

If f fixes M pointwise then ``J_f(p) P_T = P_T`` on M and ``‖J_f(p)‖_F² = d + ‖J_f(p) P_N‖_F² ≥ d``, with
equality iff ``J_f(p) = P_T(p) = Dπ(p)`` (docs/theory.md, T5). These pieces measure it: exact Jacobians of
constructed maps and of trained models on M, the rescaling loophole of an encoder-only penalty, the behaviour
off M, and the error of Hutchinson's estimate of ``‖J_f‖_F²``.
"""
from __future__ import annotations

import copy

import torch

from manifold_ae.loop import fit
from manifold_ae.manifolds import Manifold
from manifold_ae.models import MLPAutoencoder
from manifold_ae.objectives import ReconstructionContractive, jacobian_frobenius_sq
from manifold_ae.theory import jacobian
from manifold_ae.toys.retractions import Map

__all__ = ["contractive_mlp", "train_contractive", "float_map", "reconstructor_stats", "jacobian_stats",
           "rescale_code", "off_manifold_profile", "hutchinson_errors"]


def contractive_mlp(ambient_dim: int, *, width: int = 64) -> MLPAutoencoder:
    """The tanh MLP (two hidden layers of ``width``, no bottleneck) of the T5 sweep and its DAE baseline."""
    return MLPAutoencoder(ambient_dim, hidden=(width, width), activation="tanh")


def train_contractive(x: torch.Tensor, *, lam: float, steps: int, seed: int) -> MLPAutoencoder:
    """MLP AE trained with ``ReconstructionContractive(lam)`` (Hutchinson, 1 probe) on points x (N, n) of M (T5b).

    The 1-probe Hutchinson penalty is unbiased, so the expected loss and its minimiser are those of the exact
    penalty, at a fraction of the cost.
    """
    torch.manual_seed(seed)
    model = contractive_mlp(x.shape[1])
    objective = ReconstructionContractive(model, lam=lam, estimator="hutchinson", probes=1)
    fit(objective, x.float(), steps=steps, batch_size=256, lr=1e-2, seed=seed)
    return model


def float_map(model: torch.nn.Module) -> Map:
    """A float32 model as a float64 map (..., n) -> (..., n), for comparison with float64 oracles."""
    return lambda x: model(x.float()).double()


def reconstructor_stats(f: Map, manifold: Manifold, p: torch.Tensor, *,
                        expected_excess: torch.Tensor | None = None) -> dict[str, float]:
    """Exact Jacobians of f at points p (P, n) of M against ``‖J‖² = d + ‖J P_N‖²`` (T5a).

    Parameters
    ----------
    f : map (P, n) -> (P, n) fixing M
    manifold : Manifold
    p : (P, n) tensor of points of M
    expected_excess : (P,) tensor, optional
        A closed form of ``‖J‖_F² − d`` (``retractions.skew_excess``, ``radial_excess``; zeros for π); adds
        ``max_excess_error``, the largest deviation of the autograd excess from it.

    Returns
    -------
    dict of float
        ``fixes_M`` max ‖f(p) − p‖, ``max_JPT_minus_PT`` max entry of |J P_T − P_T|, ``max_identity_error``
        max |‖J‖² − d − ‖J P_N‖²|, ``min_excess`` / ``mean_excess`` of ‖J‖² − d, ``max_gap_to_PT`` max ‖J − P_T‖_F.
    """
    jac = jacobian(f, p)  # (P, n, n)
    p_t = manifold.tangent_projector(p)  # (P, n, n)
    p_n = torch.eye(manifold.ambient_dim, dtype=p.dtype) - p_t
    d = manifold.intrinsic_dim
    frob = (jac ** 2).sum((-1, -2))  # (P,)
    normal_part = ((jac @ p_n) ** 2).sum((-1, -2))  # (P,)  ‖J‖² = d + ‖J P_N‖² when J P_T = P_T  (T5)
    stats = {"fixes_M": float((f(p) - p).norm(dim=-1).max()),
             "max_JPT_minus_PT": float((jac @ p_t - p_t).abs().max()),
             "max_identity_error": float((frob - d - normal_part).abs().max()),
             "min_excess": float((frob - d).min()), "mean_excess": float((frob - d).mean()),
             "max_gap_to_PT": float(torch.linalg.matrix_norm(jac - p_t).max())}
    if expected_excess is not None:
        if expected_excess.shape != frob.shape:
            raise ValueError(f"expected_excess must have shape {tuple(frob.shape)} (one value per point), got "
                             f"{tuple(expected_excess.shape)}")
        stats["max_excess_error"] = float((frob - d - expected_excess).abs().max())
    return stats


def jacobian_stats(model: torch.nn.Module, manifold: Manifold, p: torch.Tensor) -> dict[str, float]:
    """Mean over points p (P, n) on M of ``‖J_f − P_T‖_F``, its tangential and normal parts, ``‖J_f‖_F²``, and
    the reconstruction error ``‖f(p) − p‖`` (T5b); ``singular_values`` (P, n) of J_f."""
    jac = jacobian(lambda v: model(v), p.float()).detach().double()  # (P, n, n)
    p_t = manifold.tangent_projector(p)
    p_n = torch.eye(manifold.ambient_dim, dtype=p.dtype) - p_t
    with torch.no_grad():
        rec = (model(p.float()).double() - p).norm(dim=-1)
    return {"gap": float(torch.linalg.matrix_norm(jac - p_t).mean()),
            "gap_tangential": float(torch.linalg.matrix_norm((jac - p_t) @ p_t).mean()),
            "gap_normal": float(torch.linalg.matrix_norm(jac @ p_n).mean()),
            "frobenius_sq": float((jac ** 2).sum((-1, -2)).mean()), "reconstruction": float(rec.mean()),
            "singular_values": torch.linalg.svdvals(jac)}


def rescale_code(model: MLPAutoencoder, alpha: float) -> MLPAutoencoder:
    """Copy of an untied model with a linear bottleneck: code × α, decoder's first layer × 1/α (T5c).

    ``decode(encode(x))`` is unchanged exactly, while ``‖J_encode‖_F²`` is multiplied by α².
    """
    if model.tied or model.bottleneck is None:
        raise ValueError("rescale_code needs an untied MLPAutoencoder with a linear bottleneck "
                         f"(tied={model.tied}, bottleneck={model.bottleneck})")
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.encoder[-1].weight.mul_(alpha)
        scaled.encoder[-1].bias.mul_(alpha)
        scaled.decoder[0].weight.div_(alpha)  # f unchanged, ‖J_encode‖² × α²  (T5c)
    return scaled


def off_manifold_profile(f: Map, manifold: Manifold, ts: tuple[float, ...], *, num: int,
                         seed: int) -> list[float]:
    """Mean ``‖f(p + tν) − p‖`` over ``num`` foot points p and random unit normals ν, for each t (T5d)."""
    g = torch.Generator().manual_seed(seed)
    p, _ = manifold.sample(num, generator=g)
    nu = (manifold.normal_basis(p) @ torch.randn(num, manifold.ambient_dim - manifold.intrinsic_dim, 1,
                                                 generator=g, dtype=p.dtype)).squeeze(-1)  # (num, n)
    nu = nu / nu.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        return [float((f(p + t * nu) - p).norm(dim=-1).mean()) for t in ts]


def hutchinson_errors(model: torch.nn.Module, x: torch.Tensor, probes: tuple[int, ...], *, repeats: int,
                      seed: int) -> tuple[float, list[float]]:
    """Exact batch-mean ``‖J_f‖_F²`` over x (B, n) and the RMS relative error of the Hutchinson estimate per
    probe count (Rademacher probes, vector-Jacobian mode) over ``repeats`` draws (T5e)."""
    with torch.no_grad():
        exact = float(jacobian_frobenius_sq(model, x, estimator="exact").mean())
        errors = []
        for k in probes:
            g = torch.Generator().manual_seed(seed + k)
            est = torch.tensor([float(jacobian_frobenius_sq(model, x, estimator="hutchinson", probes=k,
                                                            generator=g).mean()) for _ in range(repeats)])
            errors.append(float(((est - exact) / exact).pow(2).mean().sqrt()))
    return exact, errors
