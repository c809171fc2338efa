"""The explorers of notebooks 4-8, driven from Python: set controls, check figures and labels (T5-T8).

Every expected number is recomputed here with independent code: Jacobians by ``torch.autograd.functional``
and the circle's tangent projector from its parametrisation (T5), masked and full projections by NumPy least
squares (T6), distances to the circle in closed form and AUROC by scikit-learn (T7, T8), heat maps by
``scipy.ndimage.gaussian_filter`` on a residual computed here (images), image files read with Pillow.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score
from torch import nn

from manifold_ae.images.config import ScoreConfig, load_config
from manifold_ae.manifolds import make_manifold
from manifold_ae.manifolds.subspace import Subspace
from manifold_ae.models.unet import GatedUNet
from manifold_ae.images.pipeline import Pipeline
from manifold_ae.viz.explorers import (CONTRACTION_MAPS, ORACLE_SCORE, contraction_explorer, image_explorer,
                                       masked_projection_explorer, roc_explorer, run_browser, trained_contractive)


def trace(explorer, name: str):
    return {t.name: t for t in explorer.figure.data}[name]


def circle_tangent_projector(M, p: torch.Tensor) -> np.ndarray:
    """P_T = t tᵀ with t = Q (−u₂, u₁)/|u|, u = Qᵀ(p − c): the unit circle's tangent from its parametrisation."""
    Q, c = M.Q.numpy(), M.centre.numpy()
    u = (p.numpy() - c) @ Q                                                    # (P, 2)
    t = np.stack([-u[:, 1], u[:, 0]], axis=1) / np.linalg.norm(u, axis=1, keepdims=True)
    t = t @ Q.T                                                                # (P, n)
    return t[:, :, None] * t[:, None, :]


def jacobians(f, p: torch.Tensor) -> np.ndarray:
    return np.stack([torch.autograd.functional.jacobian(f, row).numpy() for row in p])  # (P, n, n)


# ------------------------------------------------------------------------------------------------- T5


def test_contraction_explorer_pi_has_the_tangent_projector_spectrum():
    ex = contraction_explorer(lams=(0.1,), lam=0.1, steps=100, num_eval=40)
    ex.controls["map"].value = CONTRACTION_MAPS[1]
    y = np.asarray(trace(ex, "J_f(p): mean singular value").y, dtype=float)
    np.testing.assert_allclose(y, [1.0, 0.0, 0.0, 0.0], atol=1e-9)               # P_T: d ones, then zeros
    assert ex.numbers["gap"] < 1e-9 and ex.numbers["frobenius_sq"] == pytest.approx(1.0, abs=1e-9)
    assert "orthogonal projection" in ex.figure.layout.title.text


def test_contraction_explorer_trained_gap_matches_an_independent_jacobian():
    M = make_manifold("circle", ambient_dim=4, seed=0)
    ex = contraction_explorer(lams=(1.0, 0.01), lam=1.0, steps=600, num_eval=60)
    p = ex.arrays["p"]
    P_T = circle_tangent_projector(M, p)
    gaps = {}
    for lam in (1.0, 0.01):
        ex.controls["lam"].value = lam
        model = trained_contractive(M, lam, steps=600)
        J = jacobians(lambda v: model(v.float()), p)                             # (P, 4, 4)
        gap = np.linalg.norm(J - P_T, axis=(1, 2)).mean()
        assert ex.numbers["gap"] == pytest.approx(gap, rel=1e-5)
        assert ex.numbers["frobenius_sq"] == pytest.approx((J ** 2).sum((1, 2)).mean(), rel=1e-5)
        s = np.linalg.svd(J, compute_uv=False).mean(0)
        np.testing.assert_allclose(trace(ex, "J_f(p): mean singular value").y, s, rtol=1e-4, atol=1e-6)
        assert f"{gap:.4f}" in ex.label.value and f"λ = {lam:g}" in ex.figure.layout.title.text
        gaps[lam] = gap
    assert gaps[0.01] < gaps[1.0] / 2                                           # T5: J_f → P_T as λ → 0
    ex.controls["lam"].value = 1.0
    assert ex.numbers["frobenius_sq"] < 1.0                                     # strong penalty: f contracts M too


