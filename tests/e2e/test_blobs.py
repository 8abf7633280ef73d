"""End to end with blob directories (issue 9): three ZEO 6 servers whose
FileStorage has a ``blob-dir`` (runzeo with a ZConfig file),
`tidstorage serve`, and a multi-database workload (blob_worker.py, through
tidstorage_client) creating, overwriting and deleting blobs in several
databases per transaction and undoing some of its changes with
``DB.undo``.

* Backups while it commits: ``--full``, incremental, a pack of one
  database through ZEO (commits going on) then an incremental, and a
  ``--no-server`` one. Every run is restored with ``--date RUN
  --output-dir`` into a fresh directory, and ZODB (``FileStorage(...,
  blob_dir=..., read_only=True)`` + ``ZODB.DB``) must read, in every
  database, exactly the blobs the workload had committed as of that
  database's restored TID; the restored set is coherent; each restored
  blob directory holds one file per blob record of its Data.fs, nothing
  above its last TID, an empty ``tmp/`` and a ``.layout``.
* A crash (kill -9 of the ZEO servers while a transaction sits between
  its per-database ``tpc_finish`` calls, its blob files in place on every
  database) and ``tidstorage cut``: every database opens with its blob
  directory and reads the blobs its own notes say it holds; no blob file
  above its Data.fs's last TID is left (they are in
  ``<blob_dir>.tail-<T hex>/``, same relative paths); ``tmp/`` is empty.
"""

import json
import os
import re
import sys
import time

import pytest

import tidharness
from blobsite import (BlobWorker, blob_cluster, content_problems, expected_at, read_db,
                      replay_notes, scan_blob_dir, under)
from test_backup import timestamps, tidstorage
from test_e2e import console_script, cut, start_daemon, wait_bootstrapped

THREADS = 3
NAMES = ["db0", "db1", "db2"]
REPORT = []


def write_config(tmp_path, servers, port):
    lines = [
        "[server]", 'address = "127.0.0.1"', "port = %d" % port,
        'status_file = "status.tid"', 'burst_period = "200ms"', "",
        "[bootstrap]", 'command = "%s"' % console_script(), 'retry = "1s"', "",
        "[backup]", 'timestamp_file = "backups/timestamps.log"',
        'status_file_backup_dir = "backups/status"', "",
    ]
    for i, s in enumerate(servers):
        (tmp_path / "backups" / ("zeo%d" % i)).mkdir(parents=True)
        lines += ["[[storage]]", "id = '%s'" % s.storage_id,
                  'data_fs = "%s"' % os.path.relpath(s.data_fs, str(tmp_path)),
                  'blob_dir = "%s"' % os.path.relpath(s.blob_dir, str(tmp_path)),
                  'repository = "backups/zeo%d"' % i, ""]
    path = tmp_path / "tidstorage.toml"
    path.write_text("\n".join(lines))
    return str(path)


# backup's line for a storage's blob run (src/cmd/backup.rs).
BLOBS_LINE = re.compile(r"  blobs: (\d+) file\(s\), \d+ bytes; (\d+) new \([^)]*\), (\d+) "
                        r"carried from the previous run(?:, (\d+) already in the repository)?$")


def blob_lines(text, servers):
    """{db name: the numbers of backup's `blobs:` line} per storage."""
    out, current = {}, None
    for line in text.splitlines():
        for name, s in zip(NAMES, servers):
            if line.startswith("storage %s: " % s.storage_id):
                current = name
        m = BLOBS_LINE.match(line)
        if m and current is not None:
            out[current] = dict(files=int(m.group(1)), new=int(m.group(2)),
                                carried=int(m.group(3)), pooled=int(m.group(4) or 0))
    return out


def partially_present(commits, present):
    """The logged transactions present ({db: seqs}) in some of their
    databases but not all: a coherent set has none."""
    return [c["seq"] for c in commits if len({c["seq"] in present[n] for n in c["tids"]}) > 1]


def pool_files(tmp_path, i):
    pool = tmp_path / "backups" / ("zeo%d" % i) / "blobs" / "pool"
    return sum(len(files) for _, _, files in os.walk(str(pool)))


