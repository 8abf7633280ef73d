"""The short fault-injection suite (part of `make test`): a few
representative cases per command, picked by the call they fault (syscall
and the file it touches) rather than by number, so they survive code
changes that add or remove other calls. The full sweep over every call is
`make faults` (tests/faults/sweep.py, docs/faults.md).

Cases that today's code fails are marked `xfail(strict=True)` with the
issue 13 item they show: when the item is fixed the case passes, strict
xfail turns that into a failure, and the mark is removed with the fix.
Only the expected breakage (`expect`, a pattern of the case's report
line) counts as the expected failure: a known case that does not show it,
or a harness error (no such call, an injection that missed), fails
outright.
"""

import collections
import os
import re
import shutil

import pytest

import faultlib

Case = collections.namedtuple("Case", "command syscall match fault known which expect")
Case.__new__.__defaults__ = (0, None)


class PromiseBroken(AssertionError):
    """A case broke the promises its xfail mark expects it to break."""

# known: None (must pass) or the issue 13 item the case shows while it is
# not fixed (every item the short cases showed is fixed now; the cases stay
# as regression tests, with the item in a comment).
SHORT = [
    # cut: killed before the truncation: the file is whole, its tail saved.
    Case("cut", "ftruncate", r"^var/Data\.fs$", "SIGKILL", None),
    Case("cut", "rename", r"\.tail-", "EIO", None),
    Case("cut", "copy_file_range", r"\.tail-", "ENOSPC", None),
    # the fsync after the truncation fails: no stale index beside the cut
    # file, and the rerun writes the fresh one (item 4).
    Case("cut", "fsync", r"^var/Data\.fs$", "EIO", None),
    # the new index cannot be written: a failure, and the rerun writes it (item 4).
    Case("cut", "write", r"\.Data\.fs\.index\.tmp", "ENOSPC", None),
    # backup
    Case("backup-full", "write", r"\.fs\.tmp-", "ENOSPC", None),
    Case("backup-full", "linkat", r"\.fs\.tmp-.* -> repo/STAMP\.fs$", "SIGKILL", None),
    Case("backup-incremental", "unlink", r"\.deltafs\.tmp-", "EIO", None),
    Case("backup-incremental", "write", r"\.deltafs\.tmp-", "SIGKILL", None),
    Case("backup-incremental", "fsync", r"^repo$", "SIGKILL", None),
    Case("backup-incremental", "rename", r"\.dat\.tmp-", "SIGKILL", None),
    Case("backup-incremental", "openat", r"^status\.tid \(read\)$", "EIO", None),
    Case("backup-gzip", "copy_file_range", r"status-copies", "EIO", None),
    Case("backup-gzip", "rename", r"timestamps\.log$", "SIGKILL", None),
    # restore
    Case("restore-new", "write", r"out/var/\.Data\.fs\.tmp-", "ENOSPC", None),
    Case("restore-new", "rename", r"out/var/\.Data\.fs\.tmp-.* -> out/var/Data\.fs$", "SIGKILL",
         None),
    Case("restore-new", "fsync", r"^out/var$", "EIO", None),
    # the look at the old file just before it is kept: an error, never
    # taken for "absent" (item 0).
    Case("restore-force", "statx", r"^var/Data\.fs$", "EIO", None, which=-1),
    Case("restore-force", "linkat", r"before-restore", "SIGKILL", None),
    Case("restore-force", "rename", r"\.Data\.fs\.tmp-.* -> var/Data\.fs$", "EIO", None),
    # restore --incremental: a full disk while appending (the standby goes
    # back as it was); killed at the last fsync of the standby (after its
    # one status byte: visible, its index not yet written).
    Case("restore-incremental", "pwrite64", r"^out/var/Data\.fs$", "ENOSPC", None),
    Case("restore-incremental", "fsync", r"^out/var/Data\.fs$", "SIGKILL", None, which=-1),
    Case("restore-incremental", "fsync", r"^out/var/Data\.fs$", "SIGKILL", None),
]


