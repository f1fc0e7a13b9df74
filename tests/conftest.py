"""Shared test fixtures: the real dumps in ../shared/fixtures, decompressed once into .cache/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", ROOT / ".cache"))
FIXTURES = Path(os.environ.get("KDUMPKIT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
FIXTURE_6_1 = FIXTURES / "linux-6.1.0-56-cloud-amd64-kdump"


def fixture_dir(name: str = FIXTURE_6_1.name) -> Path:
    """A real-dump fixture folder, or skip the test with the reason."""
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"real-dump fixtures not present ({path}); set KDUMPKIT_FIXTURES")
    return path


def decompressed_elf(folder: Path) -> Path:
    """The folder's vmcore.elf.zst decompressed (sparse) into the cache, once."""
    out = CACHE / "fixtures" / folder.name / "vmcore.elf"
    if not out.exists():
        src = folder / "vmcore.elf.zst"
        if not src.exists():
            pytest.skip(f"{src} not present")
        if shutil.which("zstd") is None:
            pytest.skip("zstd is not installed")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run(["zstd", "-q", "-f", "-d", "--sparse", str(src), "-o", str(tmp)], check=True)
        tmp.rename(out)
    return out


@pytest.fixture(scope="session")
def fx61() -> Path:
    """The Debian 6.1 fixture folder."""
    return fixture_dir()


@pytest.fixture(scope="session")
def elf61(fx61: Path) -> Path:
    """The raw /proc/vmcore of the 6.1 fixture."""
    return decompressed_elf(fx61)


@pytest.fixture(scope="session")
def kdump61(fx61: Path) -> Path:
    return fx61 / "vmcore.kdump"


@pytest.fixture(scope="session")
def flat61(fx61: Path) -> Path:
    return fx61 / "vmcore.flat"


@pytest.fixture(params=["elf61", "kdump61", "flat61"])
def dump(request: pytest.FixtureRequest):
    """The 6.1 fixture opened, once in each of its formats (ELF, kdump-compressed, flattened)."""
    from kdumpkit.dump.open import open_dump

    path: Path = request.getfixturevalue(request.param)
    if not path.exists():
        pytest.skip(f"{path} not present")
    with open_dump(path) as opened:
        yield opened


@pytest.fixture
def stdlib_zlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """zlib pages deflated by zlib itself, not libdeflate: then our files are makedumpfile's
    bytes exactly, which is how the tests pin the layout (headers, bitmaps, page
    descriptors, data offsets) down to the byte."""
    import zlib
    from functools import partial

    from kdumpkit.dump import compress

    monkeypatch.setattr(compress, "_deflate", lambda: partial(zlib.compress, level=1))
