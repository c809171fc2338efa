"""The main job: verify (stubbed here; it has its own tests) + synthetic data + quick run + evaluation."""
from __future__ import annotations

import json

import manifold_ae.claims.runner as runner
from manifold_ae.commands.demo import main

TINY = ["--train.steps=3", "--train.batch_size=4", "--data.image_size=32", "--model.depth=2", "--model.width=4",
        "--model.dilations=1,2", "--train.device=cpu", "--no-progress"]


def test_demo_runs_every_stage_and_reports_a_failed_claim(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(runner, "main", lambda argv: calls.append(list(argv)) or 1)  # a claim failed
    assert main(["--out", str(tmp_path), *TINY]) == 1  # the image half still ran; the exit status says it
    assert calls == [["--out", str(tmp_path / "verify"), "--fast"]]
    out = capsys.readouterr().out
    assert "SOME CLAIMS FAILED" in out and str(tmp_path / "weave" / "eval") in out
    assert len(list((tmp_path / "data" / "weave" / "train" / "good").iterdir())) > 10
    state = json.loads((tmp_path / "weave" / "config.json").read_text())
    assert state["preset"] == "quick" and state["train"]["steps"] == 3 and state["data"]["category"] == "weave"
    metrics = json.loads((tmp_path / "weave" / "eval" / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["all"]["image_auroc"] <= 1.0 and metrics["all"]["n_defect"] == 30
    assert "| weave | **all** |" in (tmp_path / "weave" / "eval" / "results.md").read_text()

    monkeypatch.setattr(runner, "main", lambda argv: calls.append(list(argv)) or 0)
    assert main(["--out", str(tmp_path), "--skip-verify", *TINY]) == 0
    assert len(calls) == 1  # verify skipped
