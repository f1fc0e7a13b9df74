"""``kdumpkit info DUMP... [--json]``: what a dump file is and what it holds."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

import numpy as np

from kdumpkit.cli.output import warn_damage
from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError, DumpFormatError
from kdumpkit.kernel.kallsyms import (
    KallsymsError,
    KallsymsTable,
    found_kallsyms,
    kallsyms,
    missing_kallsyms_symbols,
)
from kdumpkit.kernel.vmcoreinfo_scan import open_kernel_dump

HELP = "describe a dump: format, kernel, CPUs, pages, VMCOREINFO"
MAIN_REGISTERS = ("rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "cs", "eflags")
#: VMCOREINFO keys shown in the text summary (--json gives every key).
SUMMARY_KEYS = (
    "OSRELEASE",
    "BUILD-ID",
    "PAGESIZE",
    "KERNELOFFSET",
    "NUMBER(phys_base)",
    "CRASHTIME",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument(
        "dumps", metavar="DUMP", nargs="+",
        help="dump files; the files of a --split set are described together",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="every fact as JSON")
    parser.add_argument(
        "--vmlinux", metavar="FILE",
        help="say where analysis given this file (as `crash --vmlinux`) takes symbols and types",
    )  # fmt: skip


def _iso(ts: int | None) -> str | None:
    if not ts:
        return None
    try:
        return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return None


def describe(dump: Dump) -> dict[str, Any]:
    """The facts ``info`` prints, as a JSON-serialisable dict."""
    hdr = dump.header
    vmci = dump.vmcoreinfo
    present = dump.present_bitmap()
    ram = dump.ram_bitmap()
    extra = dict(hdr.extra)
    try:
        crashtime = (vmci.crashtime if vmci else None) or hdr.timestamp
    except DumpFormatError as exc:  # a damaged CRASHTIME line: the header's time, said so
        warn_damage("info", [str(exc)])
        crashtime = hdr.timestamp
    info: dict[str, Any] = {
        "file": dump.name,
        "format": hdr.format,
        "flattened": bool(extra.pop("flattened", False)),
        "kernel_release": (vmci.osrelease if vmci else None) or hdr.utsname.get("release") or None,
        "machine": hdr.machine,
        "little_endian": hdr.little_endian,
        "page_size": hdr.page_size,
        "max_pfn": hdr.max_pfn,
        "crash_time": crashtime,
        "crash_time_utc": _iso(crashtime),
        "dump_level": hdr.dump_level,
        "compression": hdr.compression,
        "incomplete": hdr.incomplete,
        "pages": {
            "present": int(np.count_nonzero(present)),
            "ram": int(np.count_nonzero(ram)),
            "excluded": int(np.count_nonzero(ram & ~present)),
        },
        "utsname": hdr.utsname,
        "cpus": [
            {
                "cpu": p.cpu,
                "pid": p.pid,
                "registers": {r: p.registers[r] for r in MAIN_REGISTERS if r in p.registers},
            }
            for p in dump.prstatus
        ],
        "notes": [{"name": n.name, "type": n.type, "size": len(n.desc)} for n in dump.notes],
        "split": extra.pop("split", []),
        "header": {k: v for k, v in extra.items() if k != "segments"},
        "vmcoreinfo": vmci.typed() if vmci else None,
    }
    if "segments" in extra:
        info["segments"] = extra["segments"]
    if vmci is not None:
        info["sources"] = sources(dump)
    return info


def sources(dump: Dump) -> dict[str, str]:
    """Where analysis without a vmlinux takes symbols, types and unwind tables from
    (``--vmlinux`` replaces them with a System.map's or a vmlinux's symbols and DWARF)."""
    vmci = dump.vmcoreinfo
    assert vmci is not None
    table: KallsymsTable | None = None
    symbols = "none"
    try:
        table = kallsyms(dump)
    except DumpError as exc:
        symbols = f"none: kallsyms is corrupt ({exc})"
    if table is not None and not missing_kallsyms_symbols(vmci):
        symbols = f"kallsyms, located by VMCOREINFO ({len(table)} symbols)"
    elif table is not None:
        tables = found_kallsyms(dump).tables
        symbols = (
            f"kallsyms, found by scan at {tables.token_table:#x} "
            f"({len(table)} symbols, {tables.layout} addresses)"
        )
    elif missing_kallsyms_symbols(vmci):
        try:
            found_kallsyms(dump)
        except KallsymsError as exc:
            symbols = f"none in the dump ({exc}): give a System.map or vmlinux"
    if table is None:
        unknown = "not found: its place in memory comes from the symbols"
        return {"symbols": symbols, "types": unknown, "unwind": unknown}
    return {
        "symbols": symbols,
        "types": _span(table, "__start_BTF", "__stop_BTF", "BTF")
        or "no BTF in the dump (built without CONFIG_DEBUG_INFO_BTF?): give the vmlinux "
        "with DWARF (Debian: linux-image-RELEASE-dbg)",
        "unwind": _span(table, "__start_orc_unwind_ip", "__stop_orc_unwind_ip", "ORC")
        or "no ORC tables found: frame pointers",
    }


def given_file_sources(path: str) -> dict[str, str]:
    """What a ``--vmlinux`` file replaces: a vmlinux with DWARF gives symbols and types,
    a System.map or a stripped vmlinux gives symbols (types still from BTF)."""
    from kdumpkit.analyze.program import debug_file_kind

    kind = debug_file_kind(path)
    if kind == "dwarf":
        return {"symbols": f"DWARF vmlinux {path}", "types": f"DWARF vmlinux {path}"}
    if kind == "symtab":
        return {"symbols": f"ELF symbol table of {path}"}
    from kdumpkit.debuginfo.symbols import debian_stub_system_map

    if debian_stub_system_map(path):
        return {"symbols": f"{path} is Debian's placeholder System.map: not usable"}
    return {"symbols": f"System.map {path}"}


def _span(table: KallsymsTable | None, start: str, stop: str, what: str) -> str | None:
    """``WHAT in memory at ADDRESS (N bytes)`` when ``table`` has both symbols."""
    if table is None:
        return None
    begin, end = table.lookup(start), table.lookup(stop)
    if begin is None or end is None or end <= begin:
        return None
    return f"{what} in memory at {begin:#x} ({end - begin} bytes)"


def _format_text(info: dict[str, Any]) -> str:
    lines = [f"{info['file']}:"]
    fmt = info["format"] + (" (flattened)" if info["flattened"] else "")
    rows = [
        ("format", fmt),
        ("kernel", info["kernel_release"] or "unknown"),
        ("machine", f"{info['machine']}, {'little' if info['little_endian'] else 'big'}-endian"),
        ("page size", info["page_size"]),
        ("crash time", info["crash_time_utc"] or "unknown"),
        ("dump level", "unknown" if info["dump_level"] is None else info["dump_level"]),
        ("compression", info["compression"] or "none"),
        ("incomplete", "yes" if info["incomplete"] else "no"),
        (
            "pages",
            f"{info['pages']['present']} present, {info['pages']['ram']} RAM, "
            f"{info['pages']['excluded']} excluded (max pfn {info['max_pfn']:#x})",
        ),
    ]
    for part in info["split"]:
        rows.append(
            ("split file", f"{part['file']}: pfn {part['start_pfn']:#x}..{part['end_pfn']:#x}")
        )
    header = info["header"]
    if "header_version" in header:
        rows.append(("header version", header["header_version"]))
    if header.get("phys_base") is not None:
        rows.append(("phys_base", f"{header['phys_base']:#x}"))
    if header.get("qemu"):
        rows.append(("written by", "QEMU (utsname and phys_base are not the kernel's)"))
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append(f"  CPUs ({len(info['cpus'])}):")
    for cpu in info["cpus"]:
        regs = " ".join(
            f"{r}={cpu['registers'][r]:#018x}"
            for r in ("rip", "rsp", "rbp")
            if r in cpu["registers"]
        )
        lines.append(f"    cpu {cpu['cpu']}: pid {cpu['pid']} {regs}".rstrip())
    vmci = info["vmcoreinfo"]
    if vmci is None:
        lines.append("  VMCOREINFO: none")
    else:
        where = info["header"].get("vmcoreinfo_source")
        found = f", found in {where} at {info['header']['vmcoreinfo_paddr']:#x}" if where else ""
        lines.append(f"  VMCOREINFO: {len(vmci)} keys{found}")
        for key in SUMMARY_KEYS:
            if key in vmci:
                value = vmci[key]
                shown = f"{value:#x}" if key == "KERNELOFFSET" and isinstance(value, int) else value
                lines.append(f"    {key}={shown}")
    for what, where in info.get("sources", {}).items():
        lines.append(f"  {what}: {where}")
    return "\n".join(lines)


def _open_all(paths: list[str]) -> list[Dump]:
    """One dump per file, except that the files of a --split set open as one dump."""
    if len(paths) > 1:
        try:
            return [open_kernel_dump(paths)]
        except DumpFormatError as exc:
            if "not a --split set" not in str(exc) and "no KDUMP signature" not in str(exc):
                raise
    dumps: list[Dump] = []
    try:
        for path in paths:
            dumps.append(open_kernel_dump(path))
    except BaseException:
        for dump in dumps:
            dump.close()
        raise
    return dumps


def run(args: argparse.Namespace) -> int:
    """Describe each dump."""
    dumps = _open_all(args.dumps)
    try:
        infos = [describe(d) for d in dumps]
        if args.vmlinux:
            for info in infos:
                if "sources" in info:
                    info["sources"].update(given_file_sources(args.vmlinux))
    finally:
        for dump in dumps:
            dump.close()
    if args.json:
        json.dump(infos if len(infos) > 1 else infos[0], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n\n".join(_format_text(i) for i in infos))
    return 0
