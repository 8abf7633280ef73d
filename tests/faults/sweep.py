"""The full fault-injection sweep (`make faults`; docs/faults.md).

For each command (cut, backup full / incremental / gzip, restore to a new
output / --force / --incremental), on a site with a blob directory,
enumerates its calls under strace, then injects EIO, ENOSPC and SIGKILL at
every file-changing call (EIO only at the calls that only look at a file:
statx, newfstatat, read-only openat), one case at a time, and checks every
promise after each (the Data.fs's and the blob directory's). Prints one line per case, then
"N cases, M broken promises" and the broken promises grouped by command,
promise and what broke. Exit status 1 when any promise broke.

    TIDSTORAGE_BIN=target/debug/tidstorage .venv/bin/python tests/faults/sweep.py \\
        [--command cut ...] [--fault EIO ...] [--report FILE]
"""

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import faultlib  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--command", action="append", choices=sorted(faultlib.BY_NAME),
                    help="only this command (repeatable)")
    ap.add_argument("--fault", action="append", choices=faultlib.FAULTS,
                    help="only this fault (repeatable)")
    ap.add_argument("--report", help="also write the report to this file")
    a = ap.parse_args()
    commands = [faultlib.BY_NAME[n] for n in a.command] if a.command else faultlib.COMMANDS
    faults = a.fault or faultlib.FAULTS

    out = open(a.report, "w") if a.report else None

    def emit(line=""):
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    t0 = time.monotonic()
    w = faultlib.make_world()
    results = []
    try:
        emit("# tidstorage fault-injection sweep, %s UTC, %s" % (
            time.strftime("%Y-%m-%d %H:%M", time.gmtime()), faultlib.bin_path()))
        emit("# command            call               file(s)                                      "
             "fault   exit      rerun     verdict")
        for c in commands:
            calls = faultlib.enumerate_calls(w, c)
            for call in calls:
                for f in faultlib.faults_for(call):
                    if f not in faults:
                        continue
                    r = faultlib.run_case(w, c, call, f)
                    results.append(r)
                    emit(r.line())
    finally:
        w.close()

    broken = sum(len(r.broken) for r in results)
    cases_broken = sum(1 for r in results if r.broken)
    missed = sum(1 for r in results if not r.landed)
    emit()
    emit("%d cases, %d broken promises (%d cases broke at least one; %d injections did not "
         "land where planned) in %.0f s" % (len(results), broken, cases_broken, missed,
                                             time.monotonic() - t0))
    emit()
    emit("# command            calls  cases  broken cases  broken promises")
    for c in commands:
        rs = [r for r in results if r.command is c]
        emit("%-20s %5d  %5d  %12d  %15d" % (
            c.name, len({(r.call.syscall, r.call.n) for r in rs}), len(rs),
            sum(1 for r in rs if r.broken), sum(len(r.broken) for r in rs)))
    groups = collections.OrderedDict()
    for r in results:
        for promise, detail in r.broken:
            key = (r.command.name, promise, faultlib.STAMP.sub("STAMP", detail))
            groups.setdefault(key, []).append("%s#%d %s" % (r.call.syscall, r.call.n, r.fault))
    if groups:
        emit()
        emit("# broken promises, grouped (command | promise | what broke | cases)")
        for (cmd, promise, detail), cases in groups.items():
            emit("%s | %s | %s | %d: %s" % (cmd, promise, detail, len(cases), ", ".join(cases)))
    if out:
        out.close()
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
