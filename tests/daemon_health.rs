//! The point's health (issue 11): metrics on their own port, parsed by
//! Prometheus' own Python parser; a stuck transaction seen in the metrics
//! and by `inflight`, ended by `resolve`, and the resolution surviving a
//! restart and the original product's status-file checker; a metrics port
//! that bad, huge and idle peers cannot use to disturb the protocol port;
//! the https bootstrap trigger.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidstorage::tid::Tid;

fn metrics_port(d: &mut Daemon) -> u16 {
    let line = d
        .wait_log("metrics on http://")
        .unwrap_or_else(|| panic!("no metrics line:\n{}", d.log.join("\n")));
    let addr = line.rsplit("http://").next().unwrap();
    let addr = addr.strip_suffix("/metrics").unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn start(dir: &Path, extra: &[&str]) -> (Daemon, u16) {
    let mut args = vec!["--metrics-address", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut d = Daemon::start(dir, &args);
    let m = metrics_port(&mut d);
    (d, m)
}

/// One HTTP exchange: sends `req`, reads until the daemon closes. A
/// daemon that closes before the whole request is sent (it answered a
/// request over the limit) is not an error of the exchange: what it
/// answered is still read.
fn http(port: u16, req: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    if let Err(e) = s.write_all(req) {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }
    let mut out = Vec::new();
    // A reset after a bad request still leaves what was read.
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn scrape(port: u16) -> (String, String) {
    let a = http(
        port,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
    );
    let (head, body) = a
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {a:?}"));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    (head.to_string(), body.to_string())
}

/// The families as prometheus_client's parser reads them.
fn parsed(dir: &Path, body: &str) -> serde_json::Value {
    let f = dir.join("scrape.txt");
    std::fs::write(&f, body).unwrap();
    py_tool("metrics_parse.py", &[f.to_str().unwrap()])
}

/// The value of the sample `name` with `labels` (all of them), if any.
fn value(m: &serde_json::Value, family: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    m[family]["samples"].as_array()?.iter().find_map(|s| {
        let ok = s[0] == name
            && s[1].as_object().map(|o| o.len()) == Some(labels.len())
            && labels.iter().all(|(k, v)| s[1][*k] == *v);
        ok.then(|| s[2].as_f64().unwrap())
    })
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn tid_at(secs: f64) -> u64 {
    Tid::from_unix_seconds(secs).0
}

/// Runs the original product's utils/check_tid_log.py (Python 2.7, as
/// bench/original/setup.sh installs it) on `status`; its stdout, or `None`
/// (with the reason printed) when there is no Python 2.7 on this machine.
fn original_check_tid_log(status: &Path) -> Option<String> {
    let py2 = std::env::var_os("PYTHON2")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var("HOME").unwrap()).join(".pyenv/versions/2.7.18/bin/python")
        });
    if !py2.exists() {
        eprintln!(
            "no Python 2.7 at {}: the original's checker is not run",
            py2.display()
        );
        return None;
    }
    let setup = std::process::Command::new("sh")
        .arg(repo_path("bench/original/setup.sh"))
        .env("PYTHON2", &py2)
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let script = repo_path("bench/work/orig-py2/Products/TIDStorage/utils/check_tid_log.py");
    let o = std::process::Command::new(&py2)
        .arg(script)
        .stdin(std::fs::File::open(status).unwrap())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the original check_tid_log.py rejects {}:\n{}\n{}",
        status.display(),
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(status).unwrap()
    );
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn metrics_are_valid_prometheus_text_with_the_documented_names() {
    let dir = tempfile::tempdir().unwrap();
    let (d, port) = start(dir.path(), &[]);
    let (head, body) = scrape(port);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let m = parsed(dir.path(), &body);
    assert_eq!(
        value(
            &m,
            "tidstorage_bootstrap_complete",
            "tidstorage_bootstrap_complete",
            &[]
        ),
        Some(0.0)
    );
    let mut c = bootstrapped(&d);
    // A storage id with every character a label value must escape.
    let odd = r#"[[["10.0.0.5", 8100]], "1"]\x"#;
    let t = 285_899_593_185_544_149u64;
    publish(&mut c, "t1", &[(odd, t), ("b", 7)]);
    c.begin("t2", &["b"]);
    c.abort("t2");
    let (_, body) = scrape(port);
    let m = parsed(dir.path(), &body);
    for (family, kind) in [
        ("tidstorage_inflight_transactions", "gauge"),
        ("tidstorage_orphan_transactions", "gauge"),
        ("tidstorage_oldest_inflight_seconds", "gauge"),
        ("tidstorage_point_lag_seconds", "gauge"),
        ("tidstorage_published_tid", "gauge"),
        ("tidstorage_connections", "gauge"),
        ("tidstorage_bootstrap_complete", "gauge"),
        // A 0.0.4 parser names a counter family without `_total`.
        ("tidstorage_transactions", "counter"),
        ("tidstorage_anomalies", "counter"),
        ("tidstorage_status_file_write_errors", "counter"),
    ] {
        assert_eq!(m[family]["type"], kind, "{family} in {body}");
    }
    assert_eq!(
        value(
            &m,
            "tidstorage_bootstrap_complete",
            "tidstorage_bootstrap_complete",
            &[]
        ),
        Some(1.0)
    );
    let outcome = |o: &str| {
        value(
            &m,
            "tidstorage_transactions",
            "tidstorage_transactions_total",
            &[("outcome", o)],
        )
    };
    assert_eq!(outcome("committed"), Some(1.0));
    assert_eq!(outcome("aborted"), Some(2.0), "warmup and t2");
    assert_eq!(outcome("resolved"), Some(0.0));
    assert_eq!(
        value(
            &m,
            "tidstorage_published_tid",
            "tidstorage_published_tid",
            &[("storage", odd)]
        ),
        Some(t as f64),
        "{body}"
    );
    // The exact integer, not a float rounded to 53 bits.
    assert!(body.contains(&format!(" {t}\n")), "{body}");
    assert_eq!(
        value(
            &m,
            "tidstorage_point_lag_seconds",
            "tidstorage_point_lag_seconds",
            &[("storage", "b")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "tidstorage_oldest_inflight_seconds",
            "tidstorage_oldest_inflight_seconds",
            &[]
        ),
        Some(0.0)
    );
    // The protocol client only; this scrape's own connection is not counted.
    assert_eq!(
        value(&m, "tidstorage_connections", "tidstorage_connections", &[]),
        Some(1.0)
    );
    drop(c);
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    // The metrics line is not the protocol port's.
    assert_eq!(log.iter().filter(|l| l.contains("listening on")).count(), 1);
}

#[test]
fn a_stuck_transaction_is_seen_listed_resolved_and_stays_resolved_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // No timer-driven records: what is in the status file after the kill
    // below was written by the resolution itself.
    let slow = ["--burst-period", "1h", "--full-dump-period", "1h"];
    let (mut d, port) = start(dir.path(), &slow);
    let mut c = bootstrapped(&d);
    let t0 = unix_now() - 3600.0;
    publish(&mut c, "t1", &[("a", tid_at(t0))]);
    // A thread began, never ended, and began again: the first is an orphan.
    c.begin("zope-1", &["a"]);
    c.begin("zope-1", &["a"]);
    c.abort("zope-1");
    // Commits go on: the newest TID on a moves, the point cannot.
    publish(&mut c, "t2", &[("a", tid_at(t0 + 600.0))]);
    publish(&mut c, "t3", &[("a", tid_at(t0 + 900.0))]);
    assert_eq!(c.dump(), pt(&[("a", tid_at(t0))]));
    let (_, body) = scrape(port);
    let m = parsed(dir.path(), &body);
    let lag = value(
        &m,
        "tidstorage_point_lag_seconds",
        "tidstorage_point_lag_seconds",
        &[("storage", "a")],
    )
    .unwrap();
    assert!((lag - 900.0).abs() < 0.01, "lag {lag}");
    assert!(
        value(
            &m,
            "tidstorage_oldest_inflight_seconds",
            "tidstorage_oldest_inflight_seconds",
            &[]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        value(
            &m,
            "tidstorage_orphan_transactions",
            "tidstorage_orphan_transactions",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "tidstorage_inflight_transactions",
            "tidstorage_inflight_transactions",
            &[]
        ),
        Some(0.0)
    );

    // inflight names it, its client and what it holds back.
    let server = format!("127.0.0.1:{}", d.port);
    let o = run_in(
        dir.path(),
        &["inflight", "--server", &server, "--format", "json"],
    );
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let txns = v["transactions"].as_array().unwrap();
    assert_eq!(txns.len(), 1, "{v}");
    let t = &txns[0];
    assert_eq!(t["id"], "zope-1");
    assert_eq!(t["state"], "orphan");
    assert_eq!(t["storages"], serde_json::json!(["a"]));
    assert_eq!(t["blocking"], true);
    assert!(t["age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(t["holds_back"], serde_json::json!(["a"]));
    assert_eq!(t["client"], c.sock.local_addr().unwrap().to_string());
    let o = run_in(dir.path(), &["inflight", "--server", &server]);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(text.starts_with("ID "), "{text}");
    assert!(text.contains("zope-1") && text.contains("orphan"), "{text}");

    // No such transaction: exit 1, nothing changes.
    let o = run_in(dir.path(), &["resolve", "nobody", "--server", &server]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("no transaction 'nobody'"),
        "{}",
        stderr(&o)
    );
    // A young in-flight transaction is left alone, even by its id.
    c.begin("zope-2", &["a"]);
    let o = run_in(dir.path(), &["resolve", "zope-2", "--server", &server]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("not stale"), "{}", stderr(&o));
    c.abort("zope-2");
    assert_eq!(c.dump(), pt(&[("a", tid_at(t0))]));

    let o = run_in(dir.path(), &["resolve", "zope-1", "--server", &server]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("resolved orphan \"zope-1\""),
        "{}",
        stdout(&o)
    );
    // Recomputed at once, without more traffic.
    assert_eq!(c.dump(), pt(&[("a", tid_at(t0 + 900.0))]));
    let (_, body) = scrape(port);
    let m = parsed(dir.path(), &body);
    assert_eq!(
        value(
            &m,
            "tidstorage_point_lag_seconds",
            "tidstorage_point_lag_seconds",
            &[("storage", "a")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "tidstorage_orphan_transactions",
            "tidstorage_orphan_transactions",
            &[]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "tidstorage_transactions",
            "tidstorage_transactions_total",
            &[("outcome", "resolved")]
        ),
        Some(1.0)
    );
    assert_eq!(d.wait_log_count("resolved by the operator", 1), 1);
    assert!(d
        .drain_log()
        .iter()
        .any(|l| l.contains("resolved by the operator") && l.contains("'zope-1'")));
    let o = run_in(
        dir.path(),
        &["inflight", "--server", &server, "--format", "json"],
    );
    assert_eq!(stdout(&o).trim(), r#"{"transactions":[]}"#);

    // Killed: no final record. The resolution's own record must be there.
    drop(c);
    d.signal(libc::SIGKILL);
    let _ = d.child.wait();
    let status = std::fs::read_to_string(&d.status_file).unwrap();
    assert!(status.contains(" # resolved 'zope-1' #crc32="), "{status}");
    let o = run_in(
        dir.path(),
        &[
            "dump",
            "--status-file",
            d.status_file.to_str().unwrap(),
            "--format",
            "tsv",
        ],
    );
    assert_code(&o, 0);
    assert!(
        stdout(&o).starts_with(&format!("a\t{}\t", tid_at(t0 + 900.0))),
        "{}",
        stdout(&o)
    );
    if let Some(out) = original_check_tid_log(&d.status_file) {
        assert_eq!(out.trim(), format!("'a' {}", tid_at(t0 + 900.0)));
    }
    let (d2, _) = start(dir.path(), &slow);
    let mut c = d2.client();
    assert_eq!(c.dump(), pt(&[("a", tid_at(t0 + 900.0))]));
    drop(c);
    let (code, log) = d2.stop();
    assert_eq!(code, Some(0), "{}", log.join("\n"));
}

#[test]
fn a_stale_transaction_is_logged_with_its_client_then_at_a_slowing_interval() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.toml"),
        "[server]\nstale_after = \"1s\"\n",
    )
    .unwrap();
    let (mut d, _) = start(dir.path(), &["-c", "t.toml"]);
    let mut c = bootstrapped(&d);
    // A client killed between BEGIN and COMMIT.
    let began = Instant::now();
    c.begin("gone", &["a", "b"]);
    let me = c.sock.local_addr().unwrap();
    let first = d
        .wait_log("stale transaction: 'gone'")
        .unwrap_or_else(|| panic!("{}", d.log.join("\n")));
    assert!(first.contains(&format!("from {me}")), "{first}");
    assert!(
        first.contains("'a', 'b'") && first.contains("tidstorage resolve gone"),
        "{first}"
    );
    // Again when its age doubles (2 s, 4 s), not at every tick.
    let again = d
        .wait_log("still stale: 'gone'")
        .unwrap_or_else(|| panic!("{}", d.log.join("\n")));
    assert!(again.contains(&format!("from {me}")), "{again}");
    assert_eq!(d.wait_log_count("still stale: 'gone'", 2), 2);
    // Stale, so resolve may end it though it is not an orphan.
    let server = format!("127.0.0.1:{}", d.port);
    let o = run_in(dir.path(), &["resolve", "gone", "--server", &server]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("resolved transaction \"gone\""),
        "{}",
        stdout(&o)
    );
    let (code, log) = d.stop();
    let elapsed = began.elapsed().as_secs_f64();
    assert_eq!(code, Some(0));
    let n = log
        .iter()
        .filter(|l| l.contains("still stale: 'gone'") || l.contains("stale transaction: 'gone'"))
        .count();
    // Reports at ages 1 s, 2 s, 4 s, 8 s...: within `elapsed`, at most
    // log2(elapsed) + 1 of them (one per second would be `elapsed`).
    let most = elapsed.log2().floor() as usize + 1;
    assert!(
        n >= 3 && n <= most,
        "{n} reports in {elapsed:.1}s:\n{}",
        log.join("\n")
    );
}

#[test]
fn bad_huge_and_idle_metrics_requests_do_not_disturb_the_protocol_port() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, port) = start(dir.path(), &[]);
    let mut c = bootstrapped(&d);
    // Idle peers: connected, never a byte.
    let idle: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    publish(&mut c, "t1", &[("a", 5)]);
    assert_eq!(c.dump(), pt(&[("a", 5)]));
    // Garbage: 400 and closed.
    let a = http(
        port,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 400 "), "{a:?}");
    // A head that never ends: cut at the limit, 431, closed.
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    let a = http(port, &huge);
    assert!(a.is_empty() || a.starts_with("HTTP/1.1 431 "), "{a:?}");
    // Half a request, then nothing: the others are served meanwhile.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /met").unwrap();
    publish(&mut c, "t2", &[("a", 6)]);
    assert_eq!(c.dump(), pt(&[("a", 6)]));
    let (_, body) = scrape(port);
    let m = parsed(dir.path(), &body);
    assert_eq!(
        value(&m, "tidstorage_connections", "tidstorage_connections", &[]),
        Some(1.0)
    );
    // Up to the limit of metrics connections, then refused at once; the
    // protocol port still accepts and answers.
    let more: Vec<TcpStream> = (0..53)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut refused = TcpStream::connect(("127.0.0.1", port)).unwrap();
    refused.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        refused.read(&mut buf).unwrap_or(0),
        0,
        "closed without an answer"
    );
    let mut c2 = d.client();
    publish(&mut c2, "t3", &[("b", 1)]);
    assert_eq!(c2.dump(), pt(&[("a", 6), ("b", 1)]));
    assert!(d.wait_log("metrics connections already open").is_some());
    // Slow and idle peers are closed by the request timeout.
    slow.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(slow.read(&mut buf).unwrap_or(0), 0);
    for mut s in idle.into_iter().chain(more) {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    }
    // And a scrape works again.
    scrape(port);
    assert_eq!(c.dump(), pt(&[("a", 6), ("b", 1)]));
    drop((c, c2));
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{}", log.join("\n"));
}

#[test]
fn metrics_port_obeys_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, port) = start(dir.path(), &["--allow", "10.0.0.0/8"]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(d
        .wait_log("refused metrics connection from 127.0.0.1")
        .is_some());
}

/// A loopback https server with a self-signed certificate, answering 200 to
/// every request; sends each request line to `tx`.
fn https_server(dir: &Path) -> (u16, std::sync::mpsc::Receiver<String>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::write(dir.join("ca.pem"), ck.cert.pem()).unwrap();
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let config = std::sync::Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming().take(10) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(mut conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::Stream::new(&mut conn, &mut s);
            let mut buf = [0u8; 4096];
            let n = match tls.read(&mut buf) {
                Ok(n) => n,
                // A client that refused our certificate.
                Err(_) => continue,
            };
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = tls.flush();
            conn.send_close_notify();
            let _ = conn.complete_io(&mut s);
            if tx
                .send(req.lines().next().unwrap_or("").to_string())
                .is_err()
            {
                break;
            }
        }
    });
    (port, rx)
}

