"""Own-data traps: runs labelled by their own data, image-level labels only, thresholds a user can trust,
predict that survives unreadable files, and small messages (non-checkpoint files, huge inputs, no preset)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import fake_defect_box, make_fake_folder
from PIL import Image
from scipy import stats
from sklearn.metrics import roc_auc_score

from manifold_ae.commands.compare import main as compare_main
from manifold_ae.commands.evaluate import main as evaluate_main
from manifold_ae.commands.predict import main as predict_main
from manifold_ae.commands.train import main as train_main
from manifold_ae.images.pipeline import Pipeline, ScoredSet, threshold_support, thresholds_from_normal

SIZE = 32
TINY = ["--data.dataset=folder", "--data.normal_dir=normal", "--data.abnormal_dirs=abnormal",
        f"--data.image_size={SIZE}", "--data.channels=1", "--data.test_normal_fraction=0.25",
        "--data.holdout_fraction=0.25", "--model.width=4", "--model.depth=2", "--model.dilations=1,2",
        "--model.sdc_layers=1", "--train.batch_size=4", "--train.lr=1e-2", "--train.warmup=1", "--train.steps=4",
        "--train.device=cpu", "--train.precision=float32", "--train.channels_last=false", "--score.sigma=1",
        "--score.batch_size=3", "--no-progress"]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def _folder(root: Path, *, masks: bool) -> Path:
    """16 normal and 4 anomalous 32 x 32 gray images; ``masks=False`` deletes every mask (image-level labels)."""
    dirs = make_fake_folder(root, n_normal=16, n_abnormal=4, size=(SIZE, SIZE), channels=1, masks="beside")
    if not masks:
        for f in dirs["abnormal"].glob("*.png"):
            f.unlink()
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("traps")
    out: dict[str, Path] = {}
    for name, masks in (("masked", True), ("labels_only", False)):
        root = _folder(tmp / f"{name}_data", masks=masks)
        assert train_main([*TINY, f"--data.root={root}", f"--out={tmp / name}"]) == 0
        assert evaluate_main([str(tmp / name), "--out", str(tmp / f"{name}_eval"), "--no-progress",
                              "--overlays=1", "--device=cpu"]) == 0
        out[name], out[f"{name}_eval"], out[f"{name}_data"] = tmp / name, tmp / f"{name}_eval", root
    return out


def test_a_folder_run_is_labelled_by_its_own_data_not_the_presets_category(runs):
    result = read(runs["masked_eval"] / "metrics.json")
    assert result["category"] == "masked_data/normal"
    table = (runs["masked_eval"] / "results.md").read_text()
    assert "| masked_data/normal | **all** | 4 / 4 |" in table and "weave" not in table


def test_metrics_count_images_and_defect_pixels_per_class(runs):
    metrics = read(runs["masked_eval"] / "metrics.json")["metrics"]
    box_pixels = sum(fake_defect_box(i, (SIZE, SIZE))[2] * fake_defect_box(i, (SIZE, SIZE))[3] for i in range(4))
    for group in ("all", "abnormal"):
        assert metrics[group]["n_good"] == 4 and metrics[group]["n_defect"] == 4
        assert metrics[group]["n_defect_pixels"] == box_pixels
        assert "pixel_auroc" in metrics[group] and "pixel_metrics_absent" not in metrics[group]


def test_image_level_labels_only_give_image_metrics_and_say_why_pixel_metrics_are_absent(runs):
    result = read(runs["labels_only_eval"] / "metrics.json")
    records = read(runs["labels_only_eval"] / "scores.json")["images"]
    metrics = result["metrics"]
    y, s = [r["label"] for r in records], [r["score"] for r in records]
    assert sum(y) == 4 and len(y) == 8
    for group in ("all", "abnormal"):
        m = metrics[group]
        assert m["image_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert m["n_defect_pixels"] == 0 and not {"pixel_auroc", "aupro", "pixel_ap"} & set(m)
        assert "image-level labels only" in m["pixel_metrics_absent"]
    table = (runs["labels_only_eval"] / "results.md").read_text()
    assert "no pixel metrics: none of the 4 anomalous images has a defect mask" in table


def test_image_level_labels_only_predict_and_compare(runs, tmp_path, capsys):
    abnormal = runs["labels_only_data"] / "abnormal"
    assert predict_main([str(runs["labels_only"]), str(abnormal), "--out", str(tmp_path / "p"), "--device=cpu",
                         "--no-heatmaps"]) == 0
    assert len(read(tmp_path / "p" / "scores.json")["images"]) == 4
    argv = ["--preset=quick", *TINY, f"--data.root={runs['labels_only_data']}", "--out", str(tmp_path / "c"),
            "--methods=pca", "--pca-components=2"]
    capsys.readouterr()
    assert compare_main(argv) == 0, capsys.readouterr().err
    record = read(tmp_path / "c" / "compare_pca.json")
    assert "pixel_metrics_absent" in record["methods"]["pca"]["metrics"]["all"]
    out = capsys.readouterr().out
    assert "pixel AUROC absent (" in out and "pixel AUROC nan" not in out, out[-1000:]


def test_threshold_support_is_the_binomial_tail_of_the_order_statistic():
    for n, q in ((3, 0.99), (20, 0.9), (100, 0.99), (57, 0.95)):
        support = threshold_support(n, quantile=q)
        alpha = 1 - q
        k = n - math.floor(q * (n - 1))
        # the FPR at the k-th largest of n uniform normals is Beta(k, n - k + 1); independent closed form
        assert support["confidence"] == pytest.approx(stats.beta.cdf(alpha, k, n - k + 1), rel=1e-9, abs=1e-15)
        assert support["images_needed"] == round(1 / alpha) and support["supported_fpr"] == pytest.approx(1 / n)
        assert (support["warning"] is None) == (n >= round(1 / alpha))
    # brute force: uniform scores, interpolated quantile threshold, true FPR = 1 - threshold
    rng = np.random.default_rng(0)
    fpr = 1 - np.quantile(rng.random((20000, 20)), 0.9, axis=1)
    assert float(np.mean(fpr <= 0.1)) >= threshold_support(20, quantile=0.9)["confidence"] - 0.01
    assert "3 held-out normal images cannot support the false-positive rate 0.01" in \
        threshold_support(3, quantile=0.99)["warning"]
    assert "needs at least 100 held-out normal images" in threshold_support(3, quantile=0.99)["warning"]


def test_thresholds_from_three_normals_warn(runs):
    scored = ScoredSet(torch.zeros(3, 4, 4), torch.tensor([1.0, 2.0, 3.0]), ["a", "b", "c"])
    with pytest.warns(UserWarning, match=r"3 held-out normal images cannot support .* P\(FPR <= 0\.01\) is only"):
        thr = thresholds_from_normal(scored, quantile=0.99)
    assert thr["image"] == pytest.approx(np.quantile([1.0, 2.0, 3.0], 0.99)) and thr["k_largest"] == 2


def test_fpr_bound_threshold_is_the_lowest_order_statistic_with_the_confidence():
    """The k-th largest of n normal scores bounds the FPR by alpha with probability Beta(k, n-k+1).cdf(alpha);
    the rule picks the largest such k, checked against scipy's Beta and a Monte Carlo of uniform scores."""
    from manifold_ae.anomaly.metrics import fpr_bound_rank, threshold_with_fpr_bound

    for n, alpha, conf in ((120, 0.02, 0.9), (60, 0.02, 0.9), (500, 0.02, 0.9), (300, 0.05, 0.95)):
        k, prob = fpr_bound_rank(n, fpr=alpha, confidence=conf)
        assert prob == pytest.approx(stats.beta.cdf(alpha, k, n - k + 1), rel=1e-9)
        if prob >= conf and k < n:  # the next order statistic down would not reach the confidence
            assert stats.beta.cdf(alpha, k + 1, n - k) < conf
    assert fpr_bound_rank(120, fpr=0.02, confidence=0.9)[0] == 1  # 1 - 0.98^120 = 0.912
    assert fpr_bound_rank(60, fpr=0.02, confidence=0.9) == (1, pytest.approx(1 - 0.98 ** 60))  # short of 0.9
    rng = np.random.default_rng(1)
    u = rng.random((20000, 500))  # uniform normal scores: the true FPR of a threshold t is 1 - t
    k, prob = fpr_bound_rank(500, fpr=0.02, confidence=0.9)
    thr = -np.sort(-u, axis=1)[:, k - 1]
    assert float(np.mean(1 - thr <= 0.02)) == pytest.approx(prob, abs=0.01)
    t, k2, _ = threshold_with_fpr_bound([0.3, 0.9, 0.1, 0.5], fpr=0.4, confidence=0.5)
    assert t == sorted([0.3, 0.9, 0.1, 0.5])[::-1][k2 - 1]
    scored = ScoredSet(torch.zeros(60, 4, 4), torch.arange(60.0), ["x"] * 60)
    with pytest.warns(UserWarning, match=r"60 held-out normal images cannot bound .* = 0\.702; that needs at "
                                         r"least 114 held-out"):
        thr = thresholds_from_normal(scored, quantile=0.99, fpr=0.02, confidence=0.9)
    assert thr["image"] == 59.0 and thr["rule"] == "fpr_bound" and thr["images_needed"] == 114


