"""``kdumpkit shell DUMP [VMLINUX]``: a Python prompt with the dump opened as ``prog``."""

from __future__ import annotations

import argparse
import code
from typing import Any

from kdumpkit.cli.output import DamageWarnings, add_zero_excluded

HELP = "a Python prompt with the dump opened as `prog`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument("dump", metavar="DUMP", help="the dump (ELF, kdump-compressed, flattened)")
    parser.add_argument("vmlinux", metavar="VMLINUX", nargs="?", help="a vmlinux with DWARF")
    parser.add_argument(
        "-e", dest="expression", metavar="CODE", help="run this Python code instead of the prompt"
    )
    add_zero_excluded(parser)


def namespace(prog: Any) -> dict[str, Any]:
    """``prog``, drgn, every drgn.helpers.linux helper, and ``crash("cmd")``."""
    import drgn
    import drgn.helpers.linux as linux_helpers

    from kdumpkit.analyze.session import Session

    names: dict[str, Any] = {"drgn": drgn, "prog": prog}
    for name in (
        "Object",
        "Program",
        "FaultError",
        "cast",
        "container_of",
        "NULL",
        "reinterpret",
        "sizeof",
        "stack_trace",
    ):
        if hasattr(drgn, name):
            names[name] = getattr(drgn, name)
    for name in getattr(linux_helpers, "__all__", []):
        names[name] = getattr(linux_helpers, name)
    session = Session(prog)

    def crash(line: str) -> None:
        """Run a crash command, e.g. ``crash("ps")``."""
        session.run(line)

    names["crash"] = crash
    # drgn's helpers take the program implicitly once it is the default.
    drgn.set_default_prog(prog)
    return names


def run(args: argparse.Namespace) -> int:
    """Open the dump and start Python."""
    from kdumpkit.analyze.session import open_for_analysis

    prog = open_for_analysis(args.dump, vmlinux=args.vmlinux, zero_excluded=args.zero_excluded)
    warnings = DamageWarnings("shell", prog)
    warnings.flush()
    try:
        return _run(args, prog)
    finally:
        warnings.finish()


def _run(args: argparse.Namespace, prog: Any) -> int:
    import os

    from kdumpkit.analyze.guard import describe_error
    from kdumpkit.errors import KdumpkitError

    names = namespace(prog)
    if args.expression:
        try:
            exec(compile(args.expression, "<-e>", "exec"), names)  # the user's own code
        except Exception as exc:
            # One line, as every verb: what the dump lacks (a page not in it, types a
            # damaged BTF got wrong) or the code's own mistake; KDUMPKIT_DEBUG=1 shows
            # the traceback.
            if os.environ.get("KDUMPKIT_DEBUG"):
                raise
            raise KdumpkitError(f"-e: {type(exc).__name__}: {describe_error(exc)}") from None
        return 0
    banner = (
        "kdumpkit shell: `prog` is the dump; drgn and its Linux helpers are imported;\n"
        'crash("ps") runs a crash command.  Ctrl-D leaves.'
    )
    try:
        import readline
        import rlcompleter
    except ImportError:
        pass
    else:
        readline.set_completer(rlcompleter.Completer(names).complete)
        readline.parse_and_bind("tab: complete")
    code.interact(banner=banner, local=names, exitmsg="")
    return 0
