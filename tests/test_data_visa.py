"""data/visa.py on a generated tree in the VisA layout (split CSV): splits, labels, masks and every named error."""
import numpy as np
import pytest
from PIL import Image

from manifold_ae.images.data.io import collect_problems
from manifold_ae.images.data.visa import CATEGORIES, VisA

SIZE = 16
HEADER = "object,split,label,image,mask"


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _mask(k):
    """A mask storing defect ids: region 1 (value 1) and region 2 (value 2), as VisA's masks may."""
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    m[k:k + 2, 0:4] = 1
    m[8:10, k:k + 3] = 2
    return m


def make_tree(root, *, rows=None, extra_rows=()):
    """candle: 3 train normal, 1 test normal, 2 test anomalies; capsules: 1 train normal. Writes the CSV."""
    rng = np.random.default_rng(0)
    lines = rows if rows is not None else [
        "candle,train,normal,candle/Data/Images/Normal/0000.JPG,",
        "candle,test,normal,candle/Data/Images/Normal/0001.JPG,",
        "candle,train,normal,candle/Data/Images/Normal/0002.JPG,",
        "candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png",
        "capsules,train,normal,capsules/Data/Images/Normal/0000.JPG,",
        "candle,train,normal,candle/Data/Images/Normal/0003.JPG,",
        "candle,test,anomaly,candle/Data/Images/Anomaly/001.JPG,candle/Data/Masks/Anomaly/001.png",
    ]
    for line in lines:
        obj, _, label, image, mask = line.split(",")
        pixels = rng.integers(0, 200, (SIZE, SIZE, 3), dtype=np.uint8)
        (root / image).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / image, format="JPEG", quality=95)
        if mask:
            _png(root / mask, _mask(int(mask[-5])))
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join([HEADER, *lines, *extra_rows]) + "\n")
    return root


def test_categories_are_the_twelve_published_objects():
    assert list(CATEGORIES) == ("candle capsules cashew chewinggum fryum macaroni1 macaroni2 pcb1 pcb2 pcb3 pcb4 "
                                "pipe_fryum").split()


def test_splits_follow_the_csv_rows_of_the_object(tmp_path):
    make_tree(tmp_path)
    train = VisA(tmp_path, "candle", split="train", image_size=SIZE)
    assert [s.image.relative_to(tmp_path).as_posix() for s in train.samples] == [
        "candle/Data/Images/Normal/0000.JPG", "candle/Data/Images/Normal/0002.JPG",
        "candle/Data/Images/Normal/0003.JPG"]
    assert train.labels == [0, 0, 0] and train.defects == ["good"] * 3
    test = VisA(tmp_path, "candle", split="test", image_size=SIZE)
    assert [s.image.relative_to(tmp_path).as_posix() for s in test.samples] == [
        "candle/Data/Images/Normal/0001.JPG", "candle/Data/Images/Anomaly/000.JPG",
        "candle/Data/Images/Anomaly/001.JPG"]
    assert test.labels == [0, 1, 1] and test.defects == ["good", "anomaly", "anomaly"]
    assert len(VisA(tmp_path, "capsules", split="train")) == 1


def test_items_and_nonzero_masks(tmp_path):
    make_tree(tmp_path)
    test = VisA(tmp_path, "candle", split="test", image_size=SIZE)
    for index, k in ((1, 0), (2, 1)):
        item = test[index]
        assert set(item) == {"image", "mask", "label", "defect", "path"} and item["label"] == 1
        reference = np.asarray(Image.open(item["path"]).convert("RGB"), dtype=np.float32) / 255.0
        np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), reference, atol=1e-6)
        # both defect ids are defect (the {0, 1, 2} mask would lose both regions at half of 8-bit scale)
        np.testing.assert_array_equal(item["mask"][0].numpy(), (_mask(k) != 0).astype(np.float32))
    assert float(test[0]["mask"].sum()) == 0.0


