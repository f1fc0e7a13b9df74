"""A busy 4 GiB guest's whole /proc/vmcore: anonymous memory, tmpfs page cache, a full
slab, free memory. Page classification at scale against makedumpfile 1.7.8."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the oracles module
from oracles import makedumpfile_178  # noqa: E402

from kdumpkit.capture.filter import PageClass, exclude_unnecessary_pages  # noqa: E402
from kdumpkit.dump.open import open_dump  # noqa: E402

#: Room for makedumpfile's output of the big guest (1.16 GB at -d 1, zstd).
THEIRS_ROOM = 1536 << 20


def partial_last_pages(dump) -> set[int]:  # type: ignore[no-untyped-def]
    """pfns holding the unaligned end of a PT_LOAD (RAM for us, rounded away by
    makedumpfile): the one difference the 6.1 fixture has."""
    ps = dump.page_size
    return {(s.paddr + s.memsz) // ps for s in dump.segments if (s.paddr + s.memsz) % ps}


@pytest.mark.parametrize("level", [31, 1, 2, 4, 8, 16])
def test_keep_bitmap_equals_makedumpfile_178(
    level: int, big_guest_dump: Path, tmp_path: Path
) -> None:
    free = shutil.disk_usage(tmp_path).free
    if free < THEIRS_ROOM:
        pytest.skip(
            f"makedumpfile's output needs {THEIRS_ROOM >> 20} MiB in {tmp_path}, {free >> 20} free"
        )
    theirs_path = tmp_path / "theirs.kdump"
    subprocess.run(
        [*makedumpfile_178(), "-z", "-d", str(level), str(big_guest_dump), str(theirs_path)],
        capture_output=True, check=True,
    )  # fmt: skip
    with open_dump(big_guest_dump) as dump, open_dump(theirs_path) as theirs:
        result = exclude_unnecessary_pages(dump, level)
        differences = set(np.flatnonzero(result.keep != theirs.present_bitmap()).tolist())
        assert differences <= partial_last_pages(dump), sorted(differences)[:10]
        if level == 31:
            # The workload's memory is there to be excluded: each class is substantial.
            for page_class in (PageClass.CACHE, PageClass.USER, PageClass.FREE):
                assert result.excluded.get(page_class, 0) > 50_000, page_class