def check_blob_dir(data_fs, blob_dir, what):
    """A restored or cut blob directory against ZODB's view of its Data.fs.
    Returns (ZODB's view, the scan). The scan is taken before ZODB opens
    the directory (opening creates .layout and tmp/ when missing)."""
    scan = scan_blob_dir(blob_dir)
    assert scan["layout"] == "bushy", "%s: .layout is %r" % (what, scan["layout"])
    assert scan["has_tmp"] and scan["tmp"] == [], "%s: tmp/ is %r" % (what, scan["tmp"])
    assert scan["other"] == [], "%s: unexpected files %r" % (what, scan["other"][:5])
    view = read_db(data_fs, blob_dir)
    assert view["missing"] == [], "%s: blob records without their file: %r" % (
        what, view["missing"][:5])
    assert view["unreadable"] == [], "%s: reachable blobs ZODB cannot read: %r" % (
        what, view["unreadable"][:5])
    above = sorted(p for p, tid in scan["blobs"].items() if tid > view["last"])
    assert above == [], "%s: blob files above the last TID %016x: %r" % (
        what, view["last"], above[:5])
    wanted = set(view["records"].values())
    extra = sorted(set(scan["blobs"]) - wanted)
    assert extra == [], "%s: %d blob file(s) no blob record names: %r" % (
        what, len(extra), extra[:5])
    return view, scan


def uncommitted_blob(server, cache):
    """Begins a transaction on `server` through a ZEO client of its own and
    stores one blob in it, then waits (bounded) until the server holds the
    blob data in its tmp/; returns the client storage (close it after the
    crash: closing it before would abort the transaction)."""
    from ZODB.Connection import TransactionMetaData
    from ZODB.utils import z64

    cache.mkdir()
    st = server.client_storage(blob_dir=str(cache), shared_blob_dir=False)
    txn = TransactionMetaData()
    st.tpc_begin(txn)
    oid = st.new_oid()
    path = str(cache / "upload.blob")
    with open(path, "wb") as f:
        f.write(b"never committed" * 100)
    st.storeBlob(oid, z64, b"not a pickle: never voted", path, "", txn)
    tmp = os.path.join(server.blob_dir, "tmp")
    tidharness.wait_until(lambda: os.listdir(tmp), 30, "the blob upload in %s" % tmp)
    return st


def pack_racing_undos(db, attempts=5):
    """``db.pack()`` while the workload commits, undos included. ZODB's
    FileStorage pack fails, leaving the file as it was, when an undo
    committed during the pack points back at a revision the pack drops:
    fspack's copyRest raises PackError('Invalid backpointer transaction
    id') when the whole transaction went, or fails its `tlen` assertion
    when only that record did (both reproduced alone with a FileStorage,
    an undo committed from inside the packer). That race is ZODB's, not
    what this test is about: the pack is run again, a bounded number of
    times. Returns the attempts it took."""
    from ZEO.Exceptions import ServerException

    for attempt in range(1, attempts + 1):
        try:
            db.pack()
            return attempt
        except ServerException as e:
            raced = "fspack.PackError" in str(e) or "AssertionError" in str(e)
            if not raced or attempt == attempts:
                raise
            sys.stderr.write("\npack attempt %d raced an undo, again: %r\n" % (attempt, e))
            time.sleep(0.2)


