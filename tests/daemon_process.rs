//! The daemon as a process: status-file records, signals (HUP, USR1,
//! TERM), restart from the status file, pidfile lock, `--daemon` mode, and
//! the `dump` / `bootstrap-status` clients.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn records_follow_the_point_and_term_writes_a_final_full_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        dir.path(),
        &["--burst-period", "50ms", "--full-dump-period", "1h"],
    );
    let mut c = d.client();
    // Nothing is written before bootstrap.
    publish(&mut c, "t0", &[("a", 1)]);
    c.wait_bootstrapped();
    std::thread::sleep(Duration::from_millis(100));
    publish(&mut c, "t1", &[("a", 2), ("b", 3)]);
    // The point was empty when bootstrap completed: the first f waits for
    // the first values.
    wait_for("the first record", || {
        read(&d.status_file).contains("'a': 2")
    });
    publish(&mut c, "t2", &[("b", 4)]);
    wait_for("a d record", || read(&d.status_file).contains(" d "));
    let text = read(&d.status_file);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains(" f {'a': 2, 'b': 3}"),
        "an f record first after opening: {text}"
    );
    // The last d record holds only what changed (b).
    let last_d = lines.iter().rev().find(|l| l.contains(" d ")).unwrap();
    assert!(
        last_d.contains("'b': 4") && !last_d.contains("'a'"),
        "{last_d}"
    );
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    let text = read(&dir.path().join("status.tid"));
    let last = text.lines().last().unwrap();
    assert!(
        last.contains(" f ") && last.contains("'a': 2") && last.contains("'b': 4"),
        "{text}"
    );
    // Our own reader validates the whole file.
    let o = run_in(
        dir.path(),
        &["dump", "--status-file", "status.tid", "--format", "tsv"],
    );
    assert_code(&o, 0);
    let row = |s: &str, t: tidstorage::tid::Tid| {
        format!(
            "{s}\t{}\t{}\t{}\t{}\n",
            t.0,
            t.hex(),
            t.rfc3339(),
            t.base64()
        )
    };
    assert_eq!(
        stdout(&o),
        row("a", tidstorage::tid::Tid(2)) + &row("b", tidstorage::tid::Tid(4))
    );
}

#[test]
fn no_record_is_written_while_the_point_is_empty() {
    // The original's readers (check_tid_log.py, tid_log_to_full.py,
    // restore_tidstorage.py) assert that every record names a storage.
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &["--burst-period", "20ms"]);
    // No storage configured: bootstrap completes at the first end, with
    // nothing published yet.
    let mut c = bootstrapped(&d);
    // A reopen asks for a full record too.
    d.signal(libc::SIGHUP);
    assert!(d.wait_log("reopened").is_some());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(read(&d.status_file), "", "a record of an empty point");
    publish(&mut c, "t1", &[("a", 7)]);
    wait_for("the first record", || {
        read(&d.status_file).contains("'a': 7")
    });
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    let text = read(&dir.path().join("status.tid"));
    let first = text.lines().next().unwrap();
    assert!(first.contains(" f {'a': 7}"), "{text}");
    assert!(!text.contains("{}"), "{text}");
}

#[test]
fn restart_serves_the_last_point_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let mut c = bootstrapped(&d);
    publish(&mut c, "t1", &[("s1", 10), ("s2", 20)]);
    assert_eq!(c.dump(), pt(&[("s1", 10), ("s2", 20)]));
    drop(c);
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    let d = Daemon::start(dir.path(), &[]);
    let mut c = d.client();
    assert_eq!(c.dump(), pt(&[("s1", 10), ("s2", 20)]));
    assert!(!c.bootstraped(), "new values still wait for bootstrap");
    // New values wait for bootstrap, then publish.
    publish(&mut c, "t2", &[("s1", 11)]);
    assert_eq!(c.dump(), pt(&[("s1", 10), ("s2", 20)]));
    c.wait_bootstrapped();
    publish(&mut c, "t3", &[("s2", 21)]);
    assert_eq!(c.dump(), pt(&[("s1", 11), ("s2", 21)]));
}

