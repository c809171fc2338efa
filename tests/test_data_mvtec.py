"""data/mvtec.py on a fake tree in the published MVTec AD layout: values, labels, masks and every error path."""
import shutil

import numpy as np
import pytest
import torch
from fakes import fake_defect_box, fake_image, make_fake_mvtec

from manifold_ae.images.data import CATEGORIES, MVTecAD, mvtec_like


def test_categories_are_the_fifteen_published_names():
    published = """bottle cable capsule carpet grid hazelnut leather metal_nut pill screw tile toothbrush
                   transistor wood zipper""".split()
    assert list(CATEGORIES) == published


def test_train_split_values_and_labels(tmp_path):
    root = make_fake_mvtec(tmp_path, category="bottle", n_train=3, size=16)
    ds = MVTecAD(root, "bottle", split="train", image_size=16)
    assert len(ds) == 3 and ds.labels == [0, 0, 0] and ds.defects == ["good"] * 3
    for i in range(3):
        item = ds[i]
        assert set(item) == {"image", "mask", "label", "defect", "path"}
        assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
        np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), fake_image(i, (16, 16)) / 255.0,
                                   atol=1e-7)
        assert item["mask"].shape == (1, 16, 16) and float(item["mask"].sum()) == 0
        assert item["path"].endswith(f"train/good/{i:03d}.png")


def test_test_split_masks_mark_the_painted_defects(tmp_path):
    root = make_fake_mvtec(tmp_path, category="widget", n_test_good=2, defects=("crack", "scratch"), n_defect=3,
                           size=32)
    ds = mvtec_like(root, "widget", split="test", image_size=32)
    assert len(ds) == 2 + 2 * 3
    assert ds.defects == ["good"] * 2 + ["crack"] * 3 + ["scratch"] * 3
    assert ds.labels == [0, 0] + [1] * 6
    for k in range(2, 8):
        item = ds[k]
        i = int(item["path"][-7:-4])
        top, left, bh, bw = fake_defect_box(i, (32, 32))
        ref = np.zeros((32, 32))
        ref[top:top + bh, left:left + bw] = 1
        np.testing.assert_array_equal(item["mask"][0].numpy(), ref)
        inside = item["image"][:, item["mask"][0] == 1]
        outside = item["image"][:, item["mask"][0] == 0]
        assert torch.all(inside == 1.0) and torch.all(outside < 0.8)  # the white box is exactly the mask


def test_resize_gray_channels_cache_and_collate(tmp_path):
    root = make_fake_mvtec(tmp_path, category="screw", n_train=4, size=32, channels=1)
    ds = MVTecAD(root, "screw", split="train", image_size=(16, 24), channels=3, cache=True)
    item = ds[0]
    assert item["image"].shape == (3, 16, 24)
    torch.testing.assert_close(item["image"][0], item["image"][2])  # gray repeated to RGB
    assert ds[0]["image"] is item["image"]  # served from the cache
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 24) and batch["mask"].shape == (4, 1, 16, 24)
    assert batch["label"].tolist() == [0, 0, 0, 0]


def test_unknown_category_needs_the_flag(tmp_path):
    root = make_fake_mvtec(tmp_path, category="widget")
    with pytest.raises(ValueError, match=r"category must be one of the MVTec AD categories \['bottle'.*'widget'"):
        MVTecAD(root, "widget")
    assert len(MVTecAD(root, "widget", any_category=True)) == 4


def test_missing_root_category_and_split_folders(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere does not exist; expected a dataset root in MVTec AD layout"):
        MVTecAD(tmp_path / "nowhere", "bottle")
    root = make_fake_mvtec(tmp_path / "r", category="bottle")
    with pytest.raises(ValueError, match=r"cable does not exist; expected <root>/cable/ .*found under .*\['bottle'\]"):
        MVTecAD(root, "cable")
    shutil.rmtree(root / "bottle" / "train")
    with pytest.raises(ValueError, match=r"train/good does not exist; expected the normal training images"):
        MVTecAD(root, "bottle", split="train")
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\], got 'val'"):
        MVTecAD(root, "bottle", split="val")
    shutil.rmtree(root / "bottle" / "test" / "good")
    with pytest.raises(ValueError, match=r"test/good does not exist; expected the normal test images"):
        MVTecAD(root, "bottle", split="test")
    shutil.rmtree(root / "bottle" / "test")
    with pytest.raises(ValueError, match=r"bottle/test does not exist; expected the test split"):
        MVTecAD(root, "bottle", split="test")


def test_defect_image_without_mask_or_ground_truth(tmp_path):
    root = make_fake_mvtec(tmp_path, category="pill", defects=("crack",), n_defect=2)
    (root / "pill" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(ValueError, match=r"defect image .*test/crack/001\.png has no mask; expected "
                                         r".*ground_truth/crack/001_mask\.png"):
        MVTecAD(root, "pill", split="test")
    shutil.rmtree(root / "pill" / "ground_truth")
    with pytest.raises(ValueError, match=r"ground_truth/crack does not exist; expected the masks of defect 'crack'"):
        MVTecAD(root, "pill", split="test")


def test_empty_folder_stray_file_and_mask_size(tmp_path):
    root = make_fake_mvtec(tmp_path, category="tile", defects=("oil",), n_defect=1, size=16)
    (root / "tile" / "test" / "glue").mkdir()
    with pytest.raises(ValueError, match=r"test/glue holds no images; expected at least one of test images of "
                                         r"defect 'glue'"):
        MVTecAD(root, "tile", split="test")
    (root / "tile" / "test" / "glue").rmdir()
    (root / "tile" / "test" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unexpected file .*readme\.txt .*expected only folders good/ and <defect>/"):
        MVTecAD(root, "tile", split="test")
    (root / "tile" / "test" / "readme.txt").unlink()
    from PIL import Image
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "tile" / "ground_truth" / "oil" / "000_mask.png")
    ds = MVTecAD(root, "tile", split="test", image_size=16)
    with pytest.raises(ValueError, match=r"000_mask\.png is 8x8 .*expected 16x16, the size of its image"):
        ds[len(ds) - 1]


def test_missing_masks_are_collected_inside_collect_problems(tmp_path):
    from manifold_ae.images.data.io import collect_problems

    root = make_fake_mvtec(tmp_path, category="pill", defects=("crack", "dent"), n_defect=3)
    (root / "pill" / "ground_truth" / "crack" / "001_mask.png").unlink()
    (root / "pill" / "ground_truth" / "dent" / "000_mask.png").unlink()
    with collect_problems() as problems:
        ds = MVTecAD(root, "pill", split="test")  # no error: both recorded, both images left out
    assert len(problems) == 2
    assert problems[0].startswith(f"defect image {root / 'pill/test/crack/001.png'} has no mask; expected "
                                  f"{root / 'pill/ground_truth/crack/001_mask.png'}")
    assert problems[1].startswith(f"defect image {root / 'pill/test/dent/000.png'} has no mask")
    assert [s.image.name for s in ds.samples if s.label] == ["000.png", "002.png", "001.png", "002.png"]
    assert ds.defects == ["good"] * 2 + ["crack"] * 2 + ["dent"] * 2
    with pytest.raises(ValueError, match=r"crack/001\.png has no mask"):  # outside the block: the first raises
        MVTecAD(root, "pill", split="test")
