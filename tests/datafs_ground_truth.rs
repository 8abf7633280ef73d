//! The Data.fs module against ZODB 6.4's own answers.
//!
//! `tests/fixtures/datafs/generate.py` wrote every fixture with ZODB and,
//! beside it, ZODB's read-only open results (`FileStorage(path,
//! read_only=True, stop=p64(T+1)).getSize()` for many T). These tests
//! require zero mismatches, and run ZODB again on files cut at our answers.

mod common;
use common::python;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tidstorage::datafs::{DataFs, ErrorKind, Walk};
use tidstorage::tid::Tid;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datafs")
}

/// ZODB's read-only open of each file: `{"size", "last_tid"}` or
/// `{"refused"}`.
fn zodb_open(paths: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(python())
        .arg(fixtures().join("generate.py"))
        .arg("--open")
        .args(paths)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "generate.py --open failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn all_fixtures(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "fs"))
        .map(|p| {
            let json = std::fs::read_to_string(p.with_extension("json")).unwrap();
            (p, serde_json::from_str(&json).unwrap())
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!v.is_empty(), "no fixtures in {}", dir.display());
    v
}

fn opt_u64(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// Every disagreement with ZODB for one fixture.
fn mismatches(path: &Path, want: &Value) -> Vec<String> {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut bad = Vec::new();
    let fs = DataFs::open(path).unwrap_or_else(|e| panic!("{name}: open: {e}"));
    let valid_end = want["valid_end"].as_u64().unwrap();
    let refuses = !want["zodb_refuses"].is_null();
    let damage_offset = opt_u64(&want["damage_offset"]);
    let last_tid = opt_u64(&want["last_tid"]).map(Tid);
    let tids: Vec<Tid> = want["tids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Tid(t.as_u64().unwrap()))
        .collect();

    // Damage before the last kept transaction is outside what the fast
    // backward walk looks at (documented); only the forward scan is exact.
    let exact_only = name.contains("_middle");
    let vp = if exact_only {
        let c = fs.cut_forward(Tid::MAX).unwrap();
        tidstorage::datafs::ValidPrefix {
            end: c.valid_end,
            last_tid: c.last_kept_tid,
            damage: c.damage,
            zodb_refuses: c.zodb_refuses,
            walk: c.walk,
        }
    } else {
        fs.valid_prefix().unwrap()
    };
    if vp.end != valid_end {
        bad.push(format!("{name}: valid end {} != zodb {valid_end}", vp.end));
    }
    if vp.last_tid != last_tid {
        bad.push(format!(
            "{name}: last tid {:?} != {last_tid:?}",
            vp.last_tid
        ));
    }
    if !exact_only && fs.last_tid().unwrap() != last_tid {
        bad.push(format!("{name}: last_tid() differs"));
    }
    if vp.zodb_refuses != refuses {
        bad.push(format!(
            "{name}: zodb_refuses {} != {refuses}",
            vp.zodb_refuses
        ));
    }
    match (&vp.damage, damage_offset) {
        (None, None) => {}
        (Some(d), Some(o)) if d.offset == o => {
            if !d.to_string().contains(&format!("offset {o}:")) {
                bad.push(format!("{name}: damage message lacks its offset: {d}"));
            }
        }
        (d, o) => bad.push(format!("{name}: damage {d:?} != expected at {o:?}")),
    }

    for cut in want["cuts"].as_array().unwrap() {
        let t = Tid(cut["tid"].as_u64().unwrap());
        let fast = fs.cut_position(t).unwrap();
        let slow = fs.cut_forward(t).unwrap();
        let both = [("cut_forward", &slow), ("cut_position", &fast)];
        for (label, c) in &both[..if exact_only { 1 } else { 2 }] {
            if let Some(size) = cut["size"].as_u64() {
                if c.position != size {
                    bad.push(format!(
                        "{name}: {label}({}) = {} but zodb says {size}",
                        t.0, c.position
                    ));
                }
            } else {
                // ZODB refuses: we answer the damaged transaction's offset.
                if c.position != valid_end || c.damage.is_none() || !c.zodb_refuses {
                    bad.push(format!(
                        "{name}: {label}({}) = {} {:?} but zodb refuses ({}); expected {valid_end}",
                        t.0, c.position, c.damage, cut["refused"]
                    ));
                }
            }
            let kept = tids.iter().filter(|k| **k <= t).count();
            let expect_last = if c.position == 4 {
                None
            } else {
                tids.iter().copied().filter(|k| *k <= t).max()
            };
            if name != "damaged_tid_reduction.fs" {
                if c.last_kept_tid != expect_last {
                    bad.push(format!(
                        "{name}: {label}({}) last kept {:?} != {expect_last:?}",
                        t.0, c.last_kept_tid
                    ));
                }
                if c.transactions_removed != (tids.len() - kept) as u64 {
                    bad.push(format!(
                        "{name}: {label}({}) removed {} != {}",
                        t.0,
                        c.transactions_removed,
                        tids.len() - kept
                    ));
                }
            }
            if c.valid_end != valid_end {
                bad.push(format!(
                    "{name}: {label}({}) valid_end {}",
                    t.0, c.valid_end
                ));
            }
        }
    }

    // Iteration: ZODB's tids, forward and backward.
    let forward: Vec<Tid> = fs
        .iter_forward(4)
        .map_while(Result::ok)
        .map(|h| h.tid)
        .collect();
    if forward.get(..tids.len()) != Some(&tids[..]) {
        bad.push(format!("{name}: forward tids do not start with zodb's"));
    }
    if want["damage_kind"].is_null() {
        let fwd: Result<Vec<Tid>, _> = fs.iter_forward(4).map(|r| r.map(|h| h.tid)).collect();
        let mut back: Vec<Tid> = fs
            .iter_backward()
            .map(|r| r.map(|h| h.tid))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{name}: backward: {e}"));
        back.reverse();
        if fwd.as_ref().ok() != Some(&tids) || back != tids {
            bad.push(format!(
                "{name}: forward {fwd:?} / backward {back:?} != {tids:?}"
            ));
        }
    }

    // fstest-like verification.
    let mut calls = 0u64;
    let v = fs.verify(&mut |pos, size| {
        calls += 1;
        assert!(pos <= size);
    });
    match (v, opt_u64(&want["verify_error_offset"])) {
        (Ok(r), None) => {
            if r.transactions != tids.len() as u64 || r.last_tid != last_tid || r.end != fs.size() {
                bad.push(format!("{name}: verify report {r:?}"));
            }
            if calls != r.transactions {
                bad.push(format!("{name}: progress called {calls} times"));
            }
        }
        (Err(e), Some(o)) if e.offset == o && e.is_damage() => {}
        (r, o) => bad.push(format!("{name}: verify {r:?}, expected an error at {o:?}")),
    }
    bad
}

#[test]
fn every_fixture_agrees_with_zodb() {
    let mut bad = Vec::new();
    let all = all_fixtures(&fixtures());
    for (path, want) in &all {
        bad.extend(mismatches(path, want));
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    // The set covers what the module is for.
    assert!(all.len() >= 25, "only {} fixtures", all.len());
}

#[test]
fn good_files_are_cut_on_the_fast_backward_walk() {
    for name in ["small.fs", "meta.fs", "undo.fs", "packed.fs", "many.fs"] {
        let fs = DataFs::open(&fixtures().join(name)).unwrap();
        let tids: Vec<Tid> = fs.iter_forward(4).map(|r| r.unwrap().tid).collect();
        let near_end = tids[tids.len() - 2];
        let c = fs.cut_position(near_end).unwrap();
        assert_eq!(c.walk, Walk::Backward, "{name}");
        assert_eq!(c.transactions_removed, 1, "{name}");
        assert_eq!(c.last_kept_tid, Some(near_end), "{name}");
    }
}

#[test]
fn damage_in_the_middle_is_left_to_the_forward_scan_and_verify() {
    // Transaction 3's redundant length is wrong; two intact transactions
    // follow. The fast path walks back from the end and never reads it.
    let fs = DataFs::open(&fixtures().join("damaged_bad_redundant_length_middle.fs")).unwrap();
    let fast = fs.cut_position(Tid::MAX).unwrap();
    assert_eq!((fast.walk, fast.position), (Walk::Backward, fs.size()));
    let exact = fs.cut_forward(Tid::MAX).unwrap();
    assert_eq!(exact.position, 324);
    assert!(exact.zodb_refuses);
    assert_eq!(exact.damage.unwrap().offset, 495);
    assert_eq!(fs.verify(&mut |_, _| {}).unwrap_err().offset, 495);
    // A cut at or before the damaged transaction reaches it going back.
    let tids: Vec<Tid> = fs
        .iter_backward()
        .map_while(Result::ok)
        .map(|h| h.tid)
        .collect();
    assert!(
        tids.len() < 6,
        "the backward iterator stops at the bad length"
    );
}

#[test]
fn a_checkpoint_tail_is_found_without_a_forward_scan() {
    let fs = DataFs::open(&fixtures().join("damaged_status_c.fs")).unwrap();
    let vp = fs.valid_prefix().unwrap();
    assert_eq!(vp.walk, Walk::Backward);
    let d = vp.damage.expect("the checkpoint is reported");
    assert!(d.to_string().contains("checkpoint"), "{d}");
}

#[test]
fn an_empty_storage_is_just_the_magic_zodb_writes() {
    let path = fixtures().join("empty.fs");
    assert_eq!(std::fs::read(&path).unwrap(), b"FS30");
    let fs = DataFs::open(&path).unwrap();
    assert_eq!(fs.last_tid().unwrap(), None);
    assert_eq!(fs.cut_position(Tid::MAX).unwrap().position, 4);
    assert_eq!(fs.iter_backward().count(), 0);
}

#[test]
fn non_storage_files_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("zero", &b""[..]),
        ("short", b"FS"),
        ("other", b"PK\x03\x04rest"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = DataFs::open(&p).unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(matches!(
            e.kind,
            ErrorKind::BadMagic { .. } | ErrorKind::Truncated { .. }
        ));
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: offset 0: ", p.display())),
            "{msg}"
        );
        assert!(msg.contains("; "), "says what to do: {msg}");
    }
}

/// Cutting each damaged fixture where we say makes ZODB open it, ending
/// with the transaction we say is the last.
#[test]
fn zodb_opens_damaged_files_cut_at_our_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut cut_files = Vec::new();
    let mut expected = Vec::new();
    for (path, want) in all_fixtures(&fixtures()) {
        if want["damage_kind"].is_null() {
            continue;
        }
        let fs = DataFs::open(&path).unwrap();
        let c = fs.cut_forward(Tid::MAX).unwrap();
        assert!(c.damage.is_some(), "{}", path.display());
        let bytes = std::fs::read(&path).unwrap();
        let out = dir.path().join(path.file_name().unwrap());
        std::fs::write(&out, &bytes[..c.position as usize]).unwrap();
        let cut = DataFs::open(&out).unwrap();
        assert!(cut.verify(&mut |_, _| {}).is_ok(), "{}", out.display());
        let vp = cut.valid_prefix().unwrap();
        assert!(vp.damage.is_none() && vp.end == c.position);
        cut_files.push(out);
        expected.push((c.position, c.last_kept_tid));
    }
    assert!(cut_files.len() >= 15);
    let answers = zodb_open(&cut_files);
    assert_eq!(answers.len(), cut_files.len());
    for ((file, (pos, last)), a) in cut_files.iter().zip(&expected).zip(&answers) {
        assert_eq!(
            a["size"].as_u64(),
            Some(*pos),
            "{}: zodb says {a}",
            file.display()
        );
        // ZODB reports tid 0 for a storage without transactions.
        assert_eq!(
            a["last_tid"].as_u64(),
            Some(last.map_or(0, |t| t.0)),
            "{}",
            file.display()
        );
    }
}

/// Objects over 1 MiB: generated at test time (too big to commit).
#[test]
fn big_objects_agree_with_zodb() {
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(python())
        .arg(fixtures().join("generate.py"))
        .arg("--big")
        .arg(dir.path())
        .status()
        .expect("run python");
    assert!(st.success());
    let all = all_fixtures(dir.path());
    assert_eq!(all.len(), 1);
    let (path, want) = &all[0];
    let bad = mismatches(path, want);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let fs = DataFs::open(path).unwrap();
    let r = fs.verify(&mut |_, _| {}).unwrap();
    assert!(r.data_bytes > 3 * 1024 * 1024, "{r:?}");
}
