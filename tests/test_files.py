"""Atomic writes: the target is either the old or the complete new content; no temporary file survives."""
import json

import pytest

from manifold_ae.files import atomic_write, write_json, write_text


def test_write_text_and_json_round_trip(tmp_path):
    write_text(tmp_path / "a" / "r.md", "héllo\n")
    assert (tmp_path / "a" / "r.md").read_text(encoding="utf-8") == "héllo\n"
    write_json(tmp_path / "r.json", {"x": [1, 2.5]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": [1, 2.5]}


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "ckpt.bin"
    atomic_write(target, lambda h: h.write(b"old"), binary=True)

    def half_then_crash(handle):
        handle.write(b"new but incomplete")
        raise KeyboardInterrupt  # e.g. the process is interrupted mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_crash, binary=True)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.bin"]
