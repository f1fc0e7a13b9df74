"""The package as users install it: a wheel built from the sdist (``python -m build``),
installed with pip into a fresh virtual environment outside the checkout, and its
``kdumpkit`` run from a directory that holds no source.  An import that works only from
the source tree (a module not packaged, package data missing, ``importlib.util`` used
without importing it) fails here, where the editable install used by the other tests
would hide it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdumpkit.cli.main import VERBS

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    """This environment without what would let the checkout leak into the fresh venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with the built wheel installed, and where to run it."""

    venv: Path
    workdir: Path
    build_log: str

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "kdumpkit"), *args],
            cwd=self.workdir,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "python"), *args],
            cwd=self.workdir,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("installed")
    dist, venv, workdir = base / "dist", base / "venv", base / "work"
    workdir.mkdir()
    # sdist first, then the wheel built from the sdist: both must carry everything.
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels = sorted(dist.glob("kdumpkit-*.whl"))
    assert len(wheels) == 1 and sorted(dist.glob("kdumpkit-*.tar.gz")), list(dist.iterdir())
    subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=_clean_env()
    )
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheels[0])],
        cwd=workdir,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    yield Installed(venv, workdir, build.stdout + build.stderr)


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stdout, result.stdout[-3000:]


def test_build_prints_no_deprecation_warning(installed: Installed) -> None:
    assert not re.search(r"deprecat", installed.build_log, re.IGNORECASE), [
        line for line in installed.build_log.splitlines() if "eprecat" in line
    ]


def test_the_installed_package_is_the_one_that_runs(installed: Installed) -> None:
    where = installed.python("-c", "import kdumpkit; print(kdumpkit.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout
    assert not Path(where.stdout.strip()).is_relative_to(ROOT)


def test_version_and_module_entry_point(installed: Installed) -> None:
    from kdumpkit import __version__

    version = installed.run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"kdumpkit {__version__}"
    module = installed.python("-m", "kdumpkit", "--help")
    _no_traceback(module)
    assert module.returncode == 0 and "VERB" in module.stdout


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help(installed: Installed, verb: str) -> None:
    result = installed.run(verb, "--help")
    _no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: kdumpkit {verb}")


def test_package_data_is_installed(installed: Installed) -> None:
    units = installed.python(
        "-c",
        "from importlib import resources; "
        "print(resources.files('kdumpkit.service').joinpath('units', "
        "'kdumpkit-collect.service').read_text())",
    )
    assert units.returncode == 0, units.stderr
    assert "ExecStart=@KDUMPKIT@ collect" in units.stdout


def test_info_dmesg_crash_report_on_the_fixture(
    installed: Installed, kdump61: Path, fx61: Path, tmp_path: Path
) -> None:
    info = installed.run("info", str(kdump61))
    _no_traceback(info)
    assert info.returncode == 0 and "6.1.0-56-cloud-amd64" in info.stdout

    log = tmp_path / "dmesg.txt"
    dmesg = installed.run("dmesg", str(kdump61), str(log))
    _no_traceback(dmesg)
    assert dmesg.returncode == 0, dmesg.stderr
    assert log.read_bytes() == (fx61 / "makedumpfile" / "dump-dmesg-1.7.8.txt").read_bytes()

    crash = installed.run("crash", str(kdump61), "-c", "sys", "-c", "bt")
    _no_traceback(crash)
    assert crash.returncode == 0, crash.stderr
    assert "RELEASE: 6.1.0-56-cloud-amd64" in crash.stdout and "#0 [" in crash.stdout

    report = installed.run("report", str(kdump61))
    _no_traceback(report)
    assert report.returncode == 0, report.stderr
    assert "sysrq" in report.stdout.lower()


def test_save_then_read_back(installed: Installed, elf61: Path, tmp_path: Path) -> None:
    out = tmp_path / "saved.kdump"
    save = installed.run("save", str(elf61), str(out), "-d", "31", "-q")
    _no_traceback(save)
    assert save.returncode == 0, save.stderr
    info = installed.run("info", str(out), "--json")
    assert info.returncode == 0 and '"dump_level": 31' in info.stdout


def test_service_verbs_answer_in_one_line(installed: Installed) -> None:
    for verb in ("check", "estimate"):
        result = installed.run(verb)
        _no_traceback(result)
        assert result.returncode in (0, 1), (verb, result.stderr)
        assert result.stdout.strip(), verb


def test_bad_dump_is_one_line(installed: Installed, tmp_path: Path) -> None:
    bad = tmp_path / "garbage"
    bad.write_bytes(b"\x7fELF" + os.urandom(4000))
    for verb in ("info", "dmesg", "report"):
        result = installed.run(verb, str(bad))
        _no_traceback(result)
        assert result.returncode == 2, (verb, result.stderr)
        assert result.stderr.startswith(f"kdumpkit {verb}: ") and result.stderr.count("\n") == 1
