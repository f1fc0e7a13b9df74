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


#: ``make e2e`` sets it: every input must be there, a skip is a failure.
STRICT = os.environ.get("KDUMPKIT_STRICT") == "1"
#: ``make e2e`` sets it (STRICT implies it): run the tests marked ``long``, which boot
#: extra guests for many minutes (the real system, Debian 11, arm64 cycles).
LONG = STRICT or os.environ.get("KDUMPKIT_LONG") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` skip unless ``make e2e`` (KDUMPKIT_LONG=1) runs them; the
    skip summary names them."""
    if LONG:
        return
    skip = pytest.mark.skip(
        reason="boots extra guests for many minutes (KDUMPKIT_LONG=1 pytest ..., or make e2e)"
    )
    for item in items:
        if item.get_closest_marker("long") is not None:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Under KDUMPKIT_STRICT=1 a skipped test fails, with the skip's reason."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under KDUMPKIT_STRICT=1 (make e2e): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """Under KDUMPKIT_STRICT=1 a module skipped at import (importorskip) fails too."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under KDUMPKIT_STRICT=1 (make e2e): {reason}"


def _skip_groups(reports: list[pytest.TestReport]) -> dict[tuple[str, str], int]:
    """(test file, reason) -> how many tests skipped for it."""
    groups: dict[tuple[str, str], int] = {}
    for report in reports:
        if isinstance(report.longrepr, tuple):
            path, _, reason = report.longrepr
        else:
            path, reason = report.nodeid.split("::")[0], str(report.longrepr)
        path = report.nodeid.split("::")[0] or path
        reason = reason.removeprefix("Skipped: ")
        groups[(path, reason)] = groups.get((path, reason), 0) + 1
    return groups


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per group of skipped tests: what was not checked, the command that checks it."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if r.when != "teardown"]
    if not skipped:
        return
    terminalreporter.section("not checked in this run")
    for (path, reason), count in sorted(_skip_groups(skipped).items()):
        tests = "test" if count == 1 else "tests"
        if "[make it: " in reason:  # tests/oracles.py missing_input
            what, build = reason.rsplit(" [make it: ", 1)
            check = f"{build.rstrip(']')} && pytest {path}  (or: make e2e)"
        else:
            what, check = reason, "make e2e"
        terminalreporter.write_line(f"NOT CHECKED {path} ({count} {tests}): {what} -- {check}")


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
