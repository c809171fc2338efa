"""Detectors: scikit-learn's estimator checks, and a circle-anomaly AUROC sanity check against the exact
distance (T8)."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from manifold_ae.toys.detectors import AutoencoderDetector, ProjectionDetector
from manifold_ae.manifolds import make_manifold


@parametrize_with_checks([
    AutoencoderDetector(steps=3, hidden=(8,), batch_size=32),
    AutoencoderDetector("denoising", steps=3, hidden=(8,), batch_size=32),
    AutoencoderDetector("contractive", steps=2, hidden=(8,), batch_size=16),
    ProjectionDetector(),
    ProjectionDetector(n_components=1),
])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _circle_anomaly_task(seed: int, n: int):
    """Uniform points on a unit circle in a random 2-plane of R^n; anomalies 0.25..0.5 off it along normals."""
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.normal(size=(n, n)))[0]

    def on_circle(num):
        t = rng.uniform(0, 2 * np.pi, num)
        return np.c_[np.cos(t), np.sin(t), np.zeros((num, n - 2))]

    train, normal = on_circle(1000) @ Q.T, on_circle(200)
    nu = rng.normal(size=(200, n))
    nu[:, :2] = 0  # normal directions of the circle: the n - 2 axes off its plane
    nu /= np.linalg.norm(nu, axis=1, keepdims=True)
    anomalous = on_circle(200) + nu * rng.uniform(0.25, 0.5, (200, 1))
    X_test = np.vstack([normal, anomalous]) @ Q.T
    is_anomaly = np.r_[np.zeros(200), np.ones(200)]
    return Q, train, X_test, is_anomaly


@pytest.mark.parametrize("objective", ["denoising", "selfsupervised"])
def test_circle_anomalies_autoencoder_close_to_exact_distance_oracle(objective):
    Q, train, X_test, is_anomaly = _circle_anomaly_task(0, n=6)
    oracle = ProjectionDetector(make_manifold("circle", Q=torch.as_tensor(Q[:, :2]))).fit(train)
    # independent reference for the oracle's score: in the circle's frame, sqrt((|y_12| - 1)^2 + |y_rest|^2)
    y = X_test @ Q
    reference = np.sqrt((np.linalg.norm(y[:, :2], axis=1) - 1) ** 2 + (y[:, 2:] ** 2).sum(1))
    np.testing.assert_allclose(-oracle.score_samples(X_test), reference, atol=1e-12)
    auc_oracle = roc_auc_score(is_anomaly, -oracle.score_samples(X_test))
    assert auc_oracle == 1.0

    detector = AutoencoderDetector(objective, sigma=0.2, steps=1000, standardize=False, random_state=0).fit(train)
    auc = roc_auc_score(is_anomaly, -detector.score_samples(X_test))
    assert auc >= auc_oracle - 0.02, auc


def test_projection_detector_default_subspace_is_pca_distance():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(5, 2)))[0]  # (5, 2)
    X = rng.normal(size=(300, 2)) @ basis.T * 3 + 0.01 * rng.normal(size=(300, 5)) + 1.0
    det = ProjectionDetector(n_components=2).fit(X)
    Y = rng.normal(size=(20, 5))
    # reference: distance to the affine plane through the mean spanned by the top-2 eigenvectors of the covariance
    evals, evecs = np.linalg.eigh(np.cov(X.T))
    U = evecs[:, -2:]
    c = Y - X.mean(0)
    expected = np.linalg.norm(c - c @ U @ U.T, axis=1)
    np.testing.assert_allclose(-det.score_samples(Y), expected, rtol=1e-10)
    # a float n_components picks the smallest dimension explaining that variance fraction
    assert ProjectionDetector(n_components=0.99).fit(X).n_components_ == 2


def test_contamination_sets_fraction_of_training_outliers():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    det = ProjectionDetector(n_components=1, contamination=0.2).fit(X)
    assert np.sum(det.predict(X) == -1) == 40
    np.testing.assert_allclose(det.decision_function(X), det.score_samples(X) - det.offset_)


@pytest.mark.parametrize("kwargs, match", [
    ({"objective": "vae"}, "objective must be one of"),
    ({"contamination": 0.7}, "contamination must lie in"),
    ({"steps": 0}, "steps must be an integer"),
    ({"objective": "denoising", "sigma": -1.0}, "sigma must be > 0"),
    ({"mask_fraction": 0.0}, "mask_fraction must lie in"),
])
def test_autoencoder_detector_bad_parameters(kwargs, match):
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=match):
        AutoencoderDetector(**{"steps": 2, **kwargs}).fit(X)


def test_projection_detector_bad_input():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="manifold.ambient_dim is 2"):
        ProjectionDetector(make_manifold("circle")).fit(X)
    with pytest.raises(ValueError, match=r"n_components must be an integer in \[0, 3\]"):
        ProjectionDetector(n_components=4).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        ProjectionDetector().fit(np.full((4, 3), np.nan))


def test_autoencoder_detector_is_reproducible_and_leaves_global_rng_alone():
    X = np.random.default_rng(0).normal(size=(50, 3))
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = AutoencoderDetector(steps=20, hidden=(8,), random_state=7).fit(X).score_samples(X)
    after = torch.rand(3)
    b = AutoencoderDetector(steps=20, hidden=(8,), random_state=7).fit(X).score_samples(X)
    np.testing.assert_array_equal(a, b)
    torch.testing.assert_close(before, after)


@pytest.mark.parametrize("name, params", [("circle", {"radius": 2.0}), ("flat_torus", {"a": 1.0, "b": 0.7})])
def test_projection_detector_with_a_library_manifold_scores_minus_normal_ray_distance(name, params):
    manifold = make_manifold(name, ambient_dim=7, seed=3, **params)
    train, _ = manifold.sample(100, generator=torch.Generator().manual_seed(0))
    ray = manifold.sample_normal_ray(50, generator=torch.Generator().manual_seed(1))  # dist(x, M) = t exactly
    det = ProjectionDetector(manifold).fit(train.numpy())
    np.testing.assert_allclose(det.score_samples(ray.x.numpy()), -ray.t.numpy(), atol=1e-9)
    np.testing.assert_allclose(det.score_samples(train.numpy()), 0.0, atol=1e-9)
