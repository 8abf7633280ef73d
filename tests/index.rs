//! `Data.fs.index` against the real ZODB: our index equals the one ZODB
//! builds, our file is ZODB's byte for byte, ZODB opens a file with our
//! index without rebuilding it (its own `_used_index` marker), extension and
//! fix-up equal a full build, `tidstorage cut` leaves an index ZODB uses,
//! and malformed index files are typed errors.

mod common;
use common::*;
use tidstorage::fsutil::sibling;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tidstorage::datafs::index::{
    build_index, index_for_prefix, zodb_accepts, FsIndex, IndexMethod,
};
use tidstorage::datafs::DataFs;

/// Runs `tests/python/index_tool.py ARGS` and parses its JSON answer.
fn tool(args: &[&str]) -> serde_json::Value {
    py_tool("index_tool.py", args)
}

fn zodb_map(v: &serde_json::Value) -> BTreeMap<u64, u64> {
    v["index"]
        .as_object()
        .expect("an index object")
        .iter()
        .map(|(k, p)| (k.parse().unwrap(), p.as_u64().unwrap()))
        .collect()
}

fn our_map(ix: &FsIndex) -> BTreeMap<u64, u64> {
    ix.iter().collect()
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

fn full_index(df: &DataFs) -> FsIndex {
    build_index(df, df.size(), None, &mut no_progress()).unwrap()
}

/// A ZODB-written file exercising the index (several oid prefixes, pack,
/// undo, an undone creation), with the index ZODB wrote on close.
fn written(dir: &Path) -> PathBuf {
    let f = dir.join("Data.fs");
    tool(&["write", f.to_str().unwrap()]);
    for junk in [".lock", ".tmp", ".old"] {
        let _ = std::fs::remove_file(sibling(&f, junk));
    }
    f
}

/// Transaction ends of a whole, valid file.
fn boundaries(df: &DataFs) -> Vec<u64> {
    df.iter_forward(4).map(|h| h.unwrap().end()).collect()
}

#[test]
fn build_index_equals_zodbs_scan_on_every_fixture() {
    let dir = repo_path("tests/fixtures/datafs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "fs"))
        .collect();
    files.sort();
    // ZODB scans each file's valid prefix (it raises on some damaged tails).
    let tmp = tempfile::tempdir().unwrap();
    let prefixes: Vec<(PathBuf, u64)> = files
        .iter()
        .map(|f| {
            let end = DataFs::open(f).unwrap().valid_prefix().unwrap().end;
            let copy = tmp.path().join(f.file_name().unwrap());
            std::fs::write(&copy, &std::fs::read(f).unwrap()[..end as usize]).unwrap();
            (copy, end)
        })
        .collect();
    let args: Vec<&str> = std::iter::once("scan")
        .chain(prefixes.iter().map(|(c, _)| c.to_str().unwrap()))
        .collect();
    let zodb = tool(&args);
    let mut compared = 0;
    for (f, (copy, end)) in files.iter().zip(&prefixes) {
        let z = &zodb[copy.to_str().unwrap()];
        let df = DataFs::open(f).unwrap();
        let vp = df.valid_prefix().unwrap();
        assert_eq!(vp.end, *end);
        match build_index(&df, vp.end, None, &mut no_progress()) {
            Ok(ix) => {
                assert!(z.get("error").is_none(), "{f:?}: ZODB refused: {z}");
                assert_eq!(z["pos"], vp.end, "{f:?}");
                assert_eq!(our_map(&ix), zodb_map(z), "{f:?}");
                compared += 1;
            }
            Err(e) => {
                // Never indexed silently: the prefix fails fstest's checks.
                assert!(e.is_damage(), "{f:?}: {e}");
                assert!(e.offset < vp.end, "{f:?}: {e}");
                assert!(df.verify(&mut no_progress()).is_err(), "{f:?}");
            }
        }
    }
    assert!(compared >= 20, "only {compared} fixtures compared");
}

#[test]
fn our_index_file_is_zodbs_byte_for_byte_and_zodb_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = written(dir.path());
    let index_path = sibling(&f, ".index");
    let zodb_bytes = std::fs::read(&index_path).unwrap();
    let df = DataFs::open(&f).unwrap();
    let ours = full_index(&df);
    assert!(ours.len() > 100);
    let prefixes: std::collections::BTreeSet<u64> = ours.iter().map(|(o, _)| o >> 16).collect();
    assert!(prefixes.len() >= 4, "oids span several buckets");

    // Same bytes as ZODB's fsIndex.save, and ZODB's file loads to ours.
    let mut bytes = Vec::new();
    ours.write_to(df.size(), &mut bytes).unwrap();
    assert_eq!(bytes, zodb_bytes);
    let (pos, loaded) = FsIndex::load(&index_path).unwrap();
    assert_eq!((pos, &loaded), (df.size(), &ours));
    assert!(zodb_accepts(&df, pos, &ours));

    // ZODB opens with ours and does not rebuild.
    std::fs::remove_file(&index_path).unwrap();
    ours.save(df.size(), &index_path).unwrap();
    let z = tool(&["open", f.to_str().unwrap()]);
    assert_eq!(z["used_index"], true, "ZODB rebuilt the index");
    assert_eq!(zodb_map(&z), our_map(&ours));
    assert_eq!(z["loads"], tool(&["loads", f.to_str().unwrap()])["loads"]);
    assert!(
        z["loads"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v == "POSKeyError"),
        "the undone creation stays in the index, as in ZODB's"
    );
}

#[test]
fn extension_and_fix_up_equal_a_full_build() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![written(dir.path())];
    files.push(repo_path("tests/fixtures/datafs/many.fs"));
    for f in &files {
        let df = DataFs::open(f).unwrap();
        let full = full_index(&df);
        let ends = boundaries(&df);
        let step = (ends.len() / 12).max(1);
        for &p in ends.iter().step_by(step) {
            let prefix = build_index(&df, p, None, &mut no_progress()).unwrap();
            let ext = index_for_prefix(
                &df,
                df.size(),
                Some((p, prefix.clone())),
                &mut no_progress(),
            )
            .unwrap();
            assert_eq!(
                ext.method,
                IndexMethod::Extended { from: p },
                "{f:?} at {p}"
            );
            assert_eq!(ext.rejected, None);
            assert_eq!(ext.index, full, "{f:?}: extended from {p}");

            let fixed =
                index_for_prefix(&df, p, Some((df.size(), full.clone())), &mut no_progress())
                    .unwrap();
            if p < df.size() {
                assert_eq!(
                    fixed.method,
                    IndexMethod::FixedUp { from: df.size() },
                    "{f:?} at {p}"
                );
            }
            assert_eq!(fixed.rejected, None, "{f:?} at {p}");
            assert_eq!(fixed.index, prefix, "{f:?}: fixed up down to {p}");
        }
        // An offset inside a transaction is refused, not indexed.
        let e = build_index(&df, ends[0] + 1, None, &mut no_progress()).unwrap_err();
        assert!(!e.is_damage(), "{e}");
        assert!(
            e.to_string().contains("not the end of a transaction"),
            "{e}"
        );
    }
}

