"""The two systemd units: load the capture kernel at boot, collect the dump after a crash.

``kdumpkit-load.service`` runs ``kdumpkit load`` in the normal boot (and ``unload`` on
stop).  ``kdumpkit-collect.service`` runs ``kdumpkit collect`` when /proc/vmcore exists,
i.e. in the capture kernel, then reboots whether the save worked or not.  ``kdumpkit
load`` adds ``systemd.unit=kdumpkit-collect.service`` to the capture command line once
the unit is installed, so the capture boot goes straight to it.  The units are
templates in ``units/``; ``@KDUMPKIT@`` becomes the command that runs kdumpkit.
"""

from __future__ import annotations

import shutil
import site
import sys
from importlib import resources
from pathlib import Path

import kdumpkit
from kdumpkit.config import Config
from kdumpkit.service.changes import Changes, file_change
from kdumpkit.service.host import Host

UNITS = ("kdumpkit-load.service", "kdumpkit-collect.service")
#: The units' first line (see units/): how ``setup --revert`` knows a unit is ours.
UNIT_MARK = "# Installed by `kdumpkit setup"
UNIT_DIR = "/etc/systemd/system"


def kdumpkit_command() -> str:
    """The absolute command that runs kdumpkit: its script, else this Python with -m."""
    return shutil.which("kdumpkit") or f"{sys.executable} -m kdumpkit"


def python_path_line() -> str:
    """An ``Environment=PYTHONPATH=`` line when kdumpkit runs from a source tree."""
    package_parent = Path(kdumpkit.__file__).resolve().parent.parent
    installed = any(
        Path(p).resolve() == package_parent
        for p in [*site.getsitepackages(), site.getusersitepackages()]
    )
    return "" if installed else f"Environment=PYTHONPATH={package_parent}\n"


def unit_text(name: str, command: str, config: Config, environment: str = "") -> str:
    """A unit file's text with the command (and, for ssh targets, the network) filled in."""
    template = resources.files("kdumpkit.service").joinpath("units", name).read_text()
    network = " network-online.target" if config.ssh else ""
    return (
        template.replace("@KDUMPKIT@", command)
        .replace("@ENVIRONMENT@\n", environment)
        .replace("@NETWORK_WANTS@", network)
        .replace("@NETWORK_AFTER@", network)
    )


def systemd_changes(host: Host, config: Config, command: str | None = None) -> Changes:
    """Install both units under /etc/systemd/system and enable them."""
    environment = "" if command else python_path_line()
    command = command or kdumpkit_command()
    changes = Changes()
    for name in UNITS:
        changes.files.append(
            file_change(host, f"{UNIT_DIR}/{name}", unit_text(name, command, config, environment))
        )
    root = [] if host.root == "/" else [f"--root={host.root}"]
    if host.root == "/":
        changes.commands.append(["systemctl", "daemon-reload"])
    changes.commands.append(["systemctl", *root, "enable", *UNITS])
    return changes


def systemd_revert(host: Host) -> Changes:
    """Undo :func:`systemd_changes`: the units disabled, then removed (only files that
    kdumpkit installed: their first line says so)."""
    changes = Changes()
    ours = [
        name for name in UNITS if (host.read_text(f"{UNIT_DIR}/{name}") or "").startswith(UNIT_MARK)
    ]
    if not ours:
        return changes
    root = [] if host.root == "/" else [f"--root={host.root}"]
    changes.before.append(["systemctl", *root, "disable", *ours])
    changes.files += [file_change(host, f"{UNIT_DIR}/{name}", None) for name in ours]
    if host.root == "/":
        changes.commands.append(["systemctl", "daemon-reload"])
    return changes
