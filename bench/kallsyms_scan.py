"""The cost of finding kallsyms by scanning the kernel image (kernels before 6.0).

On the real 6.1 dump, whose VMCOREINFO locates kallsyms, the same dump is read as a
pre-6.0 kernel's would be (VMCOREINFO's ``SYMBOL(kallsyms_*)`` lines ignored):

* ``scan``: finding the first placement by shape (reading the image backwards);
* ``find``: the scan, decoding and the check against VMCOREINFO;
* ``decode``: decoding at VMCOREINFO's addresses, what a 6.x open pays anyway;
* ``added``: find - decode, the price of having no kallsyms in VMCOREINFO (goal 0.1 s);
* ``open + bt``: :func:`open_program` and ``bt`` of the panic task, with VMCOREINFO's
  kallsyms and without them (a copy of the dump with the lines renamed), and on any
  ``--other`` dump (e.g. the testbed's Debian 11 5.10 kdump; goal: within 1.2x of 6.1).

CPU seconds (``time.process_time``: the machine is shared), best of ``--repeat``, each on
a freshly opened dump.  Peak memory of ``find`` from tracemalloc.

    python3 bench/kallsyms_scan.py [--dump vmcore.kdump] [--other DUMP ...] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = Path(os.environ.get("KDUMPKIT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
DEFAULT_DUMP = FIXTURES / "linux-6.1.0-56-cloud-amd64-kdump" / "vmcore.kdump"

from kdumpkit.analyze.program import open_program  # noqa: E402
from kdumpkit.analyze.session import Session  # noqa: E402
from kdumpkit.dump.open import open_dump  # noqa: E402
from kdumpkit.dump.vmcoreinfo import VmcoreInfo  # noqa: E402
from kdumpkit.kernel.kallsyms import dump_reader, find_kallsyms, read_kallsyms  # noqa: E402
from kdumpkit.kernel.kallsyms_scan import scan_kallsyms  # noqa: E402
from kdumpkit.kernel.x86_64 import address_space  # noqa: E402


def without_kallsyms(info: VmcoreInfo) -> VmcoreInfo:
    kept = [line for line in info.text.splitlines() if not line.startswith("SYMBOL(kallsyms_")]
    return VmcoreInfo.parse("\n".join(kept).encode() + b"\n")


def best(repeat: int, run: Callable[[], Callable[[], object]]) -> float:
    """Best CPU time of the work ``run()`` returns (``run`` itself, the set-up, is not timed)."""
    times = []
    for _ in range(repeat):
        work = run()
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)


def scan_costs(path: Path, repeat: int) -> dict[str, float]:
    def fresh(work: Callable[..., object], *, located: bool = False) -> Callable[[], object]:
        dump = open_dump(path)
        info = dump.vmcoreinfo
        assert info is not None
        if located:
            return lambda: work(info, address_space(dump).read)
        return lambda: work(without_kallsyms(info), dump_reader(dump))

    costs = {
        "scan": best(repeat, lambda: fresh(lambda i, r: next(scan_kallsyms(i, r)))),
        "find": best(repeat, lambda: fresh(find_kallsyms)),
        "decode": best(repeat, lambda: fresh(read_kallsyms, located=True)),
    }
    costs["added"] = costs["find"] - costs["decode"]
    with open_dump(path) as dump:
        info = dump.vmcoreinfo
        assert info is not None
        tracemalloc.start()
        find_kallsyms(without_kallsyms(info), dump_reader(dump))
        costs["find peak MB"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return costs


def open_bt(path: Path, repeat: int) -> float:
    def run() -> Callable[[], object]:
        return lambda: Session(open_program(path)).run_to_text("bt")

    return best(repeat, run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, default=DEFAULT_DUMP)
    parser.add_argument("--other", type=Path, nargs="*", default=[])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not args.dump.is_file():
        print(f"bench: {args.dump} is not there; set KDUMPKIT_FIXTURES")
        return 1
    print(f"kallsyms scan on {args.dump} (CPU s, best of {args.repeat})")
    for name, value in scan_costs(args.dump, args.repeat).items():
        print(f"  {name:<14} {value:8.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        pre60 = Path(tmp) / "pre60.kdump"
        pre60.write_bytes(args.dump.read_bytes().replace(b"SYMBOL(kallsyms_", b"NOTSYM(kallsyms_"))
        with_keys = open_bt(args.dump, args.repeat)
        without = open_bt(pre60, args.repeat)
    print(f"  {'open + bt, VMCOREINFO kallsyms':<40} {with_keys:8.3f}")
    print(f"  {'open + bt, kallsyms found by scan':<40} {without:8.3f}")
    for other in args.other:
        cost = open_bt(other, args.repeat)
        print(f"  open + bt {other.name}: {cost:.3f} ({cost / with_keys:.2f}x the 6.1 dump's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
