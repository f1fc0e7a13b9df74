"""Output files that appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def replaced_on_success(paths: Sequence[str], mode: int | None = None) -> Iterator[list[str]]:
    """A temporary file beside each of ``paths``, renamed onto it when the block succeeds.

    When the block fails (or is interrupted) the temporary files are removed, so a
    reader never finds a half-written file under the name it asked for.  ``mode``
    sets the files' permissions before the rename (mkstemp creates them 0600).
    """
    temps: list[str] = []
    try:
        for path in paths:
            folder = os.path.dirname(os.path.abspath(path))
            fd, tmp = tempfile.mkstemp(
                dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
            )
            os.close(fd)
            temps.append(tmp)
        yield temps
        for tmp, path in zip(temps, paths, strict=True):
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