#[test]
fn https_bootstrap_trigger_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (port, rx) = https_server(dir.path());
    let config = |ca: bool| {
        format!(
            "[bootstrap]\nurl = \"https://127.0.0.1:{port}/erp5/%s/modifyContext\"\nretry = \"1h\"\n{}\
             [[storage]]\nid = \"s1\"\nmountpoint = \"root_1\"\n\
             [[storage]]\nid = \"s2\"\nmountpoint = \"root_2\"\n",
            if ca { "ca_file = \"ca.pem\"\n" } else { "" }
        )
    };
    // Without the CA the certificate is refused: the trigger fails, loudly.
    std::fs::write(dir.path().join("noca.toml"), config(false)).unwrap();
    let mut d = Daemon::start(dir.path(), &["-c", "noca.toml"]);
    let mut c = d.client();
    publish(&mut c, "t1", &[("s2", 5)]);
    let line = d
        .wait_log("bootstrap: GET for s1 failed")
        .unwrap_or_else(|| panic!("no failure logged:\n{}", d.log.join("\n")));
    assert!(line.contains("https://127.0.0.1"), "{line}");
    assert!(rx.try_recv().is_err(), "no request got through");
    drop(c);
    d.stop();
    // With it, the GET goes through.
    std::fs::write(dir.path().join("ca.toml"), config(true)).unwrap();
    let mut d = Daemon::start(dir.path(), &["-c", "ca.toml"]);
    let mut c = d.client();
    publish(&mut c, "t1", &[("s2", 5)]);
    let line = rx
        .recv_timeout(DEADLINE)
        .expect("the daemon fetched the URL over https");
    assert_eq!(line, "GET /erp5/root_1/modifyContext HTTP/1.1");
    assert!(
        d.wait_log("bootstrap: GET for s1 answered HTTP/1.1 200 OK")
            .is_some(),
        "{}",
        d.log.join("\n")
    );
    // An unreadable CA file stops the daemon at start-up.
    std::fs::write(
        dir.path().join("bad.toml"),
        config(true).replace("ca.pem", "missing.pem"),
    )
    .unwrap();
    let o = run_in(
        dir.path(),
        &[
            "-c",
            "bad.toml",
            "serve",
            "--port",
            "0",
            "--status-file",
            "x.tid",
        ],
    );
    assert_code(&o, 2);
    assert!(stderr(&o).contains("missing.pem"), "{}", stderr(&o));
}
