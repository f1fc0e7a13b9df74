"""Commands that need no types (sym, rd, dis) and the session's parsing and error
reporting, on a bare drgn program over the real 6.1 dump: memory and kallsyms only."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

drgn = pytest.importorskip("drgn")

from kdumpkit.analyze.session import Session, split_command_line  # noqa: E402
from kdumpkit.dump.errors import PageNotPresentError  # noqa: E402
from kdumpkit.dump.open import open_dump  # noqa: E402


def bare_program(path: Path) -> drgn.Program:
    """A program with the dump's memory and VMCOREINFO kallsyms, and no types."""
    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    dump = open_dump(path)
    prog = drgn.Program(
        drgn.Platform(
            drgn.Architecture.X86_64,
            drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN,
        )
    )
    prog.set_linux_kernel_custom(dump.vmcoreinfo.raw, False)
    page_size = dump.page_size

    @functools.lru_cache(maxsize=4096)
    def page(pfn: int) -> bytes:
        return dump.read_page(pfn)

    def read(address: int, count: int, offset: int, physical: bool) -> bytes:
        out = bytearray()
        while count:
            pfn, start = divmod(address, page_size)
            chunk = min(count, page_size - start)
            try:
                out += page(pfn)[start : start + chunk]
            except PageNotPresentError:
                raise drgn.FaultError("page not in the dump", address) from None
            address += chunk
            count -= chunk
        return bytes(out)

    for start, end in dump.present_ranges():
        prog.add_memory_segment(start * page_size, (end - start) * page_size, read, True)
    prog.register_symbol_finder("kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
    prog.cache["kdumpkit.dump"] = dump
    return prog


@pytest.fixture(scope="module")
def session(kdump61: Path) -> Session:
    return Session(bare_program(kdump61))


def test_sym_both_ways(session: Session) -> None:
    # Addresses from crash 9.0.2's bt.txt on this dump.
    assert session.run_to_text("sym panic") == "ffffffff84bccf31 (T) panic\n"
    assert session.run_to_text("sym ffffffff84bcd06e") == "ffffffff84bcd06e (T) panic+317\n"
    assert session.run_to_text("sym 0xffffffff848a8a06") == (
        "ffffffff848a8a06 (t) sysrq_handle_crash+22\n"
    )
    listing = session.run_to_text("sym -q sysrq_handle_cr")
    assert "ffffffff848a89f0 (t) sysrq_handle_crash\n" in listing


def test_sym_errors_are_one_line(session: Session) -> None:
    assert session.run_to_text("sym no_such_symbol_xyz") == (
        "sym: no_such_symbol_xyz: symbol not found\n"
    )


def test_rd_matches_the_banner(session: Session, fx61: Path) -> None:
    banner = (fx61 / "crash-9.0.2" / "log.txt").read_text().splitlines()[0].split("] ", 1)[1]
    text = session.run_to_text("rd -a linux_banner")
    joined = "".join(line.split(":  ", 1)[1] for line in text.splitlines())
    # crash stops at the banner's newline (its first unprintable byte), mid-line
    assert joined == banner and not text.endswith("\n")
    words = session.run_to_text("rd linux_banner 2")
    assert re.fullmatch(
        r"ffffffff8531ffe0:  65762078756e694c 2e36206e6f697372   "
        r"Linux version 6\.\n",
        words,
    )
    assert session.run_to_text("rd -32 linux_banner 1").startswith("ffffffff8531ffe0:  756e694c")


def test_rd_physical_and_faults(session: Session) -> None:
    assert session.run_to_text("rd 0 2") == (
        'rd: invalid kernel virtual address: 0  type: "64-bit KVADDR"\n'
    )
    assert session.run_to_text("rd -p 1000 2").startswith("            1000:  0000000000000000")


def test_dis_function_and_reverse(session: Session) -> None:
    text = session.run_to_text("dis sysrq_handle_crash")
    lines = text.splitlines()
    assert lines[0].startswith("0xffffffff848a89f0 <sysrq_handle_crash>:")
    # the call to panic whose return address crash's bt shows as frame #3
    assert "0xffffffff848a8a01 <sysrq_handle_crash+17>: call   0xffffffff84bccf31 <panic>" in lines
    reverse = session.run_to_text("dis -r ffffffff848a8a06").splitlines()
    assert reverse[-1].startswith("0xffffffff848a8a06 <sysrq_handle_crash+22>:")
    assert session.run_to_text("dis panic 3").count("\n") == 3


def test_session_errors_and_usage(session: Session) -> None:
    assert session.run_to_text("nosuchcmd") == "crash: command not found: nosuchcmd\n"
    usage = session.run_to_text("rd")
    assert usage.startswith("rd: the following arguments are required")
    assert "Usage: rd" in usage
    assert session.run_to_text("rd -q x").startswith("rd: unrecognized arguments")


def test_command_line_split() -> None:
    line = split_command_line("sym -q 'a|b' | grep x")
    assert line.words == ["sym", "-q", "a|b"]
    assert line.pipe == "grep x"
    line = split_command_line("log >> /tmp/out")
    assert (line.words, line.redirect, line.append) == (["log"], "/tmp/out", True)


def test_redirect_writes_the_file(session: Session, tmp_path: Path) -> None:
    target = tmp_path / "sym.txt"
    assert session.run(f"sym panic > {target}") == 0
    assert target.read_text() == "ffffffff84bccf31 (T) panic\n"


def test_huge_requests_are_refused(session: Session) -> None:
    assert session.run_to_text("dis panic 100000000") == "dis: count 100000000 is too large\n"
    assert session.run_to_text("rd panic 100000000") == "rd: count 100000000 is too large\n"
    assert session.run_to_text("rd -8 panic 0") == "rd: invalid count: 0\n"


def test_log_without_types_reads_vmcoreinfo_layouts(session: Session, fx61: Path) -> None:
    # The bare program has no type for the printk ring buffer: VMCOREINFO's layouts serve.
    assert session.run_to_text("log") == (fx61 / "crash-9.0.2" / "log.txt").read_text()
    with_callers = (fx61 / "makedumpfile" / "dump-dmesg-1.7.8.txt").read_text()
    # crash prints the caller in the kernel's [%6s] field, makedumpfile in [%8s]
    with_callers = re.sub(
        r"^(\[[ 0-9.]+\] )\[ *([TC]\d+)\]",
        lambda m: f"{m[1]}[{m[2]:>6}]",
        with_callers,
        flags=re.MULTILINE,
    )
    assert session.run_to_text("log -c") == re.sub(
        r"^ {26}", " " * 24, with_callers, flags=re.MULTILINE
    )


def test_dis_annotates_rip_relative_and_rd_s_names_return_addresses(session: Session) -> None:
    # the instruction after panic's call to __crash_kexec (crash's bt frame #2 at panic+317)
    last = session.run_to_text("dis -r ffffffff84bcd06e").splitlines()[-2:]
    assert last[0].endswith("call   0xffffffff84364640 <__crash_kexec>")
    assert last[1].endswith("(%rip)        # 0xffffffff864ee840 <panic_print>")
    # the panic task's stack: return addresses crash's bt shows as frames #3 and #4
    text = session.run_to_text("rd -s ffffd186803f3a88 4")
    assert text == (
        "ffffd186803f3a88:  0000000000000000 sysrq_handle_crash+22 \n"
        "ffffd186803f3a98:  __handle_sysrq.cold+68 0000000000000002 \n"
    )


def test_shell_escape(session: Session, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert session.run(f"!touch {marker}") == 0
    assert marker.exists()
    assert session.run("!false") == 1


def test_long_output_goes_through_the_pager(session: Session, tmp_path: Path) -> None:
    import io
    import sys

    paged = tmp_path / "paged.txt"
    out = io.StringIO()
    pager = [sys.executable, "-c", f"import sys; open({str(paged)!r}, 'w').write(sys.stdin.read())"]
    paging = Session(session.prog, out=out, pager=pager)
    assert paging.run("sym panic") == 0  # short: printed
    assert out.getvalue() == "ffffffff84bccf31 (T) panic\n"
    assert paging.run("sym -q sysrq") == 0  # taller than a terminal: paged
    assert paged.read_text().count("\n") > 24 and out.getvalue().count("\n") == 1
