"""Objectives: finite losses and gradients on vectors and images, exact and Hutchinson Jacobian penalties
against independent references, the T3 identity by Monte Carlo, and Rifai's penalty in closed form."""
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from manifold_ae.corruptions.base import Identity, MaskedCorruption
from manifold_ae.corruptions.vector import ConstantFill, GaussianFill, GaussianNoise, RandomSubsetMask
from manifold_ae.models import LinearAutoencoder, MLPAutoencoder
from manifold_ae.objectives import (Contractive, Denoising, Reconstruction, ReconstructionContractive,
                                    SelfSupervised, jacobian_frobenius_sq)
from manifold_ae.theory import jacobian

# torch loads its forward-mode (jvp) decompositions with torch.jit.script, which warns on import
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

f64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyConvAE(nn.Module):
    """A two-layer convolutional autoencoder on (B, 2, H, W) images, with encode/decode."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(2, 3, 3, padding=1, dtype=f64)
        self.dec = nn.Conv2d(3, 2, 3, padding=1, dtype=f64)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.enc(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class SpatialMaskCorruption:
    """Zero a random half of the pixels in all channels; mask of shape (B, 1, H, W) (broadcast like images)."""

    def __call__(self, x, generator=None):
        m = (torch.rand(x.shape[0], 1, *x.shape[2:], generator=generator, dtype=x.dtype) < 0.5).to(x.dtype)
        return x * (1 - m), m


def _objectives(model, image: bool):
    corruption = (SpatialMaskCorruption() if image
                  else MaskedCorruption(RandomSubsetMask(0.3), GaussianFill(1.0)))
    return [
        Reconstruction(model),
        Denoising(model, sigma=0.1),
        SelfSupervised(model, corruption=corruption, weight_corrupted=2.0),
        SelfSupervised(model, corruption=MaskedCorruption(RandomSubsetMask(0.3), GaussianFill(1.0))),
        Contractive(model, lam=0.5),
        Contractive(model, lam=0.5, estimator="hutchinson", probes=2),
        ReconstructionContractive(model, lam=0.5),
        ReconstructionContractive(model, lam=0.5, estimator="hutchinson", probes=2),
        ReconstructionContractive(model, lam=0.5, estimator="hutchinson", mode="jvp", distribution="gaussian"),
    ]


@pytest.mark.parametrize("image", [False, True], ids=["vectors", "images"])
def test_losses_finite_and_gradients_reach_every_parameter(image):
    torch.manual_seed(0)
    if image:
        model, x = TinyConvAE(), torch.rand(3, 2, 5, 5, dtype=f64)
    else:
        model, x = MLPAutoencoder(6, hidden=(8, 8), bottleneck=3, dtype=f64), torch.randn(5, 6, dtype=f64)
    for objective in _objectives(model, image):
        model.zero_grad(set_to_none=True)
        loss = objective(x)
        assert loss.ndim == 0 and torch.isfinite(loss), objective
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, (objective, name)


def _finite_difference_jacobian(f, x, h=1e-5):
    """Central differences, one sample at a time: (B, n_out, n_in) for vectors x of shape (B, n_in)."""
    B, n = x.shape
    J = torch.empty(B, f(x[:1]).shape[-1], n, dtype=x.dtype)
    for i in range(n):
        e = torch.zeros(n, dtype=x.dtype)
        e[i] = h
        J[:, :, i] = (f(x + e) - f(x - e)) / (2 * h)
    return J


def test_exact_penalty_matches_finite_differences():
    torch.manual_seed(1)
    model = MLPAutoencoder(5, hidden=(7, 6), bottleneck=2, activation="tanh", dtype=f64)
    x = torch.randn(4, 5, dtype=f64)
    with torch.no_grad():
        J_ref = _finite_difference_jacobian(model, x)  # (B, 5, 5)
        Je_ref = _finite_difference_jacobian(model.encode, x)  # (B, 2, 5)
    torch.testing.assert_close(jacobian(model, x).detach(), J_ref, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(jacobian_frobenius_sq(model, x).detach(), J_ref.pow(2).sum((1, 2)), rtol=1e-7, atol=0)
    # the objectives' losses: mean squared error + lam * ||J||^2 / D, D = 5 features
    lam = 0.3
    mse = (model(x) - x).pow(2).mean()
    expected_rc = mse + lam * J_ref.pow(2).sum((1, 2)).mean() / 5
    expected_cae = mse + lam * Je_ref.pow(2).sum((1, 2)).mean() / 5
    torch.testing.assert_close(ReconstructionContractive(model, lam=lam)(x).detach(), expected_rc, rtol=1e-8, atol=0)
    torch.testing.assert_close(Contractive(model, lam=lam)(x).detach(), expected_cae, rtol=1e-8, atol=0)


def test_exact_penalty_on_images_matches_autograd_jacobian():
    torch.manual_seed(2)
    model = TinyConvAE()
    x = torch.rand(2, 2, 3, 3, dtype=f64)
    ref = torch.stack([torch.autograd.functional.jacobian(lambda xi: model(xi[None])[0], xi).pow(2).sum()
                       for xi in x])
    torch.testing.assert_close(jacobian_frobenius_sq(model, x).detach(), ref, rtol=1e-10, atol=0)


@pytest.mark.parametrize("mode, distribution", [("vjp", "rademacher"), ("vjp", "gaussian"),
                                                ("jvp", "rademacher"), ("jvp", "gaussian")])
def test_hutchinson_is_unbiased(mode, distribution):
    torch.manual_seed(3)
    model = MLPAutoencoder(6, hidden=(10,), activation="tanh", dtype=f64)
    x = torch.randn(3, 6, dtype=f64) * 2
    exact = jacobian_frobenius_sq(model, x).detach()  # (3,)
    K = 4000
    single = jacobian_frobenius_sq(model, x.repeat(K, 1), estimator="hutchinson", probes=1, mode=mode,
                                   distribution=distribution, generator=gen(4)).detach().reshape(K, 3)
    mean, se = single.mean(0), single.std(0) / math.sqrt(K)
    assert torch.all((mean - exact).abs() < 4 * se), (mean, exact, se)
    assert torch.all(se < 0.1 * exact)  # the test has power: the standard error is small against the value


def test_hutchinson_on_images_is_unbiased():
    torch.manual_seed(5)
    model = TinyConvAE()
    x = torch.rand(2, 2, 4, 4, dtype=f64)
    exact = jacobian_frobenius_sq(model, x).detach()
    K = 3000
    single = jacobian_frobenius_sq(model, x.repeat(K, 1, 1, 1), estimator="hutchinson",
                                   generator=gen(6)).detach().reshape(K, 2)
    mean, se = single.mean(0), single.std(0) / math.sqrt(K)
    assert torch.all((mean - exact).abs() < 4 * se), (mean, exact, se)


def test_hutchinson_probes_average_and_work_without_grad():
    torch.manual_seed(7)
    model = MLPAutoencoder(4, hidden=(5,), dtype=f64)
    x = torch.randn(2, 4, dtype=f64)
    many = jacobian_frobenius_sq(model, x, estimator="hutchinson", probes=8, generator=gen(1))
    g = gen(1)  # the same probes, drawn one call at a time
    successive = torch.stack([jacobian_frobenius_sq(model, x, estimator="hutchinson", generator=g)
                              for _ in range(8)]).mean(0)
    torch.testing.assert_close(many, successive)
    with torch.no_grad():
        value = jacobian_frobenius_sq(model, x, estimator="hutchinson", probes=3)
        exact = jacobian_frobenius_sq(model, x)
    assert not value.requires_grad and torch.isfinite(value).all() and torch.isfinite(exact).all()


def _random_linear(n: int, rank: int, seed: int) -> LinearAutoencoder:
    torch.manual_seed(seed)
    model = LinearAutoencoder(n, rank, dtype=f64)
    with torch.no_grad():
        model.encoder.weight.normal_(0, 0.5)
        model.decoder.weight.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("anisotropic", [False, True])
def test_t3_denoising_loss_equals_reconstruction_plus_sigma2_frobenius(anisotropic):
    """T3: E||W(x + eps) - x||^2 = ||Wx - x||^2 + ||W diag(sigma)||_F^2 (sigma I for isotropic noise)."""
    n, N, K = 5, 64, 3000
    model = _random_linear(n, 3, seed=8)
    x = torch.randn(N, n, dtype=f64, generator=gen(9))
    sigma = torch.tensor([0.05, 0.1, 0.4, 0.2, 0.3], dtype=f64) if anisotropic else 0.3
    W = model.matrix.detach()
    sigma_vec = sigma if anisotropic else torch.full((n,), sigma, dtype=f64)
    closed_form = ((x @ W.T - x).pow(2).sum(1).mean() + (W * sigma_vec).pow(2).sum()) / n  # per feature
    objective = Denoising(model, sigma=sigma, generator=gen(10))
    with torch.no_grad():
        draws = torch.stack([objective(x) for _ in range(K)])  # K i.i.d. Monte Carlo losses
    se = draws.std() / math.sqrt(K)
    assert abs(float(draws.mean() - closed_form)) < 4 * float(se), (float(draws.mean()), float(closed_form))
    assert se < 0.01 * closed_form
    if not anisotropic:  # the reconstruction-contractive loss with lam = sigma^2 is the same number, exactly
        rc = ReconstructionContractive(model, lam=sigma ** 2)(x).detach()
        torch.testing.assert_close(rc, closed_form, rtol=1e-12, atol=0)


def test_contractive_penalty_closed_form_tied_sigmoid_and_linear():
    """Rifai: h = sigmoid(Wx + b) gives ||J||_F^2 = sum_j (h_j (1 - h_j))^2 ||W_j||^2; linear: ||E||_F^2."""
    torch.manual_seed(11)
    model = MLPAutoencoder(4, hidden=(6,), activation="sigmoid", tied=True, dtype=f64)
    x = torch.randn(5, 4, dtype=f64)
    W, b = model.encoder[0].weight.detach(), model.encoder[0].bias.detach()
    h = torch.sigmoid(x @ W.T + b)  # (5, 6)
    expected = ((h * (1 - h)) ** 2 * W.pow(2).sum(1)).sum(1)  # (5,)
    penalty = Contractive(model, lam=1.0).penalty(x).detach()
    torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=0)
    tanh_model = MLPAutoencoder(4, hidden=(6,), activation="tanh", dtype=f64)
    W, b = tanh_model.encoder[0].weight.detach(), tanh_model.encoder[0].bias.detach()
    h = torch.tanh(x @ W.T + b)
    torch.testing.assert_close(Contractive(tanh_model, lam=1.0).penalty(x).detach(),
                               ((1 - h ** 2) ** 2 * W.pow(2).sum(1)).sum(1), rtol=1e-12, atol=0)
    linear = _random_linear(4, 2, seed=12)
    E = linear.encoder.weight.detach()
    torch.testing.assert_close(Contractive(linear, lam=1.0).penalty(x).detach(),
                               torch.full((5,), float(E.pow(2).sum()), dtype=f64), rtol=1e-12, atol=0)


def test_selfsupervised_matches_hand_computation():
    torch.manual_seed(13)
    model = MLPAutoencoder(6, hidden=(8,), dtype=f64)
    x = torch.randn(10, 6, dtype=f64)
    corruption = MaskedCorruption(RandomSubsetMask(size=2), ConstantFill(3.0))
    x_tilde, mask = corruption(x, gen(14))
    sq = (model(x_tilde) - x).pow(2)
    for weight, expected in [(None, sq.mean()), (4.0, ((1 + 3 * mask) * sq).mean()), (0.0, ((1 - mask) * sq).mean())]:
        loss = SelfSupervised(model, corruption=corruption, weight_corrupted=weight, generator=gen(14))(x)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(SelfSupervised(model, corruption=Identity())(x), Reconstruction(model)(x))


def test_denoising_is_selfsupervised_with_gaussian_noise():
    torch.manual_seed(15)
    model = MLPAutoencoder(3, hidden=(4,), dtype=f64)
    x = torch.randn(8, 3, dtype=f64)
    dae = Denoising(model, sigma=0.2, generator=gen(16))
    same = SelfSupervised(model, corruption=GaussianNoise(0.2), generator=gen(16))
    assert isinstance(dae, SelfSupervised) and dae.sigma == 0.2
    torch.testing.assert_close(dae(x), same(x), rtol=0, atol=0)


def test_bad_input_to_objectives():
    model = MLPAutoencoder(3, hidden=(4,))
    x = torch.randn(5, 3)
    # no finiteness test of the batch (a host sync per step on CUDA): a NaN makes the loss NaN, which the
    # loops stop on (loop.fit at once; commands.train at the next log step)
    nan_x = torch.where(torch.arange(15).reshape(5, 3) == 4, float("nan"), x)
    assert torch.isnan(Reconstruction(model)(nan_x))
    from manifold_ae.loop import fit

    with pytest.raises(FloatingPointError, match=r"loss became nan \(non-finite\) at step 0"):
        fit(Reconstruction(model), torch.full_like(x, float("nan")), steps=3, batch_size=5)
    with pytest.raises(ValueError, match=r"Denoising: x must be a batch of shape \(B, \.\.\.\)"):
        Denoising(model, sigma=0.1)(torch.randn(3))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        Denoising(model, sigma=0.0)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        ReconstructionContractive(model, lam=-1.0)
    with pytest.raises(ValueError, match="estimator must be one of"):
        ReconstructionContractive(model, lam=1.0, estimator="trace")
    with pytest.raises(ValueError, match="probes must be an integer"):
        Contractive(model, lam=1.0, estimator="hutchinson", probes=0)
    with pytest.raises(ValueError, match="Contractive needs a model with encode"):
        Contractive(nn.Linear(3, 3), lam=1.0)
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        Reconstruction(lambda x: x)
    with pytest.raises(ValueError, match="corruption must be callable"):
        SelfSupervised(model, corruption=0.3)
    with pytest.raises(ValueError, match="weight_corrupted must be >= 0"):
        SelfSupervised(model, corruption=Identity(), weight_corrupted=-1.0)
    with pytest.raises(ValueError, match=r"MLPAutoencoder.encode: x must be a tensor of shape \(\.\.\., 3\)"):
        Reconstruction(model)(torch.randn(5, 4))
