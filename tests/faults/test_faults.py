"""The short fault-injection suite (part of `make test`): a few
representative cases per command, picked by the call they fault (syscall
and the file it touches) rather than by number, so they survive code
changes that add or remove other calls. The full sweep over every call is
`make faults` (tests/faults/sweep.py, docs/faults.md).

Cases that today's code fails are marked `xfail(strict=True)` with the
issue (and item) they show: when it is fixed the case passes, strict
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

# known: None (must pass) or the issue the case shows while it is not
# fixed (every issue 13 item the short cases showed is fixed now; those
# cases stay as regression tests, with the item in a comment).
SHORT = [
    # cut: killed before the truncation: the file is whole, its tail saved.
    Case("cut", "ftruncate", r"^var/Data\.fs$", "SIGKILL", None),
    Case("cut", "rename", r"Data\.fs\.tail-", "EIO", None),
    Case("cut", "copy_file_range", r"Data\.fs\.tail-", "ENOSPC", None),
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

    # blob directories (issue 9). cut: killed between two moves to the
    # tail (one file moved, one not); an I/O error moving the last one;
    # the tail's .layout cannot be written (it was left empty for ever,
    # before it was written through a temporary file).
    Case("cut", "rename", r"^var/blobs/.* -> var/blobs\.tail-", "SIGKILL", None, which=1),
    Case("cut", "rename", r"^var/blobs/.* -> var/blobs\.tail-", "EIO", None, which=-1),
    Case("cut", "write", r"^var/blobs\.tail-TID/\.\.layout\.tmp-", "EIO", None),
    # backup: a full disk copying into the pool; killed at a pool file's
    # link, and writing the run's manifest; the one syncfs before the
    # links fails.
    Case("backup-full", "write", r"^repo/blobs/pool/.*\.blob\.tmp-", "ENOSPC", None),
    Case("backup-incremental", "linkat", r"^repo/blobs/pool/.*\.tmp-.* -> .*\.blob$", "SIGKILL",
         None),
    Case("backup-incremental", "syncfs", r"^repo/blobs$", "EIO", None),
    Case("backup-gzip", "write", r"^repo/blobs/runs/\.STAMP\.blobs\.tmp-", "SIGKILL", None),
    # restore: the built directory's temporary name cannot be created;
    # killed at its rename into place.
    Case("restore-new", "mkdir", r"^out/var/\.blobs\.restore-PID-N$", "EIO", None),
    Case("restore-new", "rename", r"\.blobs\.restore-PID-N -> out/var/blobs$", "SIGKILL", None),
    # restore --force: the rename into place fails after the old one went
    # aside (the live blob directory is missing); the directory fsync after
    # it fails (the old Data.fs is put back beside the restored blobs).
    # (both were not undone: the install did not say how far it got)
    Case("restore-force", "rename", r"\.blobs\.restore-PID-N -> var/blobs$", "EIO", None),
    # (the second fsync of var/: the first follows the Data.fs's rename)
    Case("restore-force", "fsync", r"^var$", "EIO", None, which=1),
    # restore --incremental: killed before a new file's rename into the
    # standby's blob directory.
    Case("restore-incremental", "rename", r"\.tmp-restore-PID -> out/var/blobs/", "SIGKILL", None,
         which=-1),
]


def _param(c):
    assert bool(c.known) == bool(c.expect), c
    marks = ([pytest.mark.xfail(strict=True, raises=PromiseBroken, reason=c.known)]
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


BLOB_PATHS = {
    "cut": r"^var/blobs(\.tail-TID)?/",
    "backup": r"^repo/blobs/(pool|runs)/",
    "restore-new": r"^out/var/\.blobs\.restore-PID-N/",
    "restore-force": r"^var/\.blobs\.restore-PID-N/",
    "restore-incremental": r"^out/var/blobs/.*\.tmp-restore-PID",
}


@pytest.mark.parametrize("name", sorted(faultlib.BY_NAME))
def test_enumeration_reaches_the_blobs(calls, name):
    """Every command's enumeration holds changing calls on blob files (the
    sweep would otherwise never fault a blob step)."""
    rx = BLOB_PATHS.get(name) or BLOB_PATHS[name.split("-")[0]]
    hits = [c for c in calls(name) if c.changing and re.search(rx, c.desc)]
    assert {c.syscall for c in hits} & {"write", "rename", "linkat"}, calls(name)


def _chmod_w(path):
    os.chmod(path, 0o644)


def _blob(world, name, number):
    """The relative bushy path of blob `name`'s file of transaction `number`."""
    return "/".join(faultlib.bushy(world.blob_oid[name], world.tids[number - 1]))


