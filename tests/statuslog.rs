//! The status file against its readers and writers: real Python 2/3 `eval`
//! of our lines, real Python `repr` lines through our parser, replay rules,
//! torn last lines, any read split, and the writer's guarantees.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use tidstorage::statuslog::{
    format_record, parse_record, replay_file, replay_reader, ErrorKind, FsyncPolicy, Point, Record,
    RecordKind, Replay, ReplayOptions, StatusWriter, Violation,
};
use tidstorage::tid::Tid;

// ---------------------------------------------------------------- helpers

/// Python 2.7 as pyenv installs it, when present (the original daemon's
/// language; not every machine has it).
fn python2() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".pyenv/versions/2.7.18/bin/python");
    p.exists().then_some(p)
}

fn compat_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/statuslog_compat.py")
}

fn run_python(python: &Path, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(compat_script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed: {text}{}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A small deterministic generator, so failures name a reproducible seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const NASTY: &[&str] = &[
    "a",
    "Z",
    "0",
    " ",
    "'",
    "\"",
    "\\",
    "\n",
    "\r",
    "\t",
    "\0",
    "\x1f",
    "\x7f",
    "\u{80}",
    "\u{85}",
    "\u{a0}",
    "\u{ad}",
    "é",
    "€",
    "\u{2028}",
    "😀",
    "#",
    "{",
    "}",
    ":",
    ",",
    " #crc32=",
    "[[[\"127.0.0.1\", 8100]], \"1\"]",
    "L",
    "u'",
];

fn nasty_key(rng: &mut Rng) -> String {
    (0..rng.below(9))
        .map(|_| NASTY[rng.below(NASTY.len() as u64) as usize])
        .collect()
}

fn nasty_value(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => 0,
        1 => u64::MAX,
        _ => rng.next(),
    }
}

fn entries(pairs: &[(&str, u64)]) -> Vec<(String, Tid)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Tid(*v)))
        .collect()
}

fn point(pairs: &[(&str, u64)]) -> Point {
    entries(pairs).into_iter().collect()
}

fn line(centis: u64, kind: RecordKind, pairs: &[(&str, u64)]) -> String {
    format_record(&Record {
        centis,
        kind,
        entries: entries(pairs),
        had_crc: true,
    })
}

fn strict() -> ReplayOptions {
    ReplayOptions { lenient: false }
}

fn lenient() -> ReplayOptions {
    ReplayOptions { lenient: true }
}

fn replay_bytes(bytes: &[u8], opts: ReplayOptions) -> Result<Replay, tidstorage::statuslog::Error> {
    replay_reader(bytes, "test", opts)
}

/// Returns at most one byte per `read`.
struct OneByte<'a>(&'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[0];
        self.0 = &self.0[1..];
        Ok(1)
    }
}

/// Returns reads of the sizes a seeded generator picks.
struct Splits<'a> {
    data: &'a [u8],
    rng: Rng,
}

impl Read for Splits<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (1 + self.rng.below(40) as usize)
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

// ------------------------------------------------ compatibility with Python

