//! The Data.fs reader (src/datafs/): open, forward and backward iteration,
//! verify, cut positions and the index built from a file, on arbitrary
//! bytes written to a scratch file.
//!
//! Checks: never a panic; every failure a typed damage error inside the
//! file; iterators end and stop after one error; the backward and forward
//! cut walks give the same answer; a cut keeps only a whole transaction
//! ZODB reads, with a TID at or below the requested one; on a file that
//! verifies, both iterations see the same transactions; an index built
//! from a verified prefix saves and loads back to itself, and
//! `index_for_prefix` reusing it gives the same index.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidstorage::datafs::index::{build_index, index_for_prefix, zodb_accepts, FsIndex};
use tidstorage::datafs::DataFs;
use tidstorage::tid::Tid;

#[path = "common.rs"]
mod common;

fn check_cut(fs: &DataFs, t: Tid) {
    let size = fs.size();
    let back = fs.cut_position(t).expect("cut_position only fails on i/o");
    let fwd = fs.cut_forward(t).expect("cut_forward only fails on i/o");
    let answer = |c: &tidstorage::datafs::CutPosition| {
        (
            c.position,
            c.last_kept_tid,
            c.valid_end,
            c.transactions_removed,
            c.zodb_refuses,
        )
    };
    // The backward walk trusts what lies before the last kept transaction
    // and its header chain (src/datafs/cut.rs: "Damage before the last
    // kept transaction is not looked for on the fast path: that is verify's
    // job"). So the two walks must agree exactly whenever that prefix
    // verifies; when it does not, they may differ (docs/fuzzing.md,
    // findings 1 and 2) and `cut --verify` is what reports it.
    let prefix_verifies = fs.verify_upto(back.position, &mut |_, _| {}).is_ok();
    if prefix_verifies {
        assert_eq!(
            answer(&back),
            answer(&fwd),
            "the backward walk disagrees with the forward scan for {t:?} on a prefix \
             that verifies: {back:?} vs {fwd:?}"
        );
    }
    let c = back;
    assert!(
        c.position >= 4 && c.position <= c.valid_end && c.valid_end <= size,
        "{c:?}"
    );
    if c.damage.is_none() {
        assert_eq!(c.valid_end, size, "{c:?}");
    }
    if c.position > 4 {
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
    } else {
        assert_eq!(c.last_kept_tid, None);
    }
    let cc = fs.coherent_cut(t).expect("coherent_cut only fails on i/o");
    assert_eq!(cc.cut.position, c.position);
    if let Err(e) = fs.verify_upto(c.position, &mut |pos, end| assert!(pos <= end)) {
        assert!(e.is_damage() && e.offset <= c.position, "{e}");
    }
}

fn check_index(fs: &DataFs, upto: u64) {
    let index = match build_index(fs, upto, None, &mut |_, _| {}) {
        Ok(i) => i,
        Err(e) => {
            assert!(e.is_damage(), "{e}");
            return;
        }
    };
    let mut bytes = Vec::new();
    index.write_to(upto, &mut bytes).expect("writing to a Vec");
    let path = common::scratch("Data.fs.index");
    std::fs::write(&path, &bytes).expect("scratch file");
    let (pos, loaded) = FsIndex::load(&path).expect("a saved index loads");
    assert_eq!(pos, upto);
    assert!(
        loaded.iter().eq(index.iter()),
        "save -> load changes the index"
    );
    let _ = zodb_accepts(fs, upto, &loaded);
    match index_for_prefix(fs, upto, Some((pos, loaded)), &mut |_, _| {}) {
        Ok(p) => assert!(p.index.iter().eq(index.iter()), "{:?}", p.method),
        Err(e) => panic!("index_for_prefix failed on a prefix build_index read: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("Data.fs");
    std::fs::write(&path, data).expect("scratch file");
    let fs = match DataFs::open(&path) {
        Ok(fs) => fs,
        Err(e) => {
            assert!(e.is_damage(), "{e}");
            return;
        }
    };
    let size = fs.size();

    let mut forward = Vec::new();
    let mut errors = 0;
    for (n, r) in fs.iter_forward(4).enumerate() {
        assert!(n as u64 <= size, "forward iteration does not end");
        match r {
            Ok(h) => {
                assert!(h.pos >= 4 && h.end() <= size, "{h:?}");
                if let Err(e) = fs.verify_transaction(&h) {
                    assert!(e.is_damage() && e.offset <= size, "{e}");
                }
                forward.push(h);
            }
            Err(e) => {
                assert!(e.is_damage() && e.offset <= size, "{e}");
                errors += 1;
            }
        }
    }
    assert!(errors <= 1);
    let mut backward = Vec::new();
    let mut errors = 0;
    for (n, r) in fs.iter_backward().enumerate() {
        assert!(n as u64 <= size, "backward iteration does not end");
        match r {
            Ok(h) => backward.push(h),
            Err(e) => {
                assert!(e.is_damage() && e.offset <= size, "{e}");
                errors += 1;
            }
        }
    }
    assert!(errors <= 1);

    let verified = match fs.verify(&mut |pos, s| assert!(pos <= s)) {
        Ok(r) => {
            assert_eq!(r.end, size);
            assert_eq!(r.transactions, forward.len() as u64);
            backward.reverse();
            assert_eq!(
                forward.iter().map(|h| (h.pos, h.tid)).collect::<Vec<_>>(),
                backward.iter().map(|h| (h.pos, h.tid)).collect::<Vec<_>>(),
                "forward and backward iteration disagree on a verified file"
            );
            true
        }
        Err(e) => {
            assert!(e.is_damage() && e.offset <= size, "{e}");
            false
        }
    };

    let mut probes = vec![Tid(0), Tid::MAX];
    for h in forward.iter().take(8) {
        probes.push(h.tid);
        probes.push(Tid(h.tid.0.wrapping_sub(1)));
    }
    if let Some(tail) = data.get(data.len().saturating_sub(8)..) {
        let mut b = [0u8; 8];
        b[..tail.len()].copy_from_slice(tail);
        probes.push(Tid(u64::from_be_bytes(b)));
    }
    for t in probes {
        check_cut(&fs, t);
    }
    let vp = fs.valid_prefix().expect("valid_prefix only fails on i/o");
    if verified {
        assert_eq!(vp.end, size);
    }
    check_index(&fs, vp.end);
});
