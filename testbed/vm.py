"""Boot Debian's kernels under QEMU and crash them: a real kdump cycle, or QEMU's own dumps.

The guest runs ``testbed/guest-init.sh`` from a busybox initramfs, mounts the host's root
filesystem read-only over virtio 9p and runs this project's Python from there. A kdump
cycle is: first kernel boots, ``kdumpkit load`` arms the capture kernel, sysrq-c, the
capture kernel runs ``kdumpkit collect`` into a writable 9p share, powers off.

Command line::

    python3 testbed/vm.py cycle [6.1|6.12] [--out DIR]
    python3 testbed/vm.py qemu-dump [6.1|6.12] [--out DIR] [--no-vmcoreinfo]
    python3 testbed/vm.py qemu-dumps [6.1|6.12]    (both variants, cached in .cache/testbed)
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qmp import QMPClient, QMPError  # a sibling script, not a package

TESTBED_DIR = Path(__file__).resolve().parent
PROJECT_DIR = TESTBED_DIR.parent
CACHE = Path(os.environ.get("TESTBED_CACHE", PROJECT_DIR / ".cache" / "testbed"))
QEMU = os.environ.get("TESTBED_QEMU", "qemu-system-x86_64")
#: One guest at a time on this machine (TCG guests share its cores): every boot holds it.
QEMU_LOCK = os.environ.get("TESTBED_QEMU_LOCK", "/tmp/kdumpkit-qemu.lock")
ACCEL = os.environ.get("TESTBED_ACCEL", "tcg")  # this machine's /dev/kvm can't run guests
GUEST_MEM_MIB = int(os.environ.get("TESTBED_MEM", "1024"))
GUEST_CPUS = int(os.environ.get("TESTBED_CPUS", "2"))
CRASHKERNEL = os.environ.get("TESTBED_CRASHKERNEL", "256M")
# About 35 s on an idle machine, 3 min with the 2 cores shared by other heavy work: the
# deadline is for a hung guest, not a slow one.
CYCLE_TIMEOUT_S = float(os.environ.get("TESTBED_TIMEOUT", "600"))


class TestbedError(RuntimeError):
    """A testbed step failed (the message says which, the console log is kept)."""


class TestbedUnavailable(TestbedError):
    """This host can't run the testbed (no QEMU, no kernel and no Debian mirror)."""


@dataclass(frozen=True)
class Kernel:
    """An unpacked Debian kernel and the testbed initramfs built for it."""

    release: str
    vmlinuz: Path
    initrd: Path


