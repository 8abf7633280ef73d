//! Blob records, snapshots, restores and cuts against real ZODB blob
//! directories (`tests/python/blob_tool.py`: FileStorage with blob_dir +
//! ZODB.DB; creating, overwriting and deleting blobs, one undo, both
//! layouts). ZODB is the ground truth: its iterator with `is_blob_record`
//! for the records, its `DB` reading every blob for restores and cuts.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tidstorage::blobs::layout::{self, FileKind, Layout};
use tidstorage::blobs::snapshot::Contents;
use tidstorage::blobs::{self, BlobRepo};
use tidstorage::datafs::blobrecords::{BlobRecord, BlobRecordError};
use tidstorage::datafs::DataFs;
use tidstorage::tid::Tid;

fn tool(args: &[&str]) -> serde_json::Value {
    common::py_tool("blob_tool.py", args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A ZODB site: DIR/Data.fs and DIR/blobs written by the workload.
fn site(root: &Path, layout: &str) -> (PathBuf, Vec<u64>) {
    let d = root.join("site");
    let v = tool(&["make", s(&d), layout]);
    let tids = v["tids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    (d, tids)
}

fn truth(d: &Path, stop: Option<u64>) -> BTreeSet<(u64, u64)> {
    let stop = stop.map(|t| t.to_string());
    let mut args = vec!["truth", s(d)];
    if let Some(t) = &stop {
        args.push(t);
    }
    tool(&args)["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect()
}

fn ours(fs: &DataFs, from: u64, to: u64) -> Vec<BlobRecord> {
    fs.blob_records(from, to).unwrap().records
}

fn set(r: &[BlobRecord]) -> BTreeSet<(u64, u64)> {
    r.iter().map(|r| (r.oid, r.tid.0)).collect()
}

fn blob_files(dir: &Path) -> BTreeSet<(u64, u64)> {
    let l = layout::read_layout(dir).unwrap();
    let w = layout::walk(dir, l).unwrap();
    w.files
        .iter()
        .filter_map(|f| match f.kind {
            FileKind::Blob(t) => Some((f.oid, t.0)),
            _ => None,
        })
        .collect()
}

/// ZODB opens `fs` with `blob_dir` and reads every reachable blob and the
/// file of every blob record.
fn zodb_read(fs: &Path, blob_dir: &Path) -> serde_json::Value {
    tool(&["read", s(fs), s(blob_dir)])
}

/// A copy of the first `len` bytes of a Data.fs (a cut or a backup).
fn copy_prefix(src: &Path, len: u64, dst: &Path) {
    let b = std::fs::read(src).unwrap();
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::write(dst, &b[..len as usize]).unwrap();
}

#[test]
fn records_are_zodbs_in_both_layouts_with_undo_and_history() {
    for l in ["bushy", "lawn"] {
        let t = tempfile::tempdir().unwrap();
        let (d, tids) = site(t.path(), l);
        let fs = DataFs::open(&d.join("Data.fs")).unwrap();
        let got = ours(&fs, 4, fs.size());
        assert_eq!(set(&got), truth(&d, None), "layout {l}");
        // History (b1 twice, the deleted b2) and the undo's own file.
        assert_eq!(got.len(), 7);
        // Every record's file is where our layout says, and only those.
        let layout = blobs::read_layout(&d.join("blobs")).unwrap();
        assert_eq!(layout.name(), l);
        for r in &got {
            assert!(d
                .join("blobs")
                .join(layout.blob_path(r.oid, r.tid))
                .is_file());
        }
        assert_eq!(blob_files(&d.join("blobs")), set(&got));
        // A prefix: transactions up to each tid.
        for &tid in &tids {
            let cut = fs.cut_position(Tid(tid)).unwrap();
            let part = ours(&fs, 4, cut.position);
            assert_eq!(set(&part), truth(&d, Some(tid)), "up to {tid}");
        }
    }
}

#[test]
fn an_incremental_range_finds_only_the_new_records() {
    let t = tempfile::tempdir().unwrap();
    let (d, _) = site(t.path(), "bushy");
    let before = DataFs::open(&d.join("Data.fs")).unwrap().size();
    tool(&["more", s(&d), "3"]);
    let fs = DataFs::open(&d.join("Data.fs")).unwrap();
    let delta = ours(&fs, before, fs.size());
    assert_eq!(delta.len(), 3);
    let mut all = set(&ours(&fs, 4, before));
    all.extend(set(&delta));
    assert_eq!(all, truth(&d, None));
}

#[test]
fn snapshots_hold_exactly_the_records_and_restores_open_in_zodb() {
    for l in ["bushy", "lawn"] {
        let t = tempfile::tempdir().unwrap();
        let (d, tids) = site(t.path(), l);
        let data_fs = d.join("Data.fs");
        let blob_dir = d.join("blobs");
        let repo = BlobRepo::at(&t.path().join("repo"));

        // Run 1: full.
        let fs = DataFs::open(&data_fs).unwrap();
        let end1 = fs.size();
        let recs1 = ours(&fs, 4, end1);
        let last1 = *tids.last().unwrap();
        let r1 = repo
            .write_snapshot(
                "2026-12-01-10-00-00",
                &blob_dir,
                Some(Tid(last1)),
                Contents::Full {
                    records: &recs1,
                    previous: None,
                },
            )
            .unwrap();
        assert_eq!((r1.files, r1.copied, r1.carried), (7, 7, 0));
        let m1 = repo.read_manifest("2026-12-01-10-00-00").unwrap();
        assert_eq!(m1.layout.name(), l);

        // Run 2: incremental, from the Data.fs delta only.
        let more: Vec<u64> = tool(&["more", s(&d), "4"])["tids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        let fs = DataFs::open(&data_fs).unwrap();
        let delta = ours(&fs, end1, fs.size());
        let r2 = repo
            .write_snapshot(
                "2026-12-01-11-00-00",
                &blob_dir,
                Some(Tid(*more.last().unwrap())),
                Contents::Incremental {
                    previous: &m1,
                    delta: &delta,
                },
            )
            .unwrap();
        assert_eq!((r2.files, r2.copied, r2.carried), (11, 4, 7));
        let m2 = repo.latest().unwrap().unwrap();
        let in_run: BTreeSet<(u64, u64)> = m2.entries.iter().map(|e| (e.oid, e.tid.0)).collect();
        assert_eq!(in_run, truth(&d, None));
        // The pool holds each file once: 11 files for the two runs.
        let pool = layout::walk(&repo.root().join("pool"), Layout::Bushy).unwrap();
        assert_eq!(pool.files.len(), 11);

        // Restore run 2 at its point, and run 2 at run 1's point (with the
        // Data.fs cut there): ZODB reads every blob of both.
        let live = zodb_read(&data_fs, &blob_dir);
        let out = t.path().join("out");
        let rb = out.join("blobs");
        let r = blobs::restore(&repo, &m2, m2.point.unwrap(), &rb, false).unwrap();
        assert_eq!(r.files, 11);
        copy_prefix(&data_fs, fs.size(), &out.join("Data.fs"));
        assert_eq!(zodb_read(&out.join("Data.fs"), &rb), live);
        assert_eq!(blob_files(&rb), truth(&d, None));
        assert!(blobs::compare(&m2, m2.point.unwrap(), &rb, true)
            .unwrap()
            .same());
        let v = blobs::verify(&repo, &m2, Tid(last1), Some(&recs1), true).unwrap();
        assert!(v.ok(), "{v:?}");

        let out1 = t.path().join("out1");
        let cut = fs.cut_position(Tid(last1)).unwrap();
        copy_prefix(&data_fs, cut.position, &out1.join("Data.fs"));
        blobs::restore(&repo, &m2, Tid(last1), &out1.join("blobs"), false).unwrap();
        assert_eq!(blob_files(&out1.join("blobs")), truth(&d, Some(last1)));
        let got = zodb_read(&out1.join("Data.fs"), &out1.join("blobs"));
        assert_eq!(got["files"].as_object().unwrap().len(), 7);
        assert_eq!(got["reachable"].as_object().unwrap().len(), 3);
    }
}

#[test]
fn cut_leaves_exactly_the_files_at_or_below_t_and_zodb_reads_them() {
    for l in ["bushy", "lawn"] {
        let t = tempfile::tempdir().unwrap();
        let (d, tids) = site(t.path(), l);
        let data_fs = d.join("Data.fs");
        let blob_dir = d.join("blobs");
        // Cut before "change b0" and its undo (tids[5], tids[6]).
        let at = tids[4];
        // Something uncommitted in tmp/, as a crashed commit leaves it.
        std::fs::write(blob_dir.join("tmp").join("BUCxyz"), b"uncommitted").unwrap();
        let fs = DataFs::open(&data_fs).unwrap();
        let pos = fs.cut_position(Tid(at)).unwrap().position;
        drop(fs);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&data_fs)
            .unwrap();
        f.set_len(pos).unwrap();
        drop(f);
        std::fs::remove_file(tidstorage::fsutil::sibling(&data_fs, ".index")).ok();

        let plan = blobs::plan_cut(&blob_dir, Tid(at)).unwrap();
        // change b0, its undo, the empty blob.
        assert_eq!(plan.blob_files(), 3);
        assert_eq!(plan.tmp_files.len(), 1);
        let r = blobs::execute_cut(&plan, false).unwrap();
        assert_eq!((r.moved, r.deleted), (3, 1));
        assert_eq!(blob_files(&blob_dir), truth(&d, Some(at)));
        assert_eq!(std::fs::read_dir(blob_dir.join("tmp")).unwrap().count(), 0);
        let tail = r.tail_dir.unwrap();
        assert_eq!(
            tail.file_name().unwrap().to_str().unwrap(),
            format!("blobs.tail-{}", Tid(at).hex())
        );
        assert_eq!(blob_files(&tail).len(), 3);
        let got = zodb_read(&data_fs, &blob_dir);
        assert_eq!(got["files"].as_object().unwrap().len(), 4);
        // Rerunning is harmless.
        let again = blobs::plan_cut(&blob_dir, Tid(at)).unwrap();
        assert!(again.is_empty());
        blobs::execute_cut(&again, false).unwrap();
        assert_eq!(blob_files(&tail).len(), 3);
    }
}

/// The reason blob backups must come from the Data.fs prefix and look in
/// `<blob_dir>.old`: a pack between the Data.fs copy and the blob copy
/// removes files the copied Data.fs names. The naive "copy the directory
/// afterwards" loses them (this test shows it can); the snapshot finds them
/// in `.old` (pack-keep-old) or fails naming oid and tid.
#[test]
fn a_pack_between_datafs_and_blob_copy_loses_files_unless_looked_for() {
    for keep_old in ["1", "0"] {
        let t = tempfile::tempdir().unwrap();
        let (d, _) = site(t.path(), "bushy");
        let fs = DataFs::open(&d.join("Data.fs")).unwrap();
        let backed_up = ours(&fs, 4, fs.size());
        drop(fs);
        tool(&["pack", s(&d), keep_old]);
        // Naive copy after the Data.fs: what the directory holds now.
        let after = blob_files(&d.join("blobs"));
        let lost: Vec<_> = set(&backed_up).difference(&after).copied().collect();
        assert!(
            !lost.is_empty(),
            "the pack removed no file: the test shows nothing"
        );
        let repo = BlobRepo::at(&t.path().join("repo"));
        let r = repo.write_snapshot(
            "r1",
            &d.join("blobs"),
            None,
            Contents::Full {
                records: &backed_up,
                previous: None,
            },
        );
        if keep_old == "1" {
            let r = r.unwrap();
            assert_eq!(r.from_old as usize, lost.len());
            assert_eq!(r.files as usize, backed_up.len());
        } else {
            let e = r.unwrap_err();
            let m = e.missing().unwrap();
            let named: Vec<(u64, u64)> = m.iter().map(|x| (x.oid, x.tid.0)).collect();
            assert_eq!(named, lost);
            assert!(repo.stamps().unwrap().is_empty());
            // Nothing added to the pool, not even a temporary.
            let pool = repo.root().join("pool");
            let left: Vec<_> = walkdir_files(&pool);
            assert!(left.is_empty(), "{left:?}");
        }
    }
}

#[test]
fn a_blob_removed_from_the_pool_is_caught_by_verify_and_restore() {
    let t = tempfile::tempdir().unwrap();
    let (d, _) = site(t.path(), "bushy");
    let fs = DataFs::open(&d.join("Data.fs")).unwrap();
    let recs = ours(&fs, 4, fs.size());
    let repo = BlobRepo::at(&t.path().join("repo"));
    repo.write_snapshot(
        "r1",
        &d.join("blobs"),
        None,
        Contents::Full {
            records: &recs,
            previous: None,
        },
    )
    .unwrap();
    let m = repo.read_manifest("r1").unwrap();
    std::fs::remove_file(repo.pool_file(recs[0].oid, recs[0].tid)).unwrap();
    let v = blobs::verify(&repo, &m, Tid(u64::MAX), Some(&recs), false).unwrap();
    assert_eq!(v.problems.len(), 1);
    let e = blobs::restore(&repo, &m, Tid(u64::MAX), &t.path().join("out"), false).unwrap_err();
    assert!(e.to_string().contains("missing from the pool"), "{e}");
    assert!(!t.path().join("out").exists());
}

#[test]
fn zeo_style_duplicate_records_name_one_file() {
    // A transaction holding two data records for one (oid, tid), as a ZEO
    // server writes for a stored blob: the second record is a copy of the
    // first placed after it in the same transaction.
    let t = tempfile::tempdir().unwrap();
    let (d, tids) = site(t.path(), "bushy");
    let data_fs = d.join("Data.fs");
    let fs = DataFs::open(&data_fs).unwrap();
    let recs = ours(&fs, 4, fs.size());
    // The empty blob's transaction is the last one.
    let last = recs.last().unwrap();
    assert_eq!(last.tid.0, *tids.last().unwrap());
    let bytes = std::fs::read(&data_fs).unwrap();
    let txn = fs.iter_backward().next().unwrap().unwrap();
    let rec_start = last.pos as usize;
    let mut plen = [0u8; 8];
    plen.copy_from_slice(&bytes[rec_start + 34..rec_start + 42]);
    let rec_len = 42 + u64::from_be_bytes(plen) as usize;
    let rec_end = txn.data_end() as usize;
    let mut dup = bytes[rec_start..rec_start + rec_len].to_vec();
    // prev of the copy points to the first record, as ZODB's would.
    dup[16..24].copy_from_slice(&last.pos.to_be_bytes());
    let added = dup.len() as u64;
    let mut out = bytes[..rec_end].to_vec();
    out.extend_from_slice(&dup);
    let tlen = txn.tlen + added;
    out.extend_from_slice(&tlen.to_be_bytes());
    let tpos = txn.pos as usize;
    out[tpos + 8..tpos + 16].copy_from_slice(&tlen.to_be_bytes());
    let p = t.path().join("dup.fs");
    std::fs::write(&p, &out).unwrap();
    let fs2 = DataFs::open(&p).unwrap();
    fs2.verify(&mut |_, _| {}).unwrap();
    let got = fs2.blob_records(4, fs2.size()).unwrap();
    assert_eq!(
        got.data_records,
        fs.blob_records(4, fs.size()).unwrap().data_records + 1
    );
    assert_eq!(set(&got.records), set(&recs));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Every mutation and every prefix of a real blob Data.fs gives Ok or
    /// a typed error with an offset inside the file, never a panic.
    #[test]
    fn mutated_files_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                 cut in any::<prop::sample::Index>()) {
        let bytes = fixture();
        let mut b = bytes.clone();
        for (i, v) in &flips {
            let at = 4 + i.index(b.len() - 4);
            b[at] = *v;
        }
        let len = 4 + cut.index(b.len() - 4);
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m.fs");
        std::fs::write(&p, &b[..len]).unwrap();
        let fs = DataFs::open(&p).unwrap();
        match fs.blob_records(4, fs.size()) {
            Ok(r) => prop_assert!(r.end <= fs.size()),
            Err(BlobRecordError::DataFs(e)) => prop_assert!(e.offset <= fs.size()),
            Err(BlobRecordError::Undecidable { offset, .. }) => prop_assert!(offset < fs.size()),
        }
    }
}

/// The bytes of one real blob Data.fs, made once per test binary.
fn fixture() -> Vec<u8> {
    static F: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let (d, _) = site(t.path(), "bushy");
        std::fs::read(d.join("Data.fs")).unwrap()
    })
    .clone()
}

/// The class-pickle machine against ZODB's own `is_blob_record` on
/// pickles Python wrote (Blob, tuples, lists, dicts, other classes, in
/// protocols 0-5) and thousands of mutations of them (bytes changed,
/// inserted, removed). Where ours decides, it must agree; it may only
/// refuse to decide (Undecidable) where calling Blob would matter.
#[test]
fn class_pickle_answers_are_zodbs_on_mutated_pickles() {
    use tidstorage::datafs::blobrecords::{class_pickle_is_blob, ClassPickle};
    let seeds: Vec<Vec<u8>> = tool(&["seeds"])["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex_decode(h.as_str().unwrap()))
        .collect();
    let mut cases: Vec<Vec<u8>> = seeds.clone();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Opcodes and bytes that matter to the machine. LONG_BINPUT and
    // LONG_BINGET ('r', 'j') are left out: with a random 4-byte index,
    // zodbpickle allocates a memo that large (seconds per case).
    let interesting = b"(0123cghpqtuxNKJM.\x80\x85\x86\x87\x8c\x93\x94\x95RbPQeasdlo)]}X\n";
    // Half the mutations start from a pickle ZODB calls a blob.
    let blob_seeds: Vec<&Vec<u8>> = seeds
        .iter()
        .filter(|s| class_pickle_is_blob(s) == ClassPickle::Blob)
        .collect();
    assert_eq!(blob_seeds.len(), 4, "Blob in protocols 0-3");
    for i in 0..20000 {
        let mut b = if i % 2 == 0 {
            blob_seeds[i / 2 % blob_seeds.len()].clone()
        } else {
            seeds[i % seeds.len()].clone()
        };
        for _ in 0..1 + next() % 3 {
            let at = (next() % (b.len() as u64 + 1)) as usize;
            let v = if next() % 2 == 0 {
                interesting[(next() % interesting.len() as u64) as usize]
            } else {
                match next() as u8 {
                    b'r' | b'j' => b'h',
                    x => x,
                }
            };
            match next() % 3 {
                0 if at < b.len() => b[at] = v,
                1 => b.insert(at, v),
                _ if at < b.len() => {
                    b.remove(at);
                }
                _ => b.insert(at, v),
            }
        }
        cases.push(b);
    }
    let input: String = cases.iter().map(|c| hex_encode(c) + "\n").collect();
    let out = std::process::Command::new(common::python())
        .arg(common::repo_path("tests/python/blob_tool.py"))
        .arg("isblob")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(input.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let answers = v["answers"].as_array().unwrap();
    let (mut blobs, mut undecided) = (0, 0);
    for (c, a) in cases.iter().zip(answers) {
        let zodb = a.as_bool().unwrap();
        let has_needle = c.windows(9).any(|w| w == b"ZODB.blob");
        match class_pickle_is_blob(c) {
            ClassPickle::Undecidable { .. } => undecided += 1,
            ours => {
                let ours = ours == ClassPickle::Blob && has_needle;
                assert_eq!(
                    ours,
                    zodb,
                    "pickle {} (ours {ours}, zodb {zodb})",
                    hex_encode(c)
                );
                blobs += ours as u32;
            }
        }
    }
    assert!(
        blobs > 50,
        "too few blob cases ({blobs}): the test shows little"
    );
    assert!(undecided < cases.len() / 20, "{undecided} undecided");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A real ZEO server writes two data records for each stored blob (same
/// oid and tid, one transaction): one file, reported once. The client's
/// blob cache (`zeocache` layout) is refused as a source.
#[test]
fn a_zeo_servers_duplicate_records_name_one_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("zeo");
    let n = tool(&["zeo", s(&d)])["records"].as_u64().unwrap();
    let fs = DataFs::open(&d.join("Data.fs")).unwrap();
    let r = fs.blob_records(4, fs.size()).unwrap();
    assert_eq!(r.data_records, n);
    // Each blob record twice in ZODB's iteration, once here.
    assert_eq!(r.records.len(), 3);
    assert!(
        n >= 3 * 2,
        "ZEO wrote no duplicate records ({n}): the test shows nothing"
    );
    assert_eq!(set(&r.records), truth(&d, None));
    assert_eq!(blob_files(&d.join("blobs")), set(&r.records));
    let repo = BlobRepo::at(&t.path().join("repo"));
    let e = repo
        .write_snapshot(
            "r1",
            &d.join("zeocache"),
            None,
            Contents::Full {
                records: &r.records,
                previous: None,
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("never a source"), "{e}");
}

/// Every file under `dir` (none when it does not exist).
fn walkdir_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
