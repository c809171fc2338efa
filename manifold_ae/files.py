"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Every result the package writes (checkpoints, configs, metrics JSON, reports, figures, overlays) goes through
``atomic_write``: the content is written to a temporary file beside the target, flushed and fsync'ed, then
moved over it with ``os.replace``; on any error the temporary file is removed and the target is untouched.
The new file gets the permissions a plain ``open`` would give it (``0o666`` less the umask), not the ``0o600`` of
a temporary file. An operating-system error (a read-only or full disk, a missing permission) becomes an
``OutputError`` naming the path and the OS error, which the command line prints as one line (exit code 2).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["OutputError", "atomic_write", "write_text", "write_json", "output_error", "require_free_space"]


class OutputError(OSError):
    """An output path could not be written; the message names the path and the operating system's reason."""


def output_error(path: str | Path, err: OSError) -> OutputError:
    """``OutputError("cannot write PATH: REASON")`` for an ``OSError`` met while writing ``path``."""
    reason = err.strerror or str(err) or type(err).__name__
    out = OutputError(err.errno, f"cannot write {path}: {reason}")
    out.filename = str(path)
    return out


def _umask() -> int:
    mask = os.umask(0o022)   # reading the umask means setting it; it is restored at once
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], *, binary: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then ``os.replace`` it onto ``path``.

    Raises
    ------
    OutputError
        When the folder cannot be created or the file cannot be written (read-only, full disk, permissions);
        the temporary file is removed and an existing ``path`` keeps its old content.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise output_error(path, err) from err
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(path, err) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda handle: handle.write(text))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (with a final newline) to ``path``."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def require_free_space(folder: str | Path, nbytes: int, *, what: str) -> None:
    """Raise ``OutputError`` unless ``folder`` (created if missing) has ``nbytes`` free for ``what``.

    Checked before long work (training) so that a full disk is found before the first hour, not at the first save.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise output_error(folder, err) from err
    if free < nbytes:
        raise OutputError(errno.ENOSPC, f"not enough free space in {folder} for {what}: {nbytes / 2**20:.1f} MiB "
                                        f"needed, {free / 2**20:.1f} MiB free")
