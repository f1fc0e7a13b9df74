"""A real arm64 kdump cycle driven by kdumpkit inside Debian's arm64 kernels under
qemu-system-aarch64 (TCG): ``kdumpkit load`` (kexec_file_load is absent: CONFIG_KEXEC_FILE is
off in Debian's arm64 kernels, so it falls back to ``kexec -p``), sysrq-c, ``kdumpkit collect``
in the capture kernel with Debian's arm64 python3.11; the dump and log are then read on this
x86_64 host. ``testbed/arm64`` builds everything (cached under $KDUMPKIT_CACHE/testbed-arm64);
the cycle itself is run once per session unless KDUMPKIT_ARM64_REUSE=1 keeps a finished one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from arm64_fixtures import KVER_6_1, KVER_6_12, TESTBED, arm64_vmlinux

from kdumpkit.dump.open import open_dump
from kdumpkit.kernel.printk import get_printk_records

pytestmark = [pytest.mark.e2e, pytest.mark.long]

SCRIPTS = Path(__file__).resolve().parents[2] / "testbed" / "arm64"
KERNELS = {"6.1": KVER_6_1, "6.12": KVER_6_12}
E2E_KERNELS = os.environ.get("KDUMPKIT_E2E_KERNELS", "6.1").split()


def _run(*argv: str) -> None:
    env = {**os.environ, "PIP": f"{sys.executable} -m pip"}
    proc = subprocess.run(argv, cwd=SCRIPTS, env=env, capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")


@pytest.fixture(scope="module", params=[s for s in ("6.1", "6.12") if s in E2E_KERNELS])
def cycle(request: pytest.FixtureRequest) -> Path:
    if shutil.which("qemu-system-aarch64") is None or shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-system-aarch64 / qemu-aarch64-static are not installed")
    kver = KERNELS[request.param]
    out = TESTBED / f"kdumpkit-{kver}-cycle"
    if os.environ.get("KDUMPKIT_ARM64_REUSE") != "1" or not (out / "ls.txt").exists():
        env_kv = f"KVERS={kver}"
        _run("env", env_kv, "./10-fetch-kernels.sh")
        _run("./15-fetch-userspace.sh", "bookworm")
        _run("./25-build-kdumpkit-root.sh", kver)
        _run("./35-kdumpkit-cycle.sh", kver)
    return out


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"{folder}: {pattern}: {found}"
    return found[0]


def test_load_falls_back_to_kexec_load_and_arms_kdump(cycle: Path) -> None:
    load = (cycle / "out" / "load.log").read_text()
    assert "falling back to kexec -p (kexec_load)" in load
    assert "loaded (via kexec -p); kexec_crash_loaded = 1" in load
    assert (cycle / "out" / "check-after.txt").read_text().rstrip().endswith("ready for kdump")
    before = (cycle / "out" / "check-before.txt").read_text()
    assert "NOT ready for kdump" in before


def test_collect_writes_the_dump_and_its_log(cycle: Path) -> None:
    timing = (cycle / "timing.txt").read_text()
    assert "kdumpkit collect rc=0" in timing
    dump = _one(cycle / "out", "2*/dump.*")
    log = _one(cycle / "out", "2*/dmesg.*")
    with open_dump(dump) as opened:
        assert opened.header.machine == "aarch64" and opened.header.dump_level == 31
        assert opened.header.utsname["release"] in str(cycle)
        records = get_printk_records(opened)
    text = log.read_bytes()
    assert b"TESTBED marker: kdumpkit cycle on" in text
    assert b"Kernel panic - not syncing: sysrq triggered crash" in text
    assert records and records[-1].text.rstrip() in text


def test_the_collected_log_is_makedumpfiles(cycle: Path) -> None:
    """On 6.1 sid's arm64 makedumpfile 1.7.8 (qemu-user) reads the same log from the dump
    kdumpkit wrote (it cannot read 6.12's: 'VA Bits 52 not supported')."""
    if "6.12" in cycle.name:
        pytest.skip("makedumpfile 1.7.8 refuses 6.12 arm64 kernels")
    from arm64_fixtures import makedumpfile_178_arm64

    dump = _one(cycle / "out", "2*/dump.*")
    log = _one(cycle / "out", "2*/dmesg.*")
    theirs = cycle / "mdf-dmesg.txt"
    theirs.unlink(missing_ok=True)
    subprocess.run(
        [*makedumpfile_178_arm64(), "--dump-dmesg", str(dump), str(theirs)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert theirs.read_bytes() == log.read_bytes()


def test_stacks_of_the_collected_dump_are_drgns(cycle: Path) -> None:
    import drgn
    from drgn.helpers.linux.pid import for_each_task

    from kdumpkit.analyze.program import open_program
    from kdumpkit.analyze.stack import stack_trace

    kver = KVER_6_12 if "6.12" in cycle.name else KVER_6_1
    vmlinux = arm64_vmlinux(kver)
    if vmlinux is None:
        pytest.skip("no -dbg vmlinux cached")
    dump = _one(cycle / "out", "2*/dump.*")
    reference = drgn.Program()
    reference.set_core_dump(str(dump))
    reference.load_debug_info([str(vmlinux)], default=False, main=True)
    ours = open_program(dump, vmlinux if kver == KVER_6_1 else None)
    for task in for_each_task(reference):
        pcs: list[int] = []
        for frame in reference.stack_trace(task):
            if not pcs or pcs[-1] != frame.pc:
                pcs.append(frame.pc)
        theirs = stack_trace(ours, drgn.Object(ours, "struct task_struct *", task.value_()))
        assert [f.pc for f in theirs if not f.stale] == pcs, task.comm.string_()
