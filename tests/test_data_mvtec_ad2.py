"""data/mvtec_ad2.py on a generated tree in the MVTec AD 2 layout: splits, values, masks and every named error."""
import shutil

import numpy as np
import pytest
from PIL import Image

from manifold_ae.images.data.io import collect_problems
from manifold_ae.images.data.mvtec_ad2 import CATEGORIES, MVTecAD2

SIZE = 16


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _pixels(seed):
    return np.random.default_rng(seed).integers(0, 200, size=(SIZE, SIZE, 3), dtype=np.uint8)


def _box(k):
    """The defect box of the k-th bad image, a 0/255 mask (rows k..k+3, columns 2k..2k+4)."""
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    m[k:k + 4, 2 * k:2 * k + 5] = 255
    return m


def make_tree(root, obj="can", *, n_train=3, n_val=2, n_good=2, n_bad=2):
    """Images are seeded per (folder, index); returns {relative path: pixels} of every image written."""
    written = {}
    for seed, (folder, n) in enumerate((("train/good", n_train), ("validation/good", n_val),
                                        ("test_public/good", n_good), ("test_public/bad", n_bad))):
        for i in range(n):
            rel = f"{obj}/{folder}/{i:03d}_regular.png"
            written[rel] = _pixels(100 * seed + i)
            _png(root / rel, written[rel])
    for i in range(n_bad):
        _png(root / obj / "test_public" / "ground_truth" / "bad" / f"{i:03d}_regular_mask.png", _box(i))
    return written


def test_categories_are_the_eight_published_objects():
    assert list(CATEGORIES) == "can fabric fruit_jelly rice sheet_metal vial wallplugs walnuts".split()


def test_splits_hold_exactly_their_folders(tmp_path):
    written = make_tree(tmp_path)
    for split, folder, n in (("train", "train/good", 3), ("validation", "validation/good", 2)):
        ds = MVTecAD2(tmp_path, "can", split=split, image_size=SIZE)
        assert len(ds) == n and ds.labels == [0] * n and ds.defects == ["good"] * n
        for i in range(n):
            item = ds[i]
            rel = f"can/{folder}/{i:03d}_regular.png"
            assert item["path"] == str(tmp_path / rel)
            np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), written[rel] / 255.0, atol=1e-7)
            assert float(item["mask"].sum()) == 0.0


def test_test_split_is_test_public_with_its_masks(tmp_path):
    make_tree(tmp_path)
    ds = MVTecAD2(tmp_path, "can", split="test", image_size=SIZE)
    assert ds.labels == [0, 0, 1, 1] and ds.defects == ["good", "good", "bad", "bad"]
    assert [s.image.relative_to(tmp_path).as_posix() for s in ds.samples] == [
        "can/test_public/good/000_regular.png", "can/test_public/good/001_regular.png",
        "can/test_public/bad/000_regular.png", "can/test_public/bad/001_regular.png"]
    for k in (0, 1):
        item = ds[2 + k]
        assert set(item) == {"image", "mask", "label", "defect", "path"} and item["label"] == 1
        np.testing.assert_array_equal(item["mask"][0].numpy(), (_box(k) > 0).astype(np.float32))
    assert float(ds[0]["mask"].sum()) == 0.0


def test_missing_root_unknown_category_and_missing_split(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere does not exist; expected a dataset root in MVTec AD 2 layout"):
        MVTecAD2(tmp_path / "nowhere", "can")
    make_tree(tmp_path / "r")
    with pytest.raises(ValueError, match=r"one of the MVTec AD 2 objects \['can', 'fabric'.*'walnuts'\], got 'cat'"):
        MVTecAD2(tmp_path / "r", "cat")
    assert len(MVTecAD2(tmp_path / "r", "can", any_category=True)) == 3
    with pytest.raises(ValueError, match=r"rice does not exist; expected <root>/<object>/ with train/good/.*"
                                         r"found under .*\['can'\]"):
        MVTecAD2(tmp_path / "r", "rice")
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'validation', 'test'\], got 'val'"):
        MVTecAD2(tmp_path / "r", "can", split="val")
    shutil.rmtree(tmp_path / "r" / "can" / "validation")
    with pytest.raises(ValueError, match=r"validation/good does not exist; expected the normal validation images"):
        MVTecAD2(tmp_path / "r", "can", split="validation")


def test_stray_folder_in_test_public_lists_the_expected_ones(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "can" / "test_public" / "scratch").mkdir()
    with pytest.raises(ValueError, match=r"unexpected folder .*scratch .*expected only the folders "
                                         r"\['bad', 'good', 'ground_truth'\]"):
        MVTecAD2(tmp_path, "can", split="test")


def test_missing_mask_names_the_file_and_is_collected(tmp_path):
    make_tree(tmp_path)
    missing = tmp_path / "can" / "test_public" / "ground_truth" / "bad" / "001_regular_mask.png"
    missing.unlink()
    with pytest.raises(ValueError, match=r"defect image .*bad/001_regular.png has no mask; expected .*"
                                         r"001_regular_mask.png \(MVTec AD 2 layout"):
        MVTecAD2(tmp_path, "can", split="test")
    with collect_problems() as problems:
        ds = MVTecAD2(tmp_path, "can", split="test")
    assert len(problems) == 1 and str(missing) in problems[0]
    assert ds.labels == [0, 0, 1]  # the image without its mask is left out, nothing else
    shutil.rmtree(tmp_path / "can" / "test_public" / "ground_truth")
    with pytest.raises(ValueError, match=r"ground_truth/bad does not exist; expected the masks of the bad test"):
        MVTecAD2(tmp_path, "can", split="test")


def test_build_datasets_holds_out_the_validation_split(tmp_path):
    from manifold_ae.commands.check_data import check_data
    from manifold_ae.images.config import DataConfig
    from manifold_ae.images.pipeline import build_datasets

    make_tree(tmp_path)
    cfg = DataConfig(dataset="mvtec_ad2", root=str(tmp_path), category="can", image_size=SIZE)
    splits = build_datasets(cfg)
    folders = {name: sorted({s.image.parent.relative_to(tmp_path).as_posix() for s in ds.samples})
               for name, ds in (("train", splits.train), ("holdout", splits.holdout), ("test", splits.test))}
    assert folders == {"train": ["can/train/good"], "holdout": ["can/validation/good"],
                       "test": ["can/test_public/bad", "can/test_public/good"]}
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (3, 2, 4)
    assert check_data(cfg).ok