#[test]
fn an_index_of_another_file_is_rejected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let f = written(dir.path());
    let df = DataFs::open(&f).unwrap();
    let other = DataFs::open(&repo_path("tests/fixtures/datafs/many.fs")).unwrap();
    let foreign = full_index(&other);
    let ends = boundaries(&df);
    let cut = ends[ends.len() - 4];
    // Covers more than the cut (fix-up path) or less (extension path).
    for pos in [df.size(), ends[3]] {
        let got =
            index_for_prefix(&df, cut, Some((pos, foreign.clone())), &mut no_progress()).unwrap();
        assert_eq!(got.method, IndexMethod::Built, "covering {pos}");
        assert!(got.rejected.is_some());
        assert_eq!(
            got.index,
            build_index(&df, cut, None, &mut no_progress()).unwrap()
        );
    }
}

/// Cuts `f` after its `keep`-th transaction with the binary, then checks
/// that ZODB opens it with the fresh index, unchanged from its own scan,
/// and loads every object as after a scan.
fn cut_and_check(f: &Path, tid: u64, want_action: &str) {
    let dir = f.parent().unwrap();
    let plan = run_in(
        dir,
        &[
            "cut",
            "--dry-run",
            "--format",
            "json",
            f.to_str().unwrap(),
            &tid.to_string(),
        ],
    );
    assert_code(&plan, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&plan).trim()).unwrap();
    assert_eq!(v["index"]["action"], want_action, "{v}");
    let o = run_in(dir, &["cut", f.to_str().unwrap(), &tid.to_string()]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("index written"), "{}", stdout(&o));
    let z = tool(&["open", f.to_str().unwrap()]);
    assert_eq!(
        z["used_index"], true,
        "ZODB rebuilt the index after the cut"
    );
    assert_eq!(z["pos"], std::fs::metadata(f).unwrap().len());
    let scan = tool(&["scan", f.to_str().unwrap()]);
    assert_eq!(zodb_map(&z), zodb_map(&scan[f.to_str().unwrap()]));
    assert_eq!(z["loads"], tool(&["loads", f.to_str().unwrap()])["loads"]);
}

