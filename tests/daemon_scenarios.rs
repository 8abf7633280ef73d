//! SPEC §3.3 scenarios A–L2, over TCP against the real daemon.
//!
//! Each test starts `tidstorage serve` on a free port with no configured
//! storage. Except for A and B, bootstrap is completed first by ending an
//! empty transaction (BEGIN with no storage, then ABORT): bootstrap starts at
//! that end and completes at once, and the point stays `{}`, so every DUMP
//! of the table is checked exactly as written.

mod common;
use common::*;

fn ready() -> (tempfile::TempDir, Daemon, Client) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let mut c = d.client();
    c.begin("warmup", &[]);
    c.abort("warmup");
    c.wait_bootstrapped();
    assert_eq!(c.dump(), pt(&[]));
    (dir, d, c)
}

#[test]
fn scenario_a() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    assert_eq!(d.client().dump(), pt(&[]));
}

#[test]
fn scenario_b() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let mut c = d.client();
    c.begin("t1", &["s0"]);
    c.commit("t1", &[("s0", 1)]);
    assert_eq!(c.dump(), pt(&[]));
    c.wait_bootstrapped();
    assert_eq!(c.dump(), pt(&[]));
    c.begin("t2", &["s1"]);
    c.commit("t2", &[("s1", 1)]);
    assert_eq!(c.dump(), pt(&[("s0", 1), ("s1", 1)]));
}

#[test]
fn scenario_c() {
    let (_d, _s, mut c) = ready();
    c.begin("t1", &["s1"]);
    assert_eq!(c.dump(), pt(&[]));
    c.commit("t1", &[("s1", 1)]);
    assert_eq!(c.dump(), pt(&[("s1", 1)]));
}

#[test]
fn scenario_d() {
    let (_d, _s, mut c) = ready();
    c.begin("t1", &["s1"]);
    c.abort("t1");
    assert_eq!(c.dump(), pt(&[]));
}

#[test]
fn scenario_e() {
    let (_d, _s, mut c) = ready();
    c.begin("t1", &["s1", "s2"]);
    c.begin("t2", &["s1", "s3"]);
    c.commit("t2", &[("s1", 2), ("s3", 1)]);
    assert_eq!(c.dump(), pt(&[]));
    c.commit("t1", &[("s1", 1), ("s2", 1)]);
    assert_eq!(c.dump(), pt(&[("s1", 2), ("s2", 1), ("s3", 1)]));
}

fn f_prefix(c: &mut Client) {
    c.begin("t1", &["s1", "s2"]);
    c.begin("t2", &["s1", "s3"]);
    c.commit("t2", &[("s1", 2), ("s3", 1)]);
    assert_eq!(c.dump(), pt(&[]));
    c.begin("t3", &["s3"]);
    c.commit("t3", &[("s3", 1)]);
    assert_eq!(c.dump(), pt(&[]));
}

#[test]
fn scenario_f() {
    let (_d, _s, mut c) = ready();
    f_prefix(&mut c);
    c.commit("t1", &[("s1", 1), ("s2", 2)]);
    assert_eq!(c.dump(), pt(&[("s1", 2), ("s2", 2), ("s3", 1)]));
}

#[test]
fn scenario_g() {
    let (_d, _s, mut c) = ready();
    f_prefix(&mut c);
    c.abort("t1");
    assert_eq!(c.dump(), pt(&[("s1", 2), ("s3", 1)]));
}

#[test]
fn scenario_h() {
    let (_d, _s, mut c) = ready();
    c.begin("t1", &["s1"]);
    c.begin("t2", &["s1", "s2"]);
    c.commit("t1", &[("s1", 2)]);
    assert_eq!(c.dump(), pt(&[]));
    c.commit("t2", &[("s1", 1), ("s2", 1)]);
    assert_eq!(c.dump(), pt(&[("s1", 2), ("s2", 1)]));
}

#[test]
fn scenario_i() {
    let (_d, _s, mut c) = ready();
    c.begin("t1", &["s1"]);
    c.begin("t2", &["s2"]);
    c.commit("t1", &[("s1", 1)]);
    assert_eq!(c.dump(), pt(&[("s1", 1)]));
    c.commit("t2", &[("s2", 1)]);
    assert_eq!(c.dump(), pt(&[("s1", 1), ("s2", 1)]));
}

#[test]
fn scenario_j() {
    let (_d, _s, mut c) = ready();
    c.begin("t1", &["s1"]);
    c.begin("t2", &["s2"]);
    c.begin("t3", &["s1", "s2"]);
    c.commit("t1", &[("s1", 1)]);
    assert_eq!(c.dump(), pt(&[]));
    c.commit("t2", &[("s2", 2)]);
    assert_eq!(c.dump(), pt(&[]));
    c.commit("t3", &[("s1", 2), ("s2", 2)]);
    assert_eq!(c.dump(), pt(&[("s1", 2), ("s2", 2)]));
}

#[test]
fn scenario_k() {
    let (_d, _s, mut c) = ready();
    let mut previous = pt(&[]);
    for n in 1..=2 {
        c.begin("t1", &["s1"]);
        assert_eq!(c.dump(), previous);
        c.commit("t1", &[("s1", n)]);
        previous = c.dump();
    }
    assert_eq!(previous, pt(&[("s1", 2)]));
}

#[test]
fn scenario_l1() {
    let (_d, _s, mut c) = ready();
    c.begin("t0", &["a", "b"]);
    c.begin("t1", &["b"]);
    c.commit("t0", &[("a", 1), ("b", 1)]);
    let mut last_b = 0;
    let mut advances = 0;
    for i in 2..1002u64 {
        let next = format!("t{i}");
        let prev = format!("t{}", i - 1);
        c.begin(&next, &["b"]);
        c.commit(&prev, &[("b", i)]);
        if i % 50 == 0 {
            let p = c.dump();
            assert_eq!(p.get("a"), Some(&1), "a published while the chain runs");
            let b = *p.get("b").expect("b published while the chain runs");
            assert!(b >= last_b);
            if b > last_b {
                advances += 1;
            }
            last_b = b;
        }
    }
    assert!(advances >= 19, "b kept advancing: {advances} advances");
}

#[test]
fn scenario_l2() {
    let (_d, _s, mut c) = ready();
    c.begin("t1", &["a", "b"]);
    c.commit("t1", &[("a", 5), ("b", 5)]);
    c.begin("t2", &["b"]);
    c.begin("t3", &["a"]);
    c.commit("t3", &[("a", 6)]);
    assert_eq!(c.dump().get("a"), Some(&6));
}

#[test]
fn a_transaction_may_end_on_another_connection() {
    let (_d, s, mut c) = ready();
    c.begin("t1", &["s1", "s2"]);
    // A round trip: the BEGIN is applied before this connection goes away.
    assert_eq!(c.dump(), pt(&[]));
    drop(c);
    let mut c2 = s.client();
    c2.commit("t1", &[("s1", 7), ("s2", 9)]);
    assert_eq!(c2.dump(), pt(&[("s1", 7), ("s2", 9)]));
}
