"""evaluate and predict share one pipeline: same scores for the same files; thresholds from held-out normals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from fakes import make_fake_mvtec
from manifold_ae.commands.evaluate import main as evaluate_main
from manifold_ae.images.pipeline import Pipeline, load_checkpoint
from manifold_ae.commands.predict import main as predict_main
from manifold_ae.commands.train import main as train_main

TINY = ["--data.dataset=synthetic", "--data.category=widget", "--data.image_size=32", "--model.width=4",
        "--model.depth=2", "--model.dilations=1,2", "--model.sdc_layers=1", "--train.batch_size=4",
        "--train.lr=1e-2", "--train.warmup=1", "--train.steps=8", "--train.device=cpu",
        "--train.precision=float32",
        "--train.channels_last=false", "--data.holdout_fraction=0.25", "--score.sigma=1", "--score.batch_size=3",
        "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("evalpred")
    root = make_fake_mvtec(tmp / "data", category="widget", n_train=12, n_test_good=3,
                           defects=("scratch", "dent"), n_defect=3, size=32)
    assert train_main([*TINY, f"--data.root={root}", f"--out={tmp / 'run'}"]) == 0
    assert evaluate_main([str(tmp / "run"), "--out", str(tmp / "eval"), "--no-progress", "--overlays=2"]) == 0
    test = root / "widget" / "test"
    assert predict_main([str(tmp / "run" / "checkpoint.pt"), str(test / "dent"), str(test / "good"),
                         str(test / "scratch"), "--out", str(tmp / "pred"), "--device=cpu"]) == 0
    return {"root": root, "run": tmp / "run", "eval": tmp / "eval", "pred": tmp / "pred"}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_evaluate_and_predict_give_identical_scores_for_the_same_files(run):
    ev = {r["path"]: r["score"] for r in read(run["eval"] / "scores.json")["images"]}
    pr = {r["path"]: r["score"] for r in read(run["pred"] / "scores.json")["images"]}
    assert len(ev) == 9 and set(ev) == set(pr)  # different orders and batch compositions, same files
    assert all(ev[p] == pr[p] for p in ev), [(p, ev[p], pr[p]) for p in ev if ev[p] != pr[p]]


def test_reported_image_auroc_matches_sklearn_on_the_written_scores(run):
    records = read(run["eval"] / "scores.json")["images"]
    metrics = read(run["eval"] / "metrics.json")["metrics"]
    y = [r["label"] for r in records]
    s = [r["score"] for r in records]
    assert metrics["all"]["image_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    for defect in ("scratch", "dent"):
        sel = [r for r in records if r["defect"] in ("good", defect)]
        ref = roc_auc_score([r["label"] for r in sel], [r["score"] for r in sel])
        assert metrics[defect]["image_auroc"] == pytest.approx(ref, abs=1e-12)
        assert metrics[defect]["n_good"] == 3 and metrics[defect]["n_defect"] == 3
    assert {"pixel_auroc", "aupro", "pixel_ap", "image_f1"} <= set(metrics["all"])


def test_thresholds_are_the_quantile_of_held_out_normal_training_images_only(run, tmp_path):
    state = load_checkpoint(run["run"])
    cfg = state["config"]["data"]
    train_files = sorted((run["root"] / "widget" / "train" / "good").iterdir())
    # the held-out images, written out here: the first round(0.25 * 12) = 3 of numpy's seeded permutation
    hold = sorted(np.random.default_rng(cfg["split_seed"]).permutation(len(train_files))[:3].tolist())
    assert cfg["holdout_fraction"] == 0.25 and len(train_files) == 12
    held = [train_files[i] for i in hold]
    pipe = Pipeline.from_checkpoint(run["run"], device="cpu")
    scored = pipe.score_paths(held)
    expected = float(np.quantile(scored.scores.numpy().astype(np.float64), 0.99))
    thresholds = read(run["eval"] / "metrics.json")["thresholds"]
    assert thresholds["image"] == pytest.approx(expected, rel=1e-12)
    assert thresholds["pixel"] == pytest.approx(float(np.quantile(scored.heatmaps.numpy().astype(np.float64), 0.99)), rel=1e-12)
    assert state["thresholds"]["image"] == pytest.approx(expected, rel=1e-12)  # stored at the end of training
    flags = {r["path"]: r["anomalous"] for r in read(run["pred"] / "scores.json")["images"]}
    scores = {r["path"]: r["score"] for r in read(run["pred"] / "scores.json")["images"]}
    assert all(flags[p] == (scores[p] >= expected) for p in flags)


def test_outputs_on_disk(run):
    table = (run["eval"] / "results.md").read_text()
    assert "| synthetic/widget | **all** | 3 / 6 |" in table and "| synthetic/widget | dent | 3 / 3 |" in table
    for defect in ("good", "scratch", "dent"):
        assert (run["eval"] / f"overlays_{defect}.png").is_file()
    records = read(run["pred"] / "scores.json")["images"]
    png = Image.open(run["pred"] / records[0]["heatmap"])
    assert png.size[0] >= 64 and png.size[1] > 32  # input | overlay at the files' 32 x 32, caption + colour bar below
    assert png.text["decision"].startswith(("anomalous: score >= threshold", "normal: score < threshold"))
    assert (run["eval"] / "report.html").is_file()
    assert read(run["eval"] / "metrics.json")["protocol"]["thresholds"].startswith("quantile 0.99 of held-out")


def test_predict_and_evaluate_reject_bad_input(run, tmp_path, capsys):
    assert predict_main([str(run["run"]), str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "nothing does not exist; expected an image file or a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert predict_main([str(run["run"]), str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no image files" in capsys.readouterr().err
    torn = tmp_path / "torn.pt"
    torn.write_bytes((run["run"] / "checkpoint.pt").read_bytes()[:1000])
    assert predict_main([str(torn), str(run["root"]), "--out", str(tmp_path / "o")]) == 2
    assert "torn.pt could not be read" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path / "nope.pt"), "--out", str(tmp_path / "e")]) == 2
    assert "nope.pt does not exist" in capsys.readouterr().err
    assert evaluate_main([str(run["run"]), "--out", str(tmp_path / "e"), "--data.holdout_fraction=0.5"]) == 2
    err = capsys.readouterr().err
    assert "cannot override ['data.holdout_fraction']" in err and "data.root" in err


def test_synthetic_defects_are_held_out_normals_with_exact_masks(run):
    import dataclasses

    from manifold_ae.images.pipeline import build_datasets
    from manifold_ae.images.validation import DEFECT_KINDS, LARGE_KINDS, SMALL_KINDS, SyntheticDefects

    config = Pipeline.from_checkpoint(run["run"], device="cpu").config
    config = config.replace(data=dataclasses.replace(config.data, root=str(run["root"])))
    holdout = build_datasets(config.data).holdout
    n = len(holdout)
    ds = SyntheticDefects(holdout, seed=3)
    kinds = ["synthetic_blob", "synthetic_line", "synthetic_faint_line", "synthetic_uneven", "synthetic_break",
             "synthetic_fray"]
    assert list(DEFECT_KINDS) == kinds and SMALL_KINDS + LARGE_KINDS == tuple(kinds)
    assert len(ds) == 7 * n and [ds[i]["defect"] for i in range(len(ds))] == \
        ["good"] * n + [k for k in kinds for _ in range(n)]
    for i in range(len(ds)):
        item, clean = ds[i], holdout[i % n]["image"]
        outside = (item["mask"] == 0).expand_as(clean)
        change = (item["image"] - clean).abs()
        if item["defect"] == "synthetic_uneven":  # a soft mask, labelled from half its peak: the tail changes less
            assert float(change[~outside].mean()) > 2 * float(change[outside].mean())
        else:
            assert torch.equal(item["image"][outside], clean[outside])  # only the defect's pixels change
        assert item["label"] == int(item["mask"].sum() > 0) == int(i >= n)
        if i >= n:
            assert float(change[~outside].mean()) > (0.003 if item["defect"] == "synthetic_uneven" else 0.01)
    again = SyntheticDefects(holdout, seed=3)
    assert torch.equal(again.images, ds.images) and not torch.equal(SyntheticDefects(holdout, seed=4).images,
                                                                     ds.images)


def test_evaluate_synthetic_scores_the_validation_set_not_the_test_set(run, tmp_path):
    out = tmp_path / "syn"
    assert evaluate_main([str(run["run"]), "--synthetic", "--out", str(out), "--no-progress", "--overlays=1",
                          f"--data.root={run['root']}"]) == 0
    result = read(out / "metrics.json")
    records = read(out / "scores.json")["images"]
    assert result["thresholds"] is None and "synthetic" in result["protocol"]["test_set"]
    assert set(result["metrics"]) == {"all", "synthetic_blob", "synthetic_line", "synthetic_faint_line",
                                      "synthetic_uneven", "synthetic_break", "synthetic_fray"}
    test_paths = {r["path"] for r in read(run["eval"] / "scores.json")["images"]}
    assert not test_paths & {r["path"].split("#")[0] for r in records}  # no test image is used
    y, s = [r["label"] for r in records], [r["score"] for r in records]
    assert result["metrics"]["all"]["image_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert (out / "overlays_synthetic_line.png").is_file()


def test_synthetic_validation_needs_held_out_images():
    from manifold_ae.images.validation import SyntheticDefects, validation_corruption, validation_set

    with pytest.raises(ValueError, match="holdout_fraction"):
        validation_set(None, split_seed=0)
    with pytest.raises(ValueError, match="at least one normal image"):
        SyntheticDefects([])
    with pytest.raises(ValueError, match="unknown synthetic defect kind 'dent'.*synthetic_blob"):
        validation_corruption("dent")


def test_normalised_pyramid_heat_maps_by_hand():
    """A model that returns 0.9 x: on constant images c every level is (0.1 c)^2, so normal images of level c
    give statistics 0.01 c^2 and an image of level 2c a normalised heat of exactly 4 (level and pixel norms)."""
    import dataclasses

    from manifold_ae.images.config import ScoreConfig
    from manifold_ae.images.pipeline import ensure_normal_stats

    class Scale(torch.nn.Module):
        def forward(self, x):
            return 0.9 * x

    normal = [{"image": torch.full((1, 16, 16), 0.4)} for _ in range(5)]
    for norm in ("level", "pixel"):
        score = ScoreConfig(sigma=1.0, scales=(1, 2, 4), level_norm=norm, stats_images=3)
        pipe = Pipeline(Scale(), image_size=16, channels=1, score=score)
        with pytest.raises(ValueError, match="needs the normal statistics"):
            pipe(torch.full((1, 1, 16, 16), 0.8))
        assert ensure_normal_stats(pipe, normal) and not ensure_normal_stats(pipe, normal)  # fitted once
        assert pipe.normal_stats.shape == (3, 16, 16) and pipe.normal_stats_key == ((1, 2, 4), 1.0)
        assert torch.allclose(pipe.normal_stats, torch.full((3, 16, 16), 0.01 * 0.16), rtol=1e-5)
        out = pipe(torch.full((2, 1, 16, 16), 0.8))
        assert torch.allclose(out.heatmap, torch.full((2, 16, 16), 4.0), rtol=1e-5)
        pipe.score_config = dataclasses.replace(score, scales=(1, 2))  # other scales: stale statistics
        assert not pipe.has_normal_stats()
    with pytest.raises(ValueError, match="score.level_norm must be one of"):
        ScoreConfig(level_norm="zscore")
    with pytest.raises(ValueError, match="score.scales must be a non-empty list of distinct"):
        ScoreConfig(scales=(1, 1))


def test_a_run_trained_with_normalised_levels_stores_its_statistics_and_evaluate_refits_for_other_scales(run,
                                                                                                      tmp_path):
    from manifold_ae.images.pipeline import build_datasets, load_checkpoint

    out = tmp_path / "norm_run"
    assert train_main([*TINY, f"--data.root={run['root']}", f"--out={out}", "--score.scales=1,4",
                       "--score.level_norm=pixel", "--score.stats_images=4"]) == 0
    state = load_checkpoint(out)
    assert tuple(state["normal_stats"]["mean"].shape) == (2, 32, 32) and state["normal_stats"]["scales"] == [1, 4]
    pipe = Pipeline.from_checkpoint(out, device="cpu")
    train = build_datasets(pipe.config.data).train
    # reference: the smoothed levels of the first 4 training images, averaged here
    from manifold_ae.anomaly.scoring import pyramid_residuals, smooth
    x = torch.stack([train[i]["image"] for i in range(4)])
    with torch.no_grad():
        ref = smooth(pyramid_residuals(x, pipe.model(x), scales=(1, 4)), sigma=pipe.score_config.sigma).mean(0)
    assert torch.allclose(state["normal_stats"]["mean"], ref, rtol=1e-4, atol=1e-9)
    assert evaluate_main([str(out), "--out", str(tmp_path / "ev"), "--no-progress", "--overlays=0",
                          "--score.scales=1,2,8"]) == 0  # refitted for the other scales on training images
    assert read(tmp_path / "ev" / "metrics.json")["metrics"]["all"]["image_auroc"] is not None


class _FlipAveragedByHand(torch.nn.Module):
    """f̄(x) = mean over the four hv flips g of g⁻¹ f(g x), written out here (the reference for score.flips)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [(), (-1,), (-2,), (-2, -1)]
        out = [self.model(x.flip(d) if d else x) for d in dims]
        return torch.stack([o.flip(d) if d else o for o, d in zip(out, dims)]).mean(0)


