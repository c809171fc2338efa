"""rng: draws happen on the generator's device and equal torch's own draws there, returned on the asked device."""
from __future__ import annotations

import pytest
import torch

from manifold_ae.rng import draw_device, rand, randint, randn, randperm


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def test_draws_equal_torchs_on_the_generators_device():
    torch.testing.assert_close(rand((3, 4), generator=_gen(1), device="cpu"),
                               torch.rand(3, 4, generator=_gen(1)), atol=0, rtol=0)
    got = randn((5,), generator=_gen(2), device="cpu", dtype=torch.float64)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.randn(5, generator=_gen(2), dtype=torch.float64), atol=0, rtol=0)
    assert torch.equal(randint(3, 9, (7,), generator=_gen(3), device="cpu"),
                       torch.randint(3, 9, (7,), generator=_gen(3)))
    assert torch.equal(randperm(6, generator=_gen(4), device="cpu"), torch.randperm(6, generator=_gen(4)))
    # float32 and float64 draws from one seed differ: the dtype is part of the stream, so it is passed through
    assert not torch.equal(rand((4,), generator=_gen(5)).double(), rand((4,), generator=_gen(5), dtype=torch.float64))


def test_without_a_generator_the_global_generator_of_the_device_draws():
    torch.manual_seed(11)
    ref = torch.rand(4)
    torch.manual_seed(11)
    torch.testing.assert_close(rand((4,), device="cpu"), ref, atol=0, rtol=0)
    assert draw_device(None, None) == torch.device("cpu")
    assert draw_device(_gen(0), "meta") == torch.device("cpu")  # the generator decides, not the target


@pytest.mark.gpu
def test_a_cpu_generator_serves_cuda_tensors_with_the_cpu_numbers():
    got = rand((3,), generator=_gen(6), device="cuda")
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), torch.rand(3, generator=_gen(6)), atol=0, rtol=0)
    perm = randperm(5, generator=_gen(7), device="cuda")
    assert perm.device.type == "cuda" and torch.equal(perm.cpu(), torch.randperm(5, generator=_gen(7)))
    assert randn((2,), generator=_gen(8, "cuda"), device="cpu").device.type == "cpu"