#[test]
fn lines_from_the_original_daemon_parse() {
    let cases: &[(&str, &[(&str, u64)])] = &[
        (
            "1732212345.67 f {'[[[\"127.0.0.1\", 8100]], \"1\"]': 285899593185544149L}\n",
            &[("[[[\"127.0.0.1\", 8100]], \"1\"]", 285899593185544149)],
        ),
        (
            "1232212345.10 d {u'[[[\"10.0.0.5\", 8100]], \"1\"]': 1L, u'b': 18446744073709551615L}\n",
            &[("[[[\"10.0.0.5\", 8100]], \"1\"]", 1), ("b", u64::MAX)],
        ),
        (
            "1232212345.1 f {\"it's\": 3, 'x\\'y': 4L}\n",
            &[("it's", 3), ("x'y", 4)],
        ),
        ("1232212345 f {}\n", &[]),
    ];
    for (text, want) in cases {
        let r = parse_record(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(r.entries, entries(want), "{text:?}");
        assert!(!r.had_crc);
    }
}

/// Lines Python itself wrote with `'%.2f %s %r' % (time, kind, dict)`, as the
/// original daemon did, parse to the same keys and values.
#[test]
fn lines_written_by_real_python_parse_to_the_same_dicts() {
    let dir = tempfile::tempdir().unwrap();
    let mut pythons = vec![("python3", common::python())];
    match python2() {
        Some(p) => pythons.push(("python2", p)),
        None => {
            eprintln!("note: ~/.pyenv/versions/2.7.18/bin/python absent: python 2 part not run")
        }
    }
    for (label, py) in pythons {
        let lines = dir.path().join(format!("{label}.lines"));
        let expect = dir.path().join(format!("{label}.json"));
        run_python(
            &py,
            &[
                "emit",
                "2000",
                "7",
                lines.to_str().unwrap(),
                expect.to_str().unwrap(),
            ],
        );
        let expected: Vec<serde_json::Value> =
            serde_json::from_slice(&fs::read(&expect).unwrap()).unwrap();
        let text = fs::read(&lines).unwrap();
        let mut n = 0;
        for (i, raw) in text.split_inclusive(|&b| b == b'\n').enumerate() {
            let l = std::str::from_utf8(raw).unwrap();
            let rec =
                parse_record(l).unwrap_or_else(|e| panic!("{label} line {}: {l:?}: {e}", i + 1));
            let want = &expected[i];
            assert_eq!(
                rec.centis,
                want["centis"].as_u64().unwrap(),
                "{label} {l:?}"
            );
            let got: BTreeMap<String, u64> =
                rec.entries.iter().map(|(k, v)| (k.clone(), v.0)).collect();
            let want: BTreeMap<String, u64> = want["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| (kv[0].as_str().unwrap().to_string(), kv[1].as_u64().unwrap()))
                .collect();
            assert_eq!(got, want, "{label} line {}: {l:?}", i + 1);
            n += 1;
        }
        assert_eq!(n, 2000, "{label}");
    }
}

/// What we write, the original's way of reading (`eval` of the text after
/// the type letter; the crc is a comment) gives the same dict, in Python 3
/// and in Python 2.
#[test]
fn real_python_eval_of_our_lines_gives_the_same_dicts() {
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("ours.lines");
    let expect = dir.path().join("ours.json");
    let mut rng = Rng(0x5eed_0001);
    let mut text = String::new();
    let mut expected = Vec::new();
    for i in 0..3000u64 {
        let mut p = BTreeMap::new();
        for _ in 0..rng.below(5) {
            p.insert(nasty_key(&mut rng), nasty_value(&mut rng));
        }
        let kind = if rng.below(2) == 0 {
            RecordKind::Full
        } else {
            RecordKind::Delta
        };
        text.push_str(&format_record(&Record {
            centis: 173221234500 + i,
            kind,
            entries: p.iter().map(|(k, v)| (k.clone(), Tid(*v))).collect(),
            had_crc: true,
        }));
        expected.push(
            p.into_iter()
                .map(|(k, v)| serde_json::json!([k, v]))
                .collect::<Vec<_>>(),
        );
    }
    fs::write(&lines, &text).unwrap();
    fs::write(&expect, serde_json::to_vec(&expected).unwrap()).unwrap();
    let args = ["check", lines.to_str().unwrap(), expect.to_str().unwrap()];
    let out = run_python(&common::python(), &args);
    assert!(out.contains("checked 3000 lines, 0 bad"), "{out}");
    match python2() {
        Some(py2) => {
            let out = run_python(&py2, &args);
            assert!(out.contains("checked 3000 lines, 0 bad"), "{out}");
        }
        None => {
            eprintln!("note: ~/.pyenv/versions/2.7.18/bin/python absent: python 2 part not run")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// format -> parse gives back the record, for any storage ids.
    #[test]
    fn format_then_parse_round_trips(
        centis in any::<u64>(),
        full in any::<bool>(),
        map in prop::collection::btree_map(any::<String>(), any::<u64>(), 0..6),
    ) {
        let kind = if full { RecordKind::Full } else { RecordKind::Delta };
        let rec = Record {
            centis,
            kind,
            entries: map.iter().map(|(k, v)| (k.clone(), Tid(*v))).collect(),
            had_crc: true,
        };
        let text = format_record(&rec);
        prop_assert!(text.ends_with('\n'));
        prop_assert_eq!(text.matches('\n').count(), 1, "one line: {:?}", text);
        prop_assert!(!text.contains('\r'));
        prop_assert_eq!(parse_record(&text).unwrap(), rec);
    }

    /// Any byte flipped in a written line is caught (crc or syntax), never
    /// accepted as another record and never a panic.
    #[test]
    fn a_flipped_byte_never_passes(
        map in prop::collection::btree_map("[a-z'\"\\\\é]{0,6}", any::<u64>(), 1..4),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let rec = Record {
            centis: 173221234567,
            kind: RecordKind::Delta,
            entries: map.iter().map(|(k, v)| (k.clone(), Tid(*v))).collect(),
            had_crc: true,
        };
        let mut bytes = format_record(&rec).into_bytes();
        let i = at.index(bytes.len() - 1); // keep the final '\n'
        bytes[i] ^= 1 << bit;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(other) = parse_record(text) {
                // Only a flip that turns a crc hex digit to upper case still
                // parses, and then to the same record.
                prop_assert_eq!(other, rec);
            }
        }
    }
}

// ---------------------------------------------------------------- replay

#[test]
fn replay_rules_violations_name_the_line() {
    let base = [
        line(100, RecordKind::Full, &[("a", 10), ("b", 20)]),
        line(101, RecordKind::Delta, &[("a", 11)]),
    ]
    .concat();
    let cases: Vec<(String, Violation)> = vec![
        (
            line(101, RecordKind::Delta, &[("a", 12)]),
            Violation::TimeNotIncreasing {
                previous: 101,
                this: 101,
            },
        ),
        (
            line(50, RecordKind::Delta, &[("a", 12)]),
            Violation::TimeNotIncreasing {
                previous: 101,
                this: 50,
            },
        ),
        (
            line(102, RecordKind::Delta, &[("b", 21), ("a", 9)]),
            Violation::DeltaDecreases {
                storage: "a".into(),
                previous: Tid(11),
                this: Tid(9),
            },
        ),
        (
            line(102, RecordKind::Full, &[("a", 11)]),
            Violation::FullMissing {
                storage: "b".into(),
            },
        ),
        (
            line(102, RecordKind::Full, &[("a", 11), ("b", 19), ("c", 1)]),
            Violation::FullDecreases {
                storage: "b".into(),
                previous: Tid(20),
                this: Tid(19),
            },
        ),
    ];
    for (bad, want) in cases {
        // The violating record sits on line 3, with a good record after it
        // so it is not the last line either.
        let text = format!("{base}{bad}{}", line(200, RecordKind::Delta, &[("a", 30)]));
        let e = replay_bytes(text.as_bytes(), strict()).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        match &e.kind {
            ErrorKind::Violation(v) => assert_eq!(v, &want),
            other => panic!("{other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.starts_with("status file test, line 3: "), "{msg}");
        assert!(msg.contains("--lenient"), "{msg}");
        // The last line is checked too: a valid record that breaks a rule is
        // not a torn write.
        let text = format!("{base}{bad}");
        assert_eq!(
            replay_bytes(text.as_bytes(), strict()).unwrap_err().line,
            Some(3)
        );
        // Lenient skips it and applies the rest.
        let text = format!("{base}{bad}{}", line(200, RecordKind::Delta, &[("a", 30)]));
        let r = replay_bytes(text.as_bytes(), lenient()).unwrap();
        assert_eq!(r.point, point(&[("a", 30), ("b", 20)]));
        assert_eq!(r.records, 3);
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].0, 3);
        assert_eq!(r.skipped[0].1, want.to_string());
    }
}

#[test]
fn equal_values_in_d_and_f_are_accepted() {
    let text = [
        line(100, RecordKind::Full, &[("a", 10)]),
        line(101, RecordKind::Delta, &[("a", 10)]),
        line(102, RecordKind::Full, &[("a", 10), ("b", 1)]),
    ]
    .concat();
    let r = replay_bytes(text.as_bytes(), strict()).unwrap();
    assert_eq!(r.point, point(&[("a", 10), ("b", 1)]));
    assert_eq!(r.records, 3);
}

#[test]
fn torn_last_line_at_every_cut_keeps_the_earlier_point() {
    let base = [
        line(100, RecordKind::Full, &[("a", 10), ("b", 20)]),
        line(101, RecordKind::Delta, &[("a", 11)]),
    ]
    .concat();
    let before = point(&[("a", 11), ("b", 20)]);
    let after = point(&[("a", 12), ("b", 21)]);
    // With and without the crc (files from the original daemon have none).
    let with_crc = line(102, RecordKind::Delta, &[("a", 12), ("b", 21)]);
    let old_style = "102.00 d {'a': 12L, 'b': 21L}\n".to_string();
    for last in [with_crc, old_style] {
        let bytes = last.as_bytes();
        let dict_end = last.find('}').unwrap() + 1;
        for cut in 0..=bytes.len() {
            let mut text = base.clone().into_bytes();
            text.extend_from_slice(&bytes[..cut]);
            let r = replay_bytes(&text, strict())
                .unwrap_or_else(|e| panic!("cut {cut} of {last:?}: {e}"));
            // A cut that leaves the whole dict (and at most blanks after it)
            // is a complete record without its crc, as old files have them.
            let complete = cut >= bytes.len() - 1
                || (cut >= dict_end && last[dict_end..cut].trim().is_empty());
            if cut == 0 {
                assert_eq!(r.torn_last_line, None);
                assert_eq!(r.point, before);
            } else if complete {
                assert_eq!(r.torn_last_line, None, "cut {cut}");
                assert_eq!(r.point, after, "cut {cut}");
                assert_eq!(r.records, 3);
            } else {
                let (n, why) = r
                    .torn_last_line
                    .clone()
                    .unwrap_or_else(|| panic!("cut {cut}: {r:?}"));
                assert_eq!(n, 3, "cut {cut}");
                assert!(!why.is_empty());
                assert_eq!(r.point, before, "cut {cut}");
                assert_eq!(r.records, 2);
            }
            assert!(r.skipped.is_empty());
        }
    }
}

#[test]
fn bad_crc_in_the_middle_is_an_error_and_lenient_skips_it() {
    let good = line(101, RecordKind::Delta, &[("a", 11)]);
    let damaged = good.replace("11}", "19}");
    assert_ne!(good, damaged);
    let text = [
        line(100, RecordKind::Full, &[("a", 10)]),
        damaged.clone(),
        "\n".to_string(),
        line(102, RecordKind::Delta, &[("a", 12)]),
    ]
    .concat();
    let e = replay_bytes(text.as_bytes(), strict()).unwrap_err();
    assert_eq!(e.line, Some(2));
    match &e.kind {
        ErrorKind::Damaged(le) => assert!(le.is_crc(), "{le}"),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("crc32 mismatch"), "{e}");
    let r = replay_bytes(text.as_bytes(), lenient()).unwrap();
    assert_eq!(r.point, point(&[("a", 12)]));
    assert_eq!(r.records, 2);
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].0, 2);
    assert!(r.skipped[0].1.contains("crc32"), "{:?}", r.skipped);
    assert_eq!(r.torn_last_line, None);
    // The same damage on the last line (followed only by blank lines) is a
    // torn write: reported, ignored, not an error.
    let text = [
        line(100, RecordKind::Full, &[("a", 10)]),
        damaged,
        "\n\n".to_string(),
    ]
    .concat();
    let r = replay_bytes(text.as_bytes(), strict()).unwrap();
    assert_eq!(r.point, point(&[("a", 10)]));
    assert_eq!(r.torn_last_line.as_ref().map(|t| t.0), Some(2));
}

#[test]
fn one_byte_reads_and_random_splits_give_the_same_replay() {
    let mut rng = Rng(42);
    let mut p = Point::new();
    let mut text = String::new();
    for i in 0..300u64 {
        let kind = if i % 20 == 0 {
            RecordKind::Full
        } else {
            RecordKind::Delta
        };
        let mut changed = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let key = nasty_key(&mut rng);
            let v = p.get(&key).map_or(0, |t: &Tid| t.0) + rng.below(1000);
            p.insert(key.clone(), Tid(v));
            changed.push((key, Tid(v)));
        }
        let ents: Vec<(String, Tid)> = match kind {
            RecordKind::Full => p.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            RecordKind::Delta => changed
                .into_iter()
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        };
        text.push_str(&format_record(&Record {
            centis: 1000 + i,
            kind,
            entries: ents,
            had_crc: true,
        }));
        if i % 50 == 7 {
            text.push_str("\n  \n");
        }
    }
    // A damaged line in the middle (for lenient) and a torn last line.
    text.push_str("17 d {'zz': 1");
    text.push('\n');
    text.push_str(&line(5000, RecordKind::Delta, &[]));
    text.push_str("5001.00 d {'a': 1");
    let bytes = text.as_bytes();
    let whole = replay_bytes(bytes, lenient()).unwrap();
    assert_eq!(whole.point, p);
    assert_eq!(whole.skipped.len(), 1);
    assert!(whole.torn_last_line.is_some());
    let one = replay_reader(BufReader::with_capacity(1, OneByte(bytes)), "t", lenient()).unwrap();
    assert_eq!(one, whole);
    for seed in 1..=50u64 {
        let mut cap_rng = Rng(seed * 7919);
        let cap = 1 + cap_rng.below(100) as usize;
        let r = BufReader::with_capacity(
            cap,
            Splits {
                data: bytes,
                rng: Rng(seed),
            },
        );
        assert_eq!(
            replay_reader(r, "t", lenient()).unwrap(),
            whole,
            "seed {seed}"
        );
    }
    // Strict mode fails at the same line whatever the split.
    let e = replay_reader(BufReader::with_capacity(1, OneByte(bytes)), "t", strict()).unwrap_err();
    assert_eq!(e.line, whole.skipped[0].0.into());
}

