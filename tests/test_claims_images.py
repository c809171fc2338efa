"""T9 (docs/theory.md, "T9"): the fast run passes with numbers that agree with references computed here, and a
NaN in any one of its measurements fails its own check and the claim."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from manifold_ae.claims import runner, t9_images
from manifold_ae.toys import image_tasks


@pytest.fixture(scope="module")
def fast_result(tmp_path_factory):
    torch.set_num_threads(1)
    return t9_images.run(fast=True, out_dir=tmp_path_factory.mktemp("t9"), seed=0)


def test_t9_is_registered():
    assert runner.CLAIMS["T9"][0] == "manifold_ae.claims.t9_images"


def test_t9_fast_run_passes_against_independent_references(fast_result):
    assert fast_result.passed, [(c.name, c.measured) for c in fast_result.checks if not c.passed]
    assert len(fast_result.checks) == 12
    # grating: radius R = A N / √2 with A = 1, reach R/√2 (six orientations, mutually orthogonal circles)
    assert fast_result.numbers["reach"]["grating"] == pytest.approx(16 / math.sqrt(2) / math.sqrt(2), rel=1e-12)
    # band-pass reference: ((S − 2)/(n − 2))^{1/2} with S the support of the template's spectrum, counted in numpy
    template = image_tasks.image_manifolds()["translation"].template.numpy()
    spec = np.abs(np.fft.fft2(template))
    support = int((spec > 1e-10 * spec.max()).sum())
    assert support == (2 * image_tasks.TEMPLATE_BANDWIDTH + 1) ** 2 - 1
    closed_form = math.sqrt((support - 2) / (template.size - 2))
    assert fast_result.numbers["denoiser"]["band_pass"] == pytest.approx(closed_form, abs=0.04)
    # the oracle gaps fall by about 4 per doubling of σ (rate σ²), measured here from the raw series
    gaps = fast_result.numbers["oracle"]["rms_rstar_minus_pi"]
    ratios = [b / a for a, b in zip(gaps, gaps[1:])]
    assert all(3.6 < r < 4.4 for r in ratios), ratios
    # the trained UNet removes noise relative to r*: the identity would have ratio exactly 1
    assert fast_result.numbers["denoiser"]["unet"] < 0.9
    # T6/T7 (item 5): the identity's in-painting ratio is 1 and it changes no clean pixel; π_S(x̂) is the clean image
    inpainting = fast_result.numbers["inpainting"]
    assert inpainting["identity"]["iota"] == pytest.approx(1.0, abs=1e-12)
    assert inpainting["identity"]["outside"] == 0.0
    assert inpainting["identity"]["q"] >= 1.0
    assert inpainting["references"]["pi_s_to_clean"] < 1e-9
    assert inpainting["pca_rank"] == support
    # T8 (item 6): the identity scores every image 0, so its AUROC is exactly 1/2 by the tie rule
    assert fast_result.numbers["anomaly"]["auroc"]["identity"] == 0.5


def test_t9_fails_on_a_nan_in_each_measurement(tmp_path, monkeypatch):
    exactness, oracle, gaps = image_tasks.exactness, image_tasks.oracle_gaps, image_tasks.denoiser_gaps

    def nan_exactness(M, **kwargs):
        out = exactness(M, **kwargs)
        if M.name == "translation":
            out["jacobian_on"] = math.nan
        return out

    def nan_oracle(*args, **kwargs):
        values = oracle(*args, **kwargs)
        return values[:1] + [math.nan] + values[2:]

    def nan_denoiser(*args, **kwargs):
        return {**gaps(*args, **kwargs), "unet": math.nan}

    monkeypatch.setattr(t9_images, "exactness", nan_exactness)
    monkeypatch.setattr(t9_images, "oracle_gaps", nan_oracle)
    monkeypatch.setattr(t9_images, "denoiser_gaps", nan_denoiser)
    result = t9_images.run(fast=True, out_dir=tmp_path, seed=0)
    failed = [c.name for c in result.checks if not c.passed]
    assert not result.passed
    verdict = {c.name: c for c in result.checks}
    jac = next(c for name, c in verdict.items() if name.startswith("jacobian_on"))
    assert math.isnan(jac.measured) and not jac.passed and jac.note == "worst: translation"
    slope = next(c for name, c in verdict.items() if "slope" in name)
    assert math.isnan(slope.measured) and not slope.passed
    unet = next(c for name, c in verdict.items() if name.startswith("trained GatedUNet"))
    assert math.isnan(unet.measured) and not unet.passed
    assert len(failed) == 4, failed   # jacobian_on, slope, r², the trained UNet; the other checks still pass
