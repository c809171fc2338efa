"""DDP: two gloo processes started by torchrun train like one process with the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fakes import make_fake_mvtec
from manifold_ae.images.pipeline import load_checkpoint
from manifold_ae.commands.train import main

pytestmark = pytest.mark.ddp

TINY = ["--data.dataset=synthetic", "--data.category=widget", "--data.image_size=32", "--model.width=4",
        "--model.depth=2", "--model.dilations=1,2", "--model.sdc_layers=1", "--train.batch_size=4",
        "--train.lr=1e-2", "--train.warmup=1", "--train.steps=6", "--train.checkpoint_every=4",
        "--train.device=cpu", "--train.precision=float32", "--train.channels_last=false", "--train.log_every=1",
        "--score.sigma=1", "--no-progress"]


def losses(run: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in e}


@pytest.mark.parametrize("objective", ["reconstruction", "selfsupervised", "denoising"])
def test_two_gloo_processes_match_one_process(tmp_path, objective):
    root = make_fake_mvtec(tmp_path / "data", category="widget", n_train=12, size=32)
    common = [*TINY, f"--data.root={root}", f"--objective.name={objective}"]
    assert main([*common, f"--out={tmp_path / 'single'}"]) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "manifold_ae.commands.train", *common, f"--out={tmp_path / 'ddp'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    single, ddp = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert sorted(ddp) == sorted(single) == list(range(1, 7))  # rank 0 alone writes the log: no duplicates
    # same global batch of the same images, the same per-sample corruptions (seeded by step and position in the
    # global batch, not by rank), gradients averaged over ranks -> the same loss curve up to float round-off
    # (measured: at most 2e-7 relative for all three objectives)
    for step in single:
        assert ddp[step] == pytest.approx(single[step], rel=1e-5), (step, ddp[step], single[step])
    assert ddp[6] < ddp[1]  # it trains

    state = load_checkpoint(tmp_path / "ddp")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # per-rank random streams
    ref = load_checkpoint(tmp_path / "single")["model"]
    for key, value in ref.items():  # the weights agree too
        torch.testing.assert_close(state["model"][key], value, rtol=1e-3, atol=1e-5)
    assert "trained 6 steps" in proc.stdout and proc.stdout.count("trained 6 steps") == 1
