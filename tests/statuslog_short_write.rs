//! A write(2) the kernel takes only in part (what a full disk does) leaves
//! no partial record behind. Its own test binary: the file size limit used
//! to provoke the short write applies to the whole process.

use std::fs;

use tidstorage::statuslog::{replay_file, FsyncPolicy, RecordKind, ReplayOptions, StatusWriter};
use tidstorage::tid::Tid;

fn set_fsize_limit(soft: libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = soft.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

#[test]
fn a_short_write_is_reported_and_leaves_no_partial_record() {
    // Past the limit the kernel sends SIGXFSZ (fatal by default) and
    // returns a short count or EFBIG: ignore the signal to see those.
    // SAFETY: setting a signal to SIG_IGN has no handler to be unsafe in.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.tid");
    let mut w = StatusWriter::open(&path, FsyncPolicy::Always).unwrap();
    let entries = vec![("[[[\"10.0.0.5\", 8100]], \"1\"]".to_string(), Tid(1))];
    w.write(RecordKind::Full, &entries, 1000.0).unwrap();
    let good = fs::read(&path).unwrap();

    // Room for 10 more bytes: the next record gets cut at 10.
    set_fsize_limit(good.len() as libc::rlim_t + 10);
    let e = w
        .write(RecordKind::Delta, &[(entries[0].0.clone(), Tid(2))], 1001.0)
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("short write, 10 of"), "{msg}");
    assert!(msg.contains("the partial record was removed"), "{msg}");
    assert_eq!(fs::read(&path).unwrap(), good, "the 10 bytes were removed");

    // At the limit exactly: write(2) fails outright with EFBIG.
    set_fsize_limit(good.len() as libc::rlim_t);
    let e = w
        .write(RecordKind::Delta, &[(entries[0].0.clone(), Tid(2))], 1001.0)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("cannot append a record")
            && msg.contains(&format!("os error {}", libc::EFBIG)),
        "{msg}"
    );
    assert_eq!(fs::read(&path).unwrap(), good);

    // Space again (the hard limit is the ceiling): the writer carries on and
    // the file replays cleanly, with the failed times never used.
    set_fsize_limit(libc::RLIM_INFINITY);
    let centis = w
        .write(RecordKind::Delta, &[(entries[0].0.clone(), Tid(3))], 1002.0)
        .unwrap();
    assert_eq!(centis, 100200);
    drop(w);
    let r = replay_file(&path, ReplayOptions::default()).unwrap();
    assert_eq!(r.records, 2);
    assert_eq!(r.point[&entries[0].0], Tid(3));
    assert!(r.torn_last_line.is_none() && r.skipped.is_empty());
}
