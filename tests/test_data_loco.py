"""data/mvtec_loco.py on a generated tree in the MVTec LOCO AD layout: splits, merged masks and named errors."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from manifold_ae.images.data.io import EmptyMaskError, collect_problems
from manifold_ae.images.data.mvtec_loco import ANOMALY_KINDS, CATEGORIES, MVTecLOCO

SIZE = 16


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _region(top, left, value=255):
    """One defect region: a 3x5 box of ``value`` at (top, left) on background 0."""
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    m[top:top + 3, left:left + 5] = value
    return m


def make_tree(root, obj="pushpins", *, n_train=3, n_val=2, n_good=2):
    """One logical anomaly with two region files, one structural anomaly with one; seeded images."""
    rng = np.random.default_rng(0)
    for folder, n in (("train/good", n_train), ("validation/good", n_val), ("test/good", n_good)):
        for i in range(n):
            _png(root / obj / folder / f"{i:03d}.png", rng.integers(0, 200, (SIZE, SIZE, 3), dtype=np.uint8))
    for kind in ANOMALY_KINDS:
        _png(root / obj / "test" / kind / "000.png", rng.integers(0, 200, (SIZE, SIZE, 3), dtype=np.uint8))
    gt = root / obj / "ground_truth"
    _png(gt / "logical_anomalies" / "000" / "000.png", _region(1, 1))
    _png(gt / "logical_anomalies" / "000" / "001.png", _region(10, 9, value=119))  # another region, another value
    _png(gt / "structural_anomalies" / "000" / "000.png", _region(5, 5))
    return root


def test_categories_are_the_five_published_objects():
    assert list(CATEGORIES) == ["breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors"]


def test_splits_hold_exactly_their_folders(tmp_path):
    make_tree(tmp_path)
    relative = {split: [s.image.relative_to(tmp_path).as_posix() for s in
                        MVTecLOCO(tmp_path, "pushpins", split=split).samples]
                for split in ("train", "validation", "test")}
    assert relative == {
        "train": ["pushpins/train/good/000.png", "pushpins/train/good/001.png", "pushpins/train/good/002.png"],
        "validation": ["pushpins/validation/good/000.png", "pushpins/validation/good/001.png"],
        "test": ["pushpins/test/good/000.png", "pushpins/test/good/001.png",
                 "pushpins/test/logical_anomalies/000.png", "pushpins/test/structural_anomalies/000.png"]}
    test = MVTecLOCO(tmp_path, "pushpins", split="test", image_size=SIZE)
    assert test.labels == [0, 0, 1, 1]
    assert test.defects == ["good", "good", "logical_anomalies", "structural_anomalies"]


def test_mask_is_the_union_of_the_region_files(tmp_path):
    make_tree(tmp_path)
    test = MVTecLOCO(tmp_path, "pushpins", split="test", image_size=SIZE)
    expected = np.zeros((SIZE, SIZE), dtype=np.float32)
    expected[1:4, 1:6] = 1
    expected[10:13, 9:14] = 1
    logical = test[2]
    assert set(logical) == {"image", "mask", "label", "defect", "path"} and logical["label"] == 1
    assert logical["mask"].shape == (1, SIZE, SIZE)
    np.testing.assert_array_equal(logical["mask"][0].numpy(), expected)
    structural = np.zeros((SIZE, SIZE), dtype=np.float32)
    structural[5:8, 5:10] = 1
    np.testing.assert_array_equal(test[3]["mask"][0].numpy(), structural)
    assert float(test[0]["mask"].sum()) == 0.0
    # resized: the union of the nearest-neighbour masks at 32 px is the 2x upsampled union
    big = MVTecLOCO(tmp_path, "pushpins", split="test", image_size=2 * SIZE)[2]["mask"][0]
    torch.testing.assert_close(big, torch.from_numpy(expected.repeat(2, 0).repeat(2, 1)))


def test_one_region_file_of_the_wrong_size_is_named(tmp_path):
    make_tree(tmp_path)
    bad = tmp_path / "pushpins" / "ground_truth" / "logical_anomalies" / "000" / "001.png"
    Image.fromarray(np.full((SIZE, SIZE + 1), 255, dtype=np.uint8)).save(bad)
    test = MVTecLOCO(tmp_path, "pushpins", split="test", image_size=SIZE)
    with pytest.raises(ValueError, match=r"mask file .*000/001.png is 16x17 .*expected 16x16"):
        test[2]


def test_all_empty_region_files_are_an_empty_mask(tmp_path):
    make_tree(tmp_path)
    folder = tmp_path / "pushpins" / "ground_truth" / "structural_anomalies" / "000"
    _png(folder / "000.png", np.zeros((SIZE, SIZE), dtype=np.uint8))
    test = MVTecLOCO(tmp_path, "pushpins", split="test", image_size=SIZE)
    with pytest.raises(EmptyMaskError, match=r"structural_anomalies/000/000.png of the anomalous image"):
        test[3]
    with pytest.warns(UserWarning, match="left out 1 of 4 images"):
        test.drop_empty_masks()
    assert test.defects == ["good", "good", "logical_anomalies"]


def test_missing_root_unknown_category_and_missing_split(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere does not exist; expected a dataset root in MVTec LOCO AD layout"):
        MVTecLOCO(tmp_path / "nowhere", "pushpins")
    root = make_tree(tmp_path / "r")
    with pytest.raises(ValueError, match=r"one of the MVTec LOCO AD objects \['breakfast_box'.*\], got 'pins'"):
        MVTecLOCO(root, "pins")
    with pytest.raises(ValueError, match=r"screw_bag does not exist; expected <root>/<object>/ with train/good/.*"
                                         r"ground_truth/<kind>/<image stem>/000.png.*found under .*\['pushpins'\]"):
        MVTecLOCO(root, "screw_bag")
    shutil.copytree(root / "pushpins", root / "my_object")
    assert len(MVTecLOCO(root, "my_object", split="validation", any_category=True)) == 2
    shutil.rmtree(root / "pushpins" / "test" / "logical_anomalies")
    with pytest.raises(ValueError, match=r"logical_anomalies does not exist; expected a folder of test images"):
        MVTecLOCO(root, "pushpins", split="test")


def test_stray_folders_and_files_list_what_was_expected(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "pushpins" / "test" / "broken_large").mkdir()
    with pytest.raises(ValueError, match=r"unexpected folder .*broken_large .*expected only the folders "
                                         r"\['good', 'logical_anomalies', 'structural_anomalies'\]"):
        MVTecLOCO(tmp_path, "pushpins", split="test")
    (tmp_path / "pushpins" / "test" / "broken_large").rmdir()
    (tmp_path / "pushpins" / "ground_truth" / "logical_anomalies" / "000" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unexpected file .*notes.txt .*expected only mask files 000.png"):
        MVTecLOCO(tmp_path, "pushpins", split="test")


def test_missing_mask_folder_names_the_file_and_is_collected(tmp_path):
    make_tree(tmp_path)
    shutil.rmtree(tmp_path / "pushpins" / "ground_truth" / "logical_anomalies" / "000")
    with pytest.raises(ValueError, match=r"defect image .*logical_anomalies/000.png has no mask; expected "
                                         r".*logical_anomalies/000/000.png \(MVTec LOCO AD layout"):
        MVTecLOCO(tmp_path, "pushpins", split="test")
    (tmp_path / "pushpins" / "ground_truth" / "logical_anomalies" / "000").mkdir()  # an empty folder: no mask
    with collect_problems() as problems:
        test = MVTecLOCO(tmp_path, "pushpins", split="test")
    assert len(problems) == 1 and "logical_anomalies/000.png has no mask" in problems[0]
    assert test.defects == ["good", "good", "structural_anomalies"]


def test_build_datasets_holds_out_the_validation_split_and_check_data_lists_missing_masks(tmp_path):
    from manifold_ae.commands.check_data import check_data
    from manifold_ae.images.config import DataConfig
    from manifold_ae.images.pipeline import build_datasets

    make_tree(tmp_path)
    cfg = DataConfig(dataset="mvtec_loco", root=str(tmp_path), category="pushpins", image_size=SIZE)
    splits = build_datasets(cfg)
    assert (len(splits.train), len(splits.holdout), len(splits.test)) == (3, 2, 4)
    assert {s.image.parent.name for s in splits.holdout.samples} == {"good"}
    assert all(s.image.parent.parent.name == "validation" for s in splits.holdout.samples)
    assert check_data(cfg).ok
    shutil.rmtree(tmp_path / "pushpins" / "ground_truth" / "structural_anomalies" / "000")
    report = check_data(cfg)
    assert len(report.problems) == 1 and "structural_anomalies/000/000.png" in report.problems[0]