#[test]
fn hup_reopens_log_and_status_file_usr1_dumps_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let d = Daemon::start(
        dir.path(),
        &["--log", log.to_str().unwrap(), "--full-dump-period", "1h"],
    );
    let _ = d; // the log goes to the file, not stderr
    let mut c = bootstrapped(&d);
    publish(&mut c, "t1", &[("s1", 10)]);
    wait_for("the first record", || {
        read(&d.status_file).contains("'s1': 10")
    });
    // logrotate: move both away, then HUP.
    std::fs::rename(&log, dir.path().join("server.log.1")).unwrap();
    std::fs::rename(&d.status_file, dir.path().join("status.tid.1")).unwrap();
    d.signal(libc::SIGHUP);
    wait_for("a new status file with an f record", || {
        let t = read(&d.status_file);
        t.contains(" f ") && t.contains("'s1': 10")
    });
    wait_for("a new server log", || read(&log).contains("reopened"));
    d.signal(libc::SIGUSR1);
    wait_for("the engine state in the log", || {
        read(&log).contains("engine state")
    });
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    assert!(read(&log).contains("stopped"));
}

#[test]
fn pidfile_blocks_a_second_daemon_and_is_removed_on_exit() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("t.pid");
    let d = Daemon::start(dir.path(), &["--pidfile", pid.to_str().unwrap()]);
    assert_eq!(read(&pid).trim(), d.child.id().to_string());
    let o = run_in(
        dir.path(),
        &[
            "serve",
            "--port",
            "0",
            "--status-file",
            "other.tid",
            "--pidfile",
            pid.to_str().unwrap(),
        ],
    );
    assert_code(&o, 3);
    assert!(stderr(&o).contains("holds the pidfile"), "{}", stderr(&o));
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    assert!(!pid.exists(), "pidfile removed on exit");
}

#[test]
fn daemon_mode_detaches_and_stops_on_term() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("d.pid");
    let log = dir.path().join("d.log");
    let status = dir.path().join("d.tid");
    let o = run_in(
        dir.path(),
        &[
            "serve",
            "--daemon",
            "--port",
            "0",
            "--status-file",
            status.to_str().unwrap(),
            "--pidfile",
            pid.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    assert_code(&o, 0);
    wait_for("the pidfile", || !read(&pid).trim().is_empty());
    wait_for("listening", || read(&log).contains("listening on"));
    let daemon_pid: i32 = read(&pid).trim().parse().unwrap();
    let text = read(&log);
    let port: u16 = text
        .lines()
        .find_map(|l| l.split("listening on ").nth(1))
        .and_then(|a| a.trim().rsplit(':').next())
        .unwrap()
        .parse()
        .unwrap();
    let mut c = Client::connect(port);
    assert_eq!(c.dump(), pt(&[]));
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(daemon_pid, libc::SIGTERM) };
    wait_for("the pidfile to go", || !pid.exists());
    assert!(read(&log).contains("stopped"));
}

