"""PCA reconstruction baseline (T2): the projection onto the principal affine subspace, scored like every model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from manifold_ae.images.baselines import PCAReconstruction, fit_pca, pca_state, stack_images
from manifold_ae.images.config import ScoreConfig
from manifold_ae.images.pipeline import Pipeline


def low_rank_images(n: int, *, rank: int, shape=(1, 6, 5), noise: float = 0.0, seed: int = 0,
                    coef_seed: int | None = None) -> torch.Tensor:
    """n images on a rank-dimensional affine subspace (basis from ``seed``) plus optional isotropic noise.

    Returns (n, C, H, W) float64; ``coef_seed`` draws new coefficients on the same subspace.
    """
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    basis = rng.normal(size=(rank, d))
    coef_rng = rng if coef_seed is None else np.random.default_rng(coef_seed)
    x = 0.5 + 0.1 * coef_rng.normal(size=(n, rank)) @ basis / np.sqrt(d) + noise * rng.normal(size=(n, d))
    return torch.from_numpy(x.reshape(n, *shape))


def numpy_projection(train: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """Reference: mean + (x - mean) V_k^T V_k with V from numpy's SVD of the centred training matrix."""
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    v = vt[:k]  # (k, D)
    return mean + (x - mean) @ v.T @ v


def test_pca_reconstruction_matches_an_svd_projection_written_here():
    train = low_rank_images(40, rank=8, noise=0.02, seed=1)
    test = low_rank_images(7, rank=8, noise=0.05, seed=2)
    pca = fit_pca(train, n_components=5)
    ref = numpy_projection(train.reshape(40, -1).numpy(), test.reshape(7, -1).numpy(), 5)
    got = pca(test.float()).reshape(7, -1).double().numpy()
    np.testing.assert_allclose(got, ref, atol=2e-5)
    assert pca(test.float()).shape == (7, 1, 6, 5)


def test_more_pixels_than_images_matches_numpy_and_reports_unbiased_variances():
    # D = 2 * 24 * 20 = 960 pixels, N = 25 images: the image case, where the D x D covariance is never formed
    train = low_rank_images(25, rank=6, noise=0.03, shape=(2, 24, 20), seed=8)
    test = low_rank_images(6, rank=6, noise=0.1, shape=(2, 24, 20), seed=9)
    flat = train.reshape(25, -1).numpy()
    pca = fit_pca(train, n_components=7)
    ref = numpy_projection(flat, test.reshape(6, -1).numpy(), 7)
    np.testing.assert_allclose(pca(test.float()).reshape(6, -1).double().numpy(), ref, atol=2e-5)
    gram = (flat - flat.mean(0)) @ (flat - flat.mean(0)).T / 24  # N x N, same non-zero spectrum as np.cov
    ref_var = np.sort(np.linalg.eigvalsh(gram))[::-1][:7]
    np.testing.assert_allclose(pca.explained_variance_.double().numpy(), ref_var, rtol=1e-5)


def test_training_residual_equals_the_discarded_eigenvalues():
    # closed form (T2): mean over images of ||x - P x||^2 = (N - 1)/N * sum of the discarded covariance eigenvalues
    train = low_rank_images(60, rank=10, noise=0.03, seed=3)
    flat = train.reshape(60, -1).numpy()
    eig = np.sort(np.linalg.eigvalsh(np.cov(flat, rowvar=False)))[::-1]
    k = 4
    pca = fit_pca(train, n_components=k)
    residual = ((pca(train.float()).double() - train) ** 2).reshape(60, -1).sum(1).mean().item()
    assert residual == pytest.approx(59 / 60 * eig[k:].sum(), rel=1e-4)