#[test]
fn replay_file_names_the_path_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.tid");
    let e = replay_file(&path, strict()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
    assert!(e.to_string().contains("nope.tid"), "{e}");
}

// ---------------------------------------------------------------- writer

#[test]
fn writer_times_strictly_increase_within_a_centisecond_and_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.tid");
    let ents = entries(&[("a", 1)]);
    let mut w = StatusWriter::open(&path, FsyncPolicy::Never).unwrap();
    assert_eq!(w.write(RecordKind::Full, &ents, 1000.001).unwrap(), 100000);
    assert_eq!(w.write(RecordKind::Delta, &ents, 1000.004).unwrap(), 100001);
    // The clock went back (NTP step): still later than the last record.
    assert_eq!(w.write(RecordKind::Delta, &ents, 990.0).unwrap(), 100002);
    drop(w);
    // A restart remembers the last time in the file.
    let mut w = StatusWriter::open(&path, FsyncPolicy::Always).unwrap();
    assert_eq!(w.last_centis(), Some(100002));
    assert_eq!(w.write(RecordKind::Full, &ents, 1000.0).unwrap(), 100003);
    assert_eq!(w.write(RecordKind::Delta, &ents, 1001.5).unwrap(), 100150);
    drop(w);
    let text = fs::read_to_string(&path).unwrap();
    let times: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        times,
        ["1000.00", "1000.01", "1000.02", "1000.03", "1001.50"]
    );
    let r = replay_file(&path, strict()).unwrap();
    assert_eq!(r.records, 5);
    assert_eq!(r.point, point(&[("a", 1)]));
}

