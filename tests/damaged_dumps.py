"""Damaged variants of the real fixture dumps, run through the analysis verbs.

Each :class:`Variant` is a recipe (bytes patched at offsets, or a truncation) applied to
one of the fixture dumps (kdump-compressed, flattened, the raw ELF ``/proc/vmcore``):

* ``flip``: 1-16 bits flipped in the first 64 KiB (headers, notes, bitmaps);
* ``zero``: a block of 512 B - 64 KiB zeroed (the first 64 KiB, or anywhere with data);
* ``truncate``: the file cut short (in its headers, anywhere, or near its end);
* ``vmcoreinfo``: one VMCOREINFO line damaged in place (junk, a NUL, a cut, a huge
  number, a misspelt key), in every copy of it in the file;
* ``notes``: an ELF note header's size or type fields overwritten;
* ``memory``: bits flipped in the pages the analysis of the clean dump reads
  (``task_struct``s, lists, stacks, BTF, kallsyms: the raw ELF only, whose pages are
  stored as they are).

:func:`run_variant` writes the variant beside the others in a work directory and
runs ``info``, ``dmesg``, ``crash -c bt -c ps -c log``, ``report`` (and ``shell -e``)
in one subprocess (start-up paid once) limited to :data:`MEMORY_LIMIT` of address space,
each verb under a :data:`VERB_TIMEOUT` alarm.  :class:`Outcome` says, per verb,
whether it ended in a traceback, a timeout, was killed, or gave an answer or a
one-line error; :func:`summarize` counts them.  The short slice runs in the tests
(tests/test_damaged_dumps.py), the long run in bench/fuzz_analysis.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", ROOT / ".cache"))
FIXTURES = Path(os.environ.get("KDUMPKIT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
FIXTURE_6_1 = "linux-6.1.0-56-cloud-amd64-kdump"

#: Address-space limit of each run (RLIMIT_AS) and wall-time limit of each verb.
MEMORY_LIMIT = 1 << 30
VERB_TIMEOUT = 30
HEAD = 64 << 10

#: The verbs each variant goes through (argv after ``kdumpkit``; DUMP is replaced).
VERBS: tuple[tuple[str, ...], ...] = (
    ("info", "DUMP"),
    ("dmesg", "DUMP"),
    ("crash", "DUMP", "-c", "bt", "-c", "ps", "-c", "log"),
    ("report", "DUMP"),
    ("shell", "DUMP", "-e", "print(prog.crashed_thread().object.comm)"),
)

KINDS = ("flip", "zero", "truncate", "vmcoreinfo", "notes", "memory")

#: In the worker: run each verb in-process with its stderr captured at the fd level.
WORKER = r"""
import io, json, os, resource, signal, sys, time, traceback
sys.setrecursionlimit(10000)
results = []
verbs = json.loads(sys.argv[1])
out_path = sys.argv[2]
timeout = int(sys.argv[3])
class VerbTimeout(BaseException):
    pass
def on_alarm(signum, frame):
    raise VerbTimeout()