def test_evaluate_can_score_a_run_with_flip_averaging_it_was_not_trained_with(run, tmp_path):
    """``evaluate --score.flips=hv`` on a run trained with score.flips = none scores f̄, as the hand-written
    average does, and records the flips in its protocol."""
    assert evaluate_main([str(run["run"]), "--out", str(tmp_path / "ev"), "--no-progress", "--overlays=0",
                          "--score.flips=hv"]) == 0
    written = {r["path"]: r["score"] for r in read(tmp_path / "ev" / "scores.json")["images"]}
    plain = {r["path"]: r["score"] for r in read(run["eval"] / "scores.json")["images"]}
    pipe = Pipeline.from_checkpoint(run["run"], device="cpu")
    assert pipe.score_config.flips == "none"
    pipe.model = _FlipAveragedByHand(pipe.model)
    paths = sorted(written)
    ref = pipe.score_paths([Path(p) for p in paths]).scores.tolist()
    assert [written[p] for p in paths] == pytest.approx(ref, rel=1e-4)
    assert any(abs(written[p] - plain[p]) > 1e-3 * abs(plain[p]) for p in paths)  # not the flip-free scores
    recorded = read(tmp_path / "ev" / "metrics.json")
    assert recorded["config"]["score"]["flips"] == "hv" and "flips 'hv'" in recorded["protocol"]["score"]
    assert read(run["eval"] / "metrics.json")["config"]["score"]["flips"] == "none"
