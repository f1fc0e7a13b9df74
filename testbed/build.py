#!/usr/bin/env python3
"""Build every dump and oracle output the tests compare against, into $KDUMPKIT_CACHE/oracle.

    python3 testbed/build.py                    # all kernels in KERNELS, only what is missing
    python3 testbed/build.py --kernels 6.12     # one series
    python3 testbed/build.py --status           # what is built, what is missing; builds nothing

For each kernel series (Debian's cloud flavour; the release is what the series' meta-package
depends on now, so a new Debian upload moves the testbed to it):

  kernels/<release>/            the image package unpacked and the -dbg package's DWARF vmlinux
  build/<release>/              the busybox initramfs (kexec-tools, makedumpfile 1.7.2 and 1.7.8)
  kdump-<release>-load/         a real kdump cycle (kexec -p, sysrq-c): vmcore.elf (/proc/vmcore),
                                vmcore.flat + vmcore.kdump (makedumpfile 1.7.2 -c -d 31),
                                vmcore.mdf-1.7.8.kdump (makedumpfile 1.7.8 -c -d 31)
  qemu-<release>-fwcfg/         QEMU dump-guest-memory with VMCOREINFO: vmcore.qemu.{elf,flat,kdump}
  qemu-<release>-nofwcfg/       the same without VMCOREINFO
  <dump folder>/crash-9.0.2/<vmcore>/<command>.txt
                                crash 9.0.2 (Debian sid, with the -dbg vmlinux) on each dump

Every step leaves a ``.testbed-stamp`` (the kernel package's version and RECIPE) in its
folder and is redone when the stamp differs: a new package version rebuilds that kernel's
inputs. ``testbed.json`` (the manifest) maps each series to its release and folders; the
tests read it (tests/oracles.py). Every QEMU boot holds /tmp/kdumpkit-qemu.lock.
The shell steps are in testbed/oracle/ (adapted from /work/shared/testbed).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
SCRIPTS = HERE / "oracle"
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", PROJECT / ".cache"))
ORACLE = CACHE / "oracle"
MANIFEST = ORACLE / "testbed.json"
QEMU_LOCK = "/tmp/kdumpkit-qemu.lock"
STAMP = ".testbed-stamp"
#: Bump when a recipe changes what it makes: every step is then redone.
RECIPE = 1


@dataclass(frozen=True)
class KernelSpec:
    """One kernel the testbed boots, and what it makes of it."""

    series: str
    #: the meta-package whose ``Depends`` names the release (``linux-image-<release>``)
    meta: str
    #: apt suites of a private apt state ("trixie-backports"); empty: the host's apt
    suites: tuple[str, ...] = ()
    #: a fixed release instead of the meta-package's (when newer ones lack a -dbg package)
    release: str | None = None
    products: tuple[str, ...] = ("kdump-load", "qemu-fwcfg", "qemu-nofwcfg")
    #: extra crash options and the folder name of crash's outputs
    crash_args: tuple[str, ...] = ()
    crash_tag: str = "crash-9.0.2"
    #: the dump files crash runs on, if not CRASH_ON's
    crash_on: tuple[str, ...] | None = None

    def crash_files(self, product: str) -> tuple[str, ...]:
        """The files of ``product`` that crash runs on."""
        files = CRASH_ON[product]
        return files if self.crash_on is None else tuple(f for f in files if f in self.crash_on)


#: The kernels the project claims. Add one with a line here (and its tests).
KERNELS: dict[str, KernelSpec] = {
    spec.series: spec
    for spec in (
        KernelSpec("6.1", "linux-image-cloud-amd64"),
        KernelSpec("6.12", "linux-image-6.12-cloud-amd64"),
        # crash 9.0.2 stops at module_init on 7.3 (module_num_gpl_syms); --no_modules gets past
        KernelSpec(
            "7.3",
            "linux-image-cloud-amd64",
            suites=("trixie-backports",),
            products=("kdump-load", "qemu-fwcfg"),
            crash_args=("--no_modules",),
            crash_tag="crash-9.0.2-no_modules",
            # on the -d 31 files it exits while gathering the task table (both makedumpfile
            # versions drop pages 7.3 needs); the tests compare with it on the raw kdump only
            crash_on=("vmcore.elf",),
        ),
    )
}

#: crash command -> output file. The pipeline's (50-crash.sh) and the further forms the
#: tests compare (tests/test_commands_more_dumps.py CRASH_FILES). ``set 1`` changes the
#: context, so it runs last.
CRASH_COMMANDS: dict[str, str] = {
    "sys": "sys.txt",
    "bt": "bt.txt",
    "bt -a": "bt-a.txt",
    "log": "log.txt",
    "ps": "ps.txt",
    "mod": "mod.txt",
    "kmem -i": "kmem-i.txt",
    "foreach bt": "foreach-bt.txt",
    "help -D": "help-D.txt",
    "runq": "runq.txt",
    "set": "set.txt",
    "set -p": "set-p.txt",
    "ps -k": "ps-k.txt",
    "ps -u": "ps-u.txt",
    "ps -A": "ps-A.txt",
    "ps 1": "ps-1.txt",
    "log -t": "log-t.txt",
    "log -m": "log-m.txt",
    "log -c": "log-c.txt",
    "sys -t": "sys-t.txt",
    "mod -t": "mod-t.txt",
    "runq -c 1": "runq-c1.txt",
    "ps -G": "ps-G.txt",
    "ps -y 0": "ps-y0.txt",
    "ps -S": "ps-S.txt",
    "ps -p 1": "ps-p1.txt",
    "ps -c 1": "ps-c1.txt",
    "ps -l": "ps-l.txt",
    "ps -m": "ps-m.txt",
    "ps -u -k": "ps-uk.txt",
    "ps swapper/0": "ps-swapper.txt",
    "ps -k -A": "ps-kA.txt",
    "runq -T": "runq-T.txt",
    "runq -t": "runq-t.txt",
    "runq -m": "runq-m.txt",
    "runq -g": "runq-g.txt",
    "ps -t": "ps-t.txt",
    "ps -t 1": "ps-t1.txt",
    "ps -a": "ps-a.txt",
    "ps -a 1": "ps-a1.txt",
    "ps 99999": "ps-99999.txt",
    "ps 1 99999": "ps-1-99999.txt",
    "ps nosuchcmd": "ps-nosuchcmd.txt",
    "ps init": "ps-init.txt",
    "ps -k 1": "ps-k1.txt",
    "runq -c 7": "runq-c7.txt",
    "runq -c 1,0": "runq-c10.txt",
    "ps -y fifo": "ps-yfifo.txt",
    "ps -G -u": "ps-Gu.txt",
    "log -T": "log-T.txt",
    "log -t -m": "log-tm.txt",
    "log -d": "log-d.txt",
    "kmem -V": "kmem-V.txt",
    "kmem -z": "kmem-z.txt",
    "kmem -h": "kmem-h.txt",
    "set 1": "set-1.txt",
}
#: The files each product's folder must hold.
PRODUCT_FILES = {
    "kdump-load": ("vmcore.elf", "vmcore.flat", "vmcore.kdump", "vmcore.mdf-1.7.8.kdump"),
    "qemu-fwcfg": ("vmcore.qemu.elf", "vmcore.qemu.flat", "vmcore.qemu.kdump"),
    "qemu-nofwcfg": ("vmcore.qemu.elf", "vmcore.qemu.flat", "vmcore.qemu.kdump"),
}
#: Dumps crash runs on: every form but the flattened one (the .kdump next to it is the
#: same dump; crash would only copy it out first).
CRASH_ON = {
    "kdump-load": ("vmcore.elf", "vmcore.kdump", "vmcore.mdf-1.7.8.kdump"),
    "qemu-fwcfg": ("vmcore.qemu.elf", "vmcore.qemu.kdump"),
    "qemu-nofwcfg": ("vmcore.qemu.elf", "vmcore.qemu.kdump"),
}


class BuildError(Exception):
    """A step failed; the message says which and where its log is."""


@dataclass
class Resolved:
    """A series resolved to a release and its package version."""

    spec: KernelSpec
    release: str
    version: str
    times: dict[str, float] = field(default_factory=dict)
    #: seconds each step waited for QEMU_LOCK (other guests), part of its time
    waits: dict[str, float] = field(default_factory=dict)

    @property
    def stamp(self) -> dict[str, object]:
        return {"release": self.release, "package_version": self.version, "recipe": RECIPE}

    def folder(self, product: str) -> Path:
        return ORACLE / f"{product.split('-')[0]}-{self.release}-{product.split('-', 1)[1]}"


def inherited_lock_fd(path: str) -> int | None:
    """An open file descriptor of ``path`` inherited from the parent (see testbed/vm.py)."""
    sys.path.insert(0, str(HERE))
    from vm import inherited_lock_fd as find

    return find(path)


def log(message: str) -> None:
    print(f"[build {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def script_env(spec: KernelSpec) -> dict[str, str]:
    env = dict(os.environ, FIXTURES=str(ORACLE), KSUITES=" ".join(spec.suites))
    return env


def run(argv: list[str], env: dict[str, str], logfile: Path) -> None:
    """Run one step, its output to ``logfile``; raise BuildError with the tail on failure."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("w") as out:
        rc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "".join(logfile.read_text(errors="replace").splitlines(True)[-15:])
        raise BuildError(f"{' '.join(argv)} failed (rc {rc}); {logfile}:\n{tail}")