#[test]
fn dump_and_bootstrap_status_clients() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let server = format!("127.0.0.1:{}", d.port);
    let o = run_in(dir.path(), &["bootstrap-status", "--server", &server]);
    assert_code(&o, 1);
    assert_eq!(stdout(&o).trim(), "incomplete");
    let mut c = bootstrapped(&d);
    publish(&mut c, "t1", &[("s1", 291936934231455914)]);
    let o = run_in(dir.path(), &["bootstrap-status", "--server", &server]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), "complete");
    let o = run_in(dir.path(), &["dump", "--server", &server]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("s1") && out.contains("291936934231455914"),
        "{out}"
    );
    assert!(
        out.contains("040d2b184daeb8aa") && out.contains("2026-11-21T16:24:18.206837Z"),
        "{out}"
    );
    let o = run_in(
        dir.path(),
        &["dump", "--server", &server, "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["point"][0]["tid"], 291936934231455914u64);
    // Unreachable daemon: exit 3, the address named, a hint given.
    drop(c);
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    let o = run_in(dir.path(), &["dump", "--server", &server]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains(&server), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is the daemon running"),
        "{}",
        stderr(&o)
    );
    let o = run_in(
        dir.path(),
        &["bootstrap-status", "--server", &server, "--wait", "200ms"],
    );
    assert_code(&o, 3);
}

#[test]
fn bootstrap_status_wait_until_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let server = format!("127.0.0.1:{}", d.port);
    let o = run_in(
        dir.path(),
        &["bootstrap-status", "--server", &server, "--wait", "300ms"],
    );
    assert_code(&o, 1);
    let mut waiter = std::process::Command::new(bin())
        .args(["bootstrap-status", "--server", &server, "--wait", "30s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _c = bootstrapped(&d);
    let st = waiter.wait().unwrap();
    assert_eq!(st.code(), Some(0));
}

#[test]
fn bootstrap_status_wait_covers_a_daemon_not_listening_yet() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on until the daemon starts there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("127.0.0.1:{port}");
    let mut waiter = std::process::Command::new(bin())
        .args(["bootstrap-status", "--server", &server, "--wait", "30s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "gave up before the daemon was there"
    );
    let args: Vec<String> = [
        "serve",
        "--port",
        &port.to_string(),
        "--status-file",
        "s.tid",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let d = Daemon::start_args(dir.path(), &args, dir.path().join("s.tid"));
    let _c = bootstrapped(&d);
    let o = waiter.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "complete\n");
}

#[test]
fn bootstrap_trigger_command_runs_for_missing_storages() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("touch.sh");
    let out = dir.path().join("triggered");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\necho \"$TIDSTORAGE_STORAGE_ID $TIDSTORAGE_MOUNTPOINT $TIDSTORAGE_DATA_FS\" >> {}\n",
            out.display()
        ),
    );
    std::fs::write(
        dir.path().join("t.toml"),
        format!(
            "[bootstrap]\ncommand = \"{}\"\nretry = \"200ms\"\n\
             [[storage]]\nid = \"s1\"\nmountpoint = \"m1\"\ndata_fs = \"/srv/1/Data.fs\"\n\
             [[storage]]\nid = \"s2\"\nmountpoint = \"m2\"\ndata_fs = \"/srv/2/Data.fs\"\n",
            script.display()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(dir.path(), &["-c", "t.toml"]);
    let mut c = d.client();
    // s1 commits naturally: only s2 needs its trigger.
    publish(&mut c, "t1", &[("s1", 5)]);
    wait_for("the trigger for s2", || {
        read(&out).contains("s2 m2 /srv/2/Data.fs")
    });
    assert!(
        !read(&out).contains("s1 "),
        "s1 was seen, no trigger: {}",
        read(&out)
    );
    // The retry fires it again while s2 is still missing.
    wait_for("a retry", || read(&out).matches("s2 m2").count() >= 2);
    assert!(!c.bootstraped());
    publish(&mut c, "t2", &[("s2", 6)]);
    c.wait_bootstrapped();
    assert!(d.wait_log("bootstrap complete").is_some());
}

#[test]
fn a_trigger_still_running_at_shutdown_is_stopped_with_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hang.sh");
    let pids = dir.path().join("pids");
    // One trigger exits on SIGTERM; the other ignores it and must be killed.
    write_script(
        &script,
        &format!(
            "#!/bin/sh\n\
             if [ \"$TIDSTORAGE_STORAGE_ID\" = s3 ]; then trap '' TERM; fi\n\
             echo $$ >> {}\n\
             while :; do sleep 0.05; done\n",
            pids.display()
        ),
    );
    std::fs::write(
        dir.path().join("t.toml"),
        format!(
            "[bootstrap]\ncommand = \"{}\"\nretry = \"1h\"\n\
             [[storage]]\nid = \"s1\"\n[[storage]]\nid = \"s2\"\n[[storage]]\nid = \"s3\"\n",
            script.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(dir.path(), &["-c", "t.toml"]);
    let mut c = d.client();
    publish(&mut c, "t1", &[("s1", 5)]);
    wait_for("both triggers running", || read(&pids).lines().count() == 2);
    let children: Vec<i32> = read(&pids).lines().map(|l| l.parse().unwrap()).collect();
    let alive = |pid: i32| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !read(std::path::Path::new(&format!("/proc/{pid}/stat"))).contains(") Z ")
    };
    assert!(children.iter().all(|p| alive(*p)));
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    let log = log.join("\n");
    assert!(log.contains("stopping the trigger for s2"), "{log}");
    assert!(
        log.contains("the trigger for s3") && log.contains("killed"),
        "{log}"
    );
    for pid in children {
        assert!(!alive(pid), "trigger pid {pid} outlived the daemon\n{log}");
    }
}

#[test]
fn user_and_group_are_dropped_after_binding() {
    let dir = tempfile::tempdir().unwrap();
    // The status file is opened after the drop: let "nobody" write there.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Not root: the daemon must refuse clearly instead of running as us.
        let o = run_in(
            dir.path(),
            &[
                "serve",
                "--port",
                "0",
                "--status-file",
                "s.tid",
                "--user",
                "nobody",
            ],
        );
        assert_code(&o, 3);
        assert!(stderr(&o).contains("run as root"), "{}", stderr(&o));
        return;
    }
    let d = Daemon::start(dir.path(), &["--user", "nobody"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid}"
    );
    let mut c = bootstrapped(&d);
    publish(&mut c, "t1", &[("s1", 3)]);
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    assert!(read(&dir.path().join("status.tid")).contains("'s1': 3"));
}

