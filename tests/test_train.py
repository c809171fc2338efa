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
from manifold_ae.commands.train import CHECKPOINT_NAME, Distributed, main, save_checkpoint, train

TINY = ["--data.dataset=synthetic", "--data.category=widget", "--data.image_size=32", "--data.cache=true",
        "--model.width=4", "--model.depth=2", "--model.dilations=1,2", "--model.sdc_layers=1",
        "--train.batch_size=4", "--train.lr=1e-2", "--train.warmup=1", "--train.device=cpu",
        "--train.precision=float32",
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


def test_gain_jitter_reaches_the_training_images(data_root, tmp_path, monkeypatch):
    """The batches train_step sees are the loader's images times one gain per image in [0.8, 1.2]."""
    seen = []
    real = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step", lambda objective, x, *a, **k: seen.append(x.clone())
                        or real(objective, x, *a, **k))
    for name, extra in (("plain", []), ("jitter", ["--train.gain_jitter=0.2"])):
        assert main(args(data_root, tmp_path / name, "--train.steps=2", *extra)) == 0
    plain, jitter = seen[:2], seen[2:]
    for a, b in zip(plain, jitter):   # the same images in the same order (the loader's seed), gains applied
        ratio = (b / a.clamp_min(1e-6))[(a > 0.05) & (b < 0.99)].reshape(-1)
        assert not torch.equal(a, b) and float(ratio.min()) >= 0.8 - 1e-5 and float(ratio.max()) <= 1.2 + 1e-5


@pytest.mark.parametrize("extra", [[], ["--train.flips=hv", "--train.gain_jitter=0.2"]])  # the stored per-rank RNG
# state restores the flips and gains
def test_killed_and_resumed_run_ends_with_identical_weights(data_root, tmp_path, monkeypatch, extra):
    steps = ["--train.steps=7", "--train.checkpoint_every=3", *extra]  # checkpoint at step 3 = mid-epoch 1
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


def test_resume_without_the_stored_rng_states_is_exact_for_corruptions_and_diverges_for_crops(
        data_root, tmp_path, monkeypatch):
    """Corruptions are seeded per sample and step, so they need no stored RNG state; the crop offsets come from
    the process's RNG stream, so without its stored state (the control) the resumed run diverges."""
    steps = ["--train.steps=5", "--train.checkpoint_every=3"]
    assert main(args(data_root, tmp_path / "full", *steps)) == 0
    crash_on_call(monkeypatch, 4)
    with pytest.raises(Crash):
        main(args(data_root, tmp_path / "cut", *steps))
    state = load_checkpoint(tmp_path / "cut")
    state["rng"] = []  # as if from a different number of processes: fresh per-rank seeds
    save_checkpoint(state, tmp_path / "cut" / CHECKPOINT_NAME)
    crash_on_call(monkeypatch, -1)
    assert main(args(data_root, tmp_path / "cut", *steps, "--resume")) == 0
    a, b = load_checkpoint(tmp_path / "full")["model"], load_checkpoint(tmp_path / "cut")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    steps = [*steps, "--train.crop=16", "--train.flips=hv"]  # flips draw from the same stream as the crops
    tmp_path = tmp_path / "crop"
    assert main(args(data_root, tmp_path / "full", *steps)) == 0
    crash_on_call(monkeypatch, 4)
    with pytest.raises(Crash):
        main(args(data_root, tmp_path / "cut", *steps))
    state = load_checkpoint(tmp_path / "cut")
    state["rng"] = []  # as if from a different number of processes: fresh per-rank seeds
    save_checkpoint(state, tmp_path / "cut" / CHECKPOINT_NAME)
    crash_on_call(monkeypatch, -1)
    assert main(args(data_root, tmp_path / "cut", *steps, "--resume")) == 0
    a, b = load_checkpoint(tmp_path / "full")["model"], load_checkpoint(tmp_path / "cut")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_interrupted_checkpoint_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "run" / CHECKPOINT_NAME
    save_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    real_save = torch.save

    def half_then_fail(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial bytes")  # a torn write
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint({"step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in path.parent.iterdir()) == [CHECKPOINT_NAME]  # no temporary file left
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
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)  # no arbitrary pickles inside
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
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_each_objective_name_builds_its_objective_with_its_parameters():
    from manifold_ae import objectives
    from manifold_ae.corruptions.base import MaskedCorruption
    from manifold_ae.corruptions.image import ColorShiftFill, CrackMask, RandomChoice
    from manifold_ae.corruptions.vector import GaussianNoise

    model = torch.nn.Identity()
    base = load_config("quick")

    def built(**objective):
        return train_mod.build_objective(base.replace(objective=dataclasses.replace(base.objective, **objective)),
                                         model)

    rec = built(name="reconstruction")
    assert type(rec) is objectives.Reconstruction and rec.model is model
    dae = built(name="denoising", sigma=0.07)
    assert type(dae) is objectives.Denoising and isinstance(dae.corruption, GaussianNoise)
    assert dae.sigma == 0.07
    x = torch.full((2, 3, 8, 8), 0.5)
    noisy, mask = dae.corruption(x, torch.Generator().manual_seed(0))
    assert float((noisy - x).std()) == pytest.approx(0.07, rel=0.2) and torch.equal(mask, torch.ones_like(x))
    ssl = built(name="selfsupervised", weight_corrupted=3.0)
    assert type(ssl) is objectives.SelfSupervised and ssl.weight_corrupted == 3.0
    assert isinstance(ssl.corruption, MaskedCorruption)
    assert ssl.corruption.opacity == (0.5, 1.0) and ssl.corruption.clean_fraction == 0.1  # the quick preset's
    assert built(name="selfsupervised").weight_corrupted is None  # 0 = uniform weights
    # the named weights reach the recipe: only cracks filled by colour shifts
    only = base.replace(corruption=dataclasses.replace(
        base.corruption, mask_weights={"perlin": 0, "blob": 0, "rectangle": 0, "line": 0, "crack": 1},
        fill_weights={"patch": 0, "texture": 0, "noise": 0, "elastic": 0, "color": 2}))
    corruption = train_mod.build_objective(only, model).corruption
    assert isinstance(corruption.mask, RandomChoice) and isinstance(corruption.fill, RandomChoice)
    assert [type(o) for o in corruption.mask.options] == [CrackMask] and corruption.mask.weights == (1.0,)
    assert [type(o) for o in corruption.fill.options] == [ColorShiftFill]


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
    assert main(args(data_root, tmp_path, "--train.steps=3", "--train.device=cuda", "--train.precision=auto",
                     "--train.channels_last=true", "--data.pin_memory=true")) == 0
    state = load_checkpoint(tmp_path)
    assert state["step"] == 3 and len(state["rng"][0]["cuda"]) >= 1
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())


def test_precision_is_one_setting_for_every_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert [train_mod.autocast_dtype(p, cpu) for p in ("auto", "bf16", "float32")] == [None, torch.bfloat16, None]
    assert [train_mod.autocast_dtype(p, cuda) for p in ("auto", "bf16", "float32")] == [torch.bfloat16] * 2 + [None]


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, None), (None, None)])
def test_native_precision_is_bf16_only_where_the_hardware_computes_it(monkeypatch, native, expected):
    monkeypatch.setattr(train_mod, "native_cpu_bf16", lambda: native)  # None: flags unreadable (not Linux)
    assert train_mod.autocast_dtype("native", torch.device("cpu")) is expected
    assert train_mod.autocast_dtype("native", torch.device("cuda", 0)) is torch.bfloat16