def test_blob_backups_under_load_restore_every_blob(tmp_path):
    t_start = time.monotonic()
    servers = blob_cluster(tmp_path, len(NAMES))
    port = tidharness.free_port()
    config = write_config(tmp_path, servers, port)
    daemon = start_daemon(tmp_path, config, port=port)
    stop = tmp_path / "stop-workload"
    worker = BlobWorker(daemon.address, servers, tmp_path / "client-blob-caches", seed=21,
                        threads=THREADS, extra=["--stop-file", str(stop), "--pause", "0.01"])
    wait_bootstrapped(daemon)
    # An undo is committed before the first run (and more later).
    tidharness.wait_until(lambda: any(c["undo"] for c in worker.commits()), 30,
                          "an undo transaction")

    runs = []

    def backup(name, *flags):
        before = {c["seq"] for c in worker.commits()}
        t0 = time.monotonic()
        text = tidstorage(tmp_path, config, "backup", *flags)
        secs = time.monotonic() - t0
        assert "damaged" not in text, text
        stamps = timestamps(tmp_path)
        assert len(stamps) == len(runs) + 1, "run %s not in the timestamp file:\n%s" % (
            name, text)
        kinds = [json.loads((tmp_path / "backups" / ("zeo%d" % i) /
                             ("%s.tidstorage.json" % stamps[-1])).read_text())["backup_kind"]
                 for i in range(len(servers))]
        blobs = blob_lines(text, servers)
        for n, kind in zip(NAMES, kinds):
            if n not in blobs and kind == "unchanged" and runs:
                # No new coherent commit: the previous run's blob run stands.
                f = runs[-1]["blobs"][n]["files"]
                blobs[n] = dict(files=f, new=0, carried=f, pooled=0)
        runs.append(dict(name=name, stamp=stamps[-1], before=before, secs=secs, text=text,
                         kinds=kinds, blobs=blobs))
        time.sleep(0.5)  # commits between two runs

    backup("full", "--full")
    backup("incremental")
    # A pack of db0 to now through ZEO while the threads commit: its
    # deleted blobs and overwritten revisions leave the blob directory.
    import ZODB
    old = servers[0].blob_dir + ".old"
    db = ZODB.DB(servers[0].client_storage())
    try:
        pack_attempts = pack_racing_undos(db)
    finally:
        db.close()
    packed = sum(len(f) for _, _, f in os.walk(old) if f)
    assert packed > 0, "the pack removed no blob file (nothing in %s)" % old
    time.sleep(0.5)
    backup("after-pack")
    backup("no-server", "--no-server")

    worker.stop(stop)
    for s in servers:
        s.stop()
    assert daemon.stop() == 0
    commits = worker.commits()
    undos = [c for c in commits if c["undo"]]
    assert undos, "no undo was committed"
    failed = worker.failures()
    # Only an undo may fail (a pack removed the revision it brings back).
    assert [f for f in failed if f.split()[2] != "undo"] == [], failed

    # The runs did what they were asked.
    assert runs[0]["kinds"] == ["full"] * 3, runs[0]["text"]
    assert set(runs[1]["kinds"]) <= {"incremental", "unchanged"}, runs[1]["text"]
    assert runs[2]["kinds"][0] == "full", "the backup after the pack:\n" + runs[2]["text"]
    assert set(runs[3]["kinds"]) <= {"incremental", "unchanged"}, runs[3]["text"]
    for r in runs:
        assert set(r["blobs"]) == set(NAMES), "run %s: no blobs line for every storage:\n%s" % (
            r["name"], r["text"])
    for r in runs[1:]:
        for n, kind in zip(NAMES, r["kinds"]):
            if kind != "full":
                # An incremental run carries the previous run's files.
                b = r["blobs"][n]
                assert b["carried"] > 0, (r["name"], n, b, r["text"])
                assert b["files"] == b["carried"] + b["new"] + b["pooled"], (r["name"], n, b)
    for i, n in enumerate(NAMES):
        # Each (oid, tid) is copied into the repository once, by one run.
        new = sum(r["blobs"][n]["new"] for r in runs)
        assert new == pool_files(tmp_path, i), (n, new, pool_files(tmp_path, i))

    # The oracle itself: the live databases hold what the log says.
    for n, s in zip(NAMES, servers):
        view = read_db(s.data_fs, s.blob_dir)
        state, _ = expected_at(commits, n, view["last"])
        assert content_problems(view["reachable"], state, n) == []
        assert set(view["notes"]) <= {c["seq"] for c in commits}

    previous = {}
    checked_blobs = 0
    for r in runs:
        out = tmp_path / "restored" / r["name"]
        text = tidstorage(tmp_path, config, "restore", "--date", r["stamp"],
                          "--output-dir", str(out))
        last, present = {}, {}
        for n, s in zip(NAMES, servers):
            what = "run %s, %s" % (r["name"], n)
            fs, bd = under(out, s.data_fs), under(out, s.blob_dir)
            assert os.path.isdir(bd), "%s: restore wrote no blob directory %s:\n%s" % (
                what, bd, text)
            view, scan = check_blob_dir(fs, bd, what)
            # One file per blob record of the restored Data.fs.
            assert len(scan["blobs"]) == len(view["records"]), what
            if r["name"] != "no-server":
                # A coherent run's restore is not cut further: the run's
                # blob line counts exactly the restored files.
                assert r["blobs"][n]["files"] == len(scan["blobs"]), (what, r["blobs"][n])
            else:
                assert r["blobs"][n]["files"] >= len(scan["blobs"]), (what, r["blobs"][n])
            state, seqs = expected_at(commits, n, view["last"])
            problems = content_problems(view["reachable"], state, n)
            assert problems == [], "%s (restored TID %016x): %s\n%s" % (
                what, view["last"], problems[:5], text)
            in_file = set(view["notes"])
            assert in_file <= seqs, "%s: transactions the log has above the TID: %r" % (
                what, sorted(in_file - seqs)[:5])
            if not (n == "db0" and r["name"] in ("after-pack", "no-server")):
                # A file no pack rewrote holds every commit up to its TID,
                # and its own notes replay to what ZODB reads.
                assert in_file == seqs, "%s: commits up to the TID missing: %r" % (
                    what, sorted(seqs - in_file)[:5])
                assert replay_notes(view["notes"], n) == state, what
            last[n], present[n] = view["last"], seqs
            checked_blobs += len(view["reachable"])
        partial = partially_present(commits, present)
        assert partial == [], "run %s restored partially present transactions %r" % (
            r["name"], partial[:5])
        complete = set().union(*present.values())
        # Each run holds the one before; at most what was in flight is lost.
        assert previous.get("complete", set()) <= complete, r["name"]
        previous["complete"] = complete
        if r["name"] != "no-server":
            lost = r["before"] - complete
            assert len(lost) <= 3 * THREADS, "run %s lost %r" % (r["name"], sorted(lost))
        r.update(restored=len(complete), last=last)

    # The repositories, blob pools included, verify.
    tidstorage(tmp_path, config, "restore", "--verify")
    # A standby kept current run after run: the blob files each run adds
    # (after the pack, db0 is rebuilt: its old files are gone).
    standby = tmp_path / "standby"
    divergent = []
    for r in runs:
        text = tidstorage(tmp_path, config, "restore", "--incremental", "--date", r["stamp"],
                          "--output-dir", str(standby))
        present = {}
        for n, s in zip(NAMES, servers):
            what = "standby at run %s, %s" % (r["name"], n)
            view, scan = check_blob_dir(under(standby, s.data_fs), under(standby, s.blob_dir),
                                        what)
            if view["last"] != r["last"][n]:
                divergent.append((r["name"], n, r["last"][n], view["last"], text))
            assert len(scan["blobs"]) == len(view["records"]), what
            state, present[n] = expected_at(commits, n, view["last"])
            problems = content_problems(view["reachable"], state, n)
            assert problems == [], "%s: %s\n%s" % (what, problems[:5], text)
        partial = partially_present(commits, present)
        assert partial == [], "standby at run %s: partially present %r" % (r["name"], partial)

    secs = time.monotonic() - t_start
    files = {n: sum(r["blobs"][n]["new"] for r in runs) for n in NAMES}
    REPORT.append((len(commits), len(undos), len(failed), pack_attempts, packed, files,
                   checked_blobs, secs))
    sys.stderr.write(
        "\nblobs: %d commits (%d undos, %d failed commits), pack (%d attempt(s)) moved %d "
        "file(s) to blobs.old, repository pool files %r, %d reachable blobs read in the 4 "
        "--date restores, %.1f s\n"
        % REPORT[-1])
    for r in runs:
        sys.stderr.write("  run %s (%.2f s): kinds %s, blobs %s, %d transactions restored\n" % (
            r["name"], r["secs"], r["kinds"], r["blobs"], r["restored"]))
    if divergent:
        # Everything above held (each standby state is coherent and its
        # blobs are right at its own TID), but not at the same TID as a
        # restore of the same run into an empty directory.
        pytest.fail(
            "restore --incremental cut a standby at another TID than a restore of the "
            "same run into an empty directory (an appended standby must get the same "
            "exact cut above a status file's point): %s"
            % "; ".join("run %s, %s: fresh restore last TID %016x, standby %016x" % d[:4]
                        for d in divergent))


