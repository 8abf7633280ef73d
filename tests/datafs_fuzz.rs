//! Mutated Data.fs files: every call returns Ok or a typed error, never
//! panics, and a cut position is never beyond the file nor inside a
//! transaction that fails verification. Also keeps the inputs the `datafs`
//! fuzz target found (docs/fuzzing.md).

use std::path::Path;

use proptest::prelude::*;
use tidstorage::datafs::DataFs;
use tidstorage::tid::Tid;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/datafs")
            .join(name),
    )
    .unwrap()
}

/// Runs every public call on `bytes`; panics (failing the test) only on a
/// broken promise.
fn exercise(bytes: &[u8], probe: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    std::fs::write(&path, bytes).unwrap();
    let fs = match DataFs::open(&path) {
        Ok(fs) => fs,
        Err(e) => {
            assert!(e.is_damage(), "{e}");
            return;
        }
    };
    let size = fs.size();
    // Iterators end (bounded by the file size) and stop after one error.
    let mut errors = 0;
    for (n, r) in fs.iter_forward(4).enumerate() {
        assert!(n as u64 <= size, "forward iteration does not end");
        match r {
            Ok(h) => {
                assert!(h.end() <= size);
                let _ = fs.verify_transaction(&h);
            }
            Err(e) => {
                assert!(e.is_damage() && e.offset <= size, "{e}");
                errors += 1;
            }
        }
    }
    assert!(errors <= 1);
    let mut errors = 0;
    for (n, r) in fs.iter_backward().enumerate() {
        assert!(n as u64 <= size, "backward iteration does not end");
        if r.is_err() {
            errors += 1;
        }
    }
    assert!(errors <= 1);
    let _ = fs.read_txn_header(probe % (size + 10));
    if let Err(e) = fs.verify(&mut |pos, s| assert!(pos <= s)) {
        assert!(e.is_damage() && e.offset <= size, "{e}");
    }
    let _ = fs.last_tid().unwrap();
    for t in [Tid(probe), Tid(0), Tid::MAX] {
        for c in [fs.cut_position(t).unwrap(), fs.cut_forward(t).unwrap()] {
            assert!(c.position <= c.valid_end && c.valid_end <= size, "{c:?}");
            assert!(c.position >= 4);
            if c.position > 4 {
                // The kept end is a transaction ZODB reads in full.
                let before = fs
                    .iter_backward_from(c.position)
                    .next()
                    .expect("a transaction ends at the cut")
                    .expect("its header and trailer match");
                assert_eq!(before.end(), c.position);
                assert_eq!(Some(before.tid), c.last_kept_tid);
                assert!(before.tid <= t, "{c:?}");
                fs.zodb_check_transaction(&before)
                    .unwrap_or_else(|e| panic!("kept a transaction zodb refuses: {e}"));
            }
            if c.damage.is_none() {
                assert_eq!(c.valid_end, size);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, byte: u8 },
    Truncate { len: usize },
    Splice { from: usize, to: usize, len: usize },
    HugeLength { at: usize, value: u64 },
    Append { bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), any::<usize>(), 1usize..300)
            .prop_map(|(from, to, len)| Mutation::Splice { from, to, len }),
        (
            any::<usize>(),
            prop_oneof![
                Just(u64::MAX),
                Just(u64::MAX - 7),
                Just(1u64 << 63),
                Just(0u64),
                Just(22u64),
                any::<u64>()
            ]
        )
            .prop_map(|(at, value)| Mutation::HugeLength { at, value }),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(|bytes| Mutation::Append { bytes }),
    ]
}

