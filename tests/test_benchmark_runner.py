"""``manifold-ae benchmark``: every category x seed trained and evaluated once, the mean ± std table, resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import manifold_ae.commands.train as train_mod
from fakes import make_fake_mvtec
from manifold_ae.commands.benchmark import PROTOCOL, dataset_categories, main as benchmark_main, select_categories
from manifold_ae.images.data import mvtec, mvtec_ad2, visa
from manifold_ae.images.pipeline import load_checkpoint

TINY = ["--data.dataset=mvtec", "--data.image_size=32", "--data.num_workers=0", "--data.cache=false",
        "--model.width=8", "--model.depth=2", "--model.dilations=1,2", "--model.sdc_layers=1",
        "--train.batch_size=4", "--train.lr=1e-2", "--train.warmup=1", "--train.steps=4",
        "--train.checkpoint_every=2", "--train.device=cpu", "--train.precision=float32",
        "--train.channels_last=false", "--train.compile=false", "--data.holdout_fraction=0.25",
        "--score.sigma=1", "--score.batch_size=5"]
CATEGORIES = ("bottle", "cable")  # real MVTec AD names: data.dataset = mvtec accepts only those
SEEDS = (0, 1)
KEYS = ("image_auroc", "pixel_auroc", "aupro", "pixel_ap")


class Crash(Exception):
    pass


def count_steps(monkeypatch, *, crash_at: int = -1) -> list[int]:
    """Count train_step calls; the ``crash_at``-th raises (the benchmark process killed mid-step)."""
    calls = [0]
    real = train_mod.train_step

    def step(*a, **k):
        calls[0] += 1
        if calls[0] == crash_at:
            raise Crash(f"killed during train_step call {crash_at}")
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "train_step", step)
    return calls


def mtimes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("*")) if p.is_file()}


def expected_table(out: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """mean and sample std over seeds, straight from the per-run metrics.json files; the mean row from the
    per-seed means over categories."""
    values = {c: {k: [json.loads((out / c / f"seed_{s}" / "eval" / "metrics.json").read_text())["metrics"]["all"][k]
                      for s in SEEDS] for k in KEYS} for c in CATEGORIES}
    table = {c: {k: (float(np.mean(v[k])), float(np.std(v[k], ddof=1))) for k in KEYS} for c, v in values.items()}
    per_seed = {k: np.mean([values[c][k] for c in CATEGORIES], axis=0) for k in KEYS}
    table["mean"] = {k: (float(np.mean(per_seed[k])), float(np.std(per_seed[k], ddof=1))) for k in KEYS}
    return table


def test_benchmark_table_and_resume_after_a_kill(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for category, n_train in zip(CATEGORIES, (8, 12)):  # different training sets: the categories' rows differ
        make_fake_mvtec(root, category=category, n_train=n_train, n_test_good=3, defects=("scratch",), n_defect=3,
                        size=32)
    out = tmp_path / "bench"
    argv = ["--preset", "mvtec", *TINY, "--data.root", str(root), "--categories", ",".join(CATEGORIES),
            "--seeds", ",".join(map(str, SEEDS)), "--out", str(out), "--no-progress"]

    # runs in order bottle/0, bottle/1, cable/0, cable/1 of 4 steps each: call 11 is step 3 of cable/0, after
    # its step-2 checkpoint
    count_steps(monkeypatch, crash_at=11)
    with pytest.raises(Crash):
        benchmark_main(argv)
    assert load_checkpoint(out / "cable" / "seed_0")["step"] == 2
    assert not (out / "benchmark.json").exists()
    finished = {name: mtimes(out / "bottle" / name) for name in ("seed_0", "seed_1")}

    calls = count_steps(monkeypatch)
    assert benchmark_main(argv) == 0
    assert calls[0] == 2 + 4  # cable/0 steps 3..4, cable/1 from the start; the bottle runs not retrained
    for name, before in finished.items():
        assert mtimes(out / "bottle" / name) == before
    record = json.loads((out / "benchmark.json").read_text())
    status = {(c, s): record["runs"][c][str(s)]["status"] for c in CATEGORIES for s in SEEDS}
    assert status == {("bottle", 0): "kept", ("bottle", 1): "kept", ("cable", 0): "resumed", ("cable", 1): "trained"}
    events = [json.loads(line).get("event") for line in (out / "cable" / "seed_0" / "log.jsonl").read_text().splitlines()]
    assert [e for e in events if e] == ["start", "resume"]
    for c in CATEGORIES:
        for s in SEEDS:
            run = out / c / f"seed_{s}"
            assert load_checkpoint(run)["step"] == 4
            assert load_checkpoint(run)["config"]["train"]["seed"] == s
            assert load_checkpoint(run)["config"]["data"]["category"] == c

    # a run killed after training, before its metrics were written: resumed (no step trained), evaluated
    (out / "bottle" / "seed_0" / "eval" / "metrics.json").unlink()
    others = {(c, s): mtimes(out / c / f"seed_{s}") for c in CATEGORIES for s in SEEDS if (c, s) != ("bottle", 0)}
    calls = count_steps(monkeypatch)
    assert benchmark_main(argv) == 0
    assert calls[0] == 0
    for (c, s), before in others.items():
        assert mtimes(out / c / f"seed_{s}") == before, (c, s)
    record = json.loads((out / "benchmark.json").read_text())
    assert record["runs"]["bottle"]["0"]["status"] == "resumed"
    assert record["categories"] == list(CATEGORIES) and record["seeds"] == list(SEEDS)
    assert record["protocol"] == PROTOCOL

    expected = expected_table(out)
    assert expected["bottle"] != expected["cable"]
    assert list(record["table"]) == [*CATEGORIES, "mean"]
    for row, cells in expected.items():
        for key, (mean, std) in cells.items():
            entry = record["table"][row][key]
            assert entry["n"] == len(SEEDS)
            assert entry["mean"] == pytest.approx(mean, abs=1e-12), (row, key)
            assert entry["std"] == pytest.approx(std, abs=1e-12), (row, key)
    text = (out / "benchmark.md").read_text()
    assert PROTOCOL in text
    cells = " | ".join(f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in expected["mean"].values())
    assert f"| **mean** | {cells} |" in text
    for c in CATEGORIES:
        assert f"| {c} | " in text
    assert record["seconds"]["runs_total"] > 0
    # each trained run records its training throughput (the last log entry) and, on a CPU, no GPU memory
    for cat in CATEGORIES:
        for run in record["runs"][cat].values():
            assert run["peak_gpu_memory_mb"] is None
            assert run["status"] == "kept" or run["train_images_per_s"] > 0


def test_unknown_categories_are_refused_with_the_known_list(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown categories \\['nope'\\]") as err:
        select_categories("bottle,nope", dataset_categories("mvtec"))
    assert str(list(mvtec.CATEGORIES)) in str(err.value)
    assert benchmark_main(["--preset", "mvtec", "--data.root", str(tmp_path), "--categories", "nope",
                           "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "'screw'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_categories_come_from_each_dataset_module():
    assert select_categories("all", dataset_categories("mvtec")) == list(mvtec.CATEGORIES)
    assert len(mvtec.CATEGORIES) == 15
    assert dataset_categories("visa") == visa.CATEGORIES and len(visa.CATEGORIES) == 12
    assert dataset_categories("mvtec_ad2") == mvtec_ad2.CATEGORIES
    from manifold_ae.images.data.synthetic import SYNTHETIC_CATEGORIES
    assert dataset_categories("synthetic") == tuple(SYNTHETIC_CATEGORIES)   # the built-in data, for gpu_checks
    with pytest.raises(ValueError, match="no fixed list of categories"):
        dataset_categories("folder")


def test_per_run_keys_cannot_be_overridden(tmp_path, capsys):
    assert benchmark_main(["--preset", "mvtec", "--data.category=bottle", "--out", str(tmp_path),
                           "--no-progress"]) == 2
    assert "--data.category (use --categories)" in capsys.readouterr().err


def test_a_benchmark_process_killed_by_sigkill_resumes(tmp_path):
    """A real kill: the benchmark runs as a subprocess, gets SIGKILL once its first run has written a checkpoint,
    and a second invocation resumes that run and finishes the table (the files of a kill are never half-written)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from manifold_ae.images.config import CHECKPOINT_NAME
    root = tmp_path / "data"
    make_fake_mvtec(root, category="bottle", n_train=12, n_test_good=3, defects=("scratch",), n_defect=3, size=32)
    out = tmp_path / "bench"
    args = [sys.executable, "-m", "manifold_ae.commands.cli", "benchmark", "--preset", "mvtec",
            f"--data.root={root}", "--categories", "bottle", "--seeds", "0", "--out", str(out), "--no-progress",
            *[a for a in TINY if not a.startswith("--train.steps")], "--train.steps=400",
            "--train.checkpoint_every=5"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "bottle" / "seed_0" / CHECKPOINT_NAME
    deadline = time.monotonic() + 120
    while not ckpt.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ckpt.is_file(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(ckpt)["step"]
    assert 0 < killed_at < 400 and not (out / "benchmark.json").exists()
    assert not [p for p in out.rglob("*.tmp")], "a kill left a temporary file"
    args[args.index("--train.steps=400")] = "--train.steps=40"   # finish sooner; resume keeps the config's other keys
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert killed_at < 40, f"killed at step {killed_at}: the first checkpoint (step 5) was expected sooner"
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "benchmark.json").read_text())
    run = record["runs"]["bottle"]["0"]
    assert run["status"] == "resumed" and load_checkpoint(ckpt)["step"] == 40
    log = [json.loads(line) for line in (out / "bottle" / "seed_0" / "log.jsonl").read_text().splitlines()]
    events = [(e["event"], e["step"]) for e in log if "event" in e]
    assert events[0] == ("start", 0) and ("resume", killed_at) in events, events
