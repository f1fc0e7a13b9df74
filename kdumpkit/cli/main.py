"""Entry point: dispatch ``kdumpkit <verb>`` to the module that implements the verb.

Each verb module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``.  Modules are imported only when their verb runs, so
``kdumpkit info`` does not pay for importing drgn.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

from kdumpkit.cli.output import internal_error_line
from kdumpkit.errors import KdumpkitError

#: verb -> (module, one-line help).  The help is here so ``--help`` imports nothing.
VERBS: dict[str, tuple[str, str]] = {
    "info": ("kdumpkit.cli.info", "describe a dump: format, kernel, CPUs, pages, VMCOREINFO"),
    "convert": (
        "kdumpkit.cli.convert",
        "convert a dump between ELF, kdump-compressed and flattened",
    ),
    "reassemble": ("kdumpkit.cli.reassemble", "turn a flattened dump into a kdump-compressed file"),
    "dmesg": ("kdumpkit.cli.dmesg", "print the kernel log saved in a dump"),
    "save": ("kdumpkit.cli.save", "filter, compress and write a dump (makedumpfile's job)"),
    "collect": ("kdumpkit.cli.collect", "in the capture kernel: save /proc/vmcore and its log"),
    "check": ("kdumpkit.cli.check", "is this machine ready for kdump, and if not, what to do"),
    "estimate": ("kdumpkit.cli.estimate", "the crashkernel= reservation this machine needs"),
    "setup": ("kdumpkit.cli.setup", "reserve memory and enable the kdumpkit units (dry run first)"),
    "load": ("kdumpkit.cli.load", "load the capture kernel (kexec_file_load)"),
    "unload": ("kdumpkit.cli.unload", "unload the capture kernel"),
    "status": (
        "kdumpkit.cli.status",
        "is a capture kernel loaded, and how much memory is reserved",
    ),
    "test": ("kdumpkit.cli.test", "crash this machine on purpose to test kdump"),
    "crash": ("kdumpkit.cli.crash", "crash-compatible commands on a dump (bt, log, ps, ...)"),
    "shell": ("kdumpkit.cli.shell", "a Python prompt with the dump opened as `prog`"),
    "report": ("kdumpkit.cli.report", "one-page triage report: why did this kernel die?"),
    "server": ("kdumpkit.cli.server", "receive, analyse and group the dumps of a fleet"),
    "worker": ("kdumpkit.cli.worker", "analyse dumps for a kdumpkit server (Celery worker)"),
    "upload": ("kdumpkit.cli.upload", "send saved dumps and their logs to a kdumpkit server"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdumpkit", description="Linux kernel crash dumps: service, capture and analysis."
    )
    from kdumpkit import __version__

    parser.add_argument("--version", action="version", version=f"kdumpkit {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (_, help_text) in VERBS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in VERBS:
        parser = build_parser()
        if not argv:
            parser.print_help()
            return 2
        parser.parse_args(argv)  # prints help / version, or the error for an unknown verb
        return 2
    verb = argv[0]
    # The interpreter's last garbage collection at exit walks every object a verb made
    # (~30 ms after a bt) only to free memory the OS reclaims anyway: freeze them instead.
    atexit.register(gc.freeze)
    # kdumpkit does no linear algebra: numpy's OpenBLAS need not start a thread per CPU
    # (~0.1 s of CPU) when a verb imports numpy.  Set before, not by importing numpy
    # here, so that check, load and status (run in capture kernels) never import it.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Every verb's module ships with the package: one that fails to import is a fault to
    # see, never a verb to hide.
    module = importlib.import_module(VERBS[verb][0])
    parser = argparse.ArgumentParser(prog=f"kdumpkit {verb}", description=VERBS[verb][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KdumpkitError as exc:
        print(f"kdumpkit {verb}: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"kdumpkit {verb}: out of memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kdumpkit {verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        print(
            f"kdumpkit {verb}: {exc.strerror or exc}"
            + (f": {exc.filename}" if exc.filename else ""),
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        if os.environ.get("KDUMPKIT_DEBUG"):
            raise
        print(f"kdumpkit {verb}: {internal_error_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
