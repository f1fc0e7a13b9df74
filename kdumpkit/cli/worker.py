"""``kdumpkit worker --data DIR --db URL --broker URL``: a Celery worker analysing dumps."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "analyse dumps for a kdumpkit server (a Celery worker)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument("--data", required=True, help="the server's data directory (shared)")
    parser.add_argument("--db", help="database URL (default: the SQLite file in DIR)")
    parser.add_argument("--broker", help="broker URL, redis://... (default: embedded)")
    parser.add_argument("--concurrency", type=int, default=1, help="analyses at once")
    parser.add_argument("--loglevel", default="WARNING", help="Celery's log level")
    parser.add_argument("--time-limit", type=float, help="seconds per analysis (default 600)")
    parser.add_argument("--memory-limit", type=int, help="bytes per analysis (default 4 GiB)")
    parser.add_argument("--lease-seconds", type=float, help="lease of a running analysis (30)")
    parser.add_argument(
        "--command",
        action="append",
        dest="commands",
        help="a crash command stored with each analysis (repeat; default: sys, bt, log, ps, mod)",
    )
    parser.add_argument("--skip-frames", help="frames signature v2 skips (file)")


def run(args: argparse.Namespace) -> int:
    """Run the worker until interrupted."""
    from kdumpkit.server.config import ServerConfig
    from kdumpkit.server.tasks import run_worker

    os.environ["KDUMPKIT_SERVER_DATA"] = args.data
    if args.db:
        os.environ["KDUMPKIT_SERVER_DB_URL"] = args.db
    if args.broker:
        os.environ["KDUMPKIT_SERVER_BROKER_URL"] = args.broker
    for name, value in (
        ("TIME_LIMIT", args.time_limit),
        ("MEMORY_LIMIT", args.memory_limit),
        ("LEASE_SECONDS", args.lease_seconds),
        ("SKIP_FRAMES_FILE", args.skip_frames),
    ):
        if value is not None:
            os.environ[f"KDUMPKIT_SERVER_{name}"] = str(value)
    if args.commands:
        os.environ["KDUMPKIT_SERVER_COMMANDS"] = ";".join(args.commands)
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        run_worker(ServerConfig.from_environ(), args.concurrency, args.loglevel)
    except (OperationalError, ArgumentError) as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"kdumpkit worker: database: {first}", file=sys.stderr)
        return 1
    return 0
