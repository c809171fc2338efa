"""commands/check_data.py: every problem of a generated folder in one run, the exit status, and train refusing."""
import re
import warnings

import numpy as np
import pytest
from fakes import make_fake_folder, make_fake_mvtec
from PIL import Image

from manifold_ae.commands import cli
from manifold_ae.commands.check_data import DataProblems, check_data, checked_datasets
from manifold_ae.commands.train import main as train_main
from manifold_ae.images.config import load_config

N_NORMAL, N_ABNORMAL, SIZE = 8, 5, (32, 32)


def _folder(tmp_path):
    """A folder dataset with masks in masks/ named <stem>_mask.png; returns the --data overrides and folders."""
    dirs = make_fake_folder(tmp_path / "data", n_normal=N_NORMAL, n_abnormal=N_ABNORMAL, size=SIZE, channels=1,
                            masks="dir", mask_suffix="_mask", image_ext=".png")
    overrides = [f"--data.root={tmp_path / 'data'}", "--data.dataset=folder", "--data.normal_dir=normal",
                 "--data.abnormal_dirs=abnormal", "--data.mask_dir=masks", "--data.mask_suffix=_mask",
                 "--data.image_size=32", "--data.channels=1"]
    return overrides, dirs


def _break(dirs):
    """Four problems: a truncated defect image, a wrong-size mask, a missing mask, an empty mask."""
    bad = dirs["abnormal"] / "a_000.png"
    bad.write_bytes(bad.read_bytes()[:60])
    Image.fromarray(np.full((16, 32), 255, np.uint8)).save(dirs["masks"] / "a_001_mask.png")
    (dirs["masks"] / "a_002_mask.png").unlink()
    Image.fromarray(np.zeros(SIZE, np.uint8)).save(dirs["masks"] / "a_003_mask.png")


def _problems(text):
    return re.findall(r"^\s+\d+\. (.*)$", text, flags=re.M)


def test_clean_folder_passes_with_the_sizes_of_each_set(tmp_path, capsys):
    overrides, _ = _folder(tmp_path)
    assert cli.main(["check-data", *overrides]) == 0
    out = capsys.readouterr().out
    # 8 normal: round(0.2 * 8) = 2 to test, round(0.1 * 6) = 1 held out, 5 to train; all 5 anomalous to test
    assert re.search(r"train\s+5 images \(5 normal, 0 anomalous\)", out)
    assert re.search(r"holdout\s+1 image \(1 normal, 0 anomalous\)", out)
    assert re.search(r"test\s+7 images \(2 normal, 5 anomalous\)", out)
    assert "no problems" in out


def test_every_problem_listed_in_one_run_with_exit_status_2(tmp_path, capsys):
    overrides, dirs = _folder(tmp_path)
    _break(dirs)
    assert cli.main(["check-data", *overrides]) == 2
    err = capsys.readouterr().err
    problems = _problems(err)
    assert "4 problems" in err and len(problems) == 4, err
    patterns = [  # one problem per broken file, each naming the file and what was expected
        r"a_002\.png has no mask; expected .*masks/a_002_mask\.png; masks are looked for by --data\.mask_dir "
        r"\(now 'masks'.*--data\.mask_suffix \(now '_mask'\)",
        r"test set: cannot read image file .*a_000\.png.*expected a complete, readable image file",
        r"test set: mask file .*a_001_mask\.png is 16x32 \(height x width\); expected 32x32",
        r"test set: mask file .*a_003_mask\.png of the anomalous image .*a_003\.png marks no defect pixel.*"
        r"--data\.empty_masks=exclude",
    ]
    for pattern in patterns:
        assert sum(bool(re.search(pattern, p)) for p in problems) == 1, (pattern, problems)


def test_empty_masks_exclude_leaves_them_out_counted(tmp_path, capsys):
    overrides, dirs = _folder(tmp_path)
    _break(dirs)
    assert cli.main(["check-data", *overrides, "--data.empty_masks=exclude"]) == 2
    captured = capsys.readouterr()
    assert len(_problems(captured.err)) == 3 and "a_003" not in captured.err  # the other three remain
    assert re.search(r"left out 1 anomalous test image\(s\) whose masks mark no pixel .*a_003_mask\.png",
                     captured.out)
    # 5 anomalous - 1 missing mask - 1 left out = 3 anomalous test items (two of which fail to read)
    assert re.search(r"test\s+5 images \(2 normal, 3 anomalous\)", captured.out)
    (dirs["abnormal"] / "a_000.png").unlink()
    (dirs["abnormal"] / "a_001.png").unlink()
    (dirs["abnormal"] / "a_002.png").unlink()
    cfg = load_config(None, [*overrides, "--data.empty_masks=exclude"]).data
    with pytest.warns(UserWarning, match=r"left out 1 of 4 images"):
        splits = checked_datasets(cfg)  # a clean set once the broken files are gone; the empty one left out
    assert splits.test.labels == [0, 0, 1] and [s.image.name for s in splits.test.excluded] == ["a_003.png"]


def test_train_refuses_before_the_first_step(tmp_path, capsys):
    overrides, dirs = _folder(tmp_path)
    _break(dirs)
    out = tmp_path / "run"
    code = train_main([*overrides, "--model.depth=2", "--model.width=4", "--train.steps=1",
                       "--train.batch_size=2", "--train.device=cpu", f"--out={out}", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "4 problems" in err and "nothing was trained" in err and len(_problems(err)) == 4, err
    assert not (out / "checkpoint.pt").exists() and not (out / "log.jsonl").exists()


def test_missing_masks_of_an_mvtec_tree_are_all_listed(tmp_path):
    root = make_fake_mvtec(tmp_path, category="bottle", defects=("crack", "scratch"), n_defect=2, size=16)
    (root / "bottle" / "ground_truth" / "crack" / "000_mask.png").unlink()
    (root / "bottle" / "ground_truth" / "scratch" / "001_mask.png").unlink()
    cfg = load_config(None, [f"--data.root={root}", "--data.dataset=mvtec", "--data.category=bottle",
                             "--data.image_size=16", "--model.depth=2"]).data
    report = check_data(cfg)
    assert len(report.problems) == 2
    assert re.search(r"test/crack/000\.png has no mask; expected .*ground_truth/crack/000_mask\.png.*"
                     r"check --data\.root and --data\.category", report.problems[0])
    assert re.search(r"test/scratch/001\.png has no mask", report.problems[1])
    with pytest.raises(DataProblems, match=r"2 problems in the data of dataset 'mvtec'"):
        checked_datasets(cfg)


def test_missing_folder_and_unwritten_synthetic_are_reported(tmp_path, capsys):
    assert cli.main(["check-data", "--data.dataset=folder", f"--data.root={tmp_path}", "--data.normal_dir=none",
                     "--data.image_size=32"]) == 2
    assert re.search(r"1\. .*none does not exist; expected a folder of normal images", capsys.readouterr().err)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_data(load_config(None, [f"--data.root={tmp_path / 'syn'}"]).data)
    assert not report.ok and "make-synthetic --out" in report.problems[0]
    assert cli.main(["check-data", "--data.image_size=oops"]) == 2
    assert "cannot read 'oops' as int" in capsys.readouterr().err