signal.signal(signal.SIGALRM, on_alarm)
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 1)
from kdumpkit.cli.main import main
for argv in verbs:
    err_path = out_path + ".err"
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    saved = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    status, exc_text = None, None
    start = time.monotonic()
    signal.alarm(timeout)
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except VerbTimeout:
        status = "timeout"
    except BaseException:
        exc_text = traceback.format_exc()
        status = "traceback"
    finally:
        signal.alarm(0)
    seconds = time.monotonic() - start
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    os.dup2(saved, 2)
    os.close(saved)
    with open(err_path, errors="replace") as f:
        err = f.read(20000)
    if exc_text:
        err += exc_text
    results.append({"argv": argv, "status": status, "seconds": seconds, "stderr": err})
    with open(out_path, "w") as f:
        json.dump({"verbs": results,
                   "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, f)
os.unlink(out_path + ".err")
"""


@dataclass
class Variant:
    """One damaged copy of a base dump: patches (offset, bytes) and/or a truncation."""

    base: str
    kind: str
    seed: int
    patches: list[tuple[int, bytes]] = field(default_factory=list)
    truncate_at: int | None = None
    what: str = ""

    @property
    def name(self) -> str:
        return f"{Path(self.base).name}:{self.kind}:{self.seed}"


@dataclass
class VerbOutcome:
    """What one verb did on one variant."""

    verb: str
    status: int | str
    seconds: float
    stderr: str

    @property
    def kind(self) -> str:
        """traceback, internal, timeout, killed, messy (exit 2 but not one line), error,
        answer."""
        if self.status in ("traceback", "timeout", "killed"):
            return str(self.status)
        if "Traceback (most recent call last)" in self.stderr:
            return "traceback"
        if ": internal error: " in self.stderr:
            return "internal"  # a traceback the CLI's last resort caught
        if self.status == 2:
            lines = self.stderr.strip().splitlines()
            return "error" if len(lines) == 1 else "messy"
        return "answer"


@dataclass
class Outcome:
    """Every verb's outcome on one variant and the run's peak memory."""

    variant: Variant
    verbs: list[VerbOutcome]
    maxrss_kb: int
    seconds: float


def base_dumps() -> dict[str, Path]:
    """The fixture dumps the variants are made from: kdump, flat and (if decompressed) ELF."""
    folder = FIXTURES / FIXTURE_6_1
    out = {"kdump": folder / "vmcore.kdump", "flat": folder / "vmcore.flat"}
    elf = CACHE / "fixtures" / FIXTURE_6_1 / "vmcore.elf"
    if elf.exists():
        out["elf"] = elf
    return {k: v for k, v in out.items() if v.exists()}


def data_extents(path: Path) -> list[tuple[int, int]]:
    """The (start, end) ranges of a sparse file that hold data."""
    out = []
    with open(path, "rb") as file:
        fd = file.fileno()
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    return out


def _head(path: Path, size: int = 1 << 20) -> bytes:
    with open(path, "rb") as file:
        return file.read(size)


def _vmcoreinfo_lines(head: bytes) -> list[tuple[int, bytes]]:
    """(offset, line) of every VMCOREINFO line in the file's head (each copy)."""
    out = []
    start = 0
    while True:
        at = head.find(b"OSRELEASE=", start)
        if at < 0:
            return out
        end = head.find(b"\0", at)
        end = len(head) if end < 0 else end
        pos = at
        for line in head[at:end].split(b"\n"):
            if b"=" in line:
                out.append((pos, line))
            pos += len(line) + 1
        start = end


def _note_headers(head: bytes) -> list[int]:
    """Offsets of the 12-byte headers of the CORE and VMCOREINFO notes in the head."""
    out = []
    for name in (b"CORE\0\0\0\0", b"VMCOREINFO\0"):
        start = 0
        while (at := head.find(name, start)) >= 0:
            if at >= 12:
                out.append(at - 12)
            start = at + 1
    return out


def _vmcoreinfo_damage(rng: random.Random, line: bytes) -> tuple[bytes, str]:
    """The same-length replacement of one ``KEY=value`` line, and what was done."""
    key, _, value = line.partition(b"=")
    n = len(value)
    choice = rng.randrange(7)
    if choice == 0 or n == 0:  # misspelt key: the line is gone for whoever looks it up
        pos = rng.randrange(len(key)) if key else 0
        return line[:pos] + b"~" + line[pos + 1 :], "key misspelt"
    if choice == 1:
        junk = bytes(rng.choice(b"zZ!#%&*()[]{}?x-") for _ in range(n))
        return key + b"=" + junk, "value junk"
    if choice == 2:
        junk = bytes(rng.randrange(256) for _ in range(n))
        return key + b"=" + junk, "value random bytes"
    if choice == 3:
        cut = rng.randrange(n)
        return key + b"=" + value[:cut] + b"\0" + value[cut + 1 :], "NUL in value"
    if choice == 4:
        cut = rng.randrange(n)
        return key + b"=" + value[:cut] + b"\n" + value[cut + 1 :], "value cut by a newline"
    if choice == 5:
        big = (b"f" * n) if n < 20 else (b"9" * n)
        return key + b"=" + big, "value huge"
    value = bytearray(value)
    for _ in range(rng.randint(1, 3)):
        value[rng.randrange(n)] ^= 1 << rng.randrange(8)
    return key + b"=" + bytes(value), "value bits flipped"


def make_variants(
    count: int, seed: int = 0, kinds: Sequence[str] = KINDS, memory_offsets: list[int] | None = None
) -> list[Variant]:
    """``count`` deterministic variants spread over the base dumps and damage kinds."""
    bases = base_dumps()
    rng = random.Random(seed)
    heads = {name: _head(path) for name, path in bases.items()}
    sizes = {name: path.stat().st_size for name, path in bases.items()}
    extents = {name: data_extents(path) for name, path in bases.items()}
    out = []
    names = sorted(bases)
    for index in range(count):
        name = names[index % len(names)]
        kind = kinds[(index // len(names)) % len(kinds)]
        if kind == "memory" and (name != "elf" or not memory_offsets):
            kind = "flip"
        variant = Variant(str(bases[name]), kind, seed * 1_000_000 + index)
        _fill(variant, rng, heads[name], sizes[name], extents[name], memory_offsets or [])
        out.append(variant)
    return out


def _fill(
    v: Variant,
    rng: random.Random,
    head: bytes,
    size: int,
    extents: list[tuple[int, int]],
    memory_offsets: list[int],
) -> None:
    if v.kind == "flip":
        flips = rng.randint(1, 16)
        for _ in range(flips):
            at = rng.randrange(min(HEAD, size))
            v.patches.append((at, bytes([head[at] ^ (1 << rng.randrange(8))])))
        v.what = f"{flips} bits flipped in the first 64 KiB"
    elif v.kind == "zero":
        length = rng.choice((512, 4096, 16384, 65536))
        if rng.random() < 0.5 or not extents:
            at = rng.randrange(max(1, min(HEAD, size) - length))
        else:
            lo, hi = rng.choice(extents)
            at = rng.randrange(lo, max(lo + 1, hi - length))
        v.patches.append((at, bytes(length)))
        v.what = f"{length} bytes zeroed at {at:#x}"
    elif v.kind == "truncate":
        where = rng.randrange(3)
        if where == 0:
            at = rng.randrange(min(HEAD, size))
        elif where == 1:
            at = rng.randrange(size)
        else:
            at = size - 1 - rng.randrange(max(1, size // 10))
        v.truncate_at = at
        v.what = f"cut at {at:#x} of {size:#x}"
    elif v.kind == "vmcoreinfo":
        lines = _vmcoreinfo_lines(head)
        key_lines: dict[bytes, list[tuple[int, bytes]]] = {}
        for at, line in lines:
            key_lines.setdefault(line.partition(b"=")[0], []).append((at, line))
        # The keys drgn and the readers parse themselves come up more often.
        hot = [
            k for k in (b"BUILD-ID", b"OSRELEASE", b"PAGESIZE", b"KERNELOFFSET") if k in key_lines
        ]
        key = rng.choice(hot) if hot and rng.random() < 0.4 else rng.choice(sorted(key_lines))
        new, what = _vmcoreinfo_damage(rng, key_lines[key][0][1])
        for at, _line in key_lines[key]:
            v.patches.append((at, new))
        v.what = f"VMCOREINFO {key.decode('latin-1')}: {what}"
    elif v.kind == "notes":
        headers = _note_headers(head)
        at = rng.choice(headers)
        which = rng.randrange(3)
        value = rng.choice((0, 1, 3, 4, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)))
        v.patches.append((at + 4 * which, value.to_bytes(4, "little")))
        v.what = f"note at {at:#x}: {('namesz', 'descsz', 'type')[which]} = {value:#x}"
    elif v.kind == "memory":
        flips = rng.randint(1, 64)
        for _ in range(flips):
            at = rng.choice(memory_offsets) + rng.randrange(4096)
            v.patches.append((at, bytes([1 << rng.randrange(8)])))
        v.what = f"{flips} bits flipped in pages the analysis reads"
    else:
        raise ValueError(v.kind)


def materialize(v: Variant, out: Path) -> Path:
    """Write the damaged copy to ``out`` (sparse where the base is)."""
    base = Path(v.base)
    size = base.stat().st_size
    end = size if v.truncate_at is None else v.truncate_at
    with open(base, "rb") as src, open(out, "wb") as dst:
        for lo, hi in data_extents(base):
            if lo >= end:
                break
            hi = min(hi, end)
            src.seek(lo)
            dst.seek(lo)
            left = hi - lo
            while left:
                chunk = src.read(min(left, 8 << 20))
                dst.write(chunk)
                left -= len(chunk)
        dst.truncate(end)
        for at, data in v.patches:
            if at >= end:
                continue
            data = data[: end - at]
            if v.kind == "memory":  # xor masks: the pages' bytes are not in the head
                src.seek(at)
                old = src.read(len(data))
                data = bytes(a ^ b for a, b in zip(old, data, strict=True))
            dst.seek(at)
            dst.write(data)
    return out


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_paths(
    path: Path, verbs: Sequence[Sequence[str]] = VERBS, timeout: int = VERB_TIMEOUT
) -> tuple[list[VerbOutcome], int, float]:
    """Run the verbs on one dump file in one limited subprocess."""
    import time

    argvs = [[str(path) if a == "DUMP" else a for a in verb] for verb in verbs]
    fd, out_path = tempfile.mkstemp(prefix="kdumpkit-fuzz-", suffix=".json")
    os.close(fd)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PAGER="cat", OPENBLAS_NUM_THREADS="1")
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, json.dumps(argvs), out_path, str(timeout)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_limit_memory,
            timeout=timeout * len(argvs) + 30,
            check=False,
        )
        died = proc.returncode < 0 and f"killed by signal {-proc.returncode}"
        tail = proc.stderr.decode("utf-8", "replace")[-2000:]
    except subprocess.TimeoutExpired:
        died, tail = "hung past every alarm", ""
    seconds = time.monotonic() - start
    try:
        with open(out_path) as file:
            raw = file.read()
        data = json.loads(raw) if raw else {"verbs": [], "maxrss_kb": 0}
    finally:
        for leftover in (out_path, out_path + ".err"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    outcomes = [
        VerbOutcome(" ".join(r["argv"][:1] + r["argv"][2:]), r["status"], r["seconds"], r["stderr"])
        for r in data["verbs"]
    ]
    if len(outcomes) < len(argvs):
        # The process died (a signal, or a hang past every alarm) during the next verb.
        argv = argvs[len(outcomes)]
        status = "timeout" if died == "hung past every alarm" else "killed"
        outcomes.append(
            VerbOutcome(
                " ".join(argv[:1] + argv[2:]), status, 0.0, f"{died or 'no result'}\n{tail}"
            )
        )
    return outcomes, int(data.get("maxrss_kb") or 0), seconds


#: Bases bigger than this are patched in place in a kept copy (and restored after the
#: run) instead of copied for each variant (the raw ELF: 847 MB, 194 MB of data).
PATCH_IN_PLACE = 64 << 20


def run_variant(v: Variant, workdir: Path, verbs: Sequence[Sequence[str]] = VERBS) -> Outcome:
    """Write the variant into ``workdir``, run the verbs on it, remove it (or, for a big
    base, patch a kept copy of it and restore the patched bytes afterwards)."""
    base = Path(v.base)
    if v.truncate_at is None and base.stat().st_size > PATCH_IN_PLACE:
        kept = workdir / f"kept-{base.name}"
        if not kept.exists():
            materialize(Variant(v.base, "copy", 0), kept)
        pristine = Variant(v.base, "restore", 0)
        with open(kept, "r+b") as file:
            for at, data in v.patches:
                file.seek(at)
                pristine.patches.append((at, file.read(len(data))))
        damaged = Variant(v.base, "patch", 0, patches=_resolved(v))
        _patch(kept, damaged.patches)
        try:
            outcomes, rss, seconds = run_paths(kept, verbs)
        finally:
            _patch(kept, pristine.patches[::-1])
        return Outcome(v, outcomes, rss, seconds)
    path = workdir / f"variant{base.suffix}"
    materialize(v, path)
    try:
        outcomes, rss, seconds = run_paths(path, verbs)
    finally:
        path.unlink(missing_ok=True)
    return Outcome(v, outcomes, rss, seconds)


def _resolved(v: Variant) -> list[tuple[int, bytes]]:
    """The variant's patches as the bytes to write (memory flips are xor masks)."""
    if v.kind != "memory":
        return v.patches
    out = []
    with open(v.base, "rb") as file:
        for at, mask in v.patches:
            file.seek(at)
            old = file.read(len(mask))
            out.append((at, bytes(a ^ b for a, b in zip(old, mask, strict=True))))
    return out


def _patch(path: Path, patches: list[tuple[int, bytes]]) -> None:
    with open(path, "r+b") as file:
        for at, data in patches:
            file.seek(at)
            file.write(data)


def run_report_text(path: Path) -> str:
    """``kdumpkit report PATH``'s text (the test of a killed capture reads it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "kdumpkit", "report", str(path)],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=_limit_memory,
        timeout=VERB_TIMEOUT,
        check=False,
    )
    return proc.stdout


def memory_pages(elf: Path) -> list[int]:
    """File offsets of the pages of the raw ELF dump that a clean analysis reads."""
    code = r"""
import json, sys
from kdumpkit.analyze import program
from kdumpkit.analyze.program import PhysicalMemory, open_program
from kdumpkit.analyze.report import gather_report
from kdumpkit.analyze.session import Session
seen = set()
orig = PhysicalMemory._read_page
def spy(self, pfn):
    seen.add(pfn)
    return orig(self, pfn)
PhysicalMemory._read_page = spy
prog = open_program(sys.argv[1])
gather_report(prog)
for line in ("bt", "ps", "log"):
    Session(prog).run_to_text(line)
dump = prog.cache["kdumpkit.dump"]
offsets = []
for pfn in sorted(seen):
    off = dump._file_offset(pfn * dump.page_size, (pfn + 1) * dump.page_size)
    if off is not None:
        offsets.append(off)
print(json.dumps(offsets))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(elf)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(proc.stdout)


@dataclass
class Summary:
    """Counts over a run."""

    variants: int = 0
    runs: Counter[str] = field(default_factory=Counter)
    by_verb: dict[str, Counter[str]] = field(default_factory=dict)
    peak_rss_kb: int = 0
    slowest_verb_s: float = 0.0
    bad: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.variants += 1
        self.peak_rss_kb = max(self.peak_rss_kb, outcome.maxrss_kb)
        for verb in outcome.verbs:
            kind = verb.kind
            self.runs[kind] += 1
            self.by_verb.setdefault(verb.verb.split()[0], Counter())[kind] += 1
            self.slowest_verb_s = max(self.slowest_verb_s, verb.seconds)
            if kind in ("traceback", "internal", "timeout", "killed", "messy"):
                last = verb.stderr.strip().splitlines()[-1:] or [""]
                self.bad.append(
                    f"{outcome.variant.name} ({outcome.variant.what}) {verb.verb}: "
                    f"{kind}: {last[0]}"
                )

    @property
    def failures(self) -> int:
        return sum(self.runs[k] for k in ("traceback", "internal", "timeout", "killed", "messy"))

    def text(self) -> str:
        lines = [
            f"{self.variants} damaged variants, {sum(self.runs.values())} verb runs",
            "  "
            + ", ".join(
                f"{k} {self.runs[k]}"
                for k in ("answer", "error", "messy", "traceback", "internal", "timeout", "killed")
            ),
            f"  peak RSS {self.peak_rss_kb / 1024:.0f} MiB "
            f"(limit {MEMORY_LIMIT >> 20} MiB of address space), "
            f"slowest verb {self.slowest_verb_s:.1f} s (limit {VERB_TIMEOUT} s)",
        ]
        for verb, counts in sorted(self.by_verb.items()):
            lines.append(f"  {verb:<7} " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
        lines += [f"  ! {b}" for b in self.bad[:50]]
        return "\n".join(lines)


def run_all(variants: Sequence[Variant], workdir: Path | None = None) -> Iterator[Outcome]:
    """Run every variant in a private work directory, one at a time."""
    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="kdumpkit-damaged-")) if own else workdir
    assert folder is not None
    try:
        for v in variants:
            yield run_variant(v, folder)
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)


def outcome_json(outcome: Outcome) -> dict[str, object]:
    """An outcome as a JSON record (bench's log)."""
    variant = dataclasses.asdict(outcome.variant)
    variant["patches"] = [[at, data.hex()] for at, data in outcome.variant.patches][:64]
    return {
        "variant": variant,
        "maxrss_kb": outcome.maxrss_kb,
        "seconds": outcome.seconds,
        "verbs": [dataclasses.asdict(v) | {"kind": v.kind} for v in outcome.verbs],
    }
