"""data/folder.py: masks beside images or in a mask folder, file subsets, errors, and the real Magnetic Tile data."""
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import fake_defect_box, fake_image, make_fake_folder
from PIL import Image

from manifold_ae.images.data import FolderDataset, magnetic_tile_splits
from manifold_ae.images.data.folder import split_beside
from manifold_ae.images.data.io import load_mask


def _box(i, size):
    ref = np.zeros(size)
    top, left, bh, bw = fake_defect_box(i, size)
    ref[top:top + bh, left:left + bw] = 1
    return ref


def test_masks_beside_images(tmp_path):
    dirs = make_fake_folder(tmp_path, n_normal=3, n_abnormal=2, size=(32, 48), channels=1, masks="beside")
    ds = FolderDataset(dirs["normal"], abnormal_dir=dirs["abnormal"], image_size=(32, 48), channels=1)
    assert len(ds) == 5 and ds.labels == [0, 0, 0, 1, 1] and ds.defects == ["good"] * 3 + ["abnormal"] * 2
    for k in range(3):
        np.testing.assert_allclose(ds[k]["image"][0].numpy(), fake_image(k, (32, 48), channels=1) / 255, atol=1e-7)
    for i in range(2):
        item = ds[3 + i]
        assert item["path"].endswith(f"a_{i:03d}.bmp")  # the .png beside it is its mask, not an image
        np.testing.assert_array_equal(item["mask"][0].numpy(), _box(i, (32, 48)))
        assert torch.all(item["image"][item["mask"] == 1] == 1.0)


def test_mask_folder_with_suffix_and_defect_mapping(tmp_path):
    dirs = make_fake_folder(tmp_path, n_normal=2, n_abnormal=3, masks="dir", mask_suffix="_mask", image_ext=".png")
    ds = FolderDataset(dirs["normal"], abnormal_dir={"dent": dirs["abnormal"]}, mask_dir=dirs["masks"],
                       mask_suffix="_mask", image_size=16, channels=3)
    assert ds.defects == ["good", "good", "dent", "dent", "dent"]
    item = ds[4]
    assert item["image"].shape == (3, 16, 16) and item["mask"].shape == (1, 16, 16)
    assert float(item["mask"].sum()) > 0


def test_files_subset_and_errors(tmp_path):
    dirs = make_fake_folder(tmp_path, n_normal=4, n_abnormal=2)
    ds = FolderDataset(dirs["normal"], files=["n_002.bmp", dirs["normal"] / "n_000.bmp"], image_size=8)
    assert [Path(s.image).name for s in ds.samples] == ["n_002.bmp", "n_000.bmp"]
    with pytest.raises(ValueError, match=r"file 'n_009\.bmp' of files is not a normal image in .*normal"):
        FolderDataset(dirs["normal"], files=["n_009.bmp"])
    (dirs["abnormal"] / "a_001.png").unlink()
    with pytest.raises(ValueError, match=r"anomalous image .*a_001\.bmp has no mask; expected .*a_001\.png beside it"):
        FolderDataset(dirs["normal"], abnormal_dir=dirs["abnormal"])
    with pytest.raises(ValueError, match=r"anomalous image .*a_000\.bmp has no mask; expected .*m/a_000_x\.png"):
        (tmp_path / "m").mkdir()
        FolderDataset(dirs["normal"], abnormal_dir=dirs["abnormal"], mask_dir=tmp_path / "m", mask_suffix="_x")
    with pytest.raises(ValueError, match=r"nowhere does not exist; expected a folder of normal images"):
        FolderDataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"mask_ext must start with a dot"):
        FolderDataset(dirs["normal"], mask_ext="png")


def test_mask_size_mismatch_in_folder(tmp_path):
    dirs = make_fake_folder(tmp_path, n_normal=1, n_abnormal=1, size=(20, 30))
    Image.fromarray(np.zeros((20, 29), np.uint8)).save(dirs["abnormal"] / "a_000.png")
    ds = FolderDataset(dirs["normal"], abnormal_dir=dirs["abnormal"], image_size=16)
    with pytest.raises(ValueError, match=r"a_000\.png is 20x29 .*expected 20x30, the size of its image .*a_000\.bmp"):
        ds[1]


def test_split_beside_rules():
    files = [Path(n) for n in ("x.jpg", "x.png", "y.png", "z_mask.png", "z.png")]
    images, masks = split_beside(files, mask_ext=".png")
    assert images == [Path("x.jpg"), Path("y.png"), Path("z_mask.png"), Path("z.png")]
    assert masks == {Path("x.jpg"): Path("x.png")}
    images, masks = split_beside(files, mask_suffix="_mask")
    assert Path("z_mask.png") not in images and masks[Path("z.png")] == Path("z_mask.png")