def test_bf16_precision_autocasts_the_cpu_forward_pass_and_auto_does_not(data_root, tmp_path, monkeypatch):
    dtypes = []
    real = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step", lambda *a, **k: dtypes.append(k["autocast_dtype"]) or real(*a, **k))
    assert main(args(data_root, tmp_path / "auto", "--train.steps=3", "--train.precision=auto")) == 0
    assert dtypes == [None] * 3  # auto is float32 on a CPU
    dtypes.clear()
    assert main(args(data_root, tmp_path / "cpu", "--train.steps=3", "--train.precision=bf16")) == 0
    assert dtypes == [torch.bfloat16] * 3
    # mixed precision follows the float32 run: same data, corruptions and initial weights, bf16 rounding only
    losses = {}
    for name in ("auto", "cpu"):
        log = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        losses[name] = [e["loss"] for e in log if "loss" in e]
    assert losses["cpu"] != losses["auto"]
    assert losses["cpu"] == pytest.approx(losses["auto"], rel=0.02)


def test_bf16_warns_on_a_cpu_without_native_bf16(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_mod, "native_cpu_bf16", lambda: False)
    assert main(args(data_root, tmp_path / "a", "--train.steps=1", "--train.precision=bf16")) == 0
    assert "--train.precision=float32" in capsys.readouterr().err
    assert main(args(data_root, tmp_path / "b", "--train.steps=1", "--train.precision=auto")) == 0
    assert "warning" not in capsys.readouterr().err  # float32 on a CPU: nothing to warn about
    assert main(args(data_root, tmp_path / "n", "--train.steps=1", "--train.precision=native")) == 0
    assert "warning" not in capsys.readouterr().err  # native: float32 on this CPU
    monkeypatch.setattr(train_mod, "native_cpu_bf16", lambda: True)
    assert main(args(data_root, tmp_path / "c", "--train.steps=1", "--train.precision=bf16")) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_old_precision_switches_name_their_replacement(data_root, tmp_path, capsys):
    for old in ("--train.bf16=false", "--train.cpu_bf16=true", "--cpu_bf16=true"):
        assert main(args(data_root, tmp_path, "--train.steps=1", old)) == 2
        err = capsys.readouterr().err
        assert "no longer exists" in err and "train.precision" in err, old
    bad = tmp_path / "old.toml"
    bad.write_text("[train]\ncpu_bf16 = true\n")
    assert main(["--preset", str(bad), "--no-progress"]) == 2
    assert "train.cpu_bf16 no longer exists" in capsys.readouterr().err


