"""The one seeded split (data/split.py) and the three dataset splits built on it, against references written here."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import make_fake_folder, make_fake_mvtec
from manifold_ae.images.config import DataConfig
from manifold_ae.images.data.split import seeded_split
from manifold_ae.images.pipeline import build_datasets


@settings(max_examples=40, deadline=None)
@given(num=st.integers(0, 60), cut=st.lists(st.floats(0, 1), max_size=3), seed=st.integers(0, 2 ** 32 - 1))
def test_parts_are_consecutive_pieces_of_numpys_seeded_permutation(num, cut, seed):
    sizes, left = [], num
    for c in cut:
        sizes.append(int(c * left))
        left -= sizes[-1]
    parts = seeded_split(num, sizes=sizes, seed=seed)
    perm = np.random.default_rng(seed).permutation(num)
    start = 0
    for part, size in zip(parts, [*sizes, num - sum(sizes)]):
        assert part == sorted(perm[start:start + size].tolist())
        start += size
    assert sorted(i for part in parts for i in part) == list(range(num))


def test_hand_values_and_errors():
    perm = np.random.default_rng(3).permutation(5).tolist()
    assert seeded_split(5, sizes=(2,), seed=3) == [sorted(perm[:2]), sorted(perm[2:])]
    assert seeded_split(5, sizes=(), seed=3) == [[0, 1, 2, 3, 4]]
    assert seeded_split(0, sizes=(0, 0), seed=0) == [[], [], []]
    with pytest.raises(ValueError, match=r"sizes \[3, 3\] sum to 6, more than the 5 items to split"):
        seeded_split(5, sizes=(3, 3), seed=0)
    with pytest.raises(ValueError, match=r"sizes\[1\] must be an integer in \[0, None\], got -1"):
        seeded_split(5, sizes=(1, -1), seed=0)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, None\], got -2"):
        seeded_split(5, sizes=(1,), seed=-2)


def test_mvtec_layout_holds_out_the_first_images_of_the_permutation(tmp_path):
    root = make_fake_mvtec(tmp_path, category="widget", n_train=20, n_test_good=2, defects=("dent",), n_defect=2,
                           size=16)
    cfg = DataConfig(dataset="synthetic", root=str(root), category="widget", image_size=16, holdout_fraction=0.15,
                     split_seed=4)
    splits = build_datasets(cfg)
    perm = np.random.default_rng(4).permutation(20)
    assert splits.holdout.indices == sorted(perm[:3].tolist())  # round(0.15 * 20) = 3
    assert splits.train.indices == sorted(perm[3:].tolist())


def test_folder_dataset_is_one_split_into_test_holdout_and_train(tmp_path):
    dirs = make_fake_folder(tmp_path, n_normal=20, n_abnormal=2, size=(16, 16), channels=1, masks="beside")
    cfg = DataConfig(dataset="folder", root=str(tmp_path), normal_dir=dirs["normal"].name,
                     abnormal_dirs=(dirs["abnormal"].name,), image_size=16, channels=1, test_normal_fraction=0.2,
                     holdout_fraction=0.25, split_seed=7)
    splits = build_datasets(cfg)
    names = sorted(p.name for p in dirs["normal"].iterdir())
    perm = np.random.default_rng(7).permutation(20)
    expected = [sorted(perm[a:b].tolist()) for a, b in ((0, 4), (4, 8), (8, 20))]  # 4 test, round(0.25 * 16) = 4
    got = [sorted(names.index(s.image.name) for s in d.samples if s.label == 0)
           for d in (splits.test, splits.holdout, splits.train)]
    assert got == expected
    assert splits.test.defects.count("abnormal") == 2
