"""More crash commands, byte for byte as crash 9.0.2 prints them with the DWARF vmlinux,
ours with none (types from BTF, symbols from kallsyms), on the 6.1 fixture.

crash is run once for every command whose output is not cached yet (one session, about
20 s); its outputs are kept in ``$KDUMPKIT_CACHE/crash-9.0.2-outputs/<release>/`` so later
runs only read them.  Without crash and the -dbg vmlinux cached (``make oracles``) and
no cached outputs, the test is skipped.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from oracles import CACHE, FIXTURE_RELEASE, crash_9

pytest.importorskip("drgn")

from kdumpkit.analyze.session import Session

OUTPUTS = CACHE / "crash-9.0.2-outputs" / FIXTURE_RELEASE
#: the fixture's panic task and init
PANIC_PID, PANIC_TASK = 134, "ffff8f0bc207b000"

#: ``rd`` with these: every size, -s/-S/-SS symbols and slab caches, -x, -d/-D, -p, -a
#: with and without a count (crash stops at the first unprintable byte, mid-line)
RD_OPTIONS = (
    f"-s {PANIC_TASK} 32", f"-S {PANIC_TASK} 32", f"-SS {PANIC_TASK} 32",
    f"-s {PANIC_TASK} 3", "-s linux_banner 4", f"-x {PANIC_TASK} 4",
    f"-d {PANIC_TASK} 4", f"-D {PANIC_TASK} 4", f"-d -32 {PANIC_TASK} 4",
    f"-8 -d {PANIC_TASK} 4", "-p 1000 8", f"-32 -x {PANIC_TASK} 4",
    f"-8 {PANIC_TASK} 20", f"-8 {PANIC_TASK} 19", f"-16 {PANIC_TASK} 9",
    f"-32 {PANIC_TASK} 5", f"{PANIC_TASK} 3", PANIC_TASK, f"-64 -x {PANIC_TASK} 3",
    "-a init_uts_ns", "-a linux_proc_banner", "-a linux_banner 100",
)  # fmt: skip

#: ``list`` with these (init_task at ffffffff85c1aa40, its tasks at ffffffff85c1b2d0)
LIST_OPTIONS = (
    "task_struct.tasks -h ffffffff85c1aa40", "-r task_struct.tasks -h ffffffff85c1aa40",
    "task_struct.tasks -s task_struct.pid -h ffffffff85c1aa40",
    "task_struct.tasks -x -s task_struct.pid -h ffffffff85c1aa40",
    "task_struct.tasks -h ffffffff85c1aa40 -s list_head",
    "task_struct.tasks -H ffffffff85c1b2d0", "-o task_struct.tasks -H ffffffff85c1b2d0",
    "-r task_struct.tasks -H ffffffff85c1b2d0",
    "task_struct.tasks -s task_struct.pid,comm -H ffffffff85c1b2d0",
    "task_struct.tasks -e ffff8f0bc11f8000 -h ffffffff85c1aa40",
    "-H modules", "module.list -H modules -s module.name",
    "0 ffffffff85c1ae48", "task_struct.tasks -H ffffffff85c1ae48",
)  # fmt: skip

#: ``whatis`` of these: structures, unions, enums, typedefs, and two symbols (by drgn)
WHATIS_NAMES = (
    "task_struct", "list_head", "struct list_head", "union rcu_special", "pid_t",
    "enum pid_type", "pid_type", "atomic_t", "cpumask_t", "u64", "spinlock_t",
    "enum zone_type", "sk_buff", "inode", "file", "page", "mm_struct", "net_device",
    "super_block", "module", "rq", "bio", "file_operations", "irq_desc", "pt_regs",
    "ktime_t", "pgd_t", "wait_queue_head_t", "enum irqreturn", "schedule", "jiffies",
)  # fmt: skip

#: the commands whose output is crash's, byte for byte
BYTE_IDENTICAL = [
    # task: gdb's print of task_struct and thread_info from BTF
    f"task {PANIC_PID}",
    f"task {PANIC_TASK}",
    "task",
    f"task -R pid,comm {PANIC_PID}",
    "task -R se.load 1",
    "task -R thread_info,on_cpu,prio 1",
    f"struct task_struct {PANIC_TASK}",
    # files: root, cwd and open files; crash's blank lines between arguments' blocks
    f"files {PANIC_PID}",
    "files",
    "files 0",
    "files 2",
    f"files {PANIC_TASK}",
    f"files {PANIC_TASK} 1",
    "files 1 2",
    "files 0 1",
    "files 99999 1",
    # vm: the mm_struct line and the memory areas (maple tree)
    f"vm {PANIC_PID}",
    "vm",
    "vm 2",
    "vm 0",
    f"vm 1 {PANIC_PID}",
    f"vm {PANIC_TASK} 1",
    "foreach vm",
    # foreach with per-task commands, name patterns and states
    "foreach files",
    "foreach 1 134 files",
    "foreach ps",
    "foreach RU ps",
    "foreach 'kworker*' bt",
    "foreach task -R pid,prio",
    # list: singly linked, -h embedded and -H standalone heads, -r, -s structures and
    # members, -e, and the errors of a walk off the dump
    *(f"list {options}" for options in LIST_OPTIONS),
    # ipcs (the fixture has no IPC objects: the headers and "(none allocated)")
    "ipcs",
    # timer: each CPU's wheel bases, timers by expiry
    "timer",
    # sig: handlers, blocked, private and shared pending signals
    f"sig {PANIC_PID}",
    "sig",
    f"sig 1 {PANIC_PID}",
    "sig 0",
    f"sig {PANIC_TASK}",
    "foreach sig",
    "foreach 1 sig",
    # net: the devices of the task's network namespace
    "net",
    # irq: affinity, softirq vectors, counts per CPU with chip and flow
    "irq -a",
    "irq -b",
    "irq -s",
    # log: the audit queue (empty here), and the forms crash users type
    "log -a",
    "log -m",
    "log -T",
    "log -t",
    "log -c",
    "log -d",
    "log -m -t",
    # bt: frame data up to the next return address, slab caches free or not, radix
    "bt -f",
    "bt -f 1",
    "bt -a -f",
    "foreach bt -f",
    "bt -sx",
    "bt -sd",
    "bt -x",
    "foreach bt -sx",
    "bt -a -sx",
    "bt -a",
    "bt -c 0,1",
    "bt 1",
    # rd (see RD_OPTIONS)
    *(f"rd {options}" for options in RD_OPTIONS),
    # whatis TYPE: gdb's ptype of structures, unions, enums and typedefs, from BTF
    *(f"whatis {name}" for name in WHATIS_NAMES),
    # alias: crash's built-in aliases
    "alias",
    "alias dmesg",
    # ptov: the direct map
    "ptov 1000",
    "ptov 3f000000",
    "ptov 1000 2000",
    # mount; swap (the fixture has no swap: the header only)
    "mount",
    "swap",
]


def _key(command: str) -> str:
    return hashlib.sha1(command.encode()).hexdigest()[:16]


def crash_outputs(dump: Path, commands: list[str]) -> dict[str, str]:
    """crash 9.0.2's output of each command on ``dump`` (cached)."""
    missing = [c for c in commands if not (OUTPUTS / f"{_key(c)}.txt").is_file()]
    if missing:
        crash, vmlinux = crash_9()
        marker = "==KDUMPKIT-END=="
        script = "".join(f"{c}\n!echo {marker}\n" for c in missing) + "quit\n"
        run = subprocess.run(
            [*crash, "-s", str(vmlinux), str(dump)], input=script,
            capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        parts = run.stdout.split(f"{marker}\n")
        assert len(parts) == len(missing) + 1, run.stderr
        OUTPUTS.mkdir(parents=True, exist_ok=True)
        for command, text in zip(missing, parts, strict=False):
            (OUTPUTS / f"{_key(command)}.cmd").write_text(command + "\n")
            (OUTPUTS / f"{_key(command)}.txt").write_text(text)
    return {c: (OUTPUTS / f"{_key(c)}.txt").read_text() for c in commands}


@pytest.fixture(scope="module")
def theirs(kdump61: Path) -> dict[str, str]:
    return crash_outputs(kdump61, BYTE_IDENTICAL)


@pytest.fixture(scope="module")
def session(kdump61: Path) -> Session:
    from kdumpkit.analyze.program import open_program

    return Session(open_program(kdump61))


def test_crash_json_gives_the_facts_records(
    kdump61: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kdumpkit crash --json``: each command's records, from the same facts as its text."""
    import json

    from kdumpkit.cli.main import main

    commands = ["mount", f"files {PANIC_PID}", f"vm {PANIC_PID}", "net", "irq -a", "sys", "mod"]
    argv = ["crash", str(kdump61), "--json"]
    for command in commands:
        argv += ["-c", command]
    assert main(argv) == 0
    records = json.loads(capsys.readouterr().out)
    assert list(records) == commands
    assert records["mount"][0]["dirname"] == "/"
    (files,) = records[f"files {PANIC_PID}"]
    assert [f["path"] for f in files["files"]][:2] == ["/dev/console", "/proc/sysrq-trigger"]
    (vm,) = records[f"vm {PANIC_PID}"]
    assert vm["vmas"][0]["file"] == "/bin/busybox" and vm["mm"] > 0
    assert [d["name"] for d in records["net"]] == ["lo", "dummy0"]
    assert records["irq -a"][0] == {"irq": 0, "names": ["timer"], "cpus": [0, 1]}
    assert records["sys"][0]["release"] == "6.1.0-56-cloud-amd64"
    assert all({"name", "base", "size", "taints"} <= set(m) for m in records["mod"])


@pytest.mark.parametrize("command", BYTE_IDENTICAL)
def test_byte_identical_to_crash(session: Session, theirs: dict[str, str], command: str) -> None:
    assert session.run_to_text(command) == theirs[command]


def test_task_records(session: Session) -> None:
    (row,) = session.execute(["task", "-R", "pid", str(PANIC_PID)]).rows
    assert (row["pid"], f"{row['task']:x}") == (PANIC_PID, PANIC_TASK)
    assert session.run_to_text("task -R no_such_member 1").startswith("task: invalid task_struct")
