"""data/synthetic.py: layout, counts, determinism, masks = changed pixels, re-use/overwrite rules and the CLI."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from manifold_ae.images.data import mvtec_like
from manifold_ae.images.data.synthetic import SYNTHETIC_CATEGORIES, main, make_synthetic, synthetic_sample

SMALL = dict(n_train=3, n_test_good=2, n_test_defect=4, image_size=48, seed=5)
SMALL_SAMPLE = dict(image_size=48, seed=5)


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("syn"), categories=("weave", "brick"), **SMALL)


def test_layout_and_counts(small_root):
    for category in ("weave", "brick"):
        cat = small_root / category
        assert len(list((cat / "train" / "good").glob("*.png"))) == 3
        assert len(list((cat / "test" / "good").glob("*.png"))) == 2
        types = SYNTHETIC_CATEGORIES[category]
        per_type = {d: len(list((cat / "test" / d).glob("*.png"))) for d in types if (cat / "test" / d).is_dir()}
        assert sum(per_type.values()) == 4 and list(per_type) == list(types[:len(per_type)])
        for d in per_type:
            for img in (cat / "test" / d).glob("*.png"):
                assert (cat / "ground_truth" / d / f"{img.stem}_mask.png").is_file()
        test = mvtec_like(small_root, category, split="test", image_size=48)
        assert test.labels.count(0) == 2 and test.labels.count(1) == 4
        item = test[len(test) - 1]
        assert item["image"].shape == (3, 48, 48) and float(item["mask"].sum()) > 0


def test_masks_mark_exactly_the_changed_pixels(small_root):
    """The mask is exactly the set of pixels that differ from the regenerated clean texture (after 8-bit rounding)."""
    for category in ("weave", "brick"):
        cat = small_root / category
        for d in SYNTHETIC_CATEGORIES[category]:
            for img_path in sorted((cat / "test" / d).glob("*.png")):
                clean, _, _ = synthetic_sample(category, group=d, index=int(img_path.stem), **SMALL_SAMPLE)
                saved = np.asarray(Image.open(img_path))
                mask = np.asarray(Image.open(cat / "ground_truth" / d / f"{img_path.stem}_mask.png")) >= 128
                changed = (saved != _u8(clean)).any(-1)
                assert mask.any()
                assert not (changed & ~mask).any(), f"{img_path}: pixels changed outside the mask"
                np.testing.assert_array_equal(changed, mask, err_msg=f"{img_path}: mask != changed pixels")



@pytest.mark.parametrize("category", sorted(SYNTHETIC_CATEGORIES))
def test_every_category_and_defect_type(category):
    for d in SYNTHETIC_CATEGORIES[category]:
        for index in range(2):
            clean, image, mask = synthetic_sample(category, group=d, index=index, image_size=64, seed=1)
            assert clean.shape == image.shape == (3, 64, 64) and mask.shape == (1, 64, 64)
            assert 0 <= float(image.min()) and float(image.max()) <= 1
            m = mask[0].bool()
            changed = (_u8(image) != _u8(clean)).any(-1)
            assert m.any()
            np.testing.assert_array_equal(changed, m.numpy())  # the mask is exactly the set of changed pixels
            assert float(m.float().mean()) < 0.2  # a local defect, not a new surface


def test_deterministic_and_normals_differ(small_root, tmp_path):
    again = make_synthetic(tmp_path, categories=("weave",), **SMALL)
    for f in sorted((small_root / "weave").rglob("*.png")):
        assert (again / "weave" / f.relative_to(small_root / "weave")).read_bytes() == f.read_bytes()
    a = np.asarray(Image.open(small_root / "weave" / "train" / "good" / "000.png"), dtype=float)
    b = np.asarray(Image.open(small_root / "weave" / "train" / "good" / "001.png"), dtype=float)
    assert np.abs(a - b).mean() > 5  # a new crop/phase per image
    _, other, _ = synthetic_sample("weave", group="train", index=0, image_size=48, seed=6)
    assert np.abs(_u8(other).astype(float) - a).mean() > 5  # the seed matters


def test_reuse_overwrite_and_refusal(tmp_path):
    root = make_synthetic(tmp_path, categories=("wood",), n_train=2, n_test_good=1, n_test_defect=3, image_size=32)
    f = root / "wood" / "train" / "good" / "000.png"
    stamp = f.stat().st_mtime_ns
    make_synthetic(tmp_path, categories=("wood",), n_train=2, n_test_good=1, n_test_defect=3, image_size=32)
    assert f.stat().st_mtime_ns == stamp  # same parameters: kept, not rewritten
    with pytest.raises(ValueError, match=r"wood was generated with other parameters .*pass overwrite=True"):
        make_synthetic(tmp_path, categories=("wood",), n_train=3, n_test_good=1, n_test_defect=3, image_size=32)
    make_synthetic(tmp_path, categories=("wood",), n_train=3, n_test_good=1, n_test_defect=3, image_size=32,
                   overwrite=True)
    assert len(list((root / "wood" / "train" / "good").glob("*.png"))) == 3
    assert json.loads((root / "wood" / ".synthetic.json").read_text())["n_train"] == 3
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match=r"grid exists and is not a synthetic dataset folder .*refusing"):
        make_synthetic(tmp_path, categories=("grid",), image_size=32, overwrite=True)
    assert (tmp_path / "grid" / "mine.txt").read_text() == "user data"


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"categories must be one of \['weave'.*got 'carpet'"):
        make_synthetic("/tmp/unused-never-written", categories=("carpet",))
    with pytest.raises(ValueError, match=r"image_size must be an integer in \[32, None\], got 8"):
        make_synthetic("/tmp/unused-never-written", image_size=8)
    with pytest.raises(ValueError, match=r"group must be one of \['train', 'good', 'scratch'"):
        synthetic_sample("wood", group="spot", index=0)


def test_cli_main(tmp_path, capsys):
    rc = main(["--out", str(tmp_path), "--categories", "grass", "--image-size", "32", "--n-train", "2",
               "--n-test-good", "1", "--n-test-defect", "3", "--seed", "3", "--quiet"])
    assert rc == 0
    assert len(mvtec_like(tmp_path, "grass", split="test", image_size=32)) == 4
    assert "grass" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--categories", "carpet"])
    assert exc.value.code == 2
    assert "invalid choice: 'carpet'" in capsys.readouterr().err


def test_written_dataset_passes_the_data_check(small_root):
    """The check every training run makes first (decode every file, masks paired, of the image's size, non-empty
    for each defect image) finds no problem in the written data."""
    from manifold_ae.commands.check_data import check_data
    from manifold_ae.images.config import load_config

    for category in ("weave", "brick"):
        cfg = load_config(None, [f"--data.root={small_root}", f"--data.category={category}",
                                 "--data.image_size=48", "--model.depth=2"]).data
        report = check_data(cfg)
        assert report.ok, report.problems
        # 3 normal training images: round(0.1 * 3) = 0, at least 1 held out; the test set is 2 good + 4 defect
        assert [len(report.splits.train), len(report.splits.holdout)] == [2, 1]
        assert report.splits.test.labels == [0, 0, 1, 1, 1, 1]