def test_contraction_explorer_skewed_retraction_obeys_the_identity():
    ex = contraction_explorer(lams=(0.1,), lam=0.1, steps=100, num_eval=40)
    ex.controls["map"].value = CONTRACTION_MAPS[2]
    n = ex.numbers
    assert n["reconstruction"] < 1e-12                                          # a perfect reconstructor
    assert n["frobenius_sq"] - 1.0 == pytest.approx(n["normal_part"], abs=1e-9)  # ‖J‖² = d + ‖J P_N‖²
    assert n["excess"] > 1e-3 and n["gap"] > 1e-2                               # strict: it is not π


# ------------------------------------------------------------------------------------------------- T6


class LinearMap(nn.Module):
    def __init__(self, W: np.ndarray) -> None:
        super().__init__()
        self.W = torch.as_tensor(W, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W.T


def test_masked_projection_explorer_matches_least_squares():
    M = Subspace(2, ambient_dim=6, seed=3)
    U = M.Q.numpy()
    ex = masked_projection_explorer(M, model=LinearMap(U @ U.T), fill_std=0.5, num=200)
    x = ex.arrays["x"].numpy()
    gaps = []
    for k in (1, 2, 4):
        ex.controls["mask_size"].value = k
        ex.controls["sample"].value = 7
        x_hat, mask = ex.arrays["x_hat"].numpy(), ex.arrays["mask"].numpy()
        assert (mask.sum(1) == k).all()
        blocks = [set(((s + np.arange(k)) % 6).tolist()) for s in range(6)]      # cyclic blocks of k coordinates
        assert all(set(np.nonzero(row)[0].tolist()) in blocks for row in mask)
        masked = np.stack([U @ np.linalg.lstsq(U[m < 0.5], xh[m < 0.5], rcond=None)[0] for xh, m in zip(x_hat, mask)])
        full = x_hat @ U @ U.T
        rms = lambda v: np.sqrt((v ** 2).sum(1).mean())                        # noqa: E731
        assert ex.numbers["masked_error"] == pytest.approx(rms(masked - x), abs=1e-10)
        assert ex.numbers["masked_error"] < 1e-10                               # π_S recovers x exactly (T6)
        assert ex.numbers["full_error"] == pytest.approx(rms(full - x), rel=1e-9)
        assert ex.numbers["gap"] == pytest.approx(rms(masked - full), rel=1e-9)
        truth = mask.ravel() > 0.5
        assert ex.numbers["auroc_masked"] == pytest.approx(roc_auc_score(truth, np.abs(x_hat - masked).ravel()),
                                                           abs=1e-9)
        assert ex.numbers["auroc_full"] == pytest.approx(roc_auc_score(truth, np.abs(x_hat - full).ravel()), abs=1e-9)
        assert ex.numbers["model_to_full"] < 1e-5                                # the model is π itself
        np.testing.assert_allclose(trace(ex, "masked projection π_S(x̂)").y, masked[7], atol=1e-10)
        np.testing.assert_allclose(trace(ex, "full projection π(x̂)").y, full[7], atol=1e-10)
        shaded = np.asarray(trace(ex, "corrupted S").y, dtype=float) > 0
        np.testing.assert_array_equal(shaded, mask[7] > 0.5)
        assert f"{rms(masked - full):.3f}" in ex.label.value
        gaps.append(ex.numbers["gap"])
    assert gaps[0] < gaps[1] < gaps[2]                                           # the gap to π grows with |S|


# ------------------------------------------------------------------------------------------------- T8


class CircleProjection(nn.Module):
    """π onto the unit circle c + Q S¹, written here from the geometry (float32 like a trained model)."""

    def __init__(self, M) -> None:
        super().__init__()
        self.Q, self.c = M.Q.float(), M.centre.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x - self.c) @ self.Q
        return self.c + (u / u.norm(dim=1, keepdim=True)) @ self.Q.T