def read_stamp(folder: Path) -> dict[str, object] | None:
    try:
        return json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None


def write_stamp(folder: Path, stamp: dict[str, object]) -> None:
    (folder / STAMP).write_text(json.dumps(stamp, sort_keys=True) + "\n")


def load_manifest() -> dict[str, dict[str, object]]:
    try:
        return json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}


def resolve(spec: KernelSpec, offline: bool) -> Resolved:
    """The release and package version the series stands for now (the manifest's offline)."""
    known = load_manifest().get(spec.series)
    if not offline:
        argv = [str(SCRIPTS / "fetch-kernel.sh")]
        if spec.release:
            argv += ["--version", f"linux-image-{spec.release}"]
        else:
            argv += ["--resolve", spec.meta]
        done = subprocess.run(argv, env=script_env(spec), capture_output=True, text=True)
        words = done.stdout.split()
        if done.returncode == 0 and words:
            if spec.release:
                return Resolved(spec, spec.release, words[0])
            if len(words) == 2:
                return Resolved(spec, words[0], words[1])
        log(f"{spec.series}: apt could not resolve it ({done.stderr.strip()[-200:]})")
    if known:
        log(f"{spec.series}: using the manifest's {known['release']}")
        return Resolved(spec, str(known["release"]), str(known["package_version"]))
    raise BuildError(f"{spec.series}: no release known (no apt answer and no manifest entry)")


