//! Misbehaving clients against the real daemon. After each, a fresh
//! client's begin/commit/dump is answered correctly and nothing published
//! is lost; limits (allow-list, connection count, output size, future TIDs)
//! hold while honest clients carry on.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A bootstrapped daemon with {s1: 5} published.
fn ready_with(extra: &[&str]) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), extra);
    let mut c = d.client();
    c.begin("warmup", &[]);
    c.abort("warmup");
    c.wait_bootstrapped();
    c.begin("t-s1", &["s1"]);
    c.commit("t-s1", &[("s1", 5)]);
    assert_eq!(c.dump(), pt(&[("s1", 5)]));
    (dir, d)
}

fn ready() -> (tempfile::TempDir, Daemon) {
    ready_with(&[])
}

/// A fresh client commits on its own storage; the old point is still there.
fn assert_healthy(d: &Daemon, probe: &str, tid: u64) {
    let mut c = d.client();
    c.begin(probe, &[probe]);
    c.commit(probe, &[(probe, tid)]);
    let p = c.dump();
    assert_eq!(p.get("s1"), Some(&5), "published s1 lost: {p:?}");
    assert_eq!(p.get(probe), Some(&tid), "fresh client not served: {p:?}");
}

/// Reads until EOF or error (bounded): true when the daemon closed us.
fn closed_by_daemon(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

fn raw(d: &Daemon) -> TcpStream {
    TcpStream::connect(("127.0.0.1", d.port)).unwrap()
}

#[test]
fn unknown_command_is_ignored_and_the_connection_kept() {
    let (_t, d) = ready();
    let mut c = d.client();
    c.send(b"FROBNICATE\nhello\n");
    assert_eq!(c.dump(), pt(&[("s1", 5)]));
    assert_healthy(&d, "p", 10);
}

#[test]
fn malformed_frames_close_only_that_connection() {
    let (_t, mut d) = ready();
    let bad: &[&[u8]] = &[
        b"BEGIN\nt\nlots\n",
        b"BEGIN\nt\n-1\n",
        b"BEGIN\nt\n99999999999\n",
        b"COMMIT\nt\n1\ns1\nnot-a-number\n",
        b"COMMIT\nt\n1\ns1\n-7\n",
        b"COMMIT\nt\n1\ns1\n18446744073709551616\n",
        // Binary garbage inside a frame (a storage id that is not UTF-8).
        b"BEGIN\n\x00\x01\xff\xfe\n1\n\x00\xff\n",
    ];
    let mut witness = d.client();
    for (i, b) in bad.iter().enumerate() {
        let mut s = raw(&d);
        s.write_all(b).unwrap();
        assert!(
            closed_by_daemon(&mut s),
            "case {i}: connection should be closed"
        );
        // An honest connection opened before is unaffected.
        assert_eq!(witness.dump(), pt(&[("s1", 5)]), "case {i}");
    }
    let warnings = d.wait_log_count("malformed frame", bad.len());
    assert_eq!(
        warnings,
        bad.len(),
        "one warning per bad client:\n{}",
        d.log.join("\n")
    );
    assert!(d
        .log
        .iter()
        .any(|l| l.contains("127.0.0.1:") && l.contains("malformed")));
    assert_healthy(&d, "p", 10);
}

#[test]
fn binary_garbage_words_are_ignored_or_closed_never_fatal() {
    let (_t, d) = ready();
    let mut s = raw(&d);
    // NUL bytes and invalid UTF-8 where a command word is expected: unknown
    // words, ignored (logged at debug); the connection stays usable.
    s.write_all(b"\x00\x01\xff\xfe garbage \x00\n\x00\nBOOTSTRAPED\n")
        .unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"1\n");
    assert_healthy(&d, "p", 10);
}

#[test]
fn ten_mib_field_without_newline_is_cut_off() {
    let (_t, d) = ready();
    let mut s = raw(&d);
    let chunk = vec![b'x'; 1 << 20];
    // The daemon closes us after 64 KiB: later writes may fail, that is fine.
    for _ in 0..10 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    assert!(closed_by_daemon(&mut s));
    assert_healthy(&d, "p", 10);
}

