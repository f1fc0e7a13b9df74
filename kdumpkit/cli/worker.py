"""``kdumpkit worker --data DIR --db URL --broker URL``: a Celery worker analysing dumps."""

from __future__ import annotations

import argparse
import os

HELP = "analyse dumps for a kdumpkit server (a Celery worker)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument("--data", required=True, help="the server's data directory (shared)")
    parser.add_argument("--db", help="database URL (default: the SQLite file in DIR)")
    parser.add_argument("--broker", help="broker URL, redis://... (default: embedded)")
    parser.add_argument("--concurrency", type=int, default=1, help="analyses at once")
    parser.add_argument("--loglevel", default="WARNING", help="Celery's log level")


def run(args: argparse.Namespace) -> int:
    """Run the worker until interrupted."""
    from kdumpkit.server.config import ServerConfig
    from kdumpkit.server.tasks import run_worker

    os.environ["KDUMPKIT_SERVER_DATA"] = args.data
    if args.db:
        os.environ["KDUMPKIT_SERVER_DB_URL"] = args.db
    if args.broker:
        os.environ["KDUMPKIT_SERVER_BROKER_URL"] = args.broker
    run_worker(ServerConfig.from_environ(), args.concurrency, args.loglevel)
    return 0
