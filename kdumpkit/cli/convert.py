"""``kdumpkit convert IN... OUT --format elf|kdump|flat``: rewrite a dump in another format."""

from __future__ import annotations

import argparse
import sys

from kdumpkit.cli.output import replaced_on_success
from kdumpkit.dump.errors import DumpError
from kdumpkit.dump.writer import WriteStats, write_dump, write_split
from kdumpkit.kernel.vmcoreinfo_scan import open_kernel_dump

HELP = "convert a dump between ELF, kdump-compressed and flattened"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument(
        "paths", metavar="PATH", nargs="+",
        help="IN... OUT: the input dump (several files for a --split set), then the output "
        "('-' for stdout, written flattened)",
    )  # fmt: skip
    parser.add_argument(
        "--format", "-f", choices=("kdump", "elf", "flat", "flat-elf"), default="kdump",
        help="kdump (kdump-compressed, default), elf, flat (flattened kdump-compressed) "
        "or flat-elf (flattened ELF, as makedumpfile -E -F)",
    )  # fmt: skip
    parser.add_argument(
        "--compress", "-c", choices=("zlib", "lzo", "snappy", "zstd", "none"), default="zstd",
        help="page codec for kdump output (default zstd)",
    )  # fmt: skip
    parser.add_argument("--threads", "-j", type=int, default=1, help="compression threads")
    parser.add_argument(
        "--exclude-zero", action="store_true",
        help="share one zero page (kdump) or drop zero pages (elf), as dump level 1",
    )  # fmt: skip
    parser.add_argument(
        "--split", type=int, metavar="N", default=0,
        help="write a --split set: the last N paths are its files (kdump only)",
    )  # fmt: skip


def _progress(stream: object) -> object:
    if not getattr(stream, "isatty", lambda: False)():
        return None

    def report(done: int, total: int) -> None:
        if done == total or done % 8192 < 256:
            print(f"\r{done}/{total} pages", end="", file=sys.stderr, flush=True)

    return report


def _summary(stats: WriteStats, where: str) -> str:
    return (
        f"{where}: {stats.format}{' (flattened)' if stats.flattened else ''}, "
        f"{stats.compression}, {stats.pages_written} pages ({stats.zero_pages} zero), "
        f"{stats.file_size} bytes in {stats.seconds:.1f} s"
    )


def run(args: argparse.Namespace) -> int:
    """Open the input, write the output under a temporary name, rename."""
    split = args.split
    if split < 0 or len(args.paths) < 1 + max(split, 1):
        raise DumpError("give the input dump and the output path(s)")
    outs = args.paths[-split:] if split else args.paths[-1:]
    ins = args.paths[: len(args.paths) - len(outs)]
    fmt = {"flat": "kdump", "flat-elf": "elf"}.get(args.format, args.format)
    flattened = args.format.startswith("flat")
    if args.threads < 1:
        raise DumpError("--threads must be at least 1")
    progress = _progress(sys.stderr)
    with open_kernel_dump(ins if len(ins) > 1 else ins[0]) as src:
        options = {
            "fmt": fmt, "compress": args.compress, "exclude_zero": args.exclude_zero,
            "threads": args.threads, "progress": progress,
        }  # fmt: skip
        if outs == ["-"]:
            if split:
                raise DumpError("a split set cannot go to stdout")
            stats = write_dump(src, sys.stdout.buffer, flattened=True, **options)
            print(_summary(stats, "stdout"), file=sys.stderr)
            return 0
        with replaced_on_success(outs) as temps:
            if split:
                if args.format != "kdump":
                    raise DumpError("a split set is kdump-compressed only")
                stats = write_split(src, list(temps), **options)
            else:
                stats = write_dump(src, temps[0], flattened=flattened, **options)
    if progress is not None:
        print(file=sys.stderr)
    print(_summary(stats, ", ".join(outs)))
    return 0
