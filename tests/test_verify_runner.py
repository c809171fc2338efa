"""The verify runner: verdicts, exit codes, crash handling, report files (claims themselves are tested elsewhere)."""
import json
import sys
import types

import pytest

from manifold_ae.claims import runner
from manifold_ae.claims.base import Check, ClaimResult


@pytest.fixture()
def fake_claims(monkeypatch):
    def make(name, body):
        mod = types.ModuleType(name)
        mod.run = body
        monkeypatch.setitem(sys.modules, name, mod)
        return name

    good = make("fake_claim_good", lambda *, fast, out_dir, seed: ClaimResult(
        "X1", "good", [Check("error", 1e-12, "<=", 1e-9), Check("slope", 2.02, "in", (1.9, 2.1))]))
    bad = make("fake_claim_bad", lambda *, fast, out_dir, seed: ClaimResult(
        "X2", "bad", [Check("auroc", 0.5, ">=", 0.99)]))

    def crash(*, fast, out_dir, seed):
        raise RuntimeError("boom")

    boom = make("fake_claim_crash", crash)
    monkeypatch.setattr(runner, "CLAIMS", {"X1": (good, "good"), "X2": (bad, "bad"), "X3": (boom, "crash")})


def test_check_operators():
    assert Check("a", 1.0, "<=", 1.0).passed and not Check("a", 1.1, "<=", 1.0).passed
    assert Check("b", 0.99, ">=", 0.98).passed and not Check("b", 0.97, ">=", 0.98).passed
    assert Check("c", 2.0, "in", (1.9, 2.1)).passed and not Check("c", 2.2, "in", (1.9, 2.1)).passed
    with pytest.raises(ValueError, match="op"):
        Check("d", 1.0, "==", 1.0).passed


def test_runner_exit_code_and_files(fake_claims, tmp_path, capsys):
    assert runner.main(["--only", "X1", "--out", str(tmp_path / "ok"), "--no-progress"]) == 0
    code = runner.main(["--out", str(tmp_path / "all"), "--no-progress"])
    assert code == 1
    data = json.loads((tmp_path / "all" / "results.json").read_text())
    verdicts = {c["claim"]: c["passed"] for c in data["claims"]}
    assert verdicts == {"X1": True, "X2": False, "X3": False}
    crashed = next(c for c in data["claims"] if c["claim"] == "X3")
    assert "boom" in crashed["checks"][0]["name"] and "RuntimeError" in crashed["numbers"]["traceback"]
    report = (tmp_path / "all" / "report.md").read_text()
    assert "1 of 3 claims passed" in report and "| X2 | bad | FAIL |" in report
    assert "failed: auroc: measured 0.5, expected >= 0.99" in capsys.readouterr().out
    assert not list((tmp_path / "all").glob(".*.tmp")), "temporary files left behind"


def test_unknown_claim_is_an_error(fake_claims, tmp_path):
    with pytest.raises(SystemExit):
        runner.main(["--only", "T9", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="unknown claim id"):
        runner.run_claims(["T9"], out_dir=tmp_path)


@pytest.mark.parametrize("op,target", [("<=", 1e-9), (">=", 0.9), ("in", (1.9, 2.1))])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_measurement_always_fails(op, target, bad):
    assert not Check("x", bad, op, target).passed


@pytest.mark.parametrize("rows", [{"circle": 1e-12, "helix": float("nan")}, {"helix": float("nan"), "circle": 1e-12}])
def test_worst_of_lets_no_nan_through_in_either_order(rows):
    from manifold_ae.claims.base import worst, worst_of
    key, value = worst_of(rows, op="<=")
    assert key == "helix" and value != value
    assert not Check("max over manifolds", value, "<=", 1e-9).passed
    assert worst([0.99, float("nan"), 0.5], op=">=") != worst([0.99, float("nan"), 0.5], op=">=")   # NaN
    assert worst([0.99, 0.5], op=">=") == 0.5 and worst([0.99, 0.5], op="<=") == 0.99
    with pytest.raises(ValueError, match="op"):
        worst([1.0], op="==")


def test_runner_fails_a_nan_producing_claim(monkeypatch, tmp_path, capsys):
    """A claim whose aggregation meets a NaN fails, whichever manifold produced it."""
    from manifold_ae.claims.base import worst_of

    def nan_claim(*, fast, out_dir, seed):
        rows = {"circle": 1e-12, "helix": float("nan"), "sphere": 1e-13}
        name, value = worst_of(rows, op="<=")
        return ClaimResult("X9", "nan | claim", [Check(f"error (worst: {name})", value, "<=", 1e-9)])

    mod = types.ModuleType("fake_claim_nan")
    mod.run = nan_claim
    monkeypatch.setitem(sys.modules, "fake_claim_nan", mod)
    monkeypatch.setattr(runner, "CLAIMS", {"X9": ("fake_claim_nan", "nan | claim")})
    assert runner.main(["--out", str(tmp_path), "--no-progress"]) == 1
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["passed"] is False and data["claims"][0]["checks"][0]["passed"] is False
    report = (tmp_path / "report.md").read_text()
    assert "| X9 | nan \\| claim | FAIL |" in report, "a '|' in a title must not break the markdown table"
    assert "worst: helix" in capsys.readouterr().out