def step(kernel: Resolved, name: str, folder: Path, make, force: bool = False) -> None:
    """Run ``make()`` unless ``folder``'s stamp is this kernel's; stamp it after."""
    if not force and read_stamp(folder) == kernel.stamp:
        return
    log(f"{kernel.release}: {name} ...")
    start = time.monotonic()
    make()
    folder.mkdir(parents=True, exist_ok=True)
    write_stamp(folder, kernel.stamp)
    kernel.times[name] = time.monotonic() - start - kernel.waits.get(name, 0.0)
    waited = (
        f" (and {kernel.waits[name]:.0f} s waiting for {QEMU_LOCK})" if name in kernel.waits else ""
    )
    log(f"{kernel.release}: {name} done in {kernel.times[name]:.0f} s{waited}")


def sid_tools() -> Path:
    tools = ORACLE / "tools-sid"
    if not (tools / "usr/bin/crash").exists() or not (tools / "usr/bin/makedumpfile").exists():
        log("fetching crash 9.0.2 and makedumpfile 1.7.8 (scripts/fetch-oracles.sh)")
        subprocess.run([str(PROJECT / "scripts/fetch-oracles.sh")], check=False)
    if not (tools / "usr/bin/crash").exists():
        raise BuildError(f"no crash 9.0.2 in {tools} (scripts/fetch-oracles.sh failed)")
    return tools


