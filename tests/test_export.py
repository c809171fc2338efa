"""ONNX export: the graph run by onnxruntime gives the Pipeline's heat maps, scores and threshold decisions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from manifold_ae.images.config import ModelConfig, ScoreConfig
from manifold_ae.images.export import ExportError, OnnxPipeline, OnnxScorer, export_onnx
from manifold_ae.images.pipeline import Pipeline, build_model

pytest.importorskip("onnxruntime")

SIZE = 32


def write_images(folder: Path, *, n: int, channels: int, seed: int) -> list[Path]:
    """Non-square PNG files (40 x 56) of smooth random content, some with a bright box, so resizing matters."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:56]
    paths = []
    for i in range(n):
        base = 0.2 + 0.4 * np.sin(xx / (5 + i) + rng.uniform(0, 6)) * np.cos(yy / 7) ** 2
        img = np.clip(base[..., None] + 0.05 * rng.random((40, 56, channels)), 0, 1)  # (H, W, C)
        if i % 2:
            img[10:18, 20:30] = 1.0
        arr = np.round(255 * img).astype(np.uint8)
        path = folder / f"{i:02d}.png"
        Image.fromarray(arr[..., 0] if channels == 1 else arr).save(path)
        paths.append(path)
    return paths


def threshold_between(values: torch.Tensor, quantile: float) -> float:
    """A threshold halfway inside the widest gap between sorted values near ``quantile``: no value sits on it."""
    v = values.flatten().double().sort().values
    lo, hi = int(quantile * (len(v) - 1)) - 3, int(quantile * (len(v) - 1)) + 3
    gaps = v[lo + 1:hi + 1] - v[lo:hi]
    j = lo + int(gaps.argmax())
    return float((v[j] + v[j + 1]) / 2)


def make_pipeline(*, channels: int, resize_mode: str, normalize: str, reduction: str, seed: int,
                  norm: str = "group") -> Pipeline:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(width=4, depth=2, dilations=(1, 2), sdc_layers=1, norm=norm), channels=channels)
    score = ScoreConfig(sigma=1.5, reduction=reduction, topk=20, batch_size=4)
    return Pipeline(model, image_size=SIZE, channels=channels, score=score, resize_mode=resize_mode,
                    normalize=normalize, normalize_target=0.45)


@pytest.mark.parametrize("channels, resize_mode, normalize, reduction, norm", [
    (1, "stretch", "none", "max", "group"),
    (3, "pad", "gain", "topk", "group"),
    (3, "stretch", "gain", "max", "batch"),
    (1, "pad", "none", "topk", "none"),
])
def test_exported_heatmaps_and_decisions_equal_the_pipeline(tmp_path, channels, resize_mode, normalize, reduction,
                                                            norm):
    torch.set_num_threads(1)
    pipe = make_pipeline(channels=channels, resize_mode=resize_mode, normalize=normalize, reduction=reduction,
                         seed=channels, norm=norm)
    paths = write_images(tmp_path, n=7, channels=channels, seed=channels)
    ref = pipe.score_paths(paths)  # torch eager, batches of 4, 4 + 3: both differ from the traced batch of 2
    pipe.thresholds = {"image": threshold_between(ref.scores, 0.5), "pixel": threshold_between(ref.heatmaps, 0.9)}
    meta = export_onnx(pipe, tmp_path / "export")
    assert meta["preprocessing"] == {"image_size": SIZE, "resize_mode": resize_mode, "channels": channels,
                                     "range": [0.0, 1.0], "dtype": "float32", "normalize": normalize,
                                     "normalize_target": 0.45}
    assert meta["thresholds"] == pipe.thresholds
    assert json.loads((tmp_path / "export" / "model.json").read_text()) == meta

    onnx = OnnxPipeline(pipe, tmp_path / "export").score_paths(paths)
    assert onnx.heatmaps.shape == ref.heatmaps.shape == (7, SIZE, SIZE)
    assert float((onnx.heatmaps - ref.heatmaps).abs().max()) <= 1e-4
    assert float((onnx.scores - ref.scores).abs().max()) <= 1e-4
    thr = pipe.thresholds
    assert torch.equal(onnx.scores >= thr["image"], ref.scores >= thr["image"])
    assert torch.equal(onnx.heatmaps >= thr["pixel"], ref.heatmaps >= thr["pixel"])
    assert 0 < int((ref.scores >= thr["image"]).sum()) < 7  # the decision is not trivially all-equal


@pytest.mark.parametrize("level_norm", ["level", "pixel"])
def test_multi_scale_normalised_heatmaps_export_with_their_normal_statistics(tmp_path, level_norm):
    """A pyramid score (scales 1, 2, 4) normalised by normal statistics: the graph carries the statistics and
    matches the eager pipeline; without statistics the export is refused."""
    import dataclasses

    torch.set_num_threads(1)
    pipe = make_pipeline(channels=1, resize_mode="stretch", normalize="none", reduction="topk", seed=4)
    pipe.score_config = dataclasses.replace(pipe.score_config, scales=(1, 2, 4), level_norm=level_norm)
    with pytest.raises(ExportError, match="needs the checkpoint's normal statistics"):
        export_onnx(pipe, tmp_path / "none")
    assert not (tmp_path / "none").exists()
    paths = write_images(tmp_path, n=6, channels=1, seed=2)
    pipe.fit_normal_stats([{"image": pipe.load([p])[0]} for p in paths[:4]])
    ref = pipe.score_paths(paths)
    meta = export_onnx(pipe, tmp_path / "export")
    assert meta["score"]["scales"] == [1, 2, 4] and meta["score"]["level_norm"] == level_norm
    onnx = OnnxPipeline(pipe, tmp_path / "export").score_paths(paths)
    assert float((onnx.heatmaps - ref.heatmaps).abs().max()) <= 1e-4 * float(ref.heatmaps.abs().max())
    assert float((onnx.scores - ref.scores).abs().max()) <= 1e-4 * float(ref.scores.abs().max())


