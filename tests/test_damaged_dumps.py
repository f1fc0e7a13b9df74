"""A short slice of the damaged-dump harness (tests/damaged_dumps.py): damaged variants of
the real 6.1 dumps (kdump, flattened, raw ELF) through info, dmesg, crash -c bt/ps/log,
report and shell -e, each run limited to 1 GiB of address space and 30 s a verb.  No
traceback, no internal error, no timeout, no kill, every exit-2 error one line.
The long run (2,000+ variants) is bench/fuzz_analysis.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import damaged_dumps as dd
import pytest


def _require_fixtures() -> dict[str, Path]:
    bases = dd.base_dumps()
    if "kdump" not in bases:
        pytest.skip("the 6.1 fixture dumps are not present (KDUMPKIT_FIXTURES)")
    return bases


@pytest.mark.slow
def test_damaged_variants_slice(capsys: pytest.CaptureFixture[str]) -> None:
    bases = _require_fixtures()
    memory = dd.memory_pages(bases["elf"]) if "elf" in bases else None
    variants = dd.make_variants(30, seed=2026, memory_offsets=memory)
    assert {v.kind for v in variants} >= {"flip", "zero", "truncate", "vmcoreinfo", "notes"}
    summary = dd.Summary()
    for outcome in dd.run_all(variants):
        summary.add(outcome)
    with capsys.disabled():
        print("\n" + summary.text())
    assert summary.variants == 30
    assert summary.failures == 0, summary.text()
    assert summary.runs["answer"] > 0 and summary.runs["error"] > 0
    assert summary.peak_rss_kb < dd.MEMORY_LIMIT // 1024
    assert summary.slowest_verb_s < dd.VERB_TIMEOUT


def _digest(path: Path, ranges: list[tuple[int, int]]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as file:
        for at, size in ranges:
            file.seek(at)
            h.update(file.read(size))
    return h.hexdigest()


def test_big_base_is_restored_after_a_patched_run(tmp_path: Path) -> None:
    """The raw ELF is patched in a kept copy for each variant and restored afterwards."""
    bases = _require_fixtures()
    if "elf" not in bases:
        pytest.skip("the decompressed ELF fixture is not in the cache")
    (variant,) = [v for v in dd.make_variants(3, seed=5) if v.base == str(bases["elf"])]
    ranges = [(at, len(data)) for at, data in variant.patches]
    outcome = dd.run_variant(variant, tmp_path, verbs=[("info", "DUMP")])
    assert next(v.kind for v in outcome.verbs) in ("answer", "error")
    kept = tmp_path / f"kept-{bases['elf'].name}"
    assert _digest(kept, ranges) == _digest(bases["elf"], ranges)
    kept.unlink()


def test_a_bad_build_id_variant_is_counted_as_an_answer(tmp_path: Path) -> None:
    """The harness sees what the issue saw: BUILD-ID damaged, crash and report answer
    (with a warning) instead of a traceback."""
    bases = _require_fixtures()
    head = bases["kdump"].read_bytes()[: 1 << 20]
    at = head.index(b"BUILD-ID=") + 9
    variant = dd.Variant(str(bases["kdump"]), "vmcoreinfo", 0, patches=[(at, b"zz!!")])
    outcome = dd.run_variant(variant, tmp_path, verbs=dd.VERBS[2:4])
    assert [v.kind for v in outcome.verbs] == ["answer", "answer"]
    assert all("warning: VMCOREINFO BUILD-ID" in v.stderr for v in outcome.verbs)


@pytest.mark.slow
def test_capture_killed_half_way(tmp_path: Path) -> None:
    """A real killed capture: ``kdumpkit save`` of the raw 6.1 /proc/vmcore killed (SIGKILL)
    once 15 MB of its ~17.7 MB are written.  The kernel's text, kallsyms and BTF are
    in the file, the pages after the cut are not: report gives the panic task and lists
    what it could not read; every verb ends in an answer or one line."""
    import os
    import signal
    import subprocess
    import sys
    import time

    bases = _require_fixtures()
    if "elf" not in bases:
        pytest.skip("the decompressed ELF fixture is not in the cache")
    out = tmp_path / "dump.kdump"
    env = dict(os.environ, PYTHONPATH=str(dd.ROOT))
    save = subprocess.Popen(
        [sys.executable, "-m", "kdumpkit", "save", str(bases["elf"]), str(out), "-d", "31",
         "--compress", "zlib", "--threads", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while save.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.stat().st_size >= 15_000_000:
            save.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    save.wait()
    assert save.returncode == -signal.SIGKILL, "save ended before it could be killed"
    outcomes, rss, _ = dd.run_paths(out)
    assert rss < dd.MEMORY_LIMIT // 1024
    kinds = {o.verb.split()[0]: o for o in outcomes}
    assert all(o.kind in ("answer", "error") for o in outcomes), [o.stderr for o in outcomes]
    report = kinds["report"]
    assert report.kind == "answer", report.stderr
    text = dd.run_report_text(out)
    assert "Crashing task: PID 134" in text and "Could not read:" in text
    assert "page not in dump (lost)" in text or "past EOF" in text
    out.unlink()


def test_kdump_cut_in_its_bitmap(tmp_path: Path) -> None:
    """A kdump file cut inside its bitmaps: one line naming them, from every verb."""
    bases = _require_fixtures()
    out = tmp_path / "cut.kdump"
    out.write_bytes(bases["kdump"].read_bytes()[:40_000])
    outcomes, _, _ = dd.run_paths(out, dd.VERBS[:4])
    for outcome in outcomes:
        assert outcome.kind == "error", outcome.stderr
        assert "bitmap_blocks 16 runs past the end of the file" in outcome.stderr
    out.unlink()


@pytest.mark.slow
def test_elf_cut_short(tmp_path: Path) -> None:
    """The raw /proc/vmcore cut at 80 % (a copy killed, a disk full): the kernel image is
    in it, the top of memory is not; report gives the panic, the crashing task's
    backtrace and the log, and lists the parts it could not read."""
    bases = _require_fixtures()
    if "elf" not in bases:
        pytest.skip("the decompressed ELF fixture is not in the cache")
    size = bases["elf"].stat().st_size
    out = dd.materialize(
        dd.Variant(str(bases["elf"]), "truncate", 0, truncate_at=size * 4 // 5 // 4096 * 4096),
        tmp_path / "cut.elf",
    )
    text = dd.run_report_text(out)
    assert "panic: Kernel panic - not syncing: sysrq triggered crash" in text
    assert 'Crashing task: PID 134 "testbed_crasher"' in text and " #9 [" in text
    assert "Could not read:" in text and "page not in dump (lost)" in text
    out.unlink()


def test_big_file_is_not_mapped_under_an_address_space_limit(tmp_path: Path) -> None:
    """Under ``ulimit -v`` a dump bigger than a quarter of the limit is read with pread:
    a 779 MB cut ELF mapped whole left a 1 GiB-limited analysis too little room."""
    import subprocess
    import sys

    probe = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from kdumpkit.dump.source import FileSource; "
        "print(FileSource(sys.argv[1])._map is None, FileSource(sys.argv[2])._map is None)"
    )
    small = tmp_path / "small"
    small.write_bytes(bytes(4096))
    big = tmp_path / "big"
    with open(big, "wb") as file:
        file.truncate(600 << 20)  # sparse: no disk used
    run = subprocess.run(
        [sys.executable, "-c", probe, str(small), str(big)],
        capture_output=True, text=True, check=True, env={"PYTHONPATH": str(dd.ROOT)},
    )  # fmt: skip
    assert run.stdout.split() == ["False", "True"]
    big.unlink()
    small.unlink()