def test_missing_root_csv_and_unknown_category(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere does not exist; expected a dataset root in VisA layout: "
                                         r"<root>/split_csv/1cls.csv"):
        VisA(tmp_path / "nowhere", "candle")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(ValueError, match=r"split_csv/1cls.csv does not exist; expected <root>/split_csv/1cls.csv "
                                         r"\(columns object,split,label,image,mask"):
        VisA(tmp_path / "empty", "candle")
    root = make_tree(tmp_path / "r")
    with pytest.raises(ValueError, match=r"one of the VisA objects \['candle', 'capsules'.*'pipe_fryum'\], "
                                         r"got 'candles'"):
        VisA(root, "candles")
    with pytest.raises(ValueError, match=r"object 'pcb1' has no row in .*1cls.csv; objects listed there: "
                                         r"\['candle', 'capsules'\]"):
        VisA(root, "pcb1")
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\], got 'validation'"):
        VisA(root, "candle", split="validation")


def test_bad_rows_name_the_line(tmp_path):
    root = make_tree(tmp_path / "a", extra_rows=["candle,val,normal,candle/Data/Images/Normal/0000.JPG,"])
    with pytest.raises(ValueError, match=r"1cls.csv line 9: split 'val'; expected one of \['train', 'test'\]"):
        VisA(root, "candle")
    root = make_tree(tmp_path / "b", extra_rows=["candle,test,good,candle/Data/Images/Normal/0000.JPG,"])
    with pytest.raises(ValueError, match=r"line 9: label 'good'; expected one of \['normal', 'anomaly'\]"):
        VisA(root, "candle", split="test")
    root = make_tree(tmp_path / "c", extra_rows=[
        "candle,train,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png"])
    with pytest.raises(ValueError, match=r"line 9: an anomaly in the training split; expected only normal"):
        VisA(root, "candle", split="train")
    root = make_tree(tmp_path / "d")
    (root / "split_csv" / "1cls.csv").write_text("object,split,image\ncandle,train,x.JPG\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['label', 'mask'\] .*expected the columns "
                                         r"object,split,label,image,mask"):
        VisA(root, "candle")


def test_missing_mask_and_image_name_the_file_and_are_collected(tmp_path):
    root = make_tree(tmp_path)
    missing = root / "candle" / "Data" / "Masks" / "Anomaly" / "001.png"
    missing.unlink()
    with pytest.raises(ValueError, match=r"defect image .*Anomaly/001.JPG has no mask; expected .*Masks/Anomaly/"
                                         r"001.png \(VisA layout: the column 'mask' of 1cls.csv"):
        VisA(root, "candle", split="test")
    (root / "candle" / "Data" / "Images" / "Normal" / "0001.JPG").unlink()
    with collect_problems() as problems:
        test = VisA(root, "candle", split="test")
    assert len(problems) == 2
    assert "line 3: image" in problems[0] and "Normal/0001.JPG does not exist" in problems[0]
    assert str(missing) in problems[1]
    assert [s.image.name for s in test.samples] == ["000.JPG"]


def test_build_datasets_holds_out_by_the_seeded_split(tmp_path):
    from manifold_ae.commands.check_data import check_data
    from manifold_ae.images.config import DataConfig
    from manifold_ae.images.pipeline import build_datasets

    make_tree(tmp_path)
    cfg = DataConfig(dataset="visa", root=str(tmp_path), category="candle", image_size=SIZE,
                     holdout_fraction=0.34, split_seed=3)
    splits = build_datasets(cfg)
    names = ["0000.JPG", "0002.JPG", "0003.JPG"]  # the CSV's candle training rows, in order
    order = np.random.default_rng(3).permutation(3)  # docs/data.md: one permutation, cut into (held-out, train)
    held = [splits.holdout.dataset.samples[i].image.name for i in splits.holdout.indices]
    train = [splits.train.dataset.samples[i].image.name for i in splits.train.indices]
    assert held == [names[i] for i in sorted(order[:1])]
    assert train == [names[i] for i in sorted(order[1:])]
    assert [s.image.name for s in splits.test.samples] == ["0001.JPG", "000.JPG", "001.JPG"]
    assert check_data(cfg).ok
