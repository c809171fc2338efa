"""``manifold-ae compare``: every method trained/fitted and scored by one path; reuse; the gain normalisation."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fakes import make_fake_mvtec
from manifold_ae.images.baselines import PCAReconstruction
from manifold_ae.commands.compare import METHODS, _train_network, main as compare_main, method_config, results_table
from manifold_ae.images.config import CHECKPOINT_NAME, load_config
from manifold_ae.images.pipeline import Pipeline, build_datasets, load_checkpoint, normalize_intensity

TINY = ["--data.dataset=synthetic", "--data.category=widget", "--data.image_size=32", "--model.width=4",
        "--model.depth=2", "--model.dilations=1,2", "--model.sdc_layers=1", "--train.batch_size=4",
        "--train.lr=1e-2", "--train.warmup=1", "--train.steps=3", "--train.device=cpu", "--train.precision=float32",
        "--train.channels_last=false", "--data.holdout_fraction=0.25", "--score.sigma=1", "--score.batch_size=5",
        "--data.normalize=gain", "--train.checkpoint_every=100"]

#: what every method reaches on the fake data after 3 steps (measured: 1.0 everywhere, except the AE's pixel AP
#: 0.94 and AUPRO 0.996), less a margin; chance is 0.5 for the AUROCs and the fraction of defect pixels for AP
#: (a few %). A scoring that ignored the model, inverted the scores or mixed up the masks would fall below.
FLOORS = {"image_auroc": 0.9, "pixel_auroc": 0.95, "aupro": 0.9, "pixel_ap": 0.8}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("compare")
    root = make_fake_mvtec(tmp / "data", category="widget", n_train=12, n_test_good=3,
                           defects=("scratch", "dent"), n_defect=3, size=32, channels=3)
    args = ["--preset", "quick", *TINY, f"--data.root={root}", "--out", str(tmp / "cmp"), "--pca-components=4",
            "--no-progress"]
    assert compare_main(args) == 0
    first = json.loads((tmp / "cmp" / "compare.json").read_text())
    assert compare_main(args) == 0  # second run: every network reused, PCA refitted
    second = json.loads((tmp / "cmp" / "compare.json").read_text())
    return {"root": root, "out": tmp / "cmp", "first": first, "second": second, "args": args}


def test_every_method_is_scored_and_the_table_is_written(run):
    record = run["first"]
    assert list(record["methods"]) == list(METHODS)
    assert record["split"] == {"train": 9, "holdout": 3, "test": 9}
    for method, entry in record["methods"].items():
        assert set(entry["metrics"]) == {"all", "dent", "scratch"}
        for defect, m in entry["metrics"].items():
            for key, floor in FLOORS.items():  # far above chance (0.5 AUROC; AP: the defect pixel fraction)
                assert m[key] >= floor, (method, defect, key, m[key])
        assert entry["thresholds"]["num_images"] == 3  # thresholds from the 3 held-out normal images only
        assert entry["training"]["seconds"] > 0
    table = (run["out"] / "results.md").read_text()
    test_part, validation_part = table.split("## Synthetic validation set")
    assert results_table(run["second"]) in test_part  # the files of the last run
    assert results_table(run["second"], key="validation") in validation_part
    assert len(results_table(run["second"]).strip().splitlines()) == 2 + 3 * len(METHODS)
    assert "| selfsupervised | **all** | 3 / 6 |" in test_part
    assert "| selfsupervised | **all** | 3 / 18 |" in validation_part  # 3 held-out normals, 6 defects each


def test_validation_metrics_come_from_held_out_images_with_synthetic_defects(run):
    # reference: the validation set rebuilt here, scored by the saved PCA, AUROC by scikit-learn
    from manifold_ae.images.validation import validation_set

    config = load_config("quick", [a for a in run["args"] if a.startswith("--") and "=" in a
                                   and not a.startswith("--pca")])
    splits = build_datasets(config.data)
    val = validation_set(splits.holdout, split_seed=config.data.split_seed)
    state = torch.load(run["out"] / "pca" / "pca.pt", weights_only=True)
    pca = PCAReconstruction(state["mean"], state["components"], shape=tuple(state["shape"]))
    pipe = Pipeline(pca, image_size=32, channels=3, score=config.score)
    scored = pipe.score_dataset(val)
    got = run["first"]["methods"]["pca"]["validation"]
    assert set(got) == {"all", "synthetic_blob", "synthetic_line", "synthetic_faint_line", "synthetic_uneven",
                         "synthetic_break", "synthetic_fray"}
    assert got["all"]["image_auroc"] == pytest.approx(roc_auc_score(scored.labels.numpy(), scored.scores.numpy()),
                                                      abs=1e-9)
    for method in METHODS:
        assert run["second"]["methods"][method]["validation"] == run["first"]["methods"][method]["validation"]


def test_networks_get_their_objective_and_skips_and_are_reused(run):
    for method in ("selfsupervised", "ae", "dae"):
        cfg = run["first"]["methods"][method]["config"]
        objective, skips, _ = METHODS[method]
        assert cfg["objective"]["name"] == objective
        assert cfg["model"]["skips"] is (True if skips is None else skips)
        assert cfg["train"]["out_dir"] == str(run["out"] / method)
        assert run["second"]["methods"][method]["training"]["reused"] is True
        assert run["second"]["methods"][method]["metrics"] == run["first"]["methods"][method]["metrics"]
    assert "reused" not in run["first"]["methods"]["ae"]["training"]


def test_pca_row_matches_a_reference_computed_here(run):
    # independent reference: the saved projection, applied by hand, max of the scipy-smoothed residual
    from scipy.ndimage import gaussian_filter

    config = load_config("quick", [a for a in run["args"] if a.startswith("--") and "=" in a
                                   and not a.startswith("--pca")])
    splits = build_datasets(config.data)
    state = torch.load(run["out"] / "pca" / "pca.pt", weights_only=True)
    pca = PCAReconstruction(state["mean"], state["components"], shape=tuple(state["shape"]))
    scores, labels = [], []
    for i in range(len(splits.test)):
        item = splits.test[i]
        x = item["image"][None].double()
        r = ((x - pca(x.float()).double()) ** 2).mean(1)[0].numpy()
        scores.append(gaussian_filter(r, 1.0, mode="reflect", truncate=4.0).max())
        labels.append(int(item["label"]))
    got = run["first"]["methods"]["pca"]["metrics"]["all"]["image_auroc"]
    assert got == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)


def test_method_config_and_bad_methods():
    config = load_config("quick")
    dae = method_config(config, "dae", out_dir="runs/x")
    assert dae.objective.name == "denoising" and dae.model.skips is False and dae.train.out_dir == "runs/x/dae"
    assert method_config(config, "selfsupervised", out_dir="o").model == config.model
    with pytest.raises(ValueError, match=r"method 'pca' is not a trained network; expected one of"):
        method_config(config, "pca", out_dir="o")


def test_main_reports_an_unknown_method(capsys, tmp_path):
    assert compare_main(["--preset", "quick", "--methods", "ae,vae", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "methods ['ae', 'vae'] must be a non-empty subset of" in err and "'selfsupervised'" in err


def test_gain_normalisation_sets_the_mean_of_non_zero_pixels():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(0.05, 0.3, size=(3, 1, 8, 10))).float()
    x[:, :, :2] = 0.0  # letterbox padding: not counted, stays 0
    y = normalize_intensity(x, mode="gain", target=0.4)
    inner = y[:, :, 2:].reshape(3, -1).double()
    np.testing.assert_allclose(inner.mean(1).numpy(), 0.4, rtol=1e-6)
    assert torch.equal(y[:, :, :2], torch.zeros(3, 1, 2, 10))
    ratio = y[:, :, 2:] / x[:, :, 2:]  # one gain per image
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), rtol=1e-5)
    assert torch.equal(normalize_intensity(x[0], mode="none"), x[0])
    assert normalize_intensity(torch.full((1, 4, 4), 0.9), mode="gain", target=0.6).max() == pytest.approx(0.6)
    assert normalize_intensity(torch.full((1, 4, 4), 0.2), mode="gain", target=0.9).max() == pytest.approx(0.9)
    two = torch.tensor([[[0.2, 0.8]]])  # mean 0.5, gain 1.6: 0.32 and 1.28 -> clipped to 1
    assert torch.allclose(normalize_intensity(two, mode="gain", target=0.8), torch.tensor([[[0.32, 1.0]]]))
    with pytest.raises(ValueError, match=r"mode must be one of \['none', 'gain'\], got 'std'"):
        normalize_intensity(x, mode="std")
    with pytest.raises(ValueError, match=r"data.normalize must be one of"):
        load_config("quick", ["--data.normalize=std"])


def test_pipeline_load_applies_the_same_normalisation_as_the_datasets(run):
    pipe = Pipeline.from_checkpoint(run["out"] / "selfsupervised", device="cpu")
    assert pipe.normalize == "gain"
    splits = build_datasets(pipe.config.data)
    items = [splits.test[i] for i in range(len(splits.test))]
    loaded = pipe.load([it["path"] for it in items])  # (N, C, H, W): predict's loader
    assert torch.equal(loaded, torch.stack([it["image"] for it in items]))
    assert not torch.equal(loaded, torch.stack([splits.test.dataset[i]["image"] for i in range(len(items))]))


def test_a_run_folder_of_another_config_is_never_deleted_without_overwrite(run, tmp_path, capsys):
    out = tmp_path / "cmp"
    (out / "ae").mkdir(parents=True)
    (out / "ae" / CHECKPOINT_NAME).write_bytes((run["out"] / "ae" / CHECKPOINT_NAME).read_bytes())
    (out / "ae" / "notes.txt").write_text("mine")
    (out / "dae").mkdir()
    (out / "dae" / "notes.txt").write_text("mine too")
    args = [str(out) if a == str(run["out"]) else a for a in run["args"]]
    assert compare_main([*args, "--methods", "ae", "--train.lr=2e-2"]) == 2
    err = capsys.readouterr().err
    assert str(out / "ae") in err and "train.lr: 0.01 -> 0.02" in err and "--overwrite" in err
    assert "Nothing was deleted" in err
    assert (out / "ae" / "notes.txt").read_text() == "mine"  # untouched
    assert compare_main([*args, "--methods", "dae"]) == 2
    err = capsys.readouterr().err
    assert str(out / "dae") in err and f"holds no {CHECKPOINT_NAME}" in err and "notes.txt" in err
    assert (out / "dae" / "notes.txt").is_file()
    # an unfinished run of the same config is not silently restarted either
    unfinished = load_checkpoint(run["out"] / "ae")
    unfinished["step"] = 1
    unfinished["config"]["train"]["out_dir"] = str(out / "same")
    (out / "same").mkdir()
    torch.save(unfinished, out / "same" / CHECKPOINT_NAME)
    config = method_config(load_config("quick", [a for a in args if a.startswith("--") and "=" in a
                                                 and not a.startswith("--pca")]), "ae", out_dir=out)
    config = config.replace(train=dataclasses.replace(config.train, out_dir=str(out / "same")))
    with pytest.raises(ValueError, match=r"unfinished run \(step 1 of 3\)"):
        _train_network(config, progress=False)
    # --overwrite replaces the folder, and says so
    assert compare_main([*args, "--methods", "ae", "--train.lr=2e-2", "--overwrite"]) == 0
    assert "--overwrite: replacing" in capsys.readouterr().out
    assert not (out / "ae" / "notes.txt").exists()
    assert load_checkpoint(out / "ae")["config"]["train"]["lr"] == 0.02


def test_score_keys_and_unused_corruption_keys_do_not_retrain_but_rescore(run, capsys):
    """A changed score section reuses every network and rescores it with the new score (its normal statistics
    and thresholds refitted); a changed corruption reuses the AE (which has no corruption) but not the
    self-supervised network."""
    args = run["args"]
    assert compare_main([*args, "--methods", "ae", "--score.scales=1,4", "--score.level_norm=level"]) == 0
    record = json.loads((run["out"] / "compare_ae.json").read_text())
    entry = record["methods"]["ae"]
    assert entry["training"]["reused"] is True
    assert entry["metrics"]["all"]["image_auroc"] != run["first"]["methods"]["ae"]["metrics"]["all"]["image_auroc"] \
        or entry["thresholds"]["image"] != run["first"]["methods"]["ae"]["thresholds"]["image"]
    assert compare_main([*args, "--methods", "ae", "--corruption.noise_sigma=0.05"]) == 0
    assert json.loads((run["out"] / "compare_ae.json").read_text())["methods"]["ae"]["training"]["reused"] is True
    assert compare_main([*args, "--methods", "selfsupervised", "--corruption.noise_sigma=0.05"]) == 2
    assert "corruption.noise_sigma: 0.0 -> 0.05" in capsys.readouterr().err