#[test]
fn cut_writes_an_index_zodb_uses_whatever_index_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let tids: Vec<u64> = {
        let f = written(dir.path());
        let df = DataFs::open(&f).unwrap();
        df.iter_forward(4).map(|h| h.unwrap().tid.0).collect()
    };
    let f = dir.path().join("Data.fs");
    let n = tids.len();
    // ZODB's index covers the whole file: fixed up from the removed part.
    cut_and_check(&f, tids[n - 6], "fix_up");
    // No index at all: built.
    std::fs::remove_file(sibling(&f, ".index")).unwrap();
    cut_and_check(&f, tids[n - 9], "build");
    // An index ZODB wrote for a shorter prefix: extended.
    let short = tempfile::tempdir().unwrap();
    let sf = short.path().join("Data.fs");
    let df = DataFs::open(&f).unwrap();
    let p = boundaries(&df)[n / 2];
    std::fs::write(&sf, &std::fs::read(&f).unwrap()[..p as usize]).unwrap();
    tool(&["reindex", sf.to_str().unwrap()]);
    assert_eq!(FsIndex::read_pos(&sibling(&sf, ".index")).unwrap(), p);
    std::fs::copy(sibling(&sf, ".index"), sibling(&f, ".index")).unwrap();
    cut_and_check(&f, tids[n - 12], "extend");
}

#[test]
fn malformed_index_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = written(dir.path());
    let good = std::fs::read(sibling(&f, ".index")).unwrap();
    let p = dir.path().join("bad.index");
    let load = |bytes: &[u8]| {
        std::fs::write(&p, bytes).unwrap();
        FsIndex::load(&p)
    };
    // Every truncation, including inside the final None.
    for n in 0..good.len() {
        let e = load(&good[..n]).unwrap_err();
        assert!(e.offset <= n as u64, "prefix {n}: {e}");
        assert!(e.to_string().contains("bad.index"), "{e}");
    }
    assert!(load(&good).is_ok());
    // A protocol-2 pickle, a GLOBAL, an old-style dict, a bucket of 7 bytes.
    let cases: &[(&[u8], u64, &str)] = &[
        (b"\x80\x02K\x05.", 1, "protocol 2"),
        (b"\x80\x03K\x05.\x80\x03cos\nsystem\n", 7, "opcode 0x63"),
        (b"\x80\x03}q\x00.", 2, "opcode 0x7d"),
        (
            b"\x80\x03K\x05.\x80\x03C\x06\0\0\0\0\0\0C\x07\0\0\0\0\0\0\0\x86.",
            5,
            "8-byte entries",
        ),
        (b"\x80\x03K\x05.\x80\x03K\x01.", 5, "expected a bucket pair"),
        (b"\x80\x03N.", 0, "covered position"),
    ];
    for (bytes, offset, text) in cases {
        let e = load(bytes).unwrap_err();
        assert_eq!(e.offset, *offset, "{e}");
        assert!(e.to_string().contains(text), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mutated_or_random_index_files_never_panic(
        flips in proptest::collection::vec((0usize..2000, any::<u8>()), 1..6),
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.index");
        let mut ix = FsIndex::new();
        for o in 0..150u64 {
            ix.insert(o * 997, 4 + o * 50);
        }
        let mut good = Vec::new();
        ix.write_to(123_456, &mut good).unwrap();
        let mut bad = good.clone();
        for (at, b) in &flips {
            let i = at % bad.len();
            bad[i] = *b;
        }
        std::fs::write(&p, &bad).unwrap();
        if let Ok((_, got)) = FsIndex::load(&p) {
            prop_assert!(got.len() <= 150 * 8);
        }
        std::fs::write(&p, &garbage).unwrap();
        let _ = FsIndex::load(&p);
        let _ = FsIndex::read_pos(&p);
    }
}
