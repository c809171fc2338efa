"""Training script: exact resume after a crash, atomic checkpoints, dry run, bad input."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import manifold_ae.commands.train as train_mod
from fakes import make_fake_mvtec
from manifold_ae.images.config import Config, load_config
from manifold_ae.images.pipeline import load_checkpoint
from manifold_ae.commands.train import Distributed, main, save_checkpoint, train

TINY = ["--data.dataset=synthetic", "--data.category=widget", "--data.image_size=32", "--data.cache=true",
        "--model.width=4", "--model.depth=2", "--model.dilations=1,2", "--model.sdc_layers=1",
        "--train.batch_size=4", "--train.lr=1e-2", "--train.warmup=1", "--train.device=cpu", "--train.bf16=false",
        "--train.channels_last=false", "--train.log_every=1", "--score.sigma=1", "--score.batch_size=4"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    # 12 normal training images: 1 held out, 11 trained on -> 2 batches of 4 per epoch (3 dropped)
    return make_fake_mvtec(tmp_path_factory.mktemp("fake"), category="widget", n_train=12, size=32)


def args(data_root: Path, out: Path, *extra: str) -> list[str]:
    return [*TINY, f"--data.root={data_root}", f"--out={out}", "--no-progress", *extra]


class Crash(Exception):
    pass


def crash_on_call(monkeypatch, n: int) -> list[int]:
    """Make the n-th call of train_step raise (a process killed mid-step); returns the call counter."""
    calls = [0]
    real = train_mod.train_step

    def step(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise Crash(f"killed during step {n}")
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "train_step", step)
    return calls


def test_killed_and_resumed_run_ends_with_identical_weights(data_root, tmp_path, monkeypatch):
    steps = ["--train.steps=7", "--train.checkpoint_every=3"]  # checkpoint at step 3 = mid-epoch 1
    assert main(args(data_root, tmp_path / "full", *steps)) == 0
    full = load_checkpoint(tmp_path / "full")

    crash_on_call(monkeypatch, 5)
    with pytest.raises(Crash):
        main(args(data_root, tmp_path / "killed", *steps))
    assert load_checkpoint(tmp_path / "killed")["step"] == 3  # the last checkpoint survived the crash
    torch.manual_seed(12345)  # the crashed process's RNG is gone; resume must not depend on it
    calls = crash_on_call(monkeypatch, -1)
    assert main(args(data_root, tmp_path / "killed", *steps, "--resume")) == 0
    assert calls[0] == 4  # steps 4..7 only
    resumed = load_checkpoint(tmp_path / "killed")

    assert resumed["step"] == full["step"] == 7
    assert full["model"].keys() == resumed["model"].keys()
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for a, b in zip(full["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    assert full["thresholds"] == resumed["thresholds"]
    events = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [e.get("event") for e in events if "event" in e] == ["start", "resume"]
    full_log = {e["step"]: e["loss"] for e in map(json.loads, (tmp_path / "full" / "log.jsonl").read_text().splitlines())
                if "loss" in e}
    resumed_log = {e["step"]: e["loss"] for e in events if "loss" in e and e["step"] > 3}
    assert resumed_log == {s: full_log[s] for s in range(4, 8)}


def test_loader_workers_and_resume_leave_the_weights_unchanged(data_root, tmp_path, monkeypatch):
    """A worker process loads the same images in the same order; killed + resumed with a worker = one run."""
    steps = ["--train.steps=5", "--train.checkpoint_every=3"]
    assert main(args(data_root, tmp_path / "inline", *steps)) == 0
    crash_on_call(monkeypatch, 4)
    with pytest.raises(Crash):
        main(args(data_root, tmp_path / "workers", *steps, "--data.num_workers=1"))
    crash_on_call(monkeypatch, -1)
    assert main(args(data_root, tmp_path / "workers", *steps, "--data.num_workers=1", "--resume")) == 0
    a, b = load_checkpoint(tmp_path / "inline")["model"], load_checkpoint(tmp_path / "workers")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_without_the_stored_rng_states_diverges(data_root, tmp_path, monkeypatch):
    """The control for the test above: the corruptions' RNG state is what makes the resume exact."""
    steps = ["--train.steps=5", "--train.checkpoint_every=3"]
    assert main(args(data_root, tmp_path / "full", *steps)) == 0
    crash_on_call(monkeypatch, 4)
    with pytest.raises(Crash):
        main(args(data_root, tmp_path / "cut", *steps))
    state = load_checkpoint(tmp_path / "cut")
    state["rng"] = []  # as if from a different number of processes: fresh per-rank seeds
    save_checkpoint(state, tmp_path / "cut" / "checkpoint.pt")
    crash_on_call(monkeypatch, -1)
    assert main(args(data_root, tmp_path / "cut", *steps, "--resume")) == 0
    a, b = load_checkpoint(tmp_path / "full")["model"], load_checkpoint(tmp_path / "cut")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_interrupted_checkpoint_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    real_save = torch.save

    def half_then_fail(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial bytes")  # a torn write
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint({"step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temporary file left
    state = torch.load(path, weights_only=True)
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(4.0))


def test_failed_write_during_training_keeps_the_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    real_save, saves = torch.save, [0]

    def second_save_fails(obj, f, *a, **k):
        saves[0] += 1
        if saves[0] == 2:
            f.write(b"torn")
            raise KeyboardInterrupt  # killed while writing
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", second_save_fails)
    with pytest.raises(KeyboardInterrupt):
        main(args(data_root, tmp_path, "--train.steps=6", "--train.checkpoint_every=2"))
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(tmp_path)["step"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_holds_everything_needed_and_loads_weights_only(data_root, tmp_path):
    assert main(args(data_root, tmp_path, "--train.steps=2", "--train.checkpoint_every=5")) == 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # no arbitrary pickles inside
    assert {"model", "optimizer", "scheduler", "step", "config", "rng", "thresholds"} <= set(state)
    assert Config.from_dict(state["config"]) == load_config(tmp_path / "config.toml")
    assert len(state["rng"]) == 1 and state["world_size"] == 1
    # thresholds come from the held-out normal training image, never the test set
    assert state["thresholds"]["num_images"] == 1
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2]


def test_dry_run_writes_a_two_step_run_beside_the_real_one(data_root, tmp_path):
    assert main(args(data_root, tmp_path, "--dry-run", "--train.steps=500")) == 0
    assert load_checkpoint(tmp_path / "dry-run")["step"] == 2
    assert not (tmp_path / "checkpoint.pt").exists()


def test_the_three_objectives_train(data_root, tmp_path):
    losses = {}
    for name in ("selfsupervised", "reconstruction", "denoising"):
        out = tmp_path / name
        assert main(args(data_root, out, "--train.steps=2", f"--objective.name={name}")) == 0
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        losses[name] = [e["loss"] for e in log if "loss" in e]
    assert all(len(v) == 2 and all(x > 0 for x in v) for v in losses.values())
    assert losses["reconstruction"] != losses["selfsupervised"]


def test_random_crop_takes_a_valid_window_of_each_image():
    from manifold_ae.loop import random_crop

    x = torch.rand(40, 2, 12, 10, generator=torch.Generator().manual_seed(0))
    y = random_crop(x, 4, torch.Generator().manual_seed(1))
    assert y.shape == (40, 2, 4, 4)
    offsets = []
    for i in range(40):  # brute force: the window of image i that equals y[i]
        hits = [(t, l) for t in range(12 - 4 + 1) for l in range(10 - 4 + 1)
                if torch.equal(x[i, :, t:t + 4, l:l + 4], y[i])]
        assert len(hits) == 1
        offsets.append(hits[0])
    tops, lefts = zip(*offsets)
    assert len(set(tops)) > 4 and len(set(lefts)) > 4  # offsets spread over the valid range
    assert max(tops) <= 8 and max(lefts) <= 6
    with pytest.raises(ValueError, match="crop size"):
        random_crop(x, 11)


def test_crop_training_scores_whole_images(data_root, tmp_path, monkeypatch):
    shapes = []
    real = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step", lambda obj, x, *a, **k: shapes.append(tuple(x.shape)) or
                        real(obj, x, *a, **k))
    out = tmp_path / "crop"
    assert main(args(data_root, out, "--train.steps=2", "--train.crop=16")) == 0
    assert shapes == [(4, 3, 16, 16)] * 2  # the training batches are 16 px windows of the 32 px images
    state = load_checkpoint(out)
    assert state["config"]["train"]["crop"] == 16 and state["step"] == 2
    from manifold_ae.images.pipeline import Pipeline

    pipe = Pipeline.from_checkpoint(out, device="cpu")
    scored = pipe(torch.rand(2, 3, 32, 32))  # the fully convolutional model scores whole 32 px images
    assert scored.heatmap.shape == (2, 32, 32)


def test_resume_refuses_to_change_the_model(data_root, tmp_path, capsys):
    assert main(args(data_root, tmp_path, "--train.steps=2")) == 0
    assert main(args(data_root, tmp_path, "--train.steps=2", "--model.width=8", "--resume")) == 2
    err = capsys.readouterr().err
    assert "cannot change model.width" in err and "checkpoint" in err and "got 8" in err
    # more steps is allowed: the run continues from step 2
    assert main(args(data_root, tmp_path, "--train.steps=3", "--resume")) == 0
    assert load_checkpoint(tmp_path)["step"] == 3


def test_bad_training_input_is_reported(data_root, tmp_path, capsys):
    cfg = load_config(None, [*TINY, f"--data.root={data_root}", f"--train.out_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"train.batch_size = 4 .* divisible by the number of processes \(3\)"):
        train(cfg, ctx=Distributed(0, 0, 3, torch.device("cpu")), progress=False)
    with pytest.raises(ValueError, match=r"train.batch_size = 64 exceeds the 11 normal training images"):
            train(cfg.replace(train=dataclasses.replace(cfg.train, batch_size=64)), progress=False)
    assert main(args(data_root, tmp_path, "--train.stepz=3")) == 2
    assert "did you mean" in capsys.readouterr().err


def test_missing_dataset_folder_names_the_path(tmp_path):
    cfg = load_config(None, [*TINY, f"--data.root={tmp_path / 'nowhere'}", "--data.dataset=mvtec",
                             "--data.category=bottle", f"--train.out_dir={tmp_path / 'out'}"])
    with pytest.raises(ValueError, match="nowhere"):
        train(cfg, progress=False)


@pytest.mark.gpu
def test_cuda_run_with_bf16_autocast_and_channels_last(data_root, tmp_path):
    assert main(args(data_root, tmp_path, "--train.steps=3", "--train.device=cuda", "--train.bf16=true",
                     "--train.channels_last=true", "--data.pin_memory=true")) == 0
    state = load_checkpoint(tmp_path)
    assert state["step"] == 3 and len(state["rng"][0]["cuda"]) >= 1
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())


def test_cpu_bf16_autocasts_the_cpu_forward_pass_and_bf16_alone_does_not(data_root, tmp_path, monkeypatch):
    dtypes = []
    real = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step", lambda *a, **k: dtypes.append(k["autocast_dtype"]) or real(*a, **k))
    assert main(args(data_root, tmp_path / "cuda-only", "--train.steps=3", "--train.bf16=true")) == 0
    assert dtypes == [None] * 3  # train.bf16 is the CUDA switch: a CPU run stays in float32
    dtypes.clear()
    assert main(args(data_root, tmp_path / "cpu", "--train.steps=3", "--train.cpu_bf16=true")) == 0
    assert dtypes == [torch.bfloat16] * 3
    # mixed precision follows the float32 run: same data, corruptions and initial weights, bf16 rounding only
    losses = {}
    for name in ("cuda-only", "cpu"):
        log = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        losses[name] = [e["loss"] for e in log if "loss" in e]
    assert losses["cpu"] != losses["cuda-only"]
    assert losses["cpu"] == pytest.approx(losses["cuda-only"], rel=0.02)


def test_cpu_bf16_warns_on_a_cpu_without_native_bf16(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_mod, "native_cpu_bf16", lambda: False)
    assert main(args(data_root, tmp_path / "a", "--train.steps=1", "--train.cpu_bf16=true")) == 0
    assert "--train.cpu_bf16=false" in capsys.readouterr().err
    assert main(args(data_root, tmp_path / "b", "--train.steps=1")) == 0  # float32: nothing to warn about
    monkeypatch.setattr(train_mod, "native_cpu_bf16", lambda: True)
    assert main(args(data_root, tmp_path / "c", "--train.steps=1", "--train.cpu_bf16=true")) == 0
    assert "cpu_bf16" not in capsys.readouterr().err


def test_native_cpu_bf16_reads_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    for flags, expected in [("fpu avx2 avx512f avx512_bf16 avx512_vnni", True), ("fpu avx2 amx_bf16 amx_tile", True),
                            ("fpu avx2 avx512f avx512_vnni", False), ("fpu avx512_bf16x", False)]:
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        assert train_mod.native_cpu_bf16(info) is expected, flags
    assert train_mod.native_cpu_bf16(tmp_path / "missing") is None