def test_roc_explorer_matches_closed_form_distance_and_sklearn():
    M = make_manifold("circle", ambient_dim=5, seed=1)
    ex = roc_explorer(M, {"projection": CircleProjection(M), "identity": nn.Identity()}, num=300, seed=2)
    Q, c = M.Q.numpy(), M.centre.numpy()
    aurocs = []
    for delta in (0.01, 0.03, 0.1):
        ex.controls["delta"].value = delta
        x, labels = ex.arrays["x"].numpy(), ex.arrays["labels"].numpy()
        assert labels.sum() == 300 and len(labels) == 600
        u = (x - c) @ Q
        w = x - c - u @ Q.T
        dist = np.sqrt((np.linalg.norm(u, axis=1) - 1) ** 2 + (w ** 2).sum(1))  # closed form for the unit circle
        expected = roc_auc_score(labels, dist)
        assert ex.numbers[f"auroc {ORACLE_SCORE}"] == pytest.approx(expected, abs=1e-12)
        assert ex.numbers["auroc projection"] == pytest.approx(expected, abs=2e-3)   # residual of π = distance
        assert abs(ex.numbers["auroc identity"] - 0.5) < 0.05                       # residual: float32 rounding only
        oracle = trace(ex, ORACLE_SCORE)
        fpr, tpr = np.asarray(oracle.x, dtype=float), np.asarray(oracle.y, dtype=float)
        assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(expected, abs=1e-12)
        assert f"{expected:.3f}" in ex.label.value and f"δ = {delta:g}" in ex.figure.layout.title.text
        aurocs.append(expected)
    assert aurocs[0] < aurocs[1] < aurocs[2]
    noiseless = roc_explorer(M, {}, noise_std=0.0, num=100, delta=0.01, deltas=(0.01,))
    x, labels = noiseless.arrays["x"], noiseless.arrays["labels"]
    np.testing.assert_allclose(M.distance(x).numpy(), 0.01 * labels.numpy(), atol=1e-12)
    assert noiseless.numbers[f"auroc {ORACLE_SCORE}"] == 1.0
    from matplotlib.colors import to_hex
    for i, name in ((1, "projection"), (2, "identity")):   # as roc_figure's C{i} (C0 is the oracle's slot)
        assert trace(ex, name).line.color.lower() == to_hex(f"C{i}"), name


# ------------------------------------------------------------------------------------------- images


def tiny_unet() -> nn.Module:
    torch.manual_seed(0)
    return GatedUNet(3, width=4, depth=2, dilations=(1, 2), sdc_layers=1).eval()


def heat(model: nn.Module, x: torch.Tensor, sigma: float) -> np.ndarray:
    with torch.no_grad():
        r = ((x[None] - model(x[None]))[0] ** 2).mean(0).numpy().astype(np.float64)   # channel-mean squared
    return gaussian_filter(r, sigma, mode="reflect", truncate=4.0)


def test_image_explorer_pages_through_heat_maps():
    model = tiny_unet()
    pipe = Pipeline(model, image_size=16, channels=3, score=ScoreConfig(sigma=1.5))
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 16, 16, generator=gen)
    clean = images.clone()
    masks = torch.zeros(3, 16, 16)
    masks[1, 4:9, 5:11] = 1
    clean[1] = 0.5                                                                # known defect-free image
    ex = image_explorer(pipe, images, masks=masks, clean=clean, titles=["a", "b", "c"])
    assert "pixel_auroc" not in ex.numbers                                        # image 0 has no defect
    ex.controls["index"].value = 1
    expected = heat(model, images[1], 1.5)
    np.testing.assert_allclose(np.asarray(trace(ex, "heat map").z, dtype=float), expected, rtol=1e-4, atol=1e-7)
    assert ex.numbers["score"] == pytest.approx(expected.max(), rel=1e-5)
    m = masks[1].numpy() > 0.5
    assert ex.numbers["pixel_auroc"] == pytest.approx(roc_auc_score(m.ravel(), expected.ravel()), abs=1e-3)
    with torch.no_grad():
        f = model(images[1:2])[0].numpy()
    x, c = images[1].numpy(), clean[1].numpy()
    removed = 1 - ((f - c) ** 2).sum(0)[m].sum() / ((x - c) ** 2).sum(0)[m].sum()
    assert ex.numbers["defect_removed"] == pytest.approx(removed, rel=1e-4)
    np.testing.assert_array_equal(np.asarray(trace(ex, "input").z), np.round(x.transpose(1, 2, 0) * 255))
    np.testing.assert_array_equal(np.asarray(trace(ex, "ground truth").z, dtype=float), m.astype(float))
    assert "<b>b</b>" in ex.label.value and f"{ex.numbers['score']:.4g}" in ex.label.value


