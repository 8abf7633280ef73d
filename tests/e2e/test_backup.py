"""End to end: `tidstorage backup` runs taken while a multi-database
workload commits through three ZEO servers restore, with `tidstorage
restore`, to mutually consistent databases, without any extra cut.

One cluster (three ZEO 6 servers, `tidstorage serve`, the crash test's
workload of four threads committing back to back), four backup runs while
it commits: a full one, an incremental taken while a transaction sits
between two per-database `tpc_finish` calls (the worker's test-only window
delay), a gzipped incremental, and a `--no-server` incremental taken inside
such a window. Every run is restored into its own directory, cut (the
default: the manifest's point, or the run's status file copy for the
no-server run) and `--no-cut`, and checked with ZODB by checker.py.
"""

import filecmp
import json
import os
import subprocess
import sys
import time

import tidharness
from test_e2e import THREADS, Worker, check, check_files, cluster, console_script, start_daemon
from test_e2e import wait_bootstrapped

# (name, backup flags, taken inside a finish window)
RUNS = [
    ("full", [], False),
    ("window", [], True),
    ("gzip", ["--gzip"], False),
    ("no-server", ["--no-server"], True),
]
# Long enough for a whole backup run (which may wait up to a second for the
# clock to reach a fresh name) to fit inside the window.
WINDOW_DELAY = 5.0
REPORT = []


def write_config(tmp_path, servers, port):
    backups = tmp_path / "backups"
    lines = [
        "[server]", 'address = "127.0.0.1"', "port = %d" % port,
        'status_file = "status.tid"', 'burst_period = "200ms"', "",
        "[bootstrap]", 'command = "%s"' % console_script(), 'retry = "1s"', "",
        "[backup]", 'timestamp_file = "backups/timestamps.log"',
        'status_file_backup_dir = "backups/status"', "",
    ]
    for i, s in enumerate(servers):
        (backups / ("zeo%d" % i)).mkdir(parents=True)
        lines += ["[[storage]]", "id = '%s'" % s.storage_id,
                  'data_fs = "%s"' % os.path.relpath(s.data_fs, str(tmp_path)),
                  'repository = "backups/zeo%d"' % i, ""]
    path = tmp_path / "tidstorage.toml"
    path.write_text("\n".join(lines))
    return str(path)