def test_magnetic_tile_splits_real_data(magnetic_tile_root):
    s = magnetic_tile_splits(magnetic_tile_root, train_fraction=0.7, val_fraction=0.1, seed=0, image_size=64)
    n_free = len(list((magnetic_tile_root / "MT_Free" / "Imgs").glob("*.jpg")))
    n_blow = len(list((magnetic_tile_root / "MT_Blowhole" / "Imgs").glob("*.jpg")))
    n_crack = len(list((magnetic_tile_root / "MT_Crack" / "Imgs").glob("*.jpg")))
    assert len(s.train) == round(0.7 * n_free) and len(s.val) == round(0.1 * n_free)
    assert len(s.test) == n_free - len(s.train) - len(s.val) + n_blow + n_crack
    names = [{p.image.name for p in d.samples if p.label == 0} for d in s]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert len(names[0] | names[1] | names[2]) == n_free
    assert s.test.defects.count("blowhole") == n_blow and s.test.defects.count("crack") == n_crack
    # the very split of the published runs (docs/results.md): numpy's permutation of the sorted MT_Free names, cut
    # at round(0.7 N) and round(0.8 N), written out here
    free = sorted(p.name for p in (magnetic_tile_root / "MT_Free" / "Imgs").glob("*.jpg"))
    perm = np.random.default_rng(0).permutation(len(free))
    cuts = (0, round(0.7 * len(free)), round(0.7 * len(free)) + round(0.1 * len(free)), len(free))
    for part, a, b in zip(s, cuts[:-1], cuts[1:]):
        assert [p.image.name for p in part.samples if p.label == 0] == sorted(free[i] for i in perm[a:b])
    again = magnetic_tile_splits(magnetic_tile_root, seed=0, image_size=64)
    assert [p.image for p in again.train.samples] == [p.image for p in s.train.samples]
    other = magnetic_tile_splits(magnetic_tile_root, seed=1, image_size=64)
    assert {p.image for p in other.train.samples} != {p.image for p in s.train.samples}


def test_magnetic_tile_items_and_masks(magnetic_tile_root):
    s = magnetic_tile_splits(magnetic_tile_root, seed=0, image_size=64, resize_mode="pad")
    k = s.test.defects.index("blowhole")
    sample = s.test.samples[k]
    ref = np.asarray(Image.open(sample.mask).convert("L")) >= 128  # independent binarisation at file size
    native = load_mask(sample.mask)
    np.testing.assert_array_equal(native[0].numpy().astype(bool), ref)
    item = s.test[k]
    assert item["image"].shape == (1, 64, 64) and item["mask"].shape == (1, 64, 64)
    assert item["label"] == 1 and float(item["mask"].sum()) > 0
    h, w = ref.shape  # letterbox: content inside the centred inner box, black and normal outside it
    ih, iw = round(h * min(64 / h, 64 / w)), round(w * min(64 / h, 64 / w))
    top, left = (64 - ih) // 2, (64 - iw) // 2
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[top:top + ih, left:left + iw] = False
    assert torch.all(item["image"][0][outside] == 0) and torch.all(item["mask"][0][outside] == 0)
    normal = s.train[0]
    assert normal["label"] == 0 and normal["defect"] == "good" and float(normal["mask"].sum()) == 0
    assert 0.0 <= float(normal["image"].min()) and float(normal["image"].max()) <= 1.0


def test_magnetic_tile_split_errors(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist; expected the Magnetic Tile root"):
        magnetic_tile_splits(tmp_path / "none")
    (tmp_path / "MT_Free" / "Imgs").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"holds no MT_<Class> defect folders"):
        magnetic_tile_splits(tmp_path)
    with pytest.raises(ValueError, match=r"train_fraction \+ val_fraction must be < 1"):
        magnetic_tile_splits(tmp_path, train_fraction=0.9, val_fraction=0.1)
    with pytest.raises(ValueError, match=r"MT_Crack/Imgs does not exist; expected the images and masks of class"):
        magnetic_tile_splits(tmp_path, defects=["Crack"])


def test_a_missing_shared_data_set_skips_locally_and_fails_under_ci(tmp_path, monkeypatch):
    from conftest import shared_data_dir

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=rf"looked for the directory {tmp_path / 'magnetic-tile'}; CI"):
        shared_data_dir("magnetic-tile", base=tmp_path)
    for value in ("", "false"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.skip.Exception, match=r"data set 'magnetic-tile' not found"):
            shared_data_dir("magnetic-tile", base=tmp_path)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        shared_data_dir("magnetic-tile", base=tmp_path)
    (tmp_path / "magnetic-tile").mkdir()
    monkeypatch.setenv("CI", "true")
    assert shared_data_dir("magnetic-tile", base=tmp_path) == tmp_path / "magnetic-tile"


def test_anomalous_images_without_any_mask_are_image_level_labels(tmp_path):
    dirs = make_fake_folder(tmp_path, n_normal=2, n_abnormal=3, size=(16, 16))
    for f in dirs["abnormal"].glob("*.png"):
        f.unlink()
    ds = FolderDataset(dirs["normal"], abnormal_dir=dirs["abnormal"], image_size=16, channels=1)
    assert not ds.pixel_labels and ds.labels == [0, 0, 1, 1, 1]
    assert all(float(ds[i]["mask"].sum()) == 0 for i in range(5))  # no mask: no defect pixel claimed
    masked = make_fake_folder(tmp_path / "m", n_normal=2, n_abnormal=1, size=(16, 16))
    assert FolderDataset(masked["normal"], abnormal_dir=masked["abnormal"], image_size=16).pixel_labels