#[test]
fn status_file_write_errors_are_logged_and_serving_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // ulimit -f 1: the status file cannot grow past 512 bytes, the way a
    // full disk would stop it.
    let script = format!(
        "ulimit -f 1 && exec {} serve --port 0 --status-file status.tid --burst-period 20ms",
        bin().display()
    );
    let args = vec!["-c".to_string(), script];
    let mut d = Daemon::start_with(dir.path(), "sh", &args, dir.path().join("status.tid"));
    let mut c = bootstrapped(&d);
    for i in 0..40u64 {
        let id = format!("storage-with-a-rather-long-identifier-{i:02}");
        publish(&mut c, &format!("t{i}"), &[(id.as_str(), 100 + i)]);
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(
        d.wait_log("cannot write to the status file").is_some(),
        "{}",
        d.log.join("\n")
    );
    // Still serving, with every value published.
    assert_eq!(c.dump().len(), 40);
    let mut c2 = d.client();
    publish(&mut c2, "after", &[("z", 7)]);
    assert_eq!(c2.dump().get("z"), Some(&7));
    // The file holds only whole records.
    let text = read(&d.status_file);
    let o = run_in(dir.path(), &["dump", "--status-file", "status.tid"]);
    assert_code(&o, 0);
    assert!(text.len() <= 512);
}

#[test]
fn bootstrap_trigger_url_is_fetched_for_missing_storages() {
    use std::io::{Read, Write};
    // A one-thread HTTP server recording request lines (bounded: it stops
    // with the test process; each accept has the daemon's own timeouts).
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for s in server.incoming().take(20) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
            if tx
                .send(req.lines().next().unwrap_or("").to_string())
                .is_err()
            {
                break;
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.toml"),
        format!(
            "[bootstrap]\nurl = \"http://127.0.0.1:{port}/erp5/%s/modifyContext\"\nretry = \"1h\"\n\
             [[storage]]\nid = \"s1\"\nmountpoint = \"root_1\"\n\
             [[storage]]\nid = \"s2\"\nmountpoint = \"root_2\"\n"
        ),
    )
    .unwrap();
    let mut d = Daemon::start(dir.path(), &["-c", "t.toml"]);
    let mut c = d.client();
    publish(&mut c, "t1", &[("s2", 5)]);
    let line = rx
        .recv_timeout(DEADLINE)
        .expect("the daemon fetched the URL");
    // HTTP/1.1 since the GET is ureq's (it was a hand-written HTTP/1.0).
    assert_eq!(line, "GET /erp5/root_1/modifyContext HTTP/1.1");
    assert!(
        d.wait_log("answered HTTP/1.0 200 OK").is_some(),
        "{}",
        d.log.join("\n")
    );
    // The loop kept serving while the request ran.
    assert!(!c.bootstraped());
}

