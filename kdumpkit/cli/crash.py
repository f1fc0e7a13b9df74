"""``kdumpkit crash DUMP [VMLINUX] [-c CMD]...``: crash-compatible commands on a dump."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import TYPE_CHECKING

from kdumpkit.cli.crash_words import EXIT_WORDS, PROMPT
from kdumpkit.cli.output import DamageWarnings, add_zero_excluded

if TYPE_CHECKING:
    from drgn import Program

    from kdumpkit.analyze.session import Session

HELP = "crash-compatible commands on a dump (bt, log, ps, ...)"
HISTORY = os.path.join(os.path.expanduser("~"), ".kdumpkit_crash_history")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument("dump", metavar="DUMP", help="the dump (ELF, kdump-compressed, flattened)")
    parser.add_argument(
        "vmlinux",
        metavar="VMLINUX",
        nargs="?",
        help="a vmlinux with DWARF (optional: BTF and kallsyms are used without)",
    )
    parser.add_argument(
        "-c",
        dest="commands",
        metavar="CMD",
        action="append",
        default=[],
        help="run this command and exit (repeatable); no banner unless --banner",
    )
    parser.add_argument("-s", "--silent", action="store_true", help="no start-up banner")
    parser.add_argument("--banner", action="store_true", help="print the banner with -c too")
    parser.add_argument(
        "-i", dest="input", metavar="FILE", help="run the commands in FILE (one a line), then exit"
    )
    parser.add_argument(
        "--no-pager",
        action="store_true",
        help="at the prompt, never page long output (default: $PAGER or less)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="with -c: print each command's records as JSON instead of text",
    )
    add_zero_excluded(parser)


def banner(prog: Program) -> str:
    """crash's start-up text: the version, then ``sys`` and the panic task's context."""
    from kdumpkit import __version__
    from kdumpkit.analyze.crashformat import context_pairs, format_pairs, sys_pairs
    from kdumpkit.analyze.facts.system import system_info
    from kdumpkit.analyze.facts.tasks import panic_task, task_context

    head = (
        f"\nkdumpkit crash {__version__} (crash 9.0.2-compatible commands; "
        "types from the dump's BTF, symbols from kallsyms, unwinding from ORC)\n"
        'Type "help" for the list of commands, "exit" to leave.\n\n'
    )
    try:
        pairs = sys_pairs(system_info(prog))
        task = panic_task(prog)
        if task is not None:
            pairs += context_pairs(task_context(task))
    except Exception as exc:  # the banner must not stop the session from starting
        return head + f"(system summary unavailable: {exc})\n\n"
    return head + format_pairs(pairs) + "\n"


def interactive(
    session: Session, pager: bool = True, warnings: DamageWarnings | None = None
) -> int:
    """The prompt, with history and completion, until ``exit`` or end of input."""
    if not sys.stdin.isatty():
        for line in sys.stdin:
            line = line.strip()
            if line in EXIT_WORDS:
                break
            if line:
                session.run(line)
                if warnings:
                    warnings.flush()
        return 0
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    from kdumpkit.cli.crash_completion import CommandCompleter

    if pager:
        session.pager = shlex.split(os.environ.get("PAGER") or "less -FRX")

    history: History
    try:
        history = FileHistory(HISTORY)
    except OSError:
        history = InMemoryHistory()
    prompt: PromptSession[str] = PromptSession(
        history=history, completer=CommandCompleter(session), complete_while_typing=False
    )
    while True:
        try:
            line = prompt.prompt(PROMPT).strip()
        except KeyboardInterrupt:
            continue
        except EOFError:
            print()
            return 0
        if line in EXIT_WORDS:
            return 0
        if line:
            try:
                session.run(line)
            except KeyboardInterrupt:
                print("\ninterrupted", file=sys.stderr)
            if warnings:
                warnings.flush()


def run(args: argparse.Namespace) -> int:
    """Open the dump, then run the -c commands or the prompt."""
    from kdumpkit.analyze.session import open_for_analysis

    prog = open_for_analysis(args.dump, vmlinux=args.vmlinux, zero_excluded=args.zero_excluded)
    warnings = DamageWarnings("crash", prog)
    warnings.flush()
    try:
        return _run(args, prog, warnings)
    finally:
        warnings.finish()


def _run(args: argparse.Namespace, prog: Program, warnings: DamageWarnings) -> int:
    from kdumpkit.analyze.session import Session

    session = Session(prog)
    show_banner = not args.silent and (args.banner or not (args.commands or args.input))
    if show_banner:
        sys.stdout.write(banner(prog))
        sys.stdout.flush()
    if args.input:
        with open(args.input, encoding="utf-8") as file:
            args.commands += [
                line.strip() for line in file if line.strip() and not line.lstrip().startswith("#")
            ]
    if args.json:
        return run_json(session, args.commands)
    if args.commands or args.input:
        status = 0
        for command in args.commands:
            if command.strip() in EXIT_WORDS:
                break
            status |= session.run(command)
            warnings.flush()
        return status
    return interactive(session, pager=not args.no_pager, warnings=warnings)


def run_json(session: Session, commands: list[str]) -> int:
    """Each -c command's records, as one JSON object keyed by the command line."""
    import json

    from kdumpkit.analyze.commands.base import CommandError
    from kdumpkit.analyze.session import split_command_line

    results: dict[str, object] = {}
    status = 0
    for line in commands:
        try:
            results[line] = session.execute(split_command_line(line).words).as_json()
        except CommandError as exc:
            results[line] = {"error": str(exc)}
            status = 1
    json.dump(results, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return status
