"""``kdumpkit collect``: in the capture kernel, save /proc/vmcore and its kernel log."""

from __future__ import annotations

import argparse
import os
import sys

from kdumpkit.capture.collect import CollectError, CollectSettings, collect, load_settings
from kdumpkit.capture.save import COMPRESSIONS, SAVE_FORMATS

HELP = "in the capture kernel: save /proc/vmcore and its log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's options; unset ones come from the config file."""
    parser.add_argument("--vmcore", default="/proc/vmcore", help="the dump to save")
    parser.add_argument("--dir", dest="dump_dir", help="local directory (config: dump.dir)")
    parser.add_argument("--ssh", help="user@host:/dir to stream the dump to (config: ssh.target)")
    parser.add_argument("--ssh-key", help="ssh identity file (config: ssh.key)")
    parser.add_argument(
        "--keep", type=int, help="keep the newest N dump directories, 0 = all (config: dump.keep)"
    )
    parser.add_argument("--config", help="config file (default $KDUMPKIT_CONFIG or /etc)")
    parser.add_argument("-d", "--dump-level", type=int, help="dump level 0..31 (config)")
    parser.add_argument("--compress", choices=COMPRESSIONS, help="compression (config)")
    parser.add_argument(
        "--format",
        choices=SAVE_FORMATS,
        dest="dump_format",
        help="dump format (config: dump.format)",
    )
    parser.add_argument("--threads", type=int, help="compression threads, 0 = auto (config)")
    parser.add_argument(
        "--upload", metavar="URL", help="then send the saved dump and log to a kdumpkit server"
    )
    parser.add_argument(
        "--upload-token", default=os.environ.get("KDUMPKIT_TOKEN"),
        help="the server's upload token (default $KDUMPKIT_TOKEN)",
    )  # fmt: skip
    parser.add_argument(
        "--no-space-check", action="store_true",
        help="write even when the free-space estimate says the dump will not fit",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Collect; 0 when the dump was saved, 1 when only the log could be."""
    settings = load_settings(
        args.config,
        vmcore=args.vmcore,
        dump_dir=args.dump_dir,
        # --dir on the command line means a local dump, whatever ssh the config names
        ssh="" if args.dump_dir and not args.ssh else args.ssh,
        ssh_key=args.ssh_key,
        keep=args.keep,
        dump_level=args.dump_level,
        compress=args.compress,
        dump_format=args.dump_format,
        threads=args.threads,
        space_check=False if args.no_space_check else None,
        upload=args.upload,
        upload_token=args.upload_token,
    )
    if not 0 <= settings.dump_level <= 31:
        print(
            f"kdumpkit collect: dump level {settings.dump_level} is outside 0..31", file=sys.stderr
        )
        return 2
    if settings.upload and (settings.ssh or not settings.upload_token):
        why = "a local --dir" if settings.ssh else "--upload-token or $KDUMPKIT_TOKEN"
        print(f"kdumpkit collect: --upload needs {why}", file=sys.stderr)
        return 2
    try:
        result = collect(settings)
    except CollectError as exc:
        print(f"kdumpkit collect: {exc}", file=sys.stderr)
        return 1
    if settings.upload and result.dump:
        return upload_saved(settings, result.dump)
    return 0


def upload_saved(settings: CollectSettings, dump: str) -> int:
    """Send the dump collect saved (and its log) to the server; it stays on disk either way."""
    from pathlib import Path

    from kdumpkit.server.client import Client, UploadError

    try:
        done = Client(settings.upload or "", settings.upload_token or "").upload(Path(dump))
    except (UploadError, OSError) as exc:
        print(f"kdumpkit collect: upload failed, the dump stays in {dump}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"kdumpkit collect: uploaded {dump} to {settings.upload} as dump {done.id}",
          file=sys.stderr)  # fmt: skip
    return 0