#[test]
fn writer_creates_mode_0640_and_reopen_follows_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.tid");
    let mut w = StatusWriter::open(
        &path,
        FsyncPolicy::Interval(std::time::Duration::from_secs(3600)),
    )
    .unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode & !0o640, 0, "mode {mode:o} grants more than 0640");
    assert_eq!(mode & 0o600, 0o600, "mode {mode:o}");
    w.write(RecordKind::Full, &entries(&[("a", 1)]), 2000.0)
        .unwrap();
    // Within the interval the second record waits for its fsync.
    w.write(RecordKind::Delta, &entries(&[("a", 2)]), 2000.0)
        .unwrap();
    assert!(w.sync_deadline().is_some());
    w.sync().unwrap();
    assert!(w.sync_deadline().is_none());
    // logrotate: move the file away, then SIGHUP -> reopen.
    let rotated = dir.path().join("status.tid.1");
    fs::rename(&path, &rotated).unwrap();
    w.reopen().unwrap();
    assert_eq!(
        w.write(RecordKind::Full, &entries(&[("a", 3)]), 1999.0)
            .unwrap(),
        200002
    );
    drop(w);
    assert_eq!(
        replay_file(&rotated, strict()).unwrap().point,
        point(&[("a", 2)])
    );
    let fresh = replay_file(&path, strict()).unwrap();
    assert_eq!(fresh.point, point(&[("a", 3)]));
    assert_eq!(fresh.records, 1);
}