def crash_argv(tools: Path) -> list[str]:
    return [
        str(tools / "usr/lib64/ld-linux-x86-64.so.2"),
        "--library-path",
        str(tools / "usr/lib/x86_64-linux-gnu"),
        str(tools / "usr/bin/crash"),
    ]


def vmlinux_of(release: str) -> Path:
    return ORACLE / "kernels" / release / "usr/lib/debug/boot" / f"vmlinux-{release}"


def run_crash(vmlinux: Path, dump: Path, out: Path, args: tuple[str, ...] = ()) -> None:
    """crash 9.0.2 in one -s session on ``dump``, each command to its own file in ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = "".join(f"{cmd} > {out / name}\n" for cmd, name in CRASH_COMMANDS.items()) + "exit\n"
    argv = [*crash_argv(sid_tools()), *args, "-s", str(vmlinux), str(dump)]
    with (out / "session.txt").open("w") as session:
        subprocess.run(
            argv, input=script.encode(), stdout=session, stderr=subprocess.STDOUT, timeout=1800
        )
    if not (out / "ps.txt").is_file() or not (out / "ps.txt").stat().st_size:
        raise BuildError(f"crash printed no ps for {dump}; see {out / 'session.txt'}")


def build_kernel(kernel: Resolved) -> None:
    spec, kv = kernel.spec, kernel.release
    env = dict(script_env(spec), KVERS=kv)
    tree = ORACLE / "kernels" / kv
    logs = ORACLE / "logs" / kv

    def fetch() -> None:
        if read_stamp(tree) is not None:  # another package version of this release
            shutil.rmtree(tree)
        for old in (ORACLE / "pkgs").glob(f"linux-*-{kv}*_*.deb"):
            if f"_{kernel.version.replace(':', '%3a')}_" not in old.name:
                old.unlink()
        run([str(SCRIPTS / "fetch-kernel.sh")], env, logs / "fetch-kernel.log")

    step(kernel, "fetch kernel", tree, fetch)
    build = ORACLE / "build" / kv
    sid_tools()
    step(
        kernel,
        "initramfs",
        build,
        lambda: run([str(SCRIPTS / "build-initramfs.sh")], env, logs / "build-initramfs.log"),
    )
    for product in spec.products:
        folder = kernel.folder(product)
        kind, variant = product.split("-", 1)
        script = SCRIPTS / ("kdump.sh" if kind == "kdump" else "qemu-dump.sh")

        def boot(
            folder: Path = folder,
            script: Path = script,
            variant: str = variant,
            product: str = product,
        ) -> None:
            for attempt in (1, 2):  # a TCG guest now and then hangs: one more try
                try:
                    with open(QEMU_LOCK, "a") as lock:  # one guest at a time on the machine
                        waited = time.monotonic()
                        # ``flock LOCK python3 testbed/build.py``: the parent's lock is ours
                        fcntl.flock(inherited_lock_fd(QEMU_LOCK) or lock, fcntl.LOCK_EX)
                        waited = time.monotonic() - waited
                        kernel.waits[product] = kernel.waits.get(product, 0.0) + waited
                        run([str(script), kv, variant], env, logs / f"{folder.name}.log")
                    missing = [f for f in PRODUCT_FILES[product] if not (folder / f).is_file()]
                    if missing:
                        raise BuildError(f"{folder}: {', '.join(missing)} not made")
                    return
                except BuildError as exc:
                    if attempt == 2:
                        raise
                    log(f"{exc}; once more")

        step(kernel, product, folder, boot)
        for name in spec.crash_files(product):
            outputs = folder / spec.crash_tag / name
            step(
                kernel,
                f"crash on {folder.name}/{name}",
                outputs,
                lambda dump=folder / name, out=outputs: run_crash(
                    vmlinux_of(kv), dump, out, spec.crash_args
                ),
            )


FIXTURE_RELEASE = "6.1.0-56-cloud-amd64"


def fixture_crash_outputs() -> tuple[Path, Path, dict[str, object]] | None:
    """(dump, output folder, stamp) of crash on the 6.1 fixture's vmcore.kdump (all of
    CRASH_COMMANDS; the fixture folder itself holds only the pipeline's), or None without it."""
    fixtures = Path(os.environ.get("KDUMPKIT_FIXTURES", PROJECT.parent / "shared" / "fixtures"))
    dump = fixtures / f"linux-{FIXTURE_RELEASE}-kdump" / "vmcore.kdump"
    if not dump.is_file():
        return None
    out = ORACLE / f"fixture-{FIXTURE_RELEASE}-kdump" / "crash-9.0.2" / dump.name
    return dump, out, {"dump_size": dump.stat().st_size, "recipe": RECIPE}