def test_crash_then_cut_moves_blob_files_above_the_cut(tmp_path):
    t_start = time.monotonic()
    servers = blob_cluster(tmp_path, len(NAMES))
    port = tidharness.free_port()
    config = write_config(tmp_path, servers, port)
    daemon = start_daemon(tmp_path, config, port=port)
    trigger = tmp_path / "window-trigger"
    worker = BlobWorker(daemon.address, servers, tmp_path / "client-blob-caches", seed=22,
                        threads=THREADS, extra=["--window-trigger", str(trigger),
                                                "--window-delay", "20"])
    wait_bootstrapped(daemon)
    tidharness.wait_until(lambda: any(c["undo"] for c in worker.commits()), 30,
                          "an undo transaction")
    time.sleep(0.5)
    start = len(worker.out.drain())
    trigger.write_text("")
    line = worker.out.wait_for("WINDOW", timeout=30, start=start)
    assert line is not None, "no transaction entered the finish window"
    window = int(line.split()[1])
    # A client that has sent a blob for a transaction it never voted: the
    # server holds the data in tmp/. (The workload's own uploads do not
    # wait there: its threads share one connection per server, which
    # runs one transaction at a time.)
    upload = uncommitted_blob(servers[1], tmp_path / "uploader-cache")
    # Crash: the window's new blob files are in every blob directory, its
    # Data.fs transaction finished in one database and voted in the others.
    for s in servers:
        s.kill9()
    upload.close()
    worker.kill()
    assert daemon.stop() == 0
    commits = worker.commits()
    assert window not in {c["seq"] for c in commits}, "the crash came after the window"
    before = [scan_blob_dir(s.blob_dir) for s in servers]
    text = cut(tmp_path, config)

    moved_total = 0
    for n, s, b in zip(NAMES, servers, before):
        what = "cut %s" % n
        view, scan = check_blob_dir(s.data_fs, s.blob_dir, what)
        T = view["last"]
        tails = [d for d in os.listdir(os.path.dirname(s.blob_dir))
                 if d.startswith("blobs.tail-")]
        above = {p: tid for p, tid in b["blobs"].items() if tid > T}
        # At least the window's new blob (finished or only voted here).
        assert above, "%s: no blob file above the TID %016x before the cut\n%s" % (
            what, T, text)
        assert len(tails) == 1, "%s: tail directories %r\n%s" % (what, tails, text)
        tail = os.path.join(os.path.dirname(s.blob_dir), tails[0])
        assert int(tails[0][len("blobs.tail-"):], 16) >= T, (tails, T)
        moved = scan_blob_dir(tail)
        assert moved["layout"] == "bushy", moved
        # Every file above the TID, committed or not, moved with its path.
        assert set(moved["blobs"]) == set(above), "%s: moved %r, above the TID %r" % (
            what, sorted(moved["blobs"])[:5], sorted(above)[:5])
        moved_total += len(moved["blobs"])
        # Files at or below the TID stayed.
        kept = {p for p, tid in b["blobs"].items() if tid <= T}
        assert kept == set(scan["blobs"]), what
        # The file's own notes say what it holds; the log agrees.
        assert window not in view["notes"], "%s: the window's transaction survived" % what
        problems = content_problems(view["reachable"], replay_notes(view["notes"], n), n)
        assert problems == [], "%s: %s" % (what, problems[:5])
        state, seqs = expected_at(commits, n, T)
        assert seqs <= set(view["notes"]), (what, sorted(seqs - set(view["notes"]))[:5])
    # Coherent, from the notes of the cut files.
    notes = {n: read_db(s.data_fs, s.blob_dir)["notes"] for n, s in zip(NAMES, servers)}
    partial = sorted({seq for n in NAMES for seq, note in notes[n].items()
                      if any(seq not in notes[m] for m in note["ops"])})
    assert partial == [], "partially present after the cut: %r" % partial[:5]
    # A second cut has nothing left to do.
    def tails():
        return {n: {d: sorted(scan_blob_dir(os.path.join(os.path.dirname(s.blob_dir), d))[
            "blobs"]) for d in os.listdir(os.path.dirname(s.blob_dir))
            if d.startswith("blobs.tail-")} for n, s in zip(NAMES, servers)}
    first = tails()
    again = cut(tmp_path, config)
    for s, n in zip(servers, NAMES):
        check_blob_dir(s.data_fs, s.blob_dir, "second cut %s" % n)
    assert tails() == first, again
    tmp_before = sum(len(b["tmp"]) for b in before)
    assert len(before[1]["tmp"]) >= 1, before[1]
    sys.stderr.write("\nblobs crash+cut: %d commits logged, %d blob file(s) moved to the tails, "
                     "%d file(s) emptied from tmp/, %.1f s\n%s\n" % (
                         len(commits), moved_total, tmp_before, time.monotonic() - t_start, text))