#[test]
fn writer_open_repairs_a_torn_tail_so_later_replays_stay_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.tid");
    let first = line(100, RecordKind::Full, &[("a", 10)]);
    let torn_src = line(150, RecordKind::Delta, &[("a", 15)]);
    for cut in 1..torn_src.len() - 1 {
        let torn = &torn_src[..cut];
        if parse_record(torn).is_ok() {
            // The dict is complete (only the crc comment is cut): a record,
            // covered below.
            continue;
        }
        fs::write(&path, format!("{first}{torn}")).unwrap();
        assert!(replay_file(&path, strict())
            .unwrap()
            .torn_last_line
            .is_some());
        let mut w = StatusWriter::open(&path, FsyncPolicy::Never).unwrap();
        assert_eq!(w.last_centis(), Some(100), "cut {cut}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            first,
            "cut {cut}: torn bytes removed"
        );
        w.write(RecordKind::Delta, &entries(&[("a", 11)]), 1.0)
            .unwrap();
        drop(w);
        let r = replay_file(&path, strict()).unwrap();
        assert_eq!(r.torn_last_line, None);
        assert_eq!(r.point, point(&[("a", 11)]));
        assert_eq!(r.last_centis, Some(101));
    }
    // A complete last record that only lacks its '\n' is kept.
    fs::write(&path, format!("{first}{}", torn_src.trim_end_matches('\n'))).unwrap();
    let mut w = StatusWriter::open(&path, FsyncPolicy::Never).unwrap();
    assert_eq!(w.last_centis(), Some(150));
    w.write(RecordKind::Delta, &entries(&[("a", 16)]), 1.0)
        .unwrap();
    drop(w);
    let r = replay_file(&path, strict()).unwrap();
    assert_eq!((r.records, r.last_centis), (3, Some(151)));
    assert_eq!(r.point, point(&[("a", 16)]));
}

