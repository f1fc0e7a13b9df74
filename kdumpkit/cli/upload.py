"""``kdumpkit upload --server URL --token T DUMP|DIR...``: send saved dumps to a server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "send saved dumps (and their logs) to a kdumpkit server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument("--server", required=True, help="the server's URL (http://host:port)")
    parser.add_argument(
        "--token",
        default=os.environ.get("KDUMPKIT_TOKEN"),
        help="an upload token (default $KDUMPKIT_TOKEN)",
    )
    parser.add_argument("--retries", type=int, default=5, help="attempts after a failure")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="dump files or directories")


def run(args: argparse.Namespace) -> int:
    """Upload each dump; print its path and the id the server gave it."""
    from kdumpkit.server.client import Client, UploadError, dump_files

    if not args.token:
        print("kdumpkit upload: no token (--token or $KDUMPKIT_TOKEN)", file=sys.stderr)
        return 2
    try:
        client = Client(args.server, args.token, retries=args.retries)
    except UploadError as exc:
        print(f"kdumpkit upload: {exc}", file=sys.stderr)
        return 2
    status = 0
    for given in args.paths:
        files = dump_files(Path(given))
        if not files:
            print(f"kdumpkit upload: {given}: no dumps there", file=sys.stderr)
            status = 1
        for path in files:
            try:
                done = client.upload(path)
            except (UploadError, OSError) as exc:
                print(f"kdumpkit upload: {path}: {exc}", file=sys.stderr)
                status = 1
                continue
            print(f"{path} {done.id}", flush=True)
    return status