#[test]
fn semantic_errors_keep_the_connection() {
    let (_t, mut d) = ready();
    let mut c = d.client();
    // COMMIT and ABORT of transactions that never began.
    c.commit("never", &[("s2", 3)]);
    c.abort("never-either");
    // Duplicate BEGIN: the first becomes an orphan that keeps blocking s3.
    c.begin("dup", &["s3"]);
    c.begin("dup", &["s3"]);
    c.commit("dup", &[("s3", 4)]);
    // COMMIT naming a storage outside its BEGIN.
    c.begin("extra", &["s4"]);
    c.commit("extra", &[("s4", 6), ("s5", 6)]);
    let p = c.dump();
    assert_eq!(p.get("s1"), Some(&5));
    assert_eq!(p.get("s3"), None, "the orphan keeps s3 blocked: {p:?}");
    assert_eq!(p.get("s4"), Some(&6));
    assert_eq!(p.get("s5"), Some(&6));
    let info = c.info();
    assert_eq!(
        info["orphans"].as_array().map(|a| a.len()),
        Some(1),
        "{info}"
    );
    for needle in ["never", "dup", "extra"] {
        assert!(
            d.wait_log(needle).is_some(),
            "{needle}:\n{}",
            d.log.join("\n")
        );
    }
    assert_healthy(&d, "p", 10);
}

#[test]
fn future_tid_is_rejected_and_honest_clients_carry_on() {
    let (_t, mut d) = ready();
    let mut c = d.client();
    let future = tidstorage::tid::Tid::from_unix_seconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + 10.0 * 86400.0,
    );
    c.begin("fut", &["s7"]);
    c.commit("fut", &[("s7", future.0)]);
    let p = c.dump();
    assert_eq!(
        p.get("s7"),
        None,
        "a TID ten days ahead is not published: {p:?}"
    );
    assert!(d.wait_log("future").is_some(), "{}", d.log.join("\n"));
    assert_healthy(&d, "p", 10);
}

#[test]
fn thousand_connections_at_once() {
    let (_t, d) = ready();
    let mut socks = Vec::new();
    for _ in 0..1000 {
        socks.push(TcpStream::connect(("127.0.0.1", d.port)).expect("backlog holds 1000 connects"));
    }
    // Every one of them is served.
    for s in socks.iter_mut().step_by(97) {
        s.write_all(b"BOOTSTRAPED\n").unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"1\n");
    }
    drop(socks);
    assert_healthy(&d, "p", 10);
}

#[test]
fn half_sent_command_does_not_block_others() {
    let (_t, d) = ready();
    let mut idle = raw(&d);
    idle.write_all(b"BEGIN\nslow\n2\ns8\n").unwrap();
    assert_healthy(&d, "p", 10);
    // The idle client finishes its command later and is served normally.
    idle.write_all(b"s9\nCOMMIT\nslow\n2\ns8\ns9\n20\n20\n")
        .unwrap();
    let mut c = d.client();
    let end = Instant::now() + DEADLINE;
    while c.dump().get("s8") != Some(&20) {
        assert!(Instant::now() < end, "the finished command was applied");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn reset_mid_command() {
    let (_t, d) = ready();
    for _ in 0..20 {
        let s = raw(&d);
        let mut s2 = s.try_clone().unwrap();
        s2.write_all(b"COMMIT\nx\n3\na\nb").unwrap();
        // SO_LINGER 0: close sends a RST.
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: valid fd and option struct.
        unsafe {
            libc::setsockopt(
                std::os::unix::io::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &l as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(s);
        drop(s2);
    }
    assert_healthy(&d, "p", 10);
}

#[test]
fn client_that_never_reads_its_dumps_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), "[server]\nmax_output = 65536\n").unwrap();
    let mut d = Daemon::start(dir.path(), &["-c", "t.toml"]);
    let mut c = d.client();
    c.begin("warmup", &[]);
    c.abort("warmup");
    c.wait_bootstrapped();
    // A point of 40 storages makes each DUMP answer about 1.5 KB.
    let ids: Vec<String> = (0..40)
        .map(|i| format!("storage-with-a-long-name-{i:03}"))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    c.begin("big", &refs);
    let tids: Vec<(&str, u64)> = refs.iter().map(|s| (*s, 77)).collect();
    c.commit("big", &tids);
    assert_eq!(c.dump().len(), 40);
    let mut greedy = raw(&d);
    greedy
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let dumps = b"DUMP\n".repeat(20_000);
    // Writes fail once the daemon drops us; that is the expected end.
    let _ = greedy.write_all(&dumps);
    assert!(
        d.wait_log("dropping the client").is_some(),
        "{}",
        d.log.join("\n")
    );
    // Honest clients are unaffected.
    assert_eq!(c.dump().len(), 40);
    let mut c2 = d.client();
    c2.begin("after", &["z"]);
    c2.commit("after", &[("z", 3)]);
    assert_eq!(c2.dump().get("z"), Some(&3));
}

#[test]
fn allow_list_refuses_other_sources() {
    let (_t, mut d) = ready_with(&["--allow", "127.0.0.1/32"]);
    // 127.0.0.2 is loopback too, but outside the allow list.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(sock >= 0);
    let mut s = unsafe { <TcpStream as std::os::unix::io::FromRawFd>::from_raw_fd(sock) };
    let bind = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::new(127, 0, 0, 2)).to_be(),
        },
        sin_zero: [0; 8],
    };
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: d.port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: valid socket and addresses.
    unsafe {
        assert_eq!(
            libc::bind(sock, &bind as *const _ as *const libc::sockaddr, len),
            0
        );
        assert_eq!(
            libc::connect(sock, &to as *const _ as *const libc::sockaddr, len),
            0
        );
    }
    let _ = s.write_all(b"DUMP\n");
    assert!(closed_by_daemon(&mut s), "127.0.0.2 must be refused");
    assert!(d
        .wait_log("not in the allow list")
        .unwrap()
        .contains("127.0.0.2"));
    assert_healthy(&d, "p", 10);
}

