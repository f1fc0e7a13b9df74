"""``kdumpkit save VMCORE OUT``: filter, compress and write a dump (makedumpfile's job)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from kdumpkit.capture.filter import MAX_DUMP_LEVEL
from kdumpkit.capture.save import (
    COMPRESSIONS,
    SAVE_FORMATS,
    SaveError,
    SaveResult,
    report_rows,
    report_text,
    save_dump,
)
from kdumpkit.kernel.vmcoreinfo_scan import open_kernel_dump

HELP = "filter, compress and write a dump (makedumpfile's job)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's options."""
    parser.add_argument("vmcore", help="input dump: /proc/vmcore, or any ELF/kdump/flat dump")
    parser.add_argument("out", help="output file, or - for a flattened stream on stdout")
    parser.add_argument(
        "-d", "--dump-level", type=int, default=31, metavar="LEVEL",
        help="pages to drop, a sum of 1 zero, 2 cache, 4 private cache, 8 user, 16 free "
        "(default 31)",
    )  # fmt: skip
    parser.add_argument(
        "--compress", choices=COMPRESSIONS, default=None,
        help="per-page compression of kdump output (default zstd; none for ELF)",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=SAVE_FORMATS, default="kdump", dest="fmt",
        help="kdump-compressed, ELF, or flat (kdump in makedumpfile's flattened stream)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="compression threads (0: auto)")
    parser.add_argument(
        "--split", type=int, default=0, metavar="N",
        help="write N kdump files OUT.1 .. OUT.N holding about the same number of pages",
    )  # fmt: skip
    parser.add_argument("--dmesg", metavar="FILE", help="also write the kernel log to FILE")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite existing output")
    parser.add_argument("-q", "--quiet", action="store_true", help="print no summary")


def _check_args(args: argparse.Namespace) -> list[str]:
    if not 0 <= args.dump_level <= MAX_DUMP_LEVEL:
        raise SaveError(f"dump level {args.dump_level} is outside 0..{MAX_DUMP_LEVEL}")
    if args.threads < 0 or args.split < 0:
        raise SaveError("--threads and --split take a count of 0 or more")
    if args.split and args.out == "-":
        raise SaveError("a --split set cannot go to stdout")
    outs = [f"{args.out}.{i}" for i in range(1, args.split + 1)] if args.split else [args.out]
    for path in outs:
        if path != "-" and os.path.isfile(path) and not args.force:
            raise SaveError(f"{path}: exists (use --force to overwrite)")
    return outs


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], Callable[[int, int], None] | None]]:
    """A factory of rich progress callbacks, one task per phase; no-ops when not a TTY."""
    if not enabled:
        yield lambda _label: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

    console = Console(stderr=True)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:

        def phase(label: str) -> Callable[[int, int], None]:
            task = bar.add_task(label, total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return update

        yield phase


def print_report(result: SaveResult, *, tty: bool) -> None:
    """The makedumpfile-style summary on stderr: a rich table on a terminal."""
    if not tty:
        print(report_text(result), file=sys.stderr)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pages", title_justify="left")
    table.add_column("class")
    table.add_column("pages", justify="right")
    table.add_column("MiB", justify="right")
    page_mib = result.filter.page_size / (1 << 20)
    for label, pages in report_rows(result):
        table.add_row(label, f"{pages:,}", f"{pages * page_mib:,.1f}")
    console = Console(stderr=True)
    console.print(table)
    stats = result.write
    console.print(
        f"wrote {stats.file_size:,} bytes ({stats.format}, {stats.compression}"
        f"{', flattened' if stats.flattened else ''}) in {stats.seconds:.2f} s",
        highlight=False,
    )


def run(args: argparse.Namespace) -> int:
    """Filter and write; 0 on success."""
    outs = _check_args(args)
    compress = args.compress or ("none" if args.fmt == "elf" else "zstd")
    tty = sys.stderr.isatty() and not args.quiet
    with open_kernel_dump(args.vmcore) as src:
        if args.dmesg:
            from kdumpkit.capture.collect import write_dmesg

            write_dmesg(src, args.dmesg)
        target: object
        if args.split:
            target = outs
        elif args.out == "-":
            target = sys.stdout.buffer
        else:
            target = args.out
        with _progress(tty) as phase:
            result = save_dump(
                src,
                target,  # type: ignore[arg-type]
                dump_level=args.dump_level,
                fmt="flat" if args.out == "-" and args.fmt == "kdump" else args.fmt,
                compress=compress,
                threads=args.threads,
                filter_progress=phase("Excluding unnecessary pages"),
                write_progress=phase("Copying data"),
            )
        for warning in result.filter.warnings:
            print(f"kdumpkit save: warning: {warning}", file=sys.stderr)
        if not args.quiet:
            print_report(result, tty=tty)
    return 0
