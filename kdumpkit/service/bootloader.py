"""Reserve the memory at boot: put ``crashkernel=`` on the kernel command line.

Debian and Ubuntu: a GRUB drop-in ``/etc/default/grub.d/kdumpkit.cfg`` (update-grub
reads /etc/default/grub, then grub.d/*.cfg in name order), then ``update-grub``.
Fedora and RHEL (no grub.d, BLS entries): ``grubby --update-kernel=ALL --args=...``.
The kernel acts on the last ``crashkernel=`` it is given, so a value set earlier (by
kdump-tools' drop-in, which sorts before ours) is overridden and noted.
"""

from __future__ import annotations

import shutil

from kdumpkit.service.changes import Changes, file_change
from kdumpkit.service.crashkernel import Crashkernel
from kdumpkit.service.errors import ServiceError
from kdumpkit.service.host import Host

GRUB_DROPIN = "/etc/default/grub.d/kdumpkit.cfg"
#: The first line of the drop-in: how ``setup --revert`` knows the file is ours.
DROPIN_MARK = "# Written by kdumpkit setup"


def grub_dropin_text(value: Crashkernel) -> str:
    """The drop-in that adds ``crashkernel=`` to the default GRUB entries."""
    return (
        f"{DROPIN_MARK}: reserve memory for the kdump capture kernel.\n"
        "# `kdumpkit estimate` explains the size; remove this file to undo, then update-grub.\n"
        f'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT crashkernel={value}"\n'
    )


def other_crashkernel_settings(host: Host) -> list[str]:
    """GRUB config files other than ours that already set crashkernel=."""
    found = []
    candidates = ["/etc/default/grub"]
    folder = host.path("/etc/default/grub.d")
    if folder.is_dir():
        candidates += sorted(f"/etc/default/grub.d/{p.name}" for p in folder.glob("*.cfg"))
    for path in candidates:
        if path != GRUB_DROPIN and "crashkernel=" in (host.read_text(path) or ""):
            found.append(path)
    return found


def bootloader_changes(host: Host, value: Crashkernel) -> Changes:
    """The files and commands that put crashkernel=*value* on the next boot's command line."""
    changes = Changes()
    uses_grub_d = (
        host.path("/etc/default/grub").is_file() or host.path("/etc/default/grub.d").is_dir()
    )
    if uses_grub_d and shutil.which("update-grub"):
        changes.files.append(file_change(host, GRUB_DROPIN, grub_dropin_text(value)))
        changes.commands.append(["update-grub"])
        for path in other_crashkernel_settings(host):
            changes.notes.append(
                f"{path} also sets crashkernel=; the kernel uses the last "
                f"one, which is ours ({GRUB_DROPIN} is read after it)"
            )
    elif shutil.which("grubby"):
        changes.commands.append(["grubby", "--update-kernel=ALL", f"--args=crashkernel={value}"])
    else:
        raise ServiceError(
            f"no supported boot loader tool (update-grub with /etc/default/grub, "
            f"or grubby): add crashkernel={value} to the kernel command line "
            "yourself, or pass --no-bootloader"
        )
    return changes


def bootloader_revert(host: Host) -> Changes:
    """Undo :func:`bootloader_changes`: our drop-in removed and GRUB's config made again
    (grubby machines: ``crashkernel=`` removed from every entry).  A drop-in that is not
    ours (its first line is not kdumpkit's) is left alone."""
    changes = Changes()
    text = host.read_text(GRUB_DROPIN)
    if text is not None:
        if not text.startswith(DROPIN_MARK):
            changes.notes.append(f"{GRUB_DROPIN} was not written by kdumpkit: left alone")
            return changes
        changes.files.append(file_change(host, GRUB_DROPIN, None))
        changes.commands.append(["update-grub"])
    elif shutil.which("grubby") and not host.path("/etc/default/grub").is_file():
        changes.commands.append(["grubby", "--update-kernel=ALL", "--remove-args=crashkernel"])
    return changes
