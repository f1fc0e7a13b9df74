#!/usr/bin/env bash
# `make demo`: one real kdump cycle of Debian's 6.1 kernel under QEMU — kdumpkit load arms
# kdump, sysrq-c panics the guest, kdumpkit collect saves the dump in the capture kernel —
# then what kdumpkit reads from the saved dump: the panic line, the last log lines and the
# crashing task's backtrace.   Usage: demo.sh            (a new cycle, then show its dump)
#                                      demo.sh --show DUMP (only show an existing dump)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ "${1:-}" = --show ]; then
    dump=${2:?usage: demo.sh --show DUMP}
else
    out=.cache/testbed/demo
    rm -rf "$out"
    "$PY" testbed/vm.py cycle "${DEMO_KERNEL:-6.1}" --out "$out"
    dump=$(ls "$out"/share/*/dump.* 2>/dev/null | head -n1 || true)
    [ -n "$dump" ] || { echo "demo: no dump was saved (see $out/console.log)" >&2; exit 1; }
fi
kdumpkit() { "$PY" -m kdumpkit "$@"; }
has_verb() { [ -f "kdumpkit/cli/$1.py" ]; }

echo
echo "== kdumpkit info $dump"
kdumpkit info "$dump" | head -n 12
log=$(kdumpkit dmesg "$dump")
echo
echo "== the panic"
grep -m2 -E 'sysrq: Trigger a crash|Kernel panic' <<< "$log"
echo
echo "== the last kernel log lines before the panic"
sed -n '1,/Kernel panic - not syncing/p' <<< "$log" | tail -n 8
echo
if has_verb report; then
    echo "== kdumpkit report"
    kdumpkit report "$dump"
elif has_verb crash; then
    echo "== kdumpkit crash -c bt (the crashing task)"
    kdumpkit crash -c bt "$dump"
else
    echo "== (no kdumpkit report / crash verb yet: the backtrace from the log)"
    grep -A 30 -m1 'Call Trace:' <<< "$log" || true
fi