def _param(c):
    assert bool(c.known) == bool(c.expect), c
    marks = ([pytest.mark.xfail(strict=True, raises=PromiseBroken, reason="issue 13 " + c.known)]
             if c.known else [])
    name = "%s-%s-%s-%s" % (c.command, c.syscall, re.sub(r"\W+", "_", c.match).strip("_"),
                            c.fault)
    return pytest.param(c, id=name, marks=marks)


def pick(calls, syscall, match, which=0):
    """The `which`-th enumerated call of `syscall` whose files match `match`."""
    found = [c for c in calls if c.syscall == syscall and re.search(match, c.desc)]
    if found:
        return found[which]
    raise AssertionError("no %s call matching %r in the enumeration: the command changed; "
                         "update the case (calls: %s)" % (
                             syscall, match, [repr(c) for c in calls if c.syscall == syscall]))


@pytest.mark.parametrize("case", [_param(c) for c in SHORT])
def test_fault(world, calls, case):
    call = pick(calls(case.command), case.syscall, case.match, case.which)
    # More room than the sweep's: a strict xfail must not pass because a
    # slow machine let the rerun slip into the next second.
    r = faultlib.run_case(world, faultlib.BY_NAME[case.command], call, case.fault, room=0.9)
    assert r.landed, "the injection did not land on the planned call: " + r.line()
    if r.broken and case.expect and re.search(case.expect, r.line()):
        raise PromiseBroken(r.line())
    assert not r.broken, r.line()


@pytest.mark.parametrize("name", sorted(faultlib.BY_NAME))
def test_enumeration_sees_the_writes(calls, name):
    """Guards the harness itself: every command's enumeration holds its
    writes, fsyncs and renames or links (an empty or broken trace parse
    would otherwise make every sweep pass)."""
    cs = calls(name)
    kinds = {c.syscall for c in cs if c.changing}
    assert {"fsync", "openat"} <= kinds and kinds & {"rename", "linkat"}, kinds
    assert len([c for c in cs if c.changing]) >= 10, cs


def test_the_checks_can_fail(world):
    """A clean result passes every check, and each kind of damage the
    sweep looks for is caught."""
    cut = faultlib.BY_NAME["cut"]
    site = world.fresh("T")
    faultlib.ok(site, "cut")
    assert cut.state(world, site) == [] and cut.done(world, site, faulted=False) == []
    tail = [n for n in os.listdir(os.path.join(site, "var")) if faultlib.TAIL_NAME.match(n)]
    with open(os.path.join(site, "var", tail[0]), "r+b") as f:
        f.truncate(10)
    assert [p for p, _ in cut.state(world, site)] == ["nothing partial", "removed bytes kept"]
    shutil.copy(os.path.join(world.T, "var/Data.fs.index"), os.path.join(site, "var"))
    assert any("stale index" in d for _, d in cut.state(world, site))
    shutil.rmtree(site)

    backup = faultlib.BY_NAME["backup-incremental"]
    site = world.fresh("T")
    faultlib.ok(site, "backup")
    assert backup.state(world, site) == [] and backup.done(world, site, faulted=False) == []
    shutil.copy(os.path.join(site, "repo", world.T_chain[0]),
                os.path.join(site, "repo", "2000-01-01-00-00-00.fs"))
    assert any("listed by no .dat" in d for _, d in backup.state(world, site))
    os.remove(os.path.join(site, "repo", "2000-01-01-00-00-00.fs"))
    os.remove(os.path.join(site, "repo", world.T_chain[-1]))
    assert any("does not exist" in d for _, d in backup.state(world, site))
    shutil.rmtree(site)

    force = faultlib.BY_NAME["restore-force"]
    site = world.fresh("R")
    faultlib.ok(site, "restore", "--force")
    assert force.state(world, site) == [] and force.done(world, site, faulted=False) == []
    for n in os.listdir(os.path.join(site, "var")):
        if faultlib.KEPT_NAME.match(n):
            os.remove(os.path.join(site, "var", n))
    assert [p for p, _ in force.state(world, site)] == ["removed bytes kept"]
    shutil.rmtree(site)
