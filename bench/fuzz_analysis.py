"""Damaged variants of the real dumps through every analysis verb: the long run.

Each variant (bits flipped in the first 64 KiB, blocks zeroed, truncations, damaged
notes or VMCOREINFO lines, bits flipped in the pages the analysis reads) is written to a
work directory and run through ``info``, ``dmesg``, ``crash -c bt -c ps -c log``,
``report`` and ``shell -e`` in one subprocess limited to 1 GiB of address space, each
verb under a 30 s alarm (tests/damaged_dumps.py).  Prints the counts of tracebacks,
timeouts, kills and untidy errors, the peak RSS and the slowest verb; exit 1 if any.

    python3 bench/fuzz_analysis.py [--count 2000] [--seed 1] [--jobs 1] [--log out.jsonl]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import damaged_dumps as dd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="variants to run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="variants run at once")
    parser.add_argument("--kinds", default=",".join(dd.KINDS), help="damage kinds")
    parser.add_argument("--log", metavar="FILE", help="one JSON record per variant")
    args = parser.parse_args()
    bases = dd.base_dumps()
    if not bases:
        print("no fixture dumps found (KDUMPKIT_FIXTURES / KDUMPKIT_CACHE)", file=sys.stderr)
        return 2
    kinds = args.kinds.split(",")
    memory = dd.memory_pages(bases["elf"]) if "elf" in bases and "memory" in kinds else None
    variants = dd.make_variants(args.count, args.seed, kinds, memory)
    print(f"{len(variants)} variants of {', '.join(sorted(bases))}; kinds {', '.join(kinds)}")
    summary = dd.Summary()
    log = open(args.log, "w") if args.log else None
    local = threading.local()
    workdirs: list[Path] = []

    def work(variant: dd.Variant) -> dd.Outcome:
        if not hasattr(local, "dir"):
            local.dir = Path(tempfile.mkdtemp(prefix="kdumpkit-damaged-"))
            workdirs.append(local.dir)
        return dd.run_variant(variant, local.dir)

    start = time.monotonic()
    try:
        with ThreadPoolExecutor(args.jobs) as pool:
            for done, outcome in enumerate(pool.map(work, variants), 1):
                summary.add(outcome)
                if log:
                    log.write(json.dumps(dd.outcome_json(outcome)) + "\n")
                    log.flush()
                if done % 50 == 0 or done == len(variants):
                    rate = (time.monotonic() - start) / done
                    print(
                        f"  {done}/{len(variants)} ({rate:.2f} s a variant): "
                        + ", ".join(f"{k} {n}" for k, n in sorted(summary.runs.items())),
                        flush=True,
                    )
    finally:
        for folder in workdirs:
            shutil.rmtree(folder, ignore_errors=True)
        if log:
            log.close()
    print(summary.text())
    print(f"wall time {time.monotonic() - start:.0f} s")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
