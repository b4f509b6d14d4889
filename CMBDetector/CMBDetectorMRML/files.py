"""Atomic file writes: write a temporary sibling, then ``os.replace`` it over the target.

Outputs get the mode a normal new file gets under the user's umask (``mkstemp`` alone gives
0600, which colleagues reading a shared results folder cannot open).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from CMBDetectorLib.errors import CMBDetectorError


def _file_mode() -> int:
    """0666 minus the process umask (read without changing it where /proc tells it)."""
    try:
        with open("/proc/self/status") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_target(path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffixes); move it into place on success.

    On error the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")


def check_output_dir(path) -> Path:
    """Create the output folder if needed and prove a file can be written there, before any work.

    Raises CMBDetectorError naming the folder when it is a file or cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CMBDetectorError(f"The output location '{path}' is a file; give a folder (it is created if missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".cmbdetector-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CMBDetectorError(
            f"Cannot write to the output folder '{path}' ({exc.strerror or exc}); choose a folder you "
            "can write to or fix its permissions.") from exc
    return path