def build_fixture_outputs() -> None:
    found = fixture_crash_outputs()
    if found is None:
        log("no 6.1 fixture (KDUMPKIT_FIXTURES): its crash outputs are not made")
        return
    dump, out, stamp = found
    if read_stamp(out) == stamp:
        return
    vmlinux = vmlinux_of(FIXTURE_RELEASE)
    if not vmlinux.is_file():
        subprocess.run([str(PROJECT / "scripts/fetch-oracles.sh")], check=False)
    log(f"crash on the fixture {dump} ...")
    start = time.monotonic()
    run_crash(vmlinux, dump, out)
    write_stamp(out, stamp)
    log(f"crash on the fixture done in {time.monotonic() - start:.0f} s")


def status(kernel: Resolved) -> list[tuple[str, bool]]:
    """Each step's folder and whether its stamp is current."""
    kv = kernel.release
    folders = [ORACLE / "kernels" / kv, ORACLE / "build" / kv]
    for product in kernel.spec.products:
        folders.append(kernel.folder(product))
        folders += [
            kernel.folder(product) / kernel.spec.crash_tag / n
            for n in kernel.spec.crash_files(product)
        ]
    return [(str(f.relative_to(ORACLE)), read_stamp(f) == kernel.stamp) for f in folders]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
    parser.add_argument("--status", action="store_true", help="report only, build nothing")
    parser.add_argument("--offline", action="store_true", help="use the manifest's releases")
    args = parser.parse_args(argv)
    ORACLE.mkdir(parents=True, exist_ok=True)
    with (ORACLE / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = load_manifest()
        failed = []
        if args.status:
            found = fixture_crash_outputs()
            ok = found is not None and read_stamp(found[1]) == found[2]
            print(f"{'built  ' if ok else 'MISSING'} fixture crash outputs on the 6.1 fixture")
        else:
            try:
                build_fixture_outputs()
            except (BuildError, subprocess.SubprocessError, OSError) as exc:
                log(f"fixture: {exc}")
                failed.append("fixture")
        for series in args.kernels:
            try:
                kernel = resolve(KERNELS[series], args.offline)
                if args.status:
                    for name, ok in status(kernel):
                        print(f"{'built  ' if ok else 'MISSING'} {series:5} {name}")
                    continue
                build_kernel(kernel)
            except (BuildError, subprocess.SubprocessError, OSError) as exc:
                log(f"{series}: {exc}")
                failed.append(series)
                continue
            manifest[series] = {
                "release": kernel.release,
                "package_version": kernel.version,
                "folders": {p: kernel.folder(p).name for p in kernel.spec.products},
                "crash_outputs": kernel.spec.crash_tag,
            }
            MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
            with (ORACLE / "build-times.txt").open("a") as times:
                for name, seconds in kernel.times.items():
                    waited = kernel.waits.get(name, 0.0)
                    times.write(
                        f"{time.strftime('%F %T')} {kernel.release} {seconds:7.1f}s {name}"
                        + (f" (+{waited:.0f}s waiting for the QEMU lock)" if waited else "")
                        + "\n"
                    )
        if failed:
            log(f"not built: {' '.join(failed)}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
