"""Open a dump of any format, detected by content."""

from __future__ import annotations

import os
from collections.abc import Sequence

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpFormatError
from kdumpkit.dump.formats import detect_format
from kdumpkit.dump.source import ByteSource, FileSource

PathLike = str | os.PathLike[str]


def open_source(source: ByteSource) -> Dump:
    """Parse a byte source as a dump, by its content."""
    kind = detect_format(source.pread(0, min(16, source.size)))
    if kind == "elf":
        from kdumpkit.dump.elf import ElfDump

        return ElfDump(source)
    if kind == "kdump":
        from kdumpkit.dump.kdump import KdumpDump

        return KdumpDump([source])
    if kind == "flat":
        from kdumpkit.dump.flat import open_flat

        return open_flat(source)
    raise DumpFormatError(
        f"{source.name}: not a crash dump (no ELF, KDUMP or makedumpfile signature)"
    )


def open_dump(path: PathLike | Sequence[PathLike]) -> Dump:
    """Open one dump file, or the files of a ``--split`` set together."""
    if isinstance(path, (str, os.PathLike)):
        paths = [path]
    else:
        paths = list(path)
    if not paths:
        raise DumpFormatError("no dump file given")
    if os.path.isdir(paths[0]) and len(paths) == 1:
        raise DumpFormatError(f"{os.fspath(paths[0])}: is a directory, not a dump file")
    sources: list[ByteSource] = [FileSource(p) for p in paths]
    try:
        if len(sources) == 1:
            return open_source(sources[0])
        from kdumpkit.dump.kdump import KdumpDump

        return KdumpDump(sources)
    except BaseException:
        for src in sources:
            src.close()
        raise
