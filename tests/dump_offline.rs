//! `tidstorage dump --status-file`: offline replay and validation of a
//! status file, in the original daemon's format and ours.

mod common;
use common::*;
use tidstorage::tid::Tid;

const ORIGINAL: &str =
    "1732212345.67 f {'[[[\"127.0.0.1\", 8100]], \"1\"]': 285899593185544149L}\n\
1732212346.02 d {'[[[\"127.0.0.1\", 8100]], \"2\"]': 285899593185544150L}\n";

#[test]
fn original_format_in_every_output_format() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.tid"), ORIGINAL).unwrap();
    let o = run_in(dir.path(), &["dump", "--status-file", "s.tid"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("STORAGE"));
    let t = tidstorage::tid::Tid(285899593185544149);
    assert!(
        lines[1].starts_with(r#"[[["127.0.0.1", 8100]], "1"]"#),
        "{out}"
    );
    assert!(lines[1].contains("285899593185544149"));
    assert!(
        lines[1].contains(&t.hex()) && lines[1].contains(&t.rfc3339()),
        "{out}"
    );
    let o = run_in(
        dir.path(),
        &["dump", "--status-file", "s.tid", "--format", "json"],
    );
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["records"], 2);
    assert_eq!(v["point"][1]["tid"], 285899593185544150u64);
    assert_eq!(v["point"][1]["storage"], r#"[[["127.0.0.1", 8100]], "2"]"#);
    let o = run_in(
        dir.path(),
        &["dump", "--status-file", "s.tid", "--format", "tsv"],
    );
    assert_eq!(stdout(&o).lines().count(), 2);
    // Every TID form parses back to the same TID (the time to the
    // microsecond it shows).
    let tsv = stdout(&o);
    let row: Vec<&str> = tsv.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(row.len(), 5, "{row:?}");
    let tid = Tid(285899593185544150);
    for form in [row[1], row[2], row[4]] {
        assert_eq!(form.parse::<Tid>(), Ok(tid), "{form}");
    }
    assert_eq!(row[3].parse::<Tid>().unwrap().rfc3339(), row[3]);
    assert_eq!(v["point"][1]["base64"], tid.base64());
    let o = run_in(dir.path(), &["dump", "--status-file", "s.tid"]);
    let text = stdout(&o);
    assert!(text.lines().next().unwrap().contains("BASE64"), "{text}");
    assert!(text.contains(&tid.base64()), "{text}");
}

#[test]
fn torn_last_line_is_reported_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let torn = format!("{ORIGINAL}1732212347.00 d {{'[[[\"127.0.0.1\", 8100]], \"1\"]': 2858");
    std::fs::write(dir.path().join("s.tid"), torn).unwrap();
    let o = run_in(
        dir.path(),
        &["dump", "--status-file", "s.tid", "--format", "json"],
    );
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["torn_last_line"]["line"], 3);
    assert_eq!(v["point"][0]["tid"], 285899593185544149u64);
    assert!(stderr(&o).contains("line 3"), "{}", stderr(&o));
}

#[test]
fn damage_in_the_middle_fails_unless_lenient() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "1732212345.67 f {'a': 5}\n1732212345.80 d {'a': 6} #crc32=00000000\n1732212346.00 d {'a': 7}\n";
    std::fs::write(dir.path().join("s.tid"), bad).unwrap();
    let o = run_in(dir.path(), &["dump", "--status-file", "s.tid"]);
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(e.contains("s.tid") && e.contains("line 2"), "{e}");
    let o = run_in(
        dir.path(),
        &[
            "dump",
            "--status-file",
            "s.tid",
            "--lenient",
            "--format",
            "tsv",
        ],
    );
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("a\t7\t"), "{}", stdout(&o));
    assert!(stderr(&o).contains("skipped 1"), "{}", stderr(&o));
    // A missing file is a clear runtime error naming it.
    let o = run_in(dir.path(), &["dump", "--status-file", "nope.tid"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("nope.tid"));
}
