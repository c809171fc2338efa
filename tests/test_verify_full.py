"""The full `manifold-ae verify` (every documented full-mode criterion of docs/theory.md), run once in CI.

The claim tests run the fast sizes; this one runs the sizes and criteria the docs quote for the full run.
"""
import json

import pytest

from manifold_ae.claims import runner


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_full_verify_passes_every_criterion(tmp_path, capsys):
    code = runner.main(["--out", str(tmp_path), "--no-progress"])
    data = json.loads((tmp_path / "results.json").read_text())
    failed = [f"{c['claim']}: {k['name']} = {k['measured']} (expected {k['op']} {k['target']})"
              for c in data["claims"] for k in c["checks"] if not k["passed"]]
    assert code == 0 and not failed, "\n".join(failed) + "\n" + capsys.readouterr().out[-3000:]
    assert data["fast"] is False and {c["claim"] for c in data["claims"]} == set(runner.CLAIMS)