#[test]
fn fsync_interval_still_writes_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        dir.path(),
        &["--fsync", "interval", "--burst-period", "20ms"],
    );
    let mut c = bootstrapped(&d);
    for i in 1..=5u64 {
        publish(&mut c, &format!("t{i}"), &[("s1", i)]);
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_for("the last value in the status file", || {
        read(&d.status_file).contains("'s1': 5")
    });
    // The loop is not spinning on the fsync deadline: it still answers.
    assert_eq!(c.dump(), pt(&[("s1", 5)]));
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn daemon_mode_with_relative_paths_keeps_them_relative_to_the_start_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.toml"),
        "[server]\nport = 0\nstatus_file = \"rel.tid\"\n",
    )
    .unwrap();
    let o = run_in(
        dir.path(),
        &[
            "-c",
            "t.toml",
            "serve",
            "--daemon",
            "--pidfile",
            "d.pid",
            "--log",
            "d.log",
        ],
    );
    assert_code(&o, 0);
    let pid = dir.path().join("d.pid");
    let log = dir.path().join("d.log");
    wait_for("the pidfile", || !read(&pid).trim().is_empty());
    wait_for("listening", || read(&log).contains("listening on"));
    let port: u16 = read(&log)
        .lines()
        .find_map(|l| l.split("listening on ").nth(1))
        .and_then(|a| a.trim().rsplit(':').next())
        .unwrap()
        .parse()
        .unwrap();
    let mut c = Client::connect(port);
    c.begin("w", &[]);
    c.abort("w");
    c.wait_bootstrapped();
    publish(&mut c, "t1", &[("s1", 9)]);
    let daemon_pid: i32 = read(&pid).trim().parse().unwrap();
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(daemon_pid, libc::SIGTERM) };
    wait_for("the pidfile to go", || !pid.exists());
    assert!(read(&dir.path().join("rel.tid")).contains("'s1': 9"));
}

#[test]
fn each_bootstrap_change_is_logged_once() {
    // The engine's notices are the one record of bootstrap changes: the
    // loop used to log its own line too, so each change appeared twice.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tidstorage.toml");
    std::fs::write(&cfg, "[[storage]]\nid = \"s1\"\n[[storage]]\nid = \"s2\"\n").unwrap();
    let mut d = Daemon::start(dir.path(), &["-c", cfg.to_str().unwrap()]);
    let mut c = d.client();
    publish(&mut c, "t1", &[("s1", 5)]);
    assert!(d.wait_log("bootstrap started").is_some());
    publish(&mut c, "t2", &[("s2", 6)]);
    c.wait_bootstrapped();
    assert!(d.wait_log("bootstrap complete").is_some());
    drop(c);
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    let count = |needle: &str| log.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("bootstrap started"), 1, "{}", log.join("\n"));
    assert_eq!(count("bootstrap complete"), 1, "{}", log.join("\n"));
    let started = log
        .iter()
        .find(|l| l.contains("bootstrap started"))
        .unwrap();
    assert!(
        started.contains("'s2'"),
        "names the missing storage: {started}"
    );
}

#[test]
fn a_second_daemon_on_the_same_status_file_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let first = Daemon::start(dir.path(), &[]);
    let status = dir.path().join("status.tid");
    // No pidfile shared: only the status file is the same.
    let o = run_in(
        dir.path(),
        &[
            "serve",
            "--port",
            "0",
            "--status-file",
            status.to_str().unwrap(),
        ],
    );
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(
        e.contains("another tidstorage daemon") && e.contains("writes the status file"),
        "{e}"
    );
    assert!(
        e.contains(&format!("pid {}", first.child.id())),
        "names the holder: {e}"
    );
    let _ = first.stop();
    // Once the first stopped, the file is free again.
    let second = Daemon::start(dir.path(), &[]);
    let _ = second.stop();
}