def _names(problems):
    return " | ".join("%s: %s" % p for p in problems)


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

    # Blob directories. backup: the live directory untouched, pool files
    # and manifests whole, every manifest's files there.
    site = world.fresh("T")
    faultlib.ok(site, "backup")
    assert backup.state(world, site) == [] and backup.done(world, site, faulted=False) == []
    j = lambda *a: os.path.join(site, *a)  # noqa: E731
    live = j("var/blobs", _blob(world, "b0", 1))
    _chmod_w(live)
    with open(live, "ab") as f:
        f.write(b"!")
    assert "backup changed the blob directory" in _names(backup.state(world, site))
    shutil.copy(os.path.join(world.T, "var/blobs", _blob(world, "b0", 1)), live)
    os.chmod(live, 0o444)
    assert backup.state(world, site) == []
    # a complete pool file no manifest names is allowed; a partial one never
    spare = j("repo/blobs/pool", _blob(world, "b2", 10))
    os.makedirs(os.path.dirname(spare), exist_ok=True)
    shutil.copy(os.path.join(world.T, "var/blobs", _blob(world, "b2", 10)), spare)
    assert backup.state(world, site) == []
    with open(spare, "r+b") as f:
        f.truncate(3)
    assert "holds 3 bytes, not the" in _names(backup.state(world, site))
    os.remove(spare)
    new = j("repo/blobs/pool", _blob(world, "b3", 9))
    _chmod_w(new)
    with open(new, "r+b") as f:
        f.truncate(5)
    got = _names(backup.state(world, site))
    assert "holds 5 bytes" in got and "does not match its entry" in got, got
    os.remove(new)
    assert "names pool file oid4/t9.blob, which does not exist" in _names(
        backup.state(world, site))
    pooled = j("repo/blobs/pool", _blob(world, "b1", 8))
    _chmod_w(pooled)
    assert "pool file oid2/t8.blob is writable (mode 644)" in backup.done(world, site)
    runs = sorted(os.listdir(j("repo/blobs/runs")))
    with open(j("repo/blobs/runs", runs[-1]), "r+b") as f:
        f.truncate(os.path.getsize(j("repo/blobs/runs", runs[-1])) - 4)
    assert "is not whole" in _names(backup.state(world, site))
    os.remove(j("repo/blobs/runs", runs[-1]))
    assert "has no blob run" in _names(backup.state(world, site))
    assert any("no whole blob run" in d for d in backup.done(world, site))
    shutil.rmtree(site)

    # cut: files above the point in the blob directory or the tail, whole;
    # files at or below it untouched; the tail's .layout whole.
    site = world.fresh("T")
    faultlib.ok(site, "cut")
    assert cut.state(world, site) == [] and cut.done(world, site, faulted=False) == []
    tail = os.path.join(site, "var", world.tail_name)
    moved = os.path.join(tail, _blob(world, "b2", 10))
    with open(moved, "rb") as f:
        keep = f.read()
    os.remove(moved)
    assert "removed bytes kept: oid3/t10.blob is in neither" in _names(cut.state(world, site))
    with open(moved, "wb") as f:
        f.write(keep[:7])
    os.chmod(moved, 0o444)
    assert "nothing partial: oid3/t10.blob in the tail is not" in _names(cut.state(world, site))
    with open(os.path.join(tail, ".layout"), "wb"):
        pass
    assert "the tail's .layout holds b''" in _names(cut.state(world, site))
    below = os.path.join(site, "var/blobs", _blob(world, "b3", 9))
    os.remove(below)
    assert "data intact: var/blobs/oid4/t9.blob, at or below the point, is gone" in _names(
        cut.state(world, site))
    assert any("var/blobs is not a clean cut's" in d for d in cut.done(world, site))
    shutil.rmtree(site)

    # restore --force: the old blob directory kept; the live one old or
    # restored; a failed run all or nothing.
    site = world.fresh("R")
    faultlib.ok(site, "restore", "--force")
    assert force.state(world, site) == [] and force.done(world, site, faulted=False) == []
    assert force.failed(world, site) == []
    var = os.path.join(site, "var")
    kept = [n for n in os.listdir(var) if n.startswith("blobs.before-restore-")]
    assert len(kept) == 1, kept
    shutil.move(os.path.join(var, kept[0]), os.path.join(site, "elsewhere"))
    assert [p for p, _ in force.state(world, site)] == ["removed bytes kept"]
    assert "the replaced blob directory is not kept" in force.done(world, site)
    shutil.move(os.path.join(site, "elsewhere"), os.path.join(var, kept[0]))
    old = [n for n in os.listdir(var) if faultlib.KEPT_NAME.match(n)][0]
    os.rename(os.path.join(var, "Data.fs"), os.path.join(site, "restored.fs"))
    shutil.copy(os.path.join(var, old), os.path.join(var, "Data.fs"))
    assert "all or nothing: the failed restore left var/Data.fs old and var/blobs restored" in \
        _names(force.failed(world, site))
    os.rename(os.path.join(site, "restored.fs"), os.path.join(var, "Data.fs"))
    b = os.path.join(var, "blobs", _blob(world, "b1", 8))
    _chmod_w(b)
    with open(b, "ab") as f:
        f.write(b"!")
    assert "data intact: var/blobs is neither the old blob directory nor the restored one" in \
        _names(force.state(world, site))
    shutil.rmtree(site)

    # restore elsewhere: absent or exactly the restored directory.
    new_out = faultlib.BY_NAME["restore-new"]
    site = world.fresh("R")
    faultlib.ok(site, "restore", "--output-dir", "out")
    assert new_out.state(world, site) == [] and new_out.done(world, site, faulted=False) == []
    with open(faultlib.sp(site, "out/var/blobs/extra"), "wb") as f:
        f.write(b"x")
    assert "out/var/blobs is neither absent nor the restored blob directory" in _names(
        new_out.state(world, site))
    assert any("not the restored blob directory" in d for d in new_out.done(world, site))
    shutil.rmtree(site)

    # restore --incremental: the standby loses no file; what it gains is
    # whole; once visible, every file is there.
    inc = faultlib.BY_NAME["restore-incremental"]
    site = world.fresh("S")
    faultlib.ok(site, *inc.args)
    assert inc.state(world, site) == [] and inc.done(world, site, faulted=False) == []
    had = faultlib.sp(site, "out/var/blobs/" + _blob(world, "b0", 1))
    os.remove(had)
    got = _names(inc.state(world, site))
    assert "the standby's out/var/blobs/oid1/t1.blob is gone" in got and \
        "visible but its blob files oid1/t1.blob are missing" in got, got
    added = faultlib.sp(site, "out/var/blobs/" + _blob(world, "b3", 9))
    _chmod_w(added)
    with open(added, "r+b") as f:
        f.truncate(1)
    assert "oid4/t9.blob is not a whole file of the run" in _names(inc.state(world, site))
    shutil.rmtree(site)
