"""``kdumpkit server --data DIR [--listen HOST:PORT] [--db URL] [--broker URL]`` and
``kdumpkit server token create --data DIR --role upload|read|admin [--host NAME]``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

HELP = "receive, analyse and group the dumps of a fleet (web page and API)"


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().rstrip("b").rstrip("i")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _common(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--data", required=required, type=Path, help="the server's data directory")
    parser.add_argument("--db", default="", help="database URL (default: SQLite in DIR)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    token = sub.add_parser("token", help="manage access tokens")
    token_sub = token.add_subparsers(dest="token_action", metavar="ACTION", required=True)
    create = token_sub.add_parser("create", help="print a new token")
    _common(create)
    create.add_argument("--role", required=True, choices=("upload", "read", "admin"))
    create.add_argument("--host", help="the host an upload token sends for")
    rebucket = sub.add_parser("rebucket", help="group stored analyses under a signature scheme")
    _common(rebucket)
    rebucket.add_argument("--scheme", type=int, required=True)
    _common(parser, required=False)
    parser.add_argument("--listen", default="127.0.0.1:8000", help="HOST:PORT to serve on")
    parser.add_argument("--broker", default="", help="Celery broker URL (default: embedded)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes to run here (default: 1 with the embedded "
        "broker, 0 with an external one)",
    )
    parser.add_argument("--spool", type=Path, help="ingest the dumps collect writes here")
    parser.add_argument("--max-upload", type=_size, default=64 << 30, help="e.g. 16G")
    parser.add_argument("--store-cap", type=_size, default=0, help="store size cap, e.g. 500G")
    parser.add_argument("--keep", type=int, default=0, help="dumps kept per problem, 0 = all")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per analysis")
    parser.add_argument("--memory-limit", type=_size, default=4 << 30, help="per analysis")
    parser.add_argument(
        "--command",
        action="append",
        dest="commands",
        help="a crash command stored with each analysis (repeat; default: sys, bt, log, ps, mod)",
    )
    parser.add_argument("--scheme", type=int, default=2, help="signature scheme shown")
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="a running analysis not renewed this long goes to another worker",
    )
    parser.add_argument(
        "--requeue-seconds",
        type=float,
        default=120.0,
        help="a queued dump not started this long is sent to the broker again",
    )
    parser.add_argument("--skip-frames", default="", help="frames signature v2 skips (file)")


def run(args: argparse.Namespace) -> int:
    """Serve, or manage tokens; a database that cannot be reached is one line."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        return _run(args)
    except (OperationalError, ArgumentError) as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"kdumpkit server: database: {first}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from kdumpkit.server.config import ServerConfig

    if getattr(args, "action", None) == "token":
        from kdumpkit.server.db import create_token, open_database

        config = ServerConfig(data=args.data, db_url=args.db)
        config.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            token = create_token(open_database(config.db_url), args.role, args.host)
        except ValueError as exc:
            print(f"kdumpkit server: {exc}", file=sys.stderr)
            return 2
        print(token)
        return 0
    if getattr(args, "action", None) == "rebucket":
        from kdumpkit.server.work import Context, rebucket

        config = ServerConfig(data=args.data, db_url=args.db)
        print(f"{rebucket(Context.open(config), args.scheme)} dumps bucketed")
        return 0
    from kdumpkit.server.serve import serve

    if args.data is None:
        print("kdumpkit server: --data DIR is needed", file=sys.stderr)
        return 2
    config = ServerConfig(
        data=args.data,
        db_url=args.db,
        broker_url=args.broker,
        max_upload=args.max_upload,
        store_cap=args.store_cap,
        keep_per_problem=args.keep,
        time_limit=args.time_limit,
        memory_limit=args.memory_limit,
        scheme=args.scheme,
        skip_frames_file=args.skip_frames,
        lease_seconds=args.lease_seconds,
        requeue_seconds=args.requeue_seconds,
    )
    if args.commands:
        config = dataclasses.replace(config, commands=tuple(args.commands))
    workers = args.workers if args.workers is not None else int(config.embedded_broker)
    serve(config, args.listen, workers, args.spool)
    return 0