def test_images_on_a_k_dimensional_affine_subspace_are_reconstructed_exactly():
    train = low_rank_images(30, rank=3, seed=4)
    new = low_rank_images(5, rank=3, seed=4, coef_seed=99)  # same subspace, new coefficients
    pca = fit_pca(train, n_components=3)
    np.testing.assert_allclose(pca(train.float()).double().numpy(), train.numpy(), atol=1e-5)
    np.testing.assert_allclose(pca(new.float()).double().numpy(), new.numpy(), atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(k=st.integers(1, 6), seed=st.integers(0, 1000))
def test_projection_is_idempotent_and_its_residual_is_orthogonal_to_the_components(k, seed):
    train = low_rank_images(20, rank=6, noise=0.05, seed=seed)
    pca = fit_pca(train, n_components=k)
    x = low_rank_images(4, rank=6, noise=0.2, seed=seed + 1).float()
    once = pca(x)
    np.testing.assert_allclose(pca(once).numpy(), once.numpy(), atol=2e-5)
    residual = (x - once).reshape(4, -1)  # (B, D)
    assert torch.allclose(residual @ pca.components.T, torch.zeros(4, k), atol=2e-5)
    gram = pca.components @ pca.components.T
    assert torch.allclose(gram, torch.eye(k), atol=1e-5)


def test_pipeline_scores_the_pca_baseline_like_a_reference_written_here():
    train = low_rank_images(30, rank=5, noise=0.02, shape=(1, 16, 16), seed=5).float().clamp(0, 1)
    pca = fit_pca(train, n_components=4)
    x = low_rank_images(3, rank=5, noise=0.1, shape=(1, 16, 16), seed=6).float().clamp(0, 1)
    pipe = Pipeline(pca, image_size=16, channels=1, score=ScoreConfig(sigma=1.5, reduction="max"))
    out = pipe(x)
    ref_residual = ((x - pca(x)) ** 2).mean(1).double().numpy()  # (B, H, W)
    ref_heat = np.stack([gaussian_filter(r, 1.5, mode="reflect", truncate=4.0) for r in ref_residual])
    np.testing.assert_allclose(out.heatmap.numpy(), ref_heat, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out.score.numpy(), ref_heat.reshape(3, -1).max(1), rtol=1e-4, atol=1e-7)


def test_pipeline_topk_score_is_the_mean_of_the_configured_pixel_count():
    train = low_rank_images(30, rank=5, noise=0.02, shape=(1, 16, 16), seed=5).float().clamp(0, 1)
    pca = fit_pca(train, n_components=4)
    x = low_rank_images(3, rank=5, noise=0.1, shape=(1, 16, 16), seed=6).float().clamp(0, 1)
    out = Pipeline(pca, image_size=16, channels=1, score=ScoreConfig(sigma=0.0, reduction="topk", topk=5))(x)
    residual = ((x - pca(x)) ** 2).mean(1).reshape(3, -1).double().numpy()  # (B, H * W), no smoothing
    ref = np.sort(residual, axis=1)[:, ::-1][:, :5].mean(1)
    np.testing.assert_allclose(out.score.numpy(), ref, rtol=1e-5)
    assert not np.allclose(ref, residual.max(1))  # the reduction matters here


def test_state_round_trip_and_dataset_input():
    train = low_rank_images(12, rank=3, noise=0.01, seed=7).float()
    dataset = [{"image": img} for img in train]
    pca = fit_pca(dataset, n_components=2)
    assert torch.equal(stack_images(dataset), train)
    state = pca_state(pca)
    again = PCAReconstruction(state["mean"], state["components"], shape=tuple(state["shape"]))
    assert torch.equal(again(train), pca(train))
    assert again.n_components == 2 and again.shape == (1, 6, 5)


def test_bad_inputs_name_the_argument_and_the_expectation():
    train = low_rank_images(5, rank=2).float()
    with pytest.raises(ValueError, match=r"n_components must .*5"):
        fit_pca(train, n_components=6)
    with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\)"):
        fit_pca(train[0], n_components=2)
    with pytest.raises(ValueError, match="empty dataset"):
        stack_images([])
    pca = fit_pca(train, n_components=2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 6, 5\), got \(2, 1, 5, 6\)"):
        pca(torch.zeros(2, 1, 5, 6))
    with pytest.raises(ValueError, match=r"components must have shape \(k, D\)"):
        PCAReconstruction(torch.zeros(30), torch.zeros(2, 29), shape=(1, 6, 5))
    with pytest.raises(ValueError, match=r"shape \(1, 5, 5\) has 25 values; expected D = 30"):
        PCAReconstruction(torch.zeros(30), torch.zeros(2, 30), shape=(1, 5, 5))