def test_heatmap_is_the_reflect_padded_gaussian_of_the_residual_computed_here(tmp_path):
    """The graph's heat map against scipy.ndimage.gaussian_filter of the graph's own reconstruction residual."""
    from scipy.ndimage import gaussian_filter

    pipe = make_pipeline(channels=3, resize_mode="stretch", normalize="none", reduction="max", seed=5)
    export_onnx(pipe, tmp_path)
    x = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    rec, heat, score = OnnxScorer(tmp_path / "model.onnx")(x)
    residual = ((x - rec) ** 2).mean(dim=1).double().numpy()  # (B, H, W)
    expected = np.stack([gaussian_filter(r, 1.5, mode="reflect", truncate=4.0) for r in residual])
    np.testing.assert_allclose(heat.double().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(score.double().numpy(), expected.reshape(5, -1).max(axis=1), atol=1e-6)


def test_image_size_not_divisible_by_two_to_the_depth_fails_and_writes_nothing(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, depth=3, dilations=(1,), sdc_layers=1), channels=1)
    pipe = Pipeline(model, image_size=36, channels=1, score=ScoreConfig())
    with pytest.raises(ExportError, match=r"image_size = 36 is not divisible by 2\*\*depth = 8"):
        export_onnx(pipe, tmp_path / "export")
    assert not (tmp_path / "export").exists()


class BatchFrozen(nn.Module):
    """Its output depends on the batch size through a Python float, which tracing freezes at the traced batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x * float(x.shape[0]))


class Spectral(nn.Module):
    """Uses an FFT, which the TorchScript ONNX exporter cannot express."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(torch.fft.fft2(x) * 0.5).real


def test_a_graph_that_would_change_the_numbers_fails_the_export_and_writes_nothing(tmp_path):
    pipe = Pipeline(BatchFrozen(), image_size=SIZE, channels=1, score=ScoreConfig(sigma=1.0))
    with pytest.raises(ExportError, match="differs from the Pipeline on a probe batch of 3 images"):
        export_onnx(pipe, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_an_unsupported_operator_fails_the_export_with_a_clear_error(tmp_path):
    pipe = Pipeline(Spectral(), image_size=SIZE, channels=1, score=ScoreConfig(sigma=1.0))
    with pytest.raises(ExportError, match="could not export the model"):
        export_onnx(pipe, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_export_and_predict_backends_from_a_trained_run(tmp_path, capsys):
    """export RUN --format onnx, then predict with both backends: same scores, same decisions, same files."""
    from fakes import make_fake_mvtec
    from manifold_ae.commands.cli import main as cli_main

    root = make_fake_mvtec(tmp_path / "data", category="widget", n_train=8, n_test_good=2, defects=("dent",),
                           n_defect=2, size=SIZE)
    tiny = ["--data.dataset=synthetic", "--data.category=widget", f"--data.image_size={SIZE}", "--model.width=4",
            "--model.depth=2", "--model.dilations=1,2", "--model.sdc_layers=1", "--train.batch_size=4",
            "--train.steps=3", "--train.warmup=1", "--train.device=cpu", "--train.precision=float32",
            "--train.channels_last=false", "--data.holdout_fraction=0.25", "--score.sigma=1", "--no-progress"]
    run = tmp_path / "run"
    assert cli_main(["train", *tiny, f"--data.root={root}", f"--out={run}"]) == 0
    assert cli_main(["predict", str(run), str(root / "widget" / "test"), "--backend", "onnxruntime",
                     "--out", str(tmp_path / "none")]) == 2
    assert "written by manifold-ae export" in capsys.readouterr().err
    assert cli_main(["export", str(run), "--format", "onnx"]) == 0
    assert (run / "export" / "model.onnx").is_file()
    images = [str(root / "widget" / "test" / d) for d in ("good", "dent")]
    outs = {}
    for backend in ("torch", "onnxruntime"):
        assert cli_main(["predict", str(run), *images, "--backend", backend, "--device=cpu", "--no-heatmaps",
                         "--out", str(tmp_path / backend)]) == 0
        outs[backend] = json.loads((tmp_path / backend / "scores.json").read_text())["images"]
    assert [r["path"] for r in outs["torch"]] == [r["path"] for r in outs["onnxruntime"]]
    assert len(outs["torch"]) == 4
    for a, b in zip(outs["torch"], outs["onnxruntime"]):
        assert abs(a["score"] - b["score"]) <= 1e-4
        assert a["anomalous"] == b["anomalous"]