def tidstorage(tmp_path, config, *args):
    r = subprocess.run([tidharness.tidstorage_bin(), "-c", config] + list(args),
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "tidstorage %s failed (%d):\n%s\n%s" % (
        " ".join(args), r.returncode, r.stdout, r.stderr)
    return r.stdout


def timestamps(tmp_path):
    p = tmp_path / "backups" / "timestamps.log"
    return p.read_text().split() if p.exists() else []


def manifests(tmp_path, servers, stamp):
    return [json.loads((tmp_path / "backups" / ("zeo%d" % i) /
                        ("%s.tidstorage.json" % stamp)).read_text())
            for i in range(len(servers))]


def committed(worker):
    return {int(line.split()[1]) for line in worker.out.drain()
            if line.startswith("COMMITTED ")}


def restore(tmp_path, config, servers, out, *args):
    text = tidstorage(tmp_path, config, "restore", "--output-dir", str(out), *args)
    # --output-dir recreates each configured (absolute) data_fs path below it.
    paths = [os.path.join(str(out), s.data_fs.lstrip(os.sep)) for s in servers]
    for p in paths:
        assert os.path.exists(p), "restore did not write %s:\n%s" % (p, text)
    return paths, text


def test_backups_under_load_restore_to_coherent_databases(tmp_path):
    servers = cluster(tmp_path)
    port = tidharness.free_port()
    config = write_config(tmp_path, servers, port)
    daemon = start_daemon(tmp_path, config, port=port)
    trigger = tmp_path / "window-trigger"
    worker = Worker(daemon.address, servers, seed=11,
                    extra=["--window-delay", str(WINDOW_DELAY), "--window-trigger",
                           str(trigger), "--report-commits"])
    wait_bootstrapped(daemon)

    runs = []
    for name, flags, in_window in RUNS:
        if runs and runs[-1]["window"] is not None:
            # The workload stalls on the database held by the window: let
            # it resume before the next run.
            w = runs[-1]["window"]
            tidharness.wait_until(lambda: w in committed(worker), 30,
                                  "the transaction in the window to finish")
        time.sleep(0.5)  # commits between two runs
        window = None
        if in_window:
            start = len(worker.out.drain())
            trigger.write_text("")
            line = worker.out.wait_for("WINDOW", timeout=30, start=start)
            assert line is not None, "no transaction entered the finish window"
            window = int(line.split()[1])
        before = committed(worker)
        t0 = time.monotonic()
        text = tidstorage(tmp_path, config, "backup", *flags)
        secs = time.monotonic() - t0
        if window is not None:
            # The run must have read the files while the window lasted.
            assert window not in committed(worker), "the backup outlasted the window"
        # The window's transaction is voted, not finished, at the end of the
        # files it has not finished in: a live server's tail, not damage.
        assert "damaged" not in text, text
        stamps = timestamps(tmp_path)
        assert len(stamps) == len(runs) + 1, "run %s not in the timestamp file:\n%s" % (name,
                                                                                      text)
        runs.append(dict(name=name, stamp=stamps[-1], window=window, before=before, secs=secs,
                         text=text, manifests=manifests(tmp_path, servers, stamps[-1])))

    worker.kill()
    for s in servers:
        s.stop()
    assert daemon.stop() == 0
    # The live files may hold a transaction half-finished when the worker
    # was killed; their complete transactions bound what a restore may hold.
    live = check(servers)

    # The runs did what they were asked: a full backup, then incrementals
    # (a storage with no new coherent commit is "unchanged"), gzip files.
    kinds = [[m["backup_kind"] for m in r["manifests"]] for r in runs]
    assert kinds[0] == ["full"] * 3, runs[0]["text"]
    for r, k in zip(runs[1:], kinds[1:]):
        assert set(k) <= {"incremental", "unchanged"} and "incremental" in k, r["text"]
    gz = [m["backup_file"] for m in runs[2]["manifests"] if m["backup_file"]]
    assert gz and all(f.endswith(".deltafsz") for f in gz), runs[2]["text"]
    assert [m["mode"] for m in runs[3]["manifests"]] == ["no-server"] * 3

    previous = set()
    for i, r in enumerate(runs):
        last = i == len(runs) - 1
        # The last run by default (the timestamp file's last line), the
        # earlier ones by --date.
        date = [] if last else ["--date", r["stamp"]]
        out = tmp_path / "restored" / r["name"]
        cut_paths, cut_text = restore(tmp_path, config, servers, out / "cut", *date)
        raw_paths, _ = restore(tmp_path, config, servers, out / "no-cut", "--no-cut", *date)
        cut = check_files(cut_paths)
        raw = check_files(raw_paths)
        assert cut["violations"] == [], "run %s restored partially present transactions: " \
            "%r\n%s" % (r["name"], cut["violations"][:5], cut_text)
        assert all(cut["used_index"]) and all(raw["used_index"]), \
            "ZODB rebuilt the index of a restored file (run %s)" % r["name"]
        complete = set(cut["complete"])
        assert complete, "run %s restored no complete transaction" % r["name"]
        assert complete <= set(live["complete"])
        if r["window"] is not None:
            # The transaction half-finished while the run read the files is
            # in no restored database.
            assert r["window"] not in complete
        if r["manifests"][0]["mode"] == "coherent":
            # The backup itself stopped at the point: the restore's cut has
            # nothing left to remove, and each run holds the one before.
            assert raw["violations"] == []
            for a, b in zip(cut_paths, raw_paths):
                assert filecmp.cmp(a, b, shallow=False), "%s != %s" % (a, b)
            assert previous <= complete, sorted(previous - complete)[:10]
            previous = complete
            # The point only holds back what was in flight (the crash
            # test's bound for a cut at the daemon's final point).
            assert len(r["before"] - complete) <= 3 * THREADS, sorted(r["before"] - complete)
        else:
            # Without the cut, the no-server backup holds the transaction
            # caught in the window in its first database only: the check
            # can fail, and the cut is what makes the restore coherent.
            seqs = [v["seq"] for v in raw["violations"]]
            assert r["window"] in seqs, (r["window"], raw["violations"][:5])
        dropped = r["before"] - complete
        REPORT.append((r["name"], r["secs"], len(r["before"]), len(complete), len(dropped),
                       len(complete - r["before"]), len(raw["violations"])))
        sys.stderr.write("\nbackup run %s (%.2f s): %d committed before the run, %d complete "
                         "restored, %d of those committed before dropped, %d committed during "
                         "the run kept, %d partial without the cut\n" % REPORT[-1])
