"""The facts layer: what the dumped kernel says, as typed records, shared by the
crash-compatible commands and the triage report.

One module per kernel concept, in drgn's helpers' manner -- plain functions named
after the kernel's own names, each returning a value or a dataclass:

* :mod:`.cpus` -- the CPUs in the dump and the task each ran;
* :mod:`.tasks` -- the task list, task states, the panic task, process entries;
* :mod:`.clock` -- HZ, jiffies, uptime, the wall clock at the crash;
* :mod:`.log` -- printk records, the panic line of the log;
* :mod:`.taint` -- the kernel's taint mask and letters;
* :mod:`.modules` -- loaded modules and their address ranges;
* :mod:`.memory` -- RAM, a task's resident pages;
* :mod:`.symbols` -- kernel symbols as crash names addresses;
* :mod:`.system` -- ``sys``'s summary (utsname, load, CPUs, memory, panic).

Nothing here formats text the way crash prints it: that is
:mod:`kdumpkit.analyze.crashformat`.  Nothing here imports a command.
"""
