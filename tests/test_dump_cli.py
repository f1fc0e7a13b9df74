"""``kdumpkit info``, ``convert`` and ``reassemble`` on the fixture; bad input gives a
one-line error and exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdumpkit.cli.main import main
from kdumpkit.dump import open_dump

ROOT = Path(__file__).resolve().parent.parent


def _kdumpkit(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "kdumpkit", *args], input=stdin, capture_output=True, env=env
    )


def test_info_text_matches_the_dump(
    kdump61: Path, fx61: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(kdump61)]) == 0
    text = capsys.readouterr().out
    vmcoreinfo = (fx61 / "vmcoreinfo.txt").read_text()
    assert "kdump" in text and "6.1.0-56-cloud-amd64" in text and "zlib" in text
    crashtime = next(line for line in vmcoreinfo.splitlines() if line.startswith("CRASHTIME="))
    assert crashtime in text
    assert "CPUs (2)" in text and "rip=0x" in text


def test_info_json_has_every_fact(
    kdump61: Path, flat61: Path, fx61: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--json", str(flat61)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "kdump" and info["flattened"]
    assert info["dump_level"] == 31 and info["compression"] == "zlib"
    vmcoreinfo = (fx61 / "vmcoreinfo.txt").read_text().splitlines()
    keys = {line.split("=", 1)[0] for line in vmcoreinfo if "=" in line}
    assert set(info["vmcoreinfo"]) == keys
    with open_dump(kdump61) as dump:
        assert info["pages"]["present"] == dump.count_present()
        assert info["pages"]["excluded"] == dump.excluded_count()
        assert [c["pid"] for c in info["cpus"]] == [p.pid for p in dump.prstatus]
        assert info["cpus"][0]["registers"]["rip"] == dump.prstatus[0].registers["rip"]


def test_convert_and_reassemble(kdump61: Path, tmp_path: Path) -> None:
    elf = tmp_path / "x.elf"
    flat = tmp_path / "x.flat"
    back = tmp_path / "x.kdump"
    assert main(["convert", str(kdump61), str(elf), "--format", "elf"]) == 0
    assert main(["convert", str(elf), str(flat), "-f", "flat", "-c", "zlib", "--exclude-zero"]) == 0
    assert main(["reassemble", str(flat), str(back)]) == 0
    # kdump -> ELF -> flattened kdump -> kdump gives makedumpfile's file again, but for
    # the utsname fields only the original kdump header knew.
    with open_dump(back) as ours, open_dump(kdump61) as ref:
        assert dict(ours.iter_pages()) == dict(ref.iter_pages())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.elf", "x.flat", "x.kdump"]


def test_convert_to_stdout_and_reassemble_from_stdin(kdump61: Path, tmp_path: Path) -> None:
    streamed = _kdumpkit("convert", str(kdump61), "-", "-c", "lzo")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.startswith(b"makedumpfile\0")
    out = tmp_path / "from-stdin.kdump"
    result = _kdumpkit("reassemble", "-", str(out), stdin=streamed.stdout)
    assert result.returncode == 0, result.stderr
    with open_dump(out) as back, open_dump(kdump61) as ref:
        assert back.header.compression == "lzo"
        assert back.count_present() == ref.count_present()


def test_convert_to_flattened_elf(kdump61: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.flat-elf"
    assert main(["convert", str(kdump61), str(out), "-f", "flat-elf"]) == 0
    with open_dump(out) as back, open_dump(kdump61) as ref:
        assert back.format == "elf" and back.header.extra["flattened"]
        assert back.count_present() == ref.count_present()


def test_convert_split(kdump61: Path, tmp_path: Path) -> None:
    outs = [str(tmp_path / f"s{i}") for i in range(2)]
    assert main(["convert", str(kdump61), *outs, "--split", "2", "-c", "snappy"]) == 0
    with open_dump(outs) as back, open_dump(kdump61) as ref:
        assert dict(back.iter_pages()) == dict(ref.iter_pages())


@pytest.mark.parametrize("verb", ["info", "convert", "reassemble"])
def test_bad_input_is_one_line_and_status_2(verb: str, tmp_path: Path, kdump61: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(kdump61.read_bytes()[:5000])  # a kdump header cut short
    args = {"info": [str(bad)], "convert": [str(bad), str(tmp_path / "o")],
            "reassemble": [str(bad), str(tmp_path / "o")]}[verb]  # fmt: skip
    result = _kdumpkit(verb, *args)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith(f"kdumpkit {verb}:")
    assert not (tmp_path / "o").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad"]


def test_missing_file_is_status_2(tmp_path: Path) -> None:
    result = _kdumpkit("info", str(tmp_path / "nope"))
    assert result.returncode == 2 and b"Traceback" not in result.stderr
