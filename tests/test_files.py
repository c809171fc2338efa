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


def test_new_files_respect_the_umask(tmp_path):
    import os
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "r.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "r.md").stat().st_mode & 0o777 == 0o640
    old = os.umask(0o002)
    try:
        write_json(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o664


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_named_error(tmp_path):
    from manifold_ae.files import OutputError
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=r"cannot write .*ro/r\.md: Permission denied"):
            write_text(folder / "r.md", "x")
    finally:
        folder.chmod(0o700)
    assert list(folder.iterdir()) == []


def test_full_disk_is_one_named_error_and_leaves_no_temporary(tmp_path):
    import errno

    from manifold_ae.files import OutputError

    def disk_full(handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"cannot write .*c\.bin: No space left on device") as info:
        atomic_write(tmp_path / "c.bin", disk_full, binary=True)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_one_line_for_an_unwritable_output(tmp_path, capsys):
    """verify into a path whose parent is a file: one line naming the path, exit code 2."""
    from manifold_ae.commands.cli import main
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["verify", "--only", "T2", "--fast", "--no-progress", "--out", str(blocker / "report")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and str(blocker) in err[0] and "Not a directory" in err[0], err