fn apply(mut b: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let n = b.len().max(1);
    match m {
        Mutation::Flip { at, byte } => {
            if !b.is_empty() {
                b[at % n] ^= byte | 1;
            }
        }
        Mutation::Truncate { len } => b.truncate(len % n),
        Mutation::Splice { from, to, len } => {
            let from = from % n;
            let end = (from + len).min(b.len());
            let chunk = b.get(from..end).unwrap_or(&[]).to_vec();
            let to = to % n;
            b.splice(to..to, chunk);
        }
        Mutation::HugeLength { at, value } => {
            let at = at % n;
            for (i, x) in value.to_be_bytes().iter().enumerate() {
                if let Some(slot) = b.get_mut(at + i) {
                    *slot = *x;
                }
            }
        }
        Mutation::Append { bytes } => b.extend_from_slice(bytes),
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_give_ok_or_typed_errors(
        which in 0usize..4,
        muts in proptest::collection::vec(mutation(), 1..4),
        probe in any::<u64>(),
    ) {
        let name = ["small.fs", "undo.fs", "meta.fs", "packed.fs"][which];
        let mut b = fixture(name);
        for m in &muts {
            b = apply(b, m);
        }
        exercise(&b, probe);
    }

    /// Lengths pointing anywhere, placed on real header fields.
    #[test]
    fn lengths_at_header_fields(field in 0usize..6, txn in 0usize..5, value in any::<u64>(), probe in any::<u64>()) {
        let b = fixture("small.fs");
        let fs_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datafs/small.fs");
        let fs = DataFs::open(&fs_path).unwrap();
        let h = fs.iter_forward(4).nth(txn).unwrap().unwrap();
        // tlen, trailer, first data record's prev, tloc, plen, back pointer.
        let at = [h.pos + 8, h.data_end(), h.data_start() + 16, h.data_start() + 24,
                  h.data_start() + 34, h.data_start() + 42][field] as usize;
        let m = Mutation::HugeLength { at, value };
        exercise(&apply(b, &m), probe);
    }
}

#[test]
fn every_prefix_of_a_fixture_parses_to_ok_or_a_typed_error() {
    for name in ["small.fs", "undo.fs"] {
        let b = fixture(name);
        for len in 0..=b.len() {
            exercise(&b[..len], len as u64 * 7919);
        }
    }
}

/// Found by `fuzz/fuzz_targets/datafs.rs` (docs/fuzzing.md, findings 1 and
/// 2): damage the backward fast path of `cut_position` does not look for,
/// because it lies before the last kept transaction. Whatever the fast
/// path answers, when it differs from the exact forward scan, verifying
/// the part it keeps must fail, so that `cut --verify` says so.
#[test]
fn fast_path_divergences_found_by_fuzzing_are_caught_by_verify() {
    let small = fixture("small.fs");
    // (offset, byte) changes to small.fs, and the TID cut at.
    let cases: [(&[(usize, u8)], Tid); 2] = [
        // A data record of the transaction at 166 names the wrong
        // transaction (tloc), and the last transaction has status 'c'.
        (&[(217, 10), (937, b'c')], Tid::MAX),
        // The transaction at 324 has a TID above all the later ones; cut
        // just below it, ZODB's `stop` read ends at 324.
        (&[(327, 0x22)], Tid(0x040d_2b22_4d51_2f43)),
    ];
    for (changes, tid) in cases {
        let mut b = small.clone();
        for &(at, byte) in changes {
            b[at] = byte;
        }
        exercise(&b, tid.0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        std::fs::write(&path, &b).unwrap();
        let fs = DataFs::open(&path).unwrap();
        let fast = fs.cut_position(tid).unwrap();
        let exact = fs.cut_forward(tid).unwrap();
        if (fast.position, fast.last_kept_tid) != (exact.position, exact.last_kept_tid) {
            assert!(
                fs.verify_upto(fast.position, &mut |_, _| {}).is_err(),
                "{changes:?}: the fast path kept {fast:?}, the forward scan {exact:?}, \
                 and verify does not see why"
            );
        }
        // What `cut` and `restore` use walks the headers of the kept part:
        // a wrong tid there (the second case) sends it to the forward scan.
        // Damage inside data records (the first) is left to --verify.
        let checked = fs.coherent_cut_checked(tid).unwrap().cut;
        if changes.len() == 1 {
            assert_eq!(
                (checked.position, checked.last_kept_tid),
                (exact.position, exact.last_kept_tid),
                "{changes:?}"
            );
        }
    }
}
