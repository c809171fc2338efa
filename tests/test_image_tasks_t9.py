"""T9 items 5-6 and T10's building blocks (toys/image_tasks.py) against closed forms and brute force computed here:
the identity's and π_S's in-painting ratios, PCA = the band-pass, the corrupted images' construction, the tie rule
of the identity's AUROC, the oracle AUROC against a numpy brute force, and the per-process memo of the trainers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from manifold_ae.images.diagnose import hutchinson_frobenius
from manifold_ae.toys import image_tasks


@pytest.fixture(scope="module")
def M():
    return image_tasks.image_manifolds()["translation"]


@pytest.fixture(scope="module")
def bank(M):
    return image_tasks.patch_bank(M, seed=1)


@pytest.fixture(scope="module")
def test_set(M, bank):
    return image_tasks.corrupted_images(M, bank=bank, num=12, seed=5)


def test_corrupted_images_paste_one_rectangle_of_another_point_of_M(M, test_set):
    x, x_hat, mask, content = test_set.x, test_set.x_hat, test_set.mask, test_set.content
    N = M.size
    for m in mask.reshape(-1, N, N).numpy():
        rows, cols = np.nonzero(m)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 8 <= h <= 11 and 8 <= w <= 11                  # sides round(U(0.5, 0.7) · 16)
        assert m.sum() == h * w                               # one full rectangle, nothing else
    assert torch.equal(x_hat * (1 - mask), x * (1 - mask))    # untouched outside
    assert torch.allclose(x_hat * mask, content * mask)       # the content inside
    assert float(M.distance(content).max()) < 1e-9            # an integer shift of a point of M lies on M


def test_in_painting_measures_of_the_identity_and_of_pi_s_are_their_closed_forms(M, test_set):
    def masked(x):
        return M.masked_project(x, test_set.mask).point

    table = image_tasks.inpainting_measures(M, {"pi_s": masked}, test_set)
    assert table["identity"]["iota"] == pytest.approx(1.0, abs=1e-15)
    assert table["identity"]["outside"] == 0.0 and table["identity"]["outside_far"] == 0.0
    assert table["identity"]["q"] >= 1.0                       # π is the nearest point of M to x̂
    assert table["pi_s"]["iota"] == 0.0 and table["pi_s"]["q"] == 0.0
    assert table["pi_s"]["outside"] < 1e-9 and table["pi_s"]["outside_far"] < 1e-9  # π_S(x̂) = x outside the rectangle
    assert table["references"]["pi_s_to_clean"] < 1e-9         # the kept pixels fix the shift
    # π's in-painting ratio from its definition, computed here
    pi = M.project(test_set.x_hat)
    expect = float((pi - test_set.x).pow(2).sum(-1).mean().sqrt() / (test_set.x_hat - test_set.x).pow(2).sum(-1)
                   .mean().sqrt())
    assert table["projection"]["iota"] == pytest.approx(expect, rel=1e-9)
    assert "q" not in table["projection"]


def test_pca_of_samples_of_M_is_the_band_pass_computed_in_numpy(M):
    p, _ = M.sample(300, generator=torch.Generator().manual_seed(2))
    rank = image_tasks.support_size(M)
    assert rank == (2 * image_tasks.TEMPLATE_BANDWIDTH + 1) ** 2 - 1
    x = torch.randn(5, M.ambient_dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    spec = np.fft.fft2(M.template.numpy())
    band = np.abs(spec) > 1e-10 * np.abs(spec).max()
    expect = np.fft.ifft2(np.fft.fft2(x.numpy().reshape(5, 16, 16)) * band).real.reshape(5, -1)
    assert np.abs(image_tasks.pca_map(p, rank=rank)(x).numpy() - expect).max() < 1e-10
    assert np.abs(image_tasks.band_pass_map(M)(x).numpy() - expect).max() < 1e-12


def test_anomaly_aurocs_identity_ties_and_the_oracle_against_a_numpy_brute_force(M, bank):
    aurocs = image_tasks.anomaly_aurocs(M, {}, bank=bank, num=10, noise=0.1, seed=7, brute_nodes=64 ** 2)
    assert aurocs["identity"] == 0.5                            # every score 0: ties count 1/2
    # the same images, rebuilt here, scored by a brute force over quarter-pixel shifts by roll + FFT interpolation
    gen = torch.Generator().manual_seed(7)
    p, _ = M.sample(10, generator=gen)
    anomalous = image_tasks.corrupted_images(M, bank=bank, num=10, seed=8).x_hat
    x = torch.cat([p, anomalous])
    x = (x + 0.1 * torch.randn(x.shape, generator=gen, dtype=x.dtype)).numpy().reshape(20, 16, 16)
    G = np.fft.fft2(M.template.numpy())
    k = np.fft.fftfreq(16, d=1 / 16)
    best = np.full(20, np.inf)
    for a in np.arange(0, 16, 0.25):
        for b in np.arange(0, 16, 0.25):
            shifted = np.fft.ifft2(G * np.exp(-2j * np.pi * (k[:, None] * a + k[None, :] * b) / 16)).real
            best = np.minimum(best, ((x - shifted) ** 2).sum((1, 2)))
    labels = np.r_[np.zeros(10), np.ones(10)]
    assert aurocs["oracle"] == pytest.approx(roc_auc_score(labels, np.sqrt(best)), abs=0.02)
    assert aurocs["brute_force"] == pytest.approx(roc_auc_score(labels, np.sqrt(best)), abs=1e-12)


def test_hutchinson_of_the_exact_projection_is_d_and_of_pca_its_rank(M):
    p, _ = M.sample(8, generator=torch.Generator().manual_seed(4))
    images = p.reshape(-1, 1, 16, 16)
    g = torch.Generator().manual_seed(0)
    est, se = hutchinson_frobenius(image_tasks.projection_map(M), images, probes=16, generator=g)
    mean_se = float(se.pow(2).sum().sqrt() / 8)
    assert abs(float(est.mean()) - 2.0) < 4 * max(mean_se, 0.05)   # ‖P_T‖_F² = d = 2
    band = image_tasks.band_pass_map(M)
    est_b, _ = hutchinson_frobenius(lambda t: band(t.reshape(8, -1)).reshape(t.shape), images, probes=8,
                                    generator=g)
    assert abs(float(est_b.mean()) - 48) < 4 * math.sqrt(2 * 48 / 64)   # Var(vᵀPv) <= 2 rank for Rademacher v


def test_trained_once_trains_each_recipe_once(M):
    calls = []

    def train(manifold, *, steps):
        calls.append(steps)
        return object()

    first = image_tasks.trained_once(train, M, steps=3)
    assert image_tasks.trained_once(train, M, steps=3) is first
    assert image_tasks.trained_once(train, M, steps=4) is not first
    assert calls == [3, 4]


def test_inpainter_objective_is_checked(M):
    with pytest.raises(ValueError, match="objective"):
        image_tasks.train_unet_inpainter(M, objective="denoising", width=2, steps=1, batch_size=2, num_train=2,
                                         seed=0)


def test_dilate_periodic_by_hand():
    from manifold_ae.toys.image_tasks import dilate_periodic

    mask = torch.zeros(1, 36)
    mask[0, 0] = 1.0  # pixel (0, 0) of a 6x6 grid: its 5x5 periodic neighbourhood is rows/cols {4, 5, 0, 1, 2}
    grown = dilate_periodic(mask, size=6, radius=2).reshape(6, 6)
    expected = torch.zeros(6, 6)
    for r in (4, 5, 0, 1, 2):
        for c in (4, 5, 0, 1, 2):
            expected[r, c] = 1.0
    assert torch.equal(grown, expected)
