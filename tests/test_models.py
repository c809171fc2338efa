"""Models: shapes, tied weights really tied, the linear AE's matrix, bad input."""
import pytest
import torch

from manifold_ae.models import LinearAutoencoder, MLPAutoencoder


@pytest.mark.parametrize("hidden, bottleneck, code_dim", [((16, 8), None, 8), ((16, 8), 3, 3), ((), 2, 2)])
def test_mlp_shapes(hidden, bottleneck, code_dim):
    torch.manual_seed(0)
    model = MLPAutoencoder(5, hidden=hidden, bottleneck=bottleneck, dtype=torch.float64)
    x = torch.randn(4, 7, 5, dtype=torch.float64)  # extra leading dims are batched
    assert model.encode(x).shape == (4, 7, code_dim)
    assert model(x).shape == (4, 7, 5)
    assert model.code_dim == code_dim


def test_mlp_forward_matches_hand_written_network():
    torch.manual_seed(1)
    model = MLPAutoencoder(3, hidden=(4,), bottleneck=2, activation="tanh", dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64)
    e0, e1 = model.encoder
    d0, d1 = model.decoder
    h = torch.tanh(x @ e0.weight.T + e0.bias)
    z = h @ e1.weight.T + e1.bias  # linear code
    expected = (torch.tanh(z @ d0.weight.T + d0.bias)) @ d1.weight.T + d1.bias  # linear output
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-12)


def test_tied_mlp_decoder_uses_encoder_transposes():
    torch.manual_seed(2)
    model = MLPAutoencoder(4, hidden=(6, 5), activation="sigmoid", tied=True, dtype=torch.float64)
    names = {name for name, _ in model.named_parameters()}
    assert not any("decoder." in n and "weight" in n for n in names)  # no decoder weight matrices at all
    x = torch.randn(3, 4, dtype=torch.float64)
    (w0, b0), (w1, b1) = [(m.weight, m.bias) for m in model.encoder]
    c0, c1 = model.decoder_bias
    h = torch.sigmoid(torch.sigmoid(x @ w0.T + b0) @ w1.T + b1)
    expected = torch.sigmoid(h @ w1 + c0) @ w0 + c1
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-12)
    # changing an encoder weight changes the decoder: the gradient of the output reaches w0 twice
    model(x).sum().backward()
    assert w0.grad is not None and w0.grad.abs().sum() > 0


@pytest.mark.parametrize("tied", [False, True])
def test_linear_autoencoder_is_its_matrix(tied):
    torch.manual_seed(3)
    model = LinearAutoencoder(6, 2, tied=tied, dtype=torch.float64)
    x = torch.randn(10, 6, dtype=torch.float64)
    torch.testing.assert_close(model(x), x @ model.matrix.T, rtol=0, atol=1e-12)
    assert torch.linalg.matrix_rank(model.matrix) == 2
    if tied:
        E = model.encoder.weight
        torch.testing.assert_close(model.matrix, E.T @ E)


def test_linear_autoencoder_with_bias_is_affine():
    torch.manual_seed(4)
    model = LinearAutoencoder(3, 1, bias=True, dtype=torch.float64)
    x, y = torch.randn(2, 3, dtype=torch.float64)
    # affine maps preserve midpoints
    torch.testing.assert_close(model((x + y) / 2), (model(x) + model(y)) / 2)


def test_models_reject_wrong_last_dimension():
    with pytest.raises(ValueError, match=r"MLPAutoencoder.encode: x must be a tensor of shape \(\.\.\., 5\)"):
        MLPAutoencoder(5, hidden=(4,))(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"MLPAutoencoder.decode: x must be a tensor of shape \(\.\.\., 3\)"):
        MLPAutoencoder(5, hidden=(4,), bottleneck=3).decode(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"LinearAutoencoder.encode: x must be a tensor of shape \(\.\.\., 3\)"):
        LinearAutoencoder(3, 1)(torch.zeros(2, 2))


@pytest.mark.parametrize("kwargs, match", [
    ({"ambient_dim": 0}, "ambient_dim must be an integer"),
    ({"ambient_dim": 3, "hidden": (4, 0)}, r"hidden\[1\] must be an integer"),
    ({"ambient_dim": 3, "activation": "swish2"}, "activation must be one of"),
    ({"ambient_dim": 3, "hidden": (), "bottleneck": None}, "needs at least one layer"),
    ({"ambient_dim": 3, "bottleneck": 0}, "bottleneck must be an integer"),
])
def test_mlp_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLPAutoencoder(**kwargs)


def test_linear_bad_rank():
    with pytest.raises(ValueError, match=r"rank must be an integer in \[1, 3\]"):
        LinearAutoencoder(3, 4)