def test_predict_says_why_there_is_no_decision(runs, tmp_path, capsys):
    root = runs["masked_data"]
    run = tmp_path / "nohold"
    assert train_main([*TINY, "--data.holdout_fraction=0", f"--data.root={root}", f"--out={run}"]) == 0
    capsys.readouterr()
    assert predict_main([str(run), str(root / "abnormal"), "--out", str(tmp_path / "p"), "--no-heatmaps"]) == 0
    err = capsys.readouterr().err
    result = read(tmp_path / "p" / "scores.json")
    assert all(r["anomalous"] is None for r in result["images"])
    assert "data.holdout_fraction = 0.0" in result["no_decision"] and result["no_decision"] in err


def test_predict_warns_when_the_stored_threshold_has_too_few_held_out_images(runs, tmp_path, capsys):
    assert predict_main([str(runs["masked"]), str(runs["masked_data"] / "abnormal"), "--out", str(tmp_path / "p"),
                         "--no-heatmaps"]) == 0
    n = read(runs["masked_eval"] / "metrics.json")["thresholds"]["num_images"]
    assert n == 3  # round(0.25 * 12) of the 16 - 4 normal images left after the test share
    assert f"{n} held-out normal images cannot support" in capsys.readouterr().err
    assert read(tmp_path / "p" / "scores.json")["threshold_warning"].startswith(f"{n} held-out")