#[test]
fn writer_takes_the_last_time_from_the_last_parseable_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.tid");
    let damaged = line(300, RecordKind::Delta, &[("a", 30)]).replace("30}", "31}");
    fs::write(
        &path,
        format!("{}{damaged}", line(200, RecordKind::Full, &[("a", 20)])),
    )
    .unwrap();
    let w = StatusWriter::open(&path, FsyncPolicy::Never).unwrap();
    // The damaged complete line is not the writer's to remove.
    assert_eq!(w.last_centis(), Some(200));
    assert!(fs::read_to_string(&path).unwrap().ends_with(&damaged));
}

#[test]
fn what_the_writer_writes_replays_to_the_point() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.tid");
    let mut w = StatusWriter::open(&path, FsyncPolicy::Never).unwrap();
    let mut rng = Rng(99);
    let mut p = Point::new();
    let mut now = 1_700_000_000.0;
    let mut lens = vec![0u64];
    for i in 0..500 {
        let mut delta = Vec::new();
        for _ in 0..rng.below(4) {
            let key = nasty_key(&mut rng);
            let v = p
                .get(&key)
                .map_or(0, |t| t.0)
                .saturating_add(rng.below(1 << 40));
            p.insert(key.clone(), Tid(v));
            delta.retain(|(k, _): &(String, Tid)| k != &key);
            delta.push((key, Tid(v)));
        }
        now += rng.below(300) as f64 / 1000.0;
        if i % 25 == 0 {
            let all: Vec<(String, Tid)> = p.iter().map(|(k, v)| (k.clone(), *v)).collect();
            w.write(RecordKind::Full, &all, now).unwrap();
        } else {
            w.write(RecordKind::Delta, &delta, now).unwrap();
        }
        // Each record lands whole: the file grows by exactly one line that
        // ends with '\n' and parses.
        let text = fs::read(&path).unwrap();
        let last_len = *lens.last().unwrap() as usize;
        let added = std::str::from_utf8(&text[last_len..]).unwrap();
        assert_eq!(added.matches('\n').count(), 1, "{added:?}");
        assert!(added.ends_with('\n'));
        parse_record(added).unwrap();
        lens.push(text.len() as u64);
    }
    drop(w);
    let r = replay_file(&path, strict()).unwrap();
    assert_eq!(r.point, p);
    assert_eq!(r.records, 500);
    assert!(r.skipped.is_empty() && r.torn_last_line.is_none());
}

#[test]
fn the_examples_in_the_docs_are_valid_lines() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-file.md"))
        .unwrap();
    let examples: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.starts_with("17322"))
        .collect();
    assert_eq!(examples.len(), 2);
    let text: String = examples.iter().map(|l| format!("{l}\n")).collect();
    let r = replay_bytes(text.as_bytes(), strict()).unwrap();
    assert_eq!(r.records, 2);
    assert!(examples.iter().all(|l| parse_record(l).unwrap().had_crc));
}