def test_native_cpu_bf16_reads_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    for flags, expected in [("fpu avx2 avx512f avx512_bf16 avx512_vnni", True), ("fpu avx2 amx_bf16 amx_tile", True),
                            ("fpu avx2 avx512f avx512_vnni", False), ("fpu avx512_bf16x", False)]:
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        assert train_mod.native_cpu_bf16(info) is expected, flags
    assert train_mod.native_cpu_bf16(tmp_path / "missing") is None


def test_a_non_finite_loss_stops_training_at_the_next_log_step(data_root, tmp_path, monkeypatch, capsys):
    """The loss is read only at log steps (no host sync per step); a NaN from step 3 on is caught at step 4."""
    from manifold_ae.images import pipeline

    real_build = pipeline.build_model

    def poisoned(*a, **k):
        model = real_build(*a, **k)
        calls = [0]

        def hook(module, inputs, output):
            calls[0] += 1
            return output * float("nan") if calls[0] >= 3 else output
        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train_mod, "build_model", poisoned)
    steps = []
    real_step = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step", lambda *a, **k: steps.append(1) or real_step(*a, **k))
    assert main(args(data_root, tmp_path, "--train.steps=8", "--train.log_every=2",
                     "--train.checkpoint_every=100")) == 2
    err = capsys.readouterr().err
    assert "loss became nan (non-finite) at step 4" in err and "lower the learning rate" in err
    assert len(steps) == 4  # stopped at the first log step after the NaN, not at the end
    assert not (tmp_path / CHECKPOINT_NAME).exists()  # nothing non-finite was saved


def test_too_little_free_space_is_refused_before_the_first_step(data_root, tmp_path, monkeypatch, capsys):
    import collections

    import manifold_ae.files as files
    from manifold_ae.commands.cli import main as cli_main
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    calls = crash_on_call(monkeypatch, 1)     # a training step would raise: none may run
    code = cli_main(["train", *args(data_root, tmp_path / "run", "--train.steps=2")])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "no --preset given" not in line]
    assert code == 2 and calls[0] == 0, err
    assert len(err) == 1 and "not enough free space" in err[0] and "MiB needed, 0.0 MiB free" in err[0], err
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()


def test_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_no_temporary(data_root, tmp_path, monkeypatch, capsys):
    import errno

    import manifold_ae.files as files
    from manifold_ae.commands.cli import main as cli_main

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    code = cli_main(["train", *args(data_root, tmp_path / "run", "--train.steps=2", "--train.checkpoint_every=1")])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "no --preset given" not in line]
    assert code == 2, err
    assert len(err) == 1 and "No space left on device" in err[-1] and "cannot write" in err[-1], err
    assert not [p for p in (tmp_path / "run").rglob("*.tmp")]


def test_the_patch_fill_copies_from_other_training_images(data_root):
    """Per-sample corruption sees a batch of one; the patch still comes from another normal training image."""
    from manifold_ae.corruptions.base import corrupt_per_sample
    from manifold_ae.images.pipeline import build_datasets
    cfg = load_config(None, [*TINY, f"--data.root={data_root}", "--corruption.opacity=1,1",
                             "--corruption.clean_fraction=0",
                             *[f"--corruption.fill_weights.{k}=0" for k in ("texture", "noise", "elastic", "color")]])
    train_set = build_datasets(cfg.data).train
    images = torch.stack([train_set[i]["image"] for i in range(len(train_set))])           # (N, C, H, W)
    bank = train_mod.patch_bank(train_set, size=None, seed=0)
    assert len(bank) == min(len(train_set), train_mod.PATCH_BANK_SIZE)
    # every bank image is a distinct training image
    matches = [[i for i in range(len(images)) if torch.equal(b, images[i])] for b in bank]
    assert all(len(m) == 1 for m in matches) and len({m[0] for m in matches}) == len(bank)
    objective = train_mod.build_objective(cfg, torch.nn.Identity(), bank=bank)
    x = images[:1]

    def explains(src: torch.Tensor, x_tilde: torch.Tensor, inside: torch.Tensor) -> bool:
        """Some cyclic shift of ``src`` (C, H, W) equals ``x_tilde`` (C, H, W) on the boolean mask ``inside``."""
        h, w = src.shape[-2:]
        return any(torch.allclose(torch.roll(src, (dy, dx), (-2, -1))[inside], x_tilde[inside], atol=1e-6)
                   for dy in range(h) for dx in range(w))

    sources = []
    for seed in range(1, 9):
        x_tilde, mask = corrupt_per_sample(objective.corruption, x, [seed])
        inside = mask.expand_as(x)[0].bool()
        assert inside.any()
        found = [i for i in range(len(images)) if explains(images[i], x_tilde[0], inside)]
        assert found, f"seed {seed}: the pasted patch is no training image"
        sources.append(found[0])
    # a batch of one used to copy from the image itself; now the source is another image (itself only by chance)
    assert sum(s != 0 for s in sources) >= 6 and len(set(sources)) >= 3, sources
    # with training crops the bank holds windows at the training resolution
    assert train_mod.patch_bank(train_set, size=16, seed=0).shape[-2:] == (16, 16)