#[test]
fn connection_limit_refuses_extra_clients() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), "[server]\nmax_connections = 5\n").unwrap();
    let mut d = Daemon::start(dir.path(), &["-c", "t.toml"]);
    let mut held: Vec<Client> = (0..5).map(|_| d.client()).collect();
    assert!(!held[0].bootstraped());
    let mut extra = raw(&d);
    let _ = extra.write_all(b"DUMP\n");
    assert!(
        closed_by_daemon(&mut extra),
        "the sixth connection is refused"
    );
    assert!(d.wait_log("max_connections").is_some());
    // The held ones still work; freeing one lets a new client in.
    assert_eq!(held[4].dump(), pt(&[]));
    held.pop();
    let end = Instant::now() + DEADLINE;
    loop {
        let mut s = raw(&d);
        s.write_all(b"BOOTSTRAPED\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 2];
        if s.read_exact(&mut b).is_ok() {
            assert_eq!(&b, b"0\n");
            break;
        }
        assert!(Instant::now() < end, "a freed slot is reused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn oversized_command_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), "[server]\nmax_command = 4096\n").unwrap();
    let mut d = Daemon::start(dir.path(), &["-c", "t.toml"]);
    let mut c = d.client();
    // Within every per-field and per-list limit, but 100 x 100 bytes of ids.
    let mut s = raw(&d);
    let mut b = b"BEGIN\nhuge\n100\n".to_vec();
    for i in 0..100 {
        b.extend_from_slice(format!("{:0>100}\n", i).as_bytes());
    }
    s.write_all(&b).unwrap();
    assert!(closed_by_daemon(&mut s));
    assert!(d.wait_log("max_command").is_some(), "{}", d.log.join("\n"));
    assert!(!c.bootstraped(), "the other connection is still served");
}

#[test]
fn anomaly_floods_are_rate_limited_in_the_log() {
    let (_t, d) = ready();
    let mut c = d.client();
    for i in 0..500 {
        c.abort(&format!("never-begun-{i}"));
    }
    let info = c.info();
    assert_eq!(info["counters"]["unknown_transactions"], 500, "{info}");
    let (code, log) = d.stop();
    assert_eq!(code, Some(0));
    let lines = log.iter().filter(|l| l.contains("never-begun-")).count();
    assert!(lines <= 20, "{lines} lines logged for one kind of anomaly");
    assert!(
        log.iter()
            .any(|l| l.contains("480 more \"unknown_transaction\" notice(s)")),
        "{}",
        log.join("\n")
    );
}