def test_run_browser_shows_what_evaluate_stored(tmp_path: Path):
    from manifold_ae.images.data.synthetic import make_synthetic
    from manifold_ae.commands.evaluate import evaluate
    from manifold_ae.images.pipeline import build_model
    from manifold_ae.commands.train import train

    make_synthetic(tmp_path / "data", categories=["weave"], n_train=12, n_test_good=3, n_test_defect=4, image_size=32)
    config = load_config("quick", [f"--data.root={tmp_path / 'data'}", "--data.image_size=32", "--train.steps=3",
                                   f"--train.out_dir={tmp_path / 'run'}", "--score.sigma=1.0"])
    train(config, progress=False)
    with pytest.raises(ValueError, match=r"eval_dir .* no metrics\.json"):
        run_browser(tmp_path / "run")
    evaluate(tmp_path / "run", out_dir=tmp_path / "run" / "eval", overlays_per_class=0, progress=False)
    browser = run_browser(tmp_path / "run")
    options = list(browser.controls["defect"].options)
    assert options[:2] == ["all", "good"] and set(options[2:]) == {"hole", "scratch", "stain", "color"}
    stored = {r["path"]: r["score"] for r in json.loads((tmp_path / "run/eval/scores.json").read_text())["images"]}
    metrics = json.loads((tmp_path / "run/eval/metrics.json").read_text())
    state = torch.load(tmp_path / "run/checkpoint.pt", map_location="cpu", weights_only=True)
    model = build_model(config.model, channels=3)
    model.load_state_dict(state["model"])
    model.eval()
    browser.controls["defect"].value = "scratch"
    assert browser.controls["index"].max == 0                                   # 4 defect images, 4 types
    path = browser.arrays["path"]
    assert "/scratch/" in path
    x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    expected = heat(model, x, 1.0).max()
    assert browser.numbers["score"] == pytest.approx(expected, rel=1e-5)
    assert browser.numbers["stored_score"] == pytest.approx(stored[path], rel=1e-12)
    assert browser.numbers["image_auroc"] == metrics["metrics"]["scratch"]["image_auroc"]
    assert browser.numbers["threshold"] == metrics["thresholds"]["image"]
    assert browser.numbers["anomalous"] == float(expected >= metrics["thresholds"]["image"])
    assert "scratch/" in browser.label.value and f"{expected:.4g}" in browser.label.value
    browser.controls["defect"].value = "good"
    assert browser.controls["index"].max == 2 and browser.numbers["label"] == 0.0
    assert "all test images (metrics.json)" in browser.label.value and "against all good" not in browser.label.value
    tests = sorted((tmp_path / "data").rglob("test/*/*.png"))
    assert len(tests) == 7
    top = max(heat(model, torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255)
                   .permute(2, 0, 1), 1.0).max() for f in tests)
    scale = next(t for t in browser.figure.data if t.name == "heat map")
    assert scale.zmax == pytest.approx(top, rel=1e-5)                          # the colour bar never saturates


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("call, words", [
    (lambda: contraction_explorer(manifold="moon"), ["manifold", "circle"]),
    (lambda: contraction_explorer(lams=(1.0, 0.1), lam=0.5), ["lam", "lams"]),
    (lambda: contraction_explorer(lams=()), ["lams"]),
    (lambda: contraction_explorer(ambient_dim=1), ["ambient_dim"]),
    (lambda: trained_contractive(make_manifold("circle"), 0.0), ["lam", "> 0"]),
    (lambda: masked_projection_explorer(make_manifold("circle")), ["manifold", "Subspace"]),
    (lambda: masked_projection_explorer(Subspace(2, ambient_dim=4), fill_std=-1.0), ["fill_std", "> 0"]),
    (lambda: masked_projection_explorer(Subspace(2, ambient_dim=4), num=1), ["num"]),
    (lambda: roc_explorer(make_manifold("circle"), {}, deltas=(0.1, 2.0), delta=0.1), ["deltas", "reach"]),
    (lambda: roc_explorer(make_manifold("circle"), {}, delta=0.5), ["delta", "deltas"]),
    (lambda: roc_explorer(make_manifold("circle"), {}, deltas=()), ["deltas"]),
    (lambda: image_explorer(None, torch.zeros(3, 8, 8)), ["images", "(N, C, H, W)"]),
    (lambda: image_explorer(None, torch.zeros(2, 3, 8, 8), masks=torch.zeros(3, 8, 8)), ["masks", "(2)"]),
    (lambda: run_browser("/nonexistent/run"), ["eval_dir", "metrics.json"]),
])
def test_bad_input_names_the_argument(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for word in words:
        assert word in str(err.value), (word, str(err.value))