def test_predict_scores_the_readable_files_and_lists_the_rest(runs, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("n_000.bmp", "n_001.bmp"):
        (folder / name).write_bytes((runs["masked_data"] / "normal" / name).read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert predict_main([str(runs["masked"]), str(folder), "--out", str(tmp_path / "p"), "--no-heatmaps"]) == 1
    err = capsys.readouterr().err
    result = read(tmp_path / "p" / "scores.json")
    assert sorted(Path(r["path"]).name for r in result["images"]) == ["n_000.bmp", "n_001.bmp"]
    assert [Path(f["path"]).name for f in result["failures"]] == ["broken.png"] and "broken.png" in err
    assert predict_main([str(runs["masked"]), str(folder / "broken.png"), "--out", str(tmp_path / "q")]) == 2
    assert read(tmp_path / "q" / "scores.json")["images"] == []


def test_a_non_checkpoint_file_is_named_for_what_it_is(runs, tmp_path, capsys):
    png = tmp_path / "model.pt"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png, format="PNG")
    assert evaluate_main([str(png), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "it is a PNG image, not a PyTorch checkpoint" in err and "weights_only" not in err
    pickled = tmp_path / "other.pt"
    torch.save({"model": Path("x")}, pickled)
    assert predict_main([str(pickled), str(runs["masked_data"] / "normal"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "holding objects other than tensors" in err and "weights_only" not in err.lower()


def test_huge_inputs_are_refused_instead_of_scoring_minus_infinity(runs):
    pipe = Pipeline.from_checkpoint(runs["masked"], device="cpu")
    with pytest.raises(ValueError, match=r"x must hold finite intensities in \[0, 1\].*1e\+200"):
        pipe(torch.full((1, 1, SIZE, SIZE), 1e200, dtype=torch.float64))
    assert torch.isfinite(pipe(torch.full((1, 1, SIZE, SIZE), 0.5)).score).all()


def test_train_without_a_preset_says_it_uses_the_built_in_defaults(tmp_path, capsys):
    assert train_main(["--data.dataset=folder", f"--data.root={tmp_path / 'none'}", f"--out={tmp_path / 'run'}",
                       "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("manifold-ae train: no --preset given: the built-in defaults (data.dataset = ")


def test_stands_apart_false_alarm_is_the_renyi_closed_form():
    """r = (s_(k) - s_(k+1)) / (s_(k+1) - s_(m)) of i.i.d. exponential scores exceeds c with probability
    prod_{i=k+1}^{m-1} i / (i + c k): against a Monte Carlo of 40000 draws, and the telescoped product by hand."""
    from manifold_ae.anomaly.metrics import stands_apart, stands_apart_false_alarm

    assert stands_apart_false_alarm(120, 1, 3.0) == pytest.approx(2 * 3 * 4 / (60 * 61 * 62), rel=1e-12)
    rng = np.random.default_rng(2)
    for n, k, c in ((8, 1, 1.0), (10, 2, 0.5), (40, 1, 0.5), (40, 2, 0.3), (121, 1, 1.0)):
        draws = rng.exponential(size=(40000, n))
        r = np.array([stands_apart(row, k)[0] for row in draws])
        p = stands_apart_false_alarm(n, k, c)
        se = math.sqrt(p * (1 - p) / len(r))
        assert abs(float(np.mean(r > c)) - p) < 4 * se + 1e-4, (n, k, c, float(np.mean(r > c)), p)
    assert stands_apart([1.0, 2.0, 3.0], 1) is None  # no upper half beneath the second largest
    with pytest.raises(ValueError, match="k must be a positive rank"):
        stands_apart([1.0, 2.0, 3.0, 4.0], 0)


def test_a_threshold_set_by_one_outlying_normal_image_warns_and_names_it(runs, tmp_path, capsys):
    """120 exponential held-out scores and one planted 20 x the rest: the fpr_bound threshold sits on it, the
    threshold record names it, and predict repeats the warning; without the plant nothing warns."""
    import warnings

    rng = np.random.default_rng(3)
    base = rng.exponential(size=120)
    paths = [f"normal/{i:03d}.png" for i in range(121)]
    planted = ScoredSet(torch.zeros(121, 4, 4), torch.tensor([*base, 20 * base.max()]), paths)
    with pytest.warns(UserWarning, match=r"set by one held-out normal image, normal/120\.png"):
        thr = thresholds_from_normal(planted, quantile=0.99, fpr=0.02, confidence=0.9)
    assert thr["k_largest"] == 1 and thr["set_by"] == "normal/120.png" and thr["stands_apart"] > 3
    clean = ScoredSet(torch.zeros(120, 4, 4), torch.tensor(base), paths[:120])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = thresholds_from_normal(clean, quantile=0.99, fpr=0.02, confidence=0.9)
    assert "outlier_warning" not in quiet and quiet["set_by"] == paths[int(np.argmax(base))]
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.parent.mkdir()
    state = torch.load(runs["masked"] / "checkpoint.pt", weights_only=False)
    state["thresholds"] = thr
    torch.save(state, ckpt)
    assert predict_main([str(ckpt.parent), str(runs["masked_data"] / "abnormal"), "--out", str(tmp_path / "p"),
                         "--no-heatmaps"]) == 0
    assert "set by one held-out normal image, normal/120.png" in capsys.readouterr().err
    assert "normal/120.png" in read(tmp_path / "p" / "scores.json")["threshold_warning"]
