"""The capture kernel's command line, built from the running one.

Start from /proc/cmdline; drop what must not reach the capture kernel (the
reservation itself, huge page pools it has no memory for, options we set ourselves,
and the init arguments after ``--``, which belong to the first system's init);
drop what the user names in ``[kexec] cmdline_remove``; add
``irqpoll nr_cpus=N reset_devices`` (N = the capture CPUs, 1 unless the reservation pays
for more, see plan.py) and the user's ``cmdline_append``.
"""

from __future__ import annotations

from collections.abc import Iterable

#: what the capture kernel needs: share no IRQ assumptions with the crashed kernel,
#: bring up only the CPUs it is given (memory is scarce), reset devices left mid-DMA
CAPTURE_PARAMS = ("irqpoll", "nr_cpus=1", "reset_devices")

#: dropped from the running command line (names; '-' and '_' are the same to the kernel)
DROPPED_PARAMS = (
    "crashkernel",  # the capture kernel reserves nothing
    "elfcorehdr",  # the kernel appends a fresh one when loading
    "hugepages",
    "hugepagesz",
    "default_hugepagesz",
    "hugetlb_cma",
    "cma",
    "kexec_jump_back_entry",
    "irqpoll",
    "nr_cpus",
    "maxcpus",
    "disable_cpu_apicid",  # set by plan.py when the capture kernel brings up several CPUs
    "reset_devices",  # set by CAPTURE_PARAMS
    "systemd.unit",  # replaced by the collect unit when it is installed
    "abm",  # Debian kdump-tools drops it too
)


def split_cmdline(cmdline: str) -> list[str]:
    """Split a kernel command line into parameters, keeping double-quoted values whole."""
    tokens: list[str] = []
    current: list[str] = []
    quoted = False
    for char in cmdline:
        if char == '"':
            quoted = not quoted
        if char.isspace() and not quoted:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        tokens.append("".join(current))
    return tokens


def param_name(token: str) -> str:
    """The parameter's name as the kernel compares it (dashes are underscores)."""
    return token.partition("=")[0].strip('"').replace("-", "_")


def capture_cmdline(
    running: str,
    remove: Iterable[str] = (),
    append: str = "",
    extra: Iterable[str] = (),
    cpus: int = 1,
) -> str:
    """The capture kernel's command line for a machine running with *running*.

    *remove* entries are parameter names (drop every occurrence) or exact
    ``name=value`` tokens (drop that one); *extra* is added before the user's *append*;
    *cpus* is the capture kernel's ``nr_cpus``.
    """
    tokens = split_cmdline(running)
    if "--" in tokens:
        tokens = tokens[: tokens.index("--")]
    names = {param_name(name) for name in DROPPED_PARAMS}
    exact: set[str] = set()
    for entry in remove:
        if "=" in entry:
            exact.add(entry)
        else:
            names.add(param_name(entry))
    kept = [t for t in tokens if param_name(t) not in names and t not in exact]
    user = split_cmdline(append)
    # a parameter the user appends replaces ours of the same name (nr_cpus=2 for nr_cpus=1)
    overridden = {param_name(t) for t in user}
    params = [f"nr_cpus={cpus}" if param_name(t) == "nr_cpus" else t for t in CAPTURE_PARAMS]
    ours = [t for t in [*params, *extra] if param_name(t) not in overridden]
    return " ".join(_drop_repeats([*kept, *ours, *user]))


def _drop_repeats(tokens: list[str]) -> list[str]:
    """Drop exact repeats of a parameter, keeping the last (its position is what counts)."""
    last = {token: index for index, token in enumerate(tokens)}
    return [token for index, token in enumerate(tokens) if last[token] == index]


def user_nr_cpus(append: str) -> int | None:
    """The ``nr_cpus=`` the user appends (it wins over ours), if any."""
    values = [t.partition("=")[2] for t in split_cmdline(append) if param_name(t) == "nr_cpus"]
    return int(values[-1]) if values and values[-1].isdigit() and int(values[-1]) > 0 else None
