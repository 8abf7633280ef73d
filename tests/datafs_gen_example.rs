//! The benchmark's Data.fs writer (`examples/gen_datafs.rs`) makes files
//! that ZODB opens and that our verifier accepts, so the benchmark measures
//! real work on a valid file.

mod common;
use common::python;

use std::path::Path;
use std::process::Command;

use tidstorage::datafs::{DataFs, Walk};

#[path = "../examples/gen_datafs.rs"]
mod gen_datafs;

#[test]
fn generated_file_is_opened_by_zodb_and_passes_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let opts = gen_datafs::Options {
        size: gen_datafs::parse_size("3M").unwrap(),
        mix: gen_datafs::parse_mix("100:50,5000:45,1200K:5").unwrap(),
        records_per_txn: 3,
        // Few objects: the file holds rewrites with back pointers too.
        oids: 50,
        seed: 7,
        root: false,
    };
    let s = gen_datafs::write_datafs(&path, &opts).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), s.size);
    assert!(s.transactions > 10);

    let fs = DataFs::open(&path).unwrap();
    let r = fs.verify(&mut |_, _| {}).unwrap();
    assert_eq!(r.transactions, s.transactions);
    assert_eq!(r.last_tid, Some(s.last_tid));
    let fast = fs.cut_position(s.middle_tid).unwrap();
    assert_eq!(fast.walk, Walk::Backward);
    assert_eq!(
        fast.position,
        fs.cut_forward(s.middle_tid).unwrap().position
    );
    assert_eq!(fast.last_kept_tid, Some(s.middle_tid));

    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datafs/generate.py"))
        .arg("--open")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"].as_u64(), Some(s.size), "zodb: {v}");
    assert_eq!(v["last_tid"].as_u64(), Some(s.last_tid.0), "zodb: {v}");
    // Every object was created, and ZODB reaches every record by following
    // each object's back pointers.
    assert_eq!(v["oids"]["count"].as_u64(), Some(50), "zodb: {v}");
    assert_eq!(
        v["oids"]["revisions"].as_u64(),
        Some(3 * s.transactions),
        "zodb: {v}"
    );
}

#[test]
fn with_a_root_zodb_db_opens_the_file_and_commits_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let opts = gen_datafs::Options {
        size: gen_datafs::parse_size("1M").unwrap(),
        mix: gen_datafs::parse_mix("100:50,5000:50").unwrap(),
        records_per_txn: 3,
        // Few objects: rewrites pick among them often, never object 0.
        oids: 5,
        seed: 3,
        root: true,
    };
    gen_datafs::write_datafs(&path, &opts).unwrap();
    let script = r#"
import sys, transaction, ZODB
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage
db = ZODB.DB(FileStorage(sys.argv[1]))
conn = db.open()
assert dict(conn.root()) == {}, dict(conn.root())
conn.root()["new"] = PersistentMapping(x=1)
transaction.commit()
db.close()
db = ZODB.DB(FileStorage(sys.argv[1], read_only=True))
print(db.open().root()["new"]["x"])
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    DataFs::open(&path).unwrap().verify(&mut |_, _| {}).unwrap();
}

#[test]
fn size_and_mix_arguments_are_checked() {
    assert_eq!(gen_datafs::parse_size("4G"), Ok(4 << 30));
    assert!(gen_datafs::parse_size("4X").is_err());
    assert!(gen_datafs::parse_mix("100").is_err());
    assert_eq!(gen_datafs::parse_mix("1K:2"), Ok(vec![(1024, 2)]));
}
