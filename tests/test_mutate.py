"""The mutation check's own machinery (tests/tools/mutate.py): exact-once patterns, scratch copies, verdicts."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from manifold_ae.claims.runner import CLAIMS
from tools.mutate import (MUTATIONS, REPO, Mutation, Outcome, PatternError, apply_mutation, exit_status,
                          export_ref, make_scratch, markdown_table, run_baseline, run_mutation)

ARITH = "def double(x):\n    return 2 * x\n"
TESTS = ("from manifold_ae.arith import double\n\n\n"
         "def test_double():\n    assert double(3) == 6\n\n\n"
         "def test_broken():\n    assert False, 'fails on the unmutated code too'\n")


def _fake_tree(root: Path) -> Path:
    """A tiny checkout: a package named manifold_ae (shadowing the real one in the scratch copy) and its tests."""
    (root / "manifold_ae").mkdir(parents=True)
    (root / "manifold_ae" / "__init__.py").write_text("")
    (root / "manifold_ae" / "arith.py").write_text(ARITH)
    (root / "tests").mkdir()
    (root / "tests" / "test_arith.py").write_text(TESTS)
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    return root


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("text, count", [("y = 1\n", 0), ("x = 1\nx = 1\n", 2)])
def test_a_pattern_that_does_not_occur_exactly_once_is_a_pattern_error(tmp_path, text, count):
    (tmp_path / "m.py").write_text(text)
    mutation = Mutation("m", "kind", "m.py", "x = 1", "x = 2", ("tests",))
    with pytest.raises(PatternError, match=f"occurs {count} times in m.py; expected exactly once"):
        apply_mutation(tmp_path, mutation)
    assert (tmp_path / "m.py").read_text() == text  # nothing written


def test_a_mutant_that_is_not_python_is_a_pattern_error(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n")
    with pytest.raises(PatternError, match="not valid Python"):
        apply_mutation(tmp_path, Mutation("m", "kind", "m.py", "x = 1", "x = = 1", ("tests",)))
    with pytest.raises(PatternError, match="does not exist"):
        apply_mutation(tmp_path, Mutation("m", "kind", "gone.py", "x = 1", "x = 2", ("tests",)))


def test_run_mutation_reports_a_missing_pattern_without_running_anything(tmp_path):
    src = _fake_tree(tmp_path / "src")
    out = run_mutation(Mutation("m", "kind", "manifold_ae/arith.py", "return 3 * x", "return 4 * x",
                                ("tests/test_arith.py",)), source=src)
    assert out.status == "pattern-error" and "occurs 0 times" in out.detail and out.caught_by == ""


def test_scratch_copy_is_used_and_the_source_tree_is_never_modified(tmp_path):
    src = _fake_tree(tmp_path / "src")
    before = _snapshot(src)
    # the baseline finds the test that fails without any mutation, so it cannot count as a catch
    failing, bad_claims, note = run_baseline([Mutation("m", "k", "manifold_ae/arith.py", "2 * x", "3 * x",
                                                       ("tests/test_arith.py",))], source=src, timeout=120)
    assert failing == ["tests/test_arith.py::test_broken"] and bad_claims == [] and note == ""
    caught = run_mutation(Mutation("off-by-one", "k", "manifold_ae/arith.py", "return 2 * x", "return 3 * x",
                                   ("tests/test_arith.py",)), source=src, timeout=120, deselect=failing)
    assert (caught.status, caught.caught_by) == ("caught", "tests/test_arith.py::test_double")
    # x + x is the same function: an equivalent mutant must survive, which shows the scratch copy is the one
    # imported (the real manifold_ae has no arith module) and that the deselected failure did not count
    same = run_mutation(Mutation("equivalent", "k", "manifold_ae/arith.py", "return 2 * x", "return x + x",
                                 ("tests/test_arith.py",)), source=src, timeout=120, deselect=failing)
    assert same.status == "SURVIVED" and same.caught_by == ""
    assert _snapshot(src) == before  # same files, same bytes, same modification times


def test_make_scratch_refuses_a_destination_inside_the_source(tmp_path):
    src = _fake_tree(tmp_path / "src")
    for dest in (src, src / "tests" / "scratch", src / "manifold_ae", src / "elsewhere"):
        with pytest.raises(ValueError, match="lies inside the source tree"):
            make_scratch(src, dest)
    with pytest.raises(ValueError, match="does not exist"):
        make_scratch(tmp_path / "nowhere", tmp_path / "scratch")


def test_export_ref_extracts_the_committed_files_only(tmp_path):
    commit = export_ref(REPO, "HEAD", tmp_path / "tree")
    shown = subprocess.run(["git", "show", f"{commit}:pyproject.toml"], cwd=REPO, capture_output=True, check=True)
    assert (tmp_path / "tree" / "pyproject.toml").read_bytes() == shown.stdout
    assert (tmp_path / "tree" / "manifold_ae" / "__init__.py").is_file()
    assert sorted(p.name for p in (tmp_path / "tree").iterdir()) == ["manifold_ae", "pyproject.toml", "tests"]
    with pytest.raises(ValueError, match="is not a commit"):
        export_ref(REPO, "no-such-ref-anywhere", tmp_path / "other")


def test_exit_status_and_table_count_each_verdict():
    rows = [Outcome("a", "k", "f.py", "caught", "tests/t.py::x", 1.0), Outcome("b", "k", "f.py", "pattern-error")]
    assert exit_status(rows[:1]) == 0
    assert exit_status(rows) == 2
    assert exit_status(rows + [Outcome("c", "k", "f.py", "SURVIVED")]) == 1
    table = markdown_table(rows + [Outcome("c", "k", "f.py", "SURVIVED")])
    assert "| a | k | f.py | caught | tests/t.py::x | 1.0 |" in table
    assert table.rstrip().endswith("1 caught, 1 SURVIVED, 1 pattern-error, 0 error of 3 mutations.")


def test_every_listed_mutation_applies_to_this_tree_exactly_once():
    """The list stays honest: when a mutated line changes, this fails until the mutation is updated."""
    assert len({m.id for m in MUTATIONS}) == len(MUTATIONS)
    for m in MUTATIONS:
        text = (REPO / m.file).read_text(encoding="utf-8")
        assert text.count(m.old) == 1, (m.id, m.file, text.count(m.old))
        assert m.new != m.old and m.tests, m.id
        assert all((REPO / t.split("::")[0]).is_file() for t in m.tests), (m.id, m.tests)
        assert set(m.claims) <= set(CLAIMS), (m.id, m.claims)
