"""GatedUNet: shapes, channels_last / bf16, convex gates, the no-skip ablation, overfitting, bad input."""
import pytest
import torch

from manifold_ae.models.unet import ConvexGate, GatedUNet, SDCLayer, UNetCode


@pytest.mark.parametrize("in_channels,depth,width,h,w", [
    (1, 1, 4, 8, 16), (3, 2, 8, 16, 32), (3, 3, 4, 24, 16), (1, 4, 4, 32, 48)])
def test_shapes_for_several_depths_and_channels(in_channels, depth, width, h, w):
    torch.manual_seed(0)
    model = GatedUNet(in_channels, width=width, depth=depth, dilations=(1, 2, 4))
    x = torch.rand(2, in_channels, h, w)
    with torch.no_grad():
        code = model.encode(x)
        x_hat = model.decode(code)
        again = model(x)
    channels = [min(width * 2 ** i, 8 * width) for i in range(depth + 1)]
    assert code.z.shape == (2, channels[depth], h // 2 ** depth, w // 2 ** depth)
    assert [tuple(s.shape) for s in code.skips] == [(2, channels[i], h // 2 ** i, w // 2 ** i) for i in range(depth)]
    assert x_hat.shape == x.shape
    assert torch.equal(again, x_hat)
    assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0  # sigmoid output


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_norm_variants_and_linear_output_run(norm):
    torch.manual_seed(0)
    model = GatedUNet(3, width=4, depth=2, norm=norm, output="linear")
    y = model(torch.rand(2, 3, 8, 8))
    assert y.shape == (2, 3, 8, 8) and bool(torch.isfinite(y).all())


def test_channels_last_and_bf16_autocast_close_to_fp32():
    torch.manual_seed(1)
    model = GatedUNet(3, width=8, depth=3).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        out_cl = model_cl(x_cl)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model_cl(x_cl)
    assert torch.allclose(out_cl, ref, atol=1e-5)
    assert out_bf16.dtype == torch.bfloat16 and bool(torch.isfinite(out_bf16).all())
    # bf16 has 8 mantissa bits (relative step 2^-8 ~ 0.004); outputs are sigmoids in [0, 1]
    assert float((out_bf16.float() - ref).abs().max()) < 0.03


def test_bf16_autocast_backward_gives_finite_gradients():
    torch.manual_seed(2)
    model = GatedUNet(1, width=4, depth=2)
    x = torch.rand(2, 1, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = (model(x).float() - x).square().mean()
    loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def test_gate_values_lie_in_unit_interval_and_form_a_convex_combination():
    torch.manual_seed(3)
    model = GatedUNet(3, width=4, depth=3)
    with torch.no_grad():  # push the gate logits to extremes: sigmoid must still stay in [0, 1]
        for gate in model.gates:
            gate.to_gate.weight.mul_(50.0)
        maps = model.gate_maps(torch.rand(2, 3, 16, 16))
    assert len(maps) == 3
    assert [m.shape[-1] for m in maps] == [4, 8, 16]  # coarsest first
    for m in maps:
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    gate = ConvexGate(5)
    enc, dec = torch.randn(2, 5, 4, 4), torch.randn(2, 5, 4, 4)
    out, a = gate(enc, dec)
    lo, hi = torch.minimum(enc, dec), torch.maximum(enc, dec)
    assert bool(((out >= lo - 1e-6) & (out <= hi + 1e-6)).all())  # convex combination, elementwise
    assert torch.allclose(out, a * enc + (1 - a) * dec)


def test_without_skips_the_decoder_ignores_encoder_features():
    torch.manual_seed(4)
    x = torch.rand(2, 3, 16, 16)
    for skips, should_change in ((False, False), (True, True)):
        model = GatedUNet(3, width=4, depth=2, skips=skips).eval()
        with torch.no_grad():
            code = model.encode(x)
            perturbed = UNetCode(code.z, tuple(s + 10 * torch.randn_like(s) for s in code.skips))
            diff = float((model.decode(perturbed) - model.decode(code)).abs().max())
        assert (diff > 1e-3) if should_change else (diff == 0.0)
    no_skip = GatedUNet(3, width=4, depth=2, skips=False)
    assert not any(isinstance(m, ConvexGate) for m in no_skip.modules())
    assert no_skip.gate_maps(x) == []


def test_skip_from_drops_exactly_the_finest_skips():
    torch.manual_seed(6)
    x = torch.rand(2, 3, 16, 16)
    for skip_from in (0, 1, 2):
        model = GatedUNet(3, width=4, depth=3, dilations=(1, 2), skip_from=skip_from).eval()
        assert len(model.gate_maps(x)) == 3 - skip_from
        assert [a.shape[-1] for a in model.gate_maps(x)] == [4, 8, 16][:3 - skip_from]  # coarsest first
        with torch.no_grad():
            code = model.encode(x)
            for level in range(3):  # perturb one encoder level at a time
                skips = list(code.skips)
                skips[level] = skips[level] + 10 * torch.randn_like(skips[level])
                diff = float((model.decode(UNetCode(code.z, tuple(skips))) - model.decode(code)).abs().max())
                assert (diff > 1e-3) if level >= skip_from else (diff == 0.0), (skip_from, level, diff)
    for skip_from in (0, 1):  # gates.j joins level depth-1-j: the names of skip_from = 0 (old checkpoints) hold
        keys = {k for k in GatedUNet(3, width=4, depth=3, skip_from=skip_from).state_dict() if k.startswith("gates.")}
        assert keys == {f"gates.{j}.to_gate.{p}" for j in range(3 - skip_from) for p in ("weight", "bias")}
    with pytest.raises(ValueError, match="skip_from"):
        GatedUNet(3, width=4, depth=3, skip_from=3)


def test_sdc_layer_has_one_branch_per_dilation_with_that_dilation():
    layer = SDCLayer(12, dilations=(1, 2, 4, 8, 16, 32), norm="group")
    assert [b[0].dilation for b in layer.branches] == [(d, d) for d in (1, 2, 4, 8, 16, 32)]
    y = layer(torch.rand(1, 12, 8, 8))  # dilations larger than the map are allowed (zero padding)
    assert y.shape == (1, 12, 8, 8)


def test_tiny_model_overfits_one_image():
    torch.manual_seed(5)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    image = torch.stack([0.5 + 0.4 * torch.sin(6 * xx), 0.5 + 0.4 * torch.cos(5 * yy), xx * yy])[None]
    model = GatedUNet(3, width=8, depth=2, dilations=(1, 2, 4))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = (model(image) - image).square().mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_bad_sizes_and_arguments_raise():
    model = GatedUNet(3, width=4, depth=3)
    with pytest.raises(ValueError, match=r"x must have H and W divisible by 2\*\*depth = 8.*H=12, W=16"):
        model(torch.rand(1, 3, 12, 16))
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(B, 3, H, W\)"):
        model(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"x must be a tensor of shape"):
        model(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="norm must be one of"):
        GatedUNet(3, norm="layer")
    with pytest.raises(ValueError, match="depth must be an integer"):
        GatedUNet(3, depth=0)
    with pytest.raises(ValueError, match="dilations must be a non-empty"):
        GatedUNet(3, dilations=())
    with pytest.raises(ValueError, match="output must be one of"):
        GatedUNet(3, output="tanh")
    with pytest.raises(ValueError, match="code.skips must hold 3"):
        model.decode(UNetCode(torch.rand(1, 32, 2, 2), ()))
