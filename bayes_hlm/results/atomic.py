"""Atomic file writes that leave the same permissions as a plain ``open(path, "w")``.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask, and
renaming it over the target kept that mode: results saved on a shared server
were unreadable to colleagues. The temporary file is given the mode a plain
write would give (an existing target's mode, else ``0o666 & ~umask``) before
the rename.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def current_umask() -> int:
    """The process umask (read from /proc where possible: ``os.umask`` can only be read by setting it)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_write_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, give it the mode a
    plain write would and rename it over ``path`` (the old file survives any failure)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.resolve().parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _plain_write_mode(target))
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