def _run_script(script: str, arg: str, timeout: float) -> str:
    """Run testbed/<script> ARG and return its last stdout line (its result)."""
    try:
        done = subprocess.run(
            [str(TESTBED_DIR / script), arg], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise TestbedUnavailable(f"{script} {arg} took more than {timeout:.0f}s") from exc
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise TestbedUnavailable(f"{script} {arg} failed: {reason[0]}")
    return done.stdout.strip().splitlines()[-1]


def prepare_kernel(series: str) -> Kernel:
    """Fetch (once, cached) Debian's kernel of ``series`` and build its initramfs."""
    if shutil.which(QEMU) is None:
        raise TestbedUnavailable(f"{QEMU} is not installed")
    release = _run_script("fetch-kernel.sh", series, timeout=600)
    initrd = Path(_run_script("build-initramfs.sh", release, timeout=120))
    vmlinuz = CACHE / "kernels" / release / "boot" / f"vmlinuz-{release}"
    return Kernel(release, vmlinuz.resolve(), initrd)


@dataclass
class Guest:
    """A running QEMU whose serial console is read line by line, with host timestamps."""

    process: subprocess.Popen[bytes]
    console_path: Path
    started: float = field(default_factory=time.monotonic)
    lines: list[tuple[float, str]] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def _read_console(self) -> None:
        assert self.process.stdout is not None
        with self.console_path.open("w", errors="replace") as log:
            for raw in self.process.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                log.write(line + "\n")
                log.flush()
                with self._changed:
                    self.lines.append((time.monotonic(), line))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_line(self, pattern: str, deadline: float, start: int = 0) -> tuple[int, float, str]:
        """Wait for a console line matching regex ``pattern`` (searching from line ``start``).

        Returns (index, host time, line); raises TestbedError at ``deadline`` or when QEMU
        exits first.
        """
        regex = re.compile(pattern)
        index = start
        with self._changed:
            while True:
                while index < len(self.lines):
                    seen_at, line = self.lines[index]
                    if regex.search(line):
                        return index, seen_at, line
                    index += 1
                if self.process.poll() is not None and index >= len(self.lines):
                    self._changed.wait(0.2)  # let the reader drain the last lines
                    if index >= len(self.lines):
                        raise TestbedError(
                            f"QEMU exited (rc {self.process.returncode}) before /{pattern}/;"
                            f" console: {self.console_path}"
                        )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestbedError(
                        f"timed out waiting for /{pattern}/; console: {self.console_path}"
                    )
                self._changed.wait(min(remaining, 1.0))

    def wait_exit(self, deadline: float) -> int:
        """Wait for QEMU to exit by itself; return its exit status."""
        try:
            return self.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired as exc:
            raise TestbedError(
                f"QEMU still running at the deadline; console: {self.console_path}"
            ) from exc

    def kill(self) -> None:
        """Stop QEMU (its whole process group) if it still runs."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)


def qemu_command(
    kernel: Kernel, cmdline: str, extra: list[str], mem_mib: int | None = None
) -> list[str]:
    """The QEMU command line: TCG, serial console on stdout, the host's root as 9p tag hostroot."""
    mem_mib = mem_mib or GUEST_MEM_MIB
    return [
        # -cpu max: the host's Python wheels (numpy) need at least x86-64-v2 (SSE4.2, POPCNT);
        # TCG's default qemu64 model has none of it and Python dies with SIGILL.
        QEMU, "-accel", ACCEL, "-cpu", "max", "-m", str(mem_mib), "-smp", str(GUEST_CPUS),
        "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", str(kernel.vmlinuz), "-initrd", str(kernel.initrd), "-append", cmdline,
        # multidevs=remap: the host root spans several devices (/proc, /sys...); keep inode
        # numbers unique across them.
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                   "multidevs=remap",
        *extra,
    ]  # fmt: skip


@contextmanager
def running_guest(
    command: list[str], console_path: Path, timeout: float = CYCLE_TIMEOUT_S
) -> Iterator[Guest]:
    """Start QEMU in its own process group; it is always killed when the block ends.

    It also runs under timeout(1), so even if this process is killed outright, QEMU is
    gone ``timeout`` (+30) seconds later. It waits for QEMU_LOCK first (other guests on the
    machine), outside the guest's deadlines.
    """
    with open(QEMU_LOCK, "a") as lock:
        fcntl.flock(inherited_lock_fd(QEMU_LOCK) or lock, fcntl.LOCK_EX)
        with _running_guest(command, console_path, timeout) as guest:
            yield guest


def inherited_lock_fd(path: str) -> int | None:
    """An open file descriptor of ``path`` this process inherited (``flock PATH python vm.py
    ...``): locking it again succeeds at once, where a new open of the file would wait
    for the parent's lock forever."""
    target = os.path.realpath(path)
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return int(fd)
        except OSError:
            continue
    return None


@contextmanager
def _running_guest(command: list[str], console_path: Path, timeout: float) -> Iterator[Guest]:
    if shutil.which("timeout"):
        command = ["timeout", "-k", "5", str(int(timeout) + 30), *command]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    guest = Guest(process, console_path)
    reader = threading.Thread(target=guest._read_console, daemon=True)
    reader.start()
    try:
        yield guest
    finally:
        guest.kill()
        reader.join(timeout=5)


@dataclass
class CycleResult:
    """What one kdump cycle produced and how long each stage took (seconds)."""

    release: str
    out_dir: Path
    console_path: Path
    stages: dict[str, float]
    loader: str
    collector: str
    load_rc: int
    collect_rc: int

    def dump_dirs(self) -> list[Path]:
        """The ``<out>/<stamp>`` folders the collector made."""
        return sorted(p for p in self.out_dir.iterdir() if p.is_dir())

    def timing_text(self) -> str:
        """One line per stage, for humans."""
        return "\n".join(f"  {name:<22} {secs:6.1f}s" for name, secs in self.stages.items())


def _field(line: str, name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", line)
    return match.group(1) if match else "?"


def run_kdump_cycle(
    kernel: Kernel,
    out_dir: Path,
    python: str | None = None,
    compress: str | None = "zlib",
    timeout: float = CYCLE_TIMEOUT_S,
    mem_mib: int | None = None,
    level: int | None = None,
    fmt: str | None = None,
    workload_mib: int | None = None,
) -> CycleResult:
    """Boot ``kernel``, arm kdump with kdumpkit, panic, collect into ``out_dir``, power off.

    ``python`` is the interpreter the guest runs (a host path; default: this one), with
    the project directory on PYTHONPATH. ``compress`` is passed to ``kdumpkit collect``
    (zlib by default: Debian 12's makedumpfile 1.7.2 is built without zstd). Raises
    TestbedError when a stage doesn't happen in time. Files: ``out_dir/console.log`` and
    the guest's writable share ``out_dir/share`` (check/load/collect logs, ``<stamp>/``).
    ``mem_mib`` is the guest's memory (default TESTBED_MEM), ``level`` and ``fmt`` the
    config's dump.level and dump.format, ``workload_mib`` how much memory
    testbed/workload.py fills before the panic (none by default).
    """
    out_dir = out_dir.resolve()
    share = out_dir / "share"
    share.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    cmdline = (
        f"console=ttyS0 quiet crashkernel={CRASHKERNEL} panic=5 kdtb.stage=first kdtb.py={python} "
        f"kdtb.proj={PROJECT_DIR} kdtb.out={share} kdtb.kernel={kernel.vmlinuz} "
        f"kdtb.initrd={kernel.initrd}"
    )
    knobs = {"compress": compress, "level": level, "format": fmt, "workload": workload_mib}
    cmdline += "".join(f" kdtb.{key}={value}" for key, value in knobs.items() if value is not None)
    extra = ["-virtfs", f"local,path={share},mount_tag=outdir,security_model=none"]
    console = out_dir / "console.log"
    deadline = time.monotonic() + timeout
    command = qemu_command(kernel, cmdline, extra, mem_mib)
    with running_guest(command, console, timeout) as guest:
        i, t_up, _ = guest.wait_line(r"TESTBED: first kernel up", deadline)
        i, t_mounted, _ = guest.wait_line(r"TESTBED: host mounted", deadline, i)
        i, t_checked, _ = guest.wait_line(r"TESTBED: (check before load done|FAIL)", deadline, i)
        i, t_loaded, load_line = guest.wait_line(r"TESTBED: (load done|FAIL)", deadline, i)
        i, t_rechecked, _ = guest.wait_line(r"TESTBED: (check after load done|FAIL)", deadline, i)
        t_filled = t_rechecked
        if workload_mib:
            i, t_filled, _ = guest.wait_line(r"TESTBED: workload done", deadline, i)
        i, t_crash, _ = guest.wait_line(r"TESTBED: (crashing|FAIL)", deadline, i)
        i, t_capture, _ = guest.wait_line(r"TESTBED: (capture kernel up|FAIL)", deadline, i)
        i, t_cmounted, _ = guest.wait_line(r"TESTBED: (host mounted|FAIL)", deadline, i)
        i, t_collected, collect_line = guest.wait_line(r"TESTBED: (collect done|FAIL)", deadline, i)
        guest.wait_exit(deadline)
        t_end = time.monotonic()
    for line in (load_line, collect_line):
        if "FAIL" in line:
            raise TestbedError(f"{line}; console: {console}")
    stages = {
        "boot (to /init)": t_up - guest.started,
        "mount host root": t_mounted - t_up,
        "kdumpkit check": t_checked - t_mounted,
        "kdumpkit load": t_loaded - t_checked,
        "kdumpkit check again": t_rechecked - t_loaded,
        **({"workload": t_filled - t_rechecked} if workload_mib else {}),
        "tasks + panic": t_crash - t_filled,
        "panic -> capture up": t_capture - t_crash,
        "capture mount": t_cmounted - t_capture,
        "kdumpkit collect": t_collected - t_cmounted,
        "total": t_end - guest.started,
    }
    return CycleResult(
        kernel.release, share, console, stages,
        loader=_field(load_line, "loader"), collector=_field(collect_line, "collector"),
        load_rc=int(_field(load_line, "rc")), collect_rc=int(_field(collect_line, "rc")),
    )  # fmt: skip


def run_big_dump(kernel: Kernel, out_dir: Path, mem_mib: int, workload_mib: int) -> Path:
    """A benchmark input: ``out_dir/vmcore.elf``, the whole /proc/vmcore of a guest with
    ``mem_mib`` of memory, ``workload_mib`` of it filled by testbed/workload.py.

    The capture kernel saves it with ``kdumpkit collect`` at dump level 0, uncompressed
    ELF (every page, as /proc/vmcore has them).
    """
    out_dir = out_dir.resolve()
    shutil.rmtree(out_dir / "share", ignore_errors=True)
    result = run_kdump_cycle(
        kernel, out_dir, compress="none", mem_mib=mem_mib, level=0, fmt="elf",
        workload_mib=workload_mib, timeout=max(CYCLE_TIMEOUT_S, 1800),
    )  # fmt: skip
    print(result.timing_text())
    dumps = [p for d in result.dump_dirs() for p in d.glob("dump.*") if p.suffix != ".incomplete"]
    if result.collect_rc != 0 or len(dumps) != 1:
        raise TestbedError(f"collect rc {result.collect_rc}, dumps {dumps}; see {out_dir}")
    vmcore = out_dir / "vmcore.elf"
    dumps[0].replace(vmcore)
    # Zero pages -> holes: a third of a busy 4 GiB guest is zeros, 1.4 GB of disk saved.
    subprocess.run(["fallocate", "--dig-holes", str(vmcore)], check=False)
    return vmcore


@dataclass
class LiveResult:
    """What ``kdumpkit crash`` and ``kdumpkit report`` said of a running kernel."""

    release: str
    share: Path
    console: Path
    sleeper_pid: int
    crash_rc: int
    report_rc: int

    @property
    def crash_output(self) -> str:
        return (self.share / "live-crash.txt").read_text(errors="replace")

    @property
    def report_output(self) -> str:
        return (self.share / "live-report.txt").read_text(errors="replace")


def run_live(kernel: Kernel, out_dir: Path, timeout: float = CYCLE_TIMEOUT_S) -> LiveResult:
    """Boot ``kernel`` and analyse it while it runs: ``kdumpkit crash /proc/kcore`` (sys,
    ps, log, bt of a sleeping task) and ``kdumpkit report /proc/kcore``, no vmlinux."""
    out_dir = out_dir.resolve()
    share = out_dir / "share"
    shutil.rmtree(share, ignore_errors=True)
    share.mkdir(parents=True)
    cmdline = (
        f"console=ttyS0 quiet panic=5 kdtb.stage=live kdtb.py={sys.executable} "
        f"kdtb.proj={PROJECT_DIR} kdtb.out={share}"
    )
    extra = ["-virtfs", f"local,path={share},mount_tag=outdir,security_model=none"]
    console = out_dir / "console.log"
    deadline = time.monotonic() + timeout
    with running_guest(qemu_command(kernel, cmdline, extra), console, timeout) as guest:
        i, _, sleeper_line = guest.wait_line(r"TESTBED: (testbed_sleeper pid|FAIL)", deadline)
        i, _, crash_line = guest.wait_line(r"TESTBED: (live crash done|FAIL)", deadline, i)
        i, _, report_line = guest.wait_line(r"TESTBED: (live report done|FAIL)", deadline, i)
        guest.wait_exit(deadline)
    for line in (sleeper_line, crash_line, report_line):
        if "FAIL" in line:
            raise TestbedError(f"{line}; console: {console}")
    return LiveResult(
        kernel.release, share, console,
        sleeper_pid=int(_field(sleeper_line, "pid")),
        crash_rc=int(_field(crash_line, "rc")), report_rc=int(_field(report_line, "rc")),
    )  # fmt: skip


#: dump-guest-memory formats and the file each is written to.
QEMU_DUMP_FORMATS = {"elf": "vmcore.qemu.elf", "kdump-zlib": "vmcore.qemu.flat"}


def run_qemu_dump(
    kernel: Kernel,
    out_dir: Path,
    vmcoreinfo: bool = True,
    formats: tuple[str, ...] = ("elf", "kdump-zlib"),
    timeout: float = CYCLE_TIMEOUT_S,
) -> dict[str, Path]:
    """Panic ``kernel`` with no kdump; QEMU pauses it and writes ``dump-guest-memory`` files.

    With ``vmcoreinfo`` the guest hands its VMCOREINFO to QEMU (``-device vmcoreinfo`` +
    qemu_fw_cfg), so the dumps carry the note. kdump-zlib output is always in makedumpfile's
    flattened format. Returns {format: path}.
    """
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kdtb-qmp-") as sockdir:
        sock = os.path.join(sockdir, "qmp.sock")
        extra = [
            "-qmp",
            f"unix:{sock},server=on,wait=off",
            "-action",
            "panic=pause",
            "-device",
            "pvpanic",
        ]
        if vmcoreinfo:
            extra += ["-device", "vmcoreinfo"]
        cmdline = (
            f"console=ttyS0 quiet kdtb.stage=qmp kdtb.py={sys.executable} kdtb.proj={PROJECT_DIR}"
        )
        deadline = time.monotonic() + timeout
        written: dict[str, Path] = {}
        with running_guest(
            qemu_command(kernel, cmdline, extra), out_dir / "console.log", timeout
        ) as guest:
            guest.wait_line(r"TESTBED: first kernel up", deadline)  # QMP socket exists by now
            with QMPClient(sock) as qmp:
                try:
                    qmp.wait_event("GUEST_PANICKED", max(deadline - time.monotonic(), 1))
                except QMPError as exc:
                    raise TestbedError(f"{exc}; console: {guest.console_path}") from exc
                for fmt in formats:
                    target = out_dir / QEMU_DUMP_FORMATS[fmt]
                    part = target.with_name(target.name + ".part")
                    qmp.execute(
                        "dump-guest-memory",
                        timeout=max(deadline - time.monotonic(), 1),
                        paging=False,
                        protocol=f"file:{part}",
                        format=fmt,
                    )
                    if fmt == "elf":  # zero pages -> holes: ~1 GiB apparent, far less on disk
                        subprocess.run(["fallocate", "--dig-holes", str(part)], check=False)
                    part.rename(target)
                    written[fmt] = target
                qmp.execute("quit")
            guest.wait_exit(deadline)
    return written


def qemu_dumps_cached(kernel: Kernel) -> dict[str, Path]:
    """QEMU dumps of ``kernel`` with and without VMCOREINFO, made once into .cache/testbed.

    Keys: ``vmcoreinfo/elf``, ``vmcoreinfo/flat`` (kdump-zlib, flattened),
    ``vmcoreinfo/kdump`` (that reassembled by Debian's ``makedumpfile -R``, when installed),
    and the same under ``novmcoreinfo/``. Folder: .cache/testbed/qemu-dumps/<release>-<variant>.
    """
    dumps: dict[str, Path] = {}
    for variant in ("vmcoreinfo", "novmcoreinfo"):
        folder = CACHE / "qemu-dumps" / f"{kernel.release}-{variant}"
        files = {fmt: folder / name for fmt, name in QEMU_DUMP_FORMATS.items()}
        if not all(path.exists() for path in files.values()):
            run_qemu_dump(kernel, folder, vmcoreinfo=variant == "vmcoreinfo")
        dumps[f"{variant}/elf"] = files["elf"]
        dumps[f"{variant}/flat"] = files["kdump-zlib"]
        kdump = folder / "vmcore.qemu.kdump"
        if not kdump.exists() and shutil.which("makedumpfile"):
            part = folder / "vmcore.qemu.kdump.part"
            with files["kdump-zlib"].open("rb") as flat:
                subprocess.run(
                    ["makedumpfile", "-R", str(part)],
                    stdin=flat,
                    check=True,
                    capture_output=True,
                    timeout=300,
                )
            part.rename(kdump)
        if kdump.exists():
            dumps[f"{variant}/kdump"] = kdump
    return dumps


def main(argv: list[str] | None = None) -> int:
    """``vm.py cycle|big-dump|qemu-dump|live [SERIES] [--out DIR]``: run one, print the files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["cycle", "big-dump", "qemu-dump", "qemu-dumps", "live"])
    parser.add_argument("series", nargs="?", default="6.1", help="6.1, 6.12 or a full release")
    parser.add_argument("--out", type=Path, help="output folder (default: under .cache/testbed)")
    parser.add_argument(
        "--no-vmcoreinfo",
        action="store_true",
        help="qemu-dump: without -device vmcoreinfo (no VMCOREINFO note)",
    )
    parser.add_argument("--mem", type=int, default=4096, help="big-dump: guest memory, MiB")
    parser.add_argument(
        "--workload", type=int, help="big-dump: MiB the workload fills (default: 60%% of --mem)"
    )
    args = parser.parse_args(argv)

    def stop(signum: int, _frame: object) -> None:  # unwind, so QEMU is killed on the way
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        kernel = prepare_kernel(args.series)
        if args.action == "cycle":
            out = args.out or CACHE / "runs" / f"{kernel.release}-{time.strftime('%H%M%S')}"
            print(f"kdump cycle on {kernel.release} -> {out}", flush=True)
            result = run_kdump_cycle(kernel, out)
            print(
                f"loader={result.loader} (rc {result.load_rc}), "
                f"collector={result.collector} (rc {result.collect_rc})"
            )
            print(result.timing_text())
            for folder in result.dump_dirs():
                for path in sorted(folder.iterdir()):
                    print(f"  {path}  {path.stat().st_size} bytes")
        elif args.action == "big-dump":
            out = args.out or CACHE / "big" / f"{kernel.release}-{args.mem}M"
            workload = args.workload or args.mem * 6 // 10
            print(f"big dump of {kernel.release} with {args.mem} MiB -> {out}", flush=True)
            vmcore = run_big_dump(kernel, out, args.mem, workload)
            print(f"  {vmcore}  {vmcore.stat().st_size} bytes")
        elif args.action == "live":
            out = args.out or CACHE / "live" / kernel.release
            print(f"live analysis of {kernel.release} -> {out}", flush=True)
            live = run_live(kernel, out)
            print(f"crash rc={live.crash_rc} report rc={live.report_rc}")
            print(live.crash_output, live.report_output, sep="\n")
        elif args.action == "qemu-dumps":
            for key, path in qemu_dumps_cached(kernel).items():
                print(f"  {key}: {path}  {path.stat().st_size} bytes")
        else:
            variant = "novmcoreinfo" if args.no_vmcoreinfo else "vmcoreinfo"
            out = args.out or CACHE / "qemu-dumps" / f"{kernel.release}-{variant}"
            files = run_qemu_dump(kernel, out, vmcoreinfo=not args.no_vmcoreinfo)
            for fmt, path in files.items():
                print(f"  {fmt}: {path}  {path.stat().st_size} bytes")
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
