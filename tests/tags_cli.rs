//! `tidstorage tags` and `tidstorage check` as an operator runs them, on the
//! tagged files real ZODB and the client wrote (tests/fixtures/tags/).

mod common;

use std::path::Path;

use common::{assert_code, repo_path, run_in, stderr, stdout};
use serde_json::Value;
use tidstorage::exactcut::{FloorSpec, TagSummary};
use tidstorage::tid::Tid;

fn answers() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/fixtures/tags/tags.json")).unwrap(),
    )
    .unwrap()
}

/// A directory with the three fixture files and a configuration naming
/// `names` of them (others left out: another host's).
fn setup(dir: &Path, names: &[&str]) {
    let j = answers();
    let mut cfg = String::new();
    for n in ["a", "b", "c"] {
        std::fs::copy(
            repo_path(&format!("tests/fixtures/tags/{n}.fs")),
            dir.join(format!("{n}.fs")),
        )
        .unwrap();
        if names.contains(&n) {
            cfg.push_str(&format!(
                "[[storage]]\nid = '{}'\ndata_fs = \"{n}.fs\"\n",
                j["ids"][n].as_str().unwrap()
            ));
        }
    }
    std::fs::write(dir.join("tidstorage.toml"), cfg).unwrap();
}

#[test]
fn tags_json_is_the_summary_and_names_the_configured_storage() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), &["a", "b", "c"]);
    let j = answers();
    let since = j["files"]["b"]["transactions"][3]["tid"]
        .as_str()
        .unwrap()
        .to_string();
    let o = run_in(
        d.path(),
        &["tags", "b.fs", "--since", &since, "--format", "json"],
    );
    assert_code(&o, 0);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let s = TagSummary::from_json(&v).unwrap();
    assert_eq!(s.storage, j["ids"]["b"].as_str().unwrap());
    let want = TagSummary::read_file(
        &d.path().join("b.fs"),
        j["ids"]["b"].as_str().unwrap(),
        FloorSpec::Tid(Tid(u64::from_str_radix(&since, 16).unwrap())),
    )
    .unwrap();
    assert_eq!(s.transactions, want.transactions);
    // Above the 4th transaction: the 4 after it, then b's 'c' record, which
    // is a damaged tail, not a transaction.
    assert_eq!(s.transactions.len(), 4);
    assert!(s
        .damage
        .as_deref()
        .unwrap()
        .contains("checkpoint status 'c'"));
    // Text: every transaction with its commit id and storages by id.
    let o = run_in(d.path(), &["tags", "a.fs"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("the first tagged transaction is at 488"),
        "{out}"
    );
    assert!(
        out.contains(r#"[[["10.0.0.5", 8100]], "1"], [[["10.0.0.6", 8100]], "1"]"#),
        "{out}"
    );
}

#[test]
fn tags_refuses_a_file_it_cannot_name() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), &["a"]);
    let o = run_in(d.path(), &["tags", "c.fs"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--storage ID"), "{}", stderr(&o));
    let o = run_in(d.path(), &["tags", "c.fs", "--storage", "mine"]);
    assert_code(&o, 0);
    let o = run_in(d.path(), &["tags", "a.fs", "--since", "yesterday"]);
    assert_code(&o, 2);
}

fn incomplete_ids(o: &std::process::Output) -> Vec<String> {
    let v: Value = serde_json::from_str(&stdout(o)).unwrap();
    v["incomplete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["commit_id"].as_str().unwrap().to_string())
        .collect()
}

/// The commits the oracle sees as incomplete: tagged, absent from a storage
/// they name (a's partial commit, and the commit b only voted).
fn oracle_incomplete() -> Vec<String> {
    let j = answers();
    let mut present: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut named: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for n in ["a", "b", "c"] {
        for t in j["files"][n]["transactions"].as_array().unwrap() {
            if let Some(tag) = t["tag"].as_str() {
                let parts: Vec<&str> = tag.split(' ').collect();
                present.entry(parts[1].into()).or_default().push(n.into());
                named.insert(
                    parts[1].into(),
                    parts[3..].iter().map(|s| s.to_string()).collect(),
                );
            }
        }
    }
    let mut out: Vec<String> = present
        .iter()
        .filter(|(cid, on)| named[*cid].len() != on.len())
        .map(|(cid, _)| cid.clone())
        .collect();
    out.sort();
    out
}

#[test]
fn check_reports_the_incomplete_commits_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), &["a", "b", "c"]);
    let o = run_in(d.path(), &["check", "--format", "json"]);
    assert_code(&o, 1);
    let mut got = incomplete_ids(&o);
    got.sort();
    assert_eq!(got, oracle_incomplete());
    assert_eq!(got.len(), 2);
    let o = run_in(d.path(), &["check"]);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("INCOMPLETE commit"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("2 incomplete transaction(s)"),
        "{}",
        stderr(&o)
    );
    // Nothing is that old.
    let o = run_in(d.path(), &["check", "--older-than", "3650d"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("no incomplete transaction"));
    // Above a floor past both, nothing incomplete either.
    let last = answers()["files"]["c"]["transactions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["tid"]
        .as_str()
        .unwrap()
        .to_string();
    let o = run_in(d.path(), &["check", "--since", &last]);
    assert_code(&o, 0);
}

#[test]
fn check_over_two_hosts_with_an_exported_summary() {
    // Host 2 holds b: it exports its tags; host 1 (a and c) imports them.
    let host2 = tempfile::tempdir().unwrap();
    setup(host2.path(), &["b"]);
    let o = run_in(host2.path(), &["tags", "b.fs", "--format", "json"]);
    assert_code(&o, 0);
    let host1 = tempfile::tempdir().unwrap();
    setup(host1.path(), &["a", "c"]);
    std::fs::write(host1.path().join("b.tags.json"), stdout(&o)).unwrap();
    let o = run_in(
        host1.path(),
        &["check", "--tags", "b.tags.json", "--format", "json"],
    );
    assert_code(&o, 1);
    let mut got = incomplete_ids(&o);
    got.sort();
    assert_eq!(got, oracle_incomplete());
    // Without b's summary, b is outside the configuration: commits naming
    // it are unknown, not incomplete, and reported as such.
    let o = run_in(host1.path(), &["check"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("unknown-storage"), "{}", stdout(&o));
    // A broken summary is refused with its file name.
    std::fs::write(host1.path().join("bad.json"), "{\"format\": \"x\"}").unwrap();
    let o = run_in(host1.path(), &["check", "--tags", "bad.json"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("bad.json"), "{}", stderr(&o));
}

/// A status file whose point is each fixture file's first tagged transaction.
fn write_first_tagged_point(path: &Path) {
    let j = answers();
    let entries: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let t = j["files"][n]["transactions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| !t["tag"].is_null())
                .unwrap()["tid"]
                .as_str()
                .unwrap()
                .to_string();
            let tid = u64::from_str_radix(&t, 16).unwrap();
            format!(
                "'{}': {tid}",
                j["ids"][n].as_str().unwrap().replace('\'', "\\'")
            )
        })
        .collect();
    std::fs::write(
        path,
        format!("1732212345.67 f {{{}}}\n", entries.join(", ")),
    )
    .unwrap();
}

/// `cut`'s plan (dry run, JSON) per storage id.
fn cut_plan(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let mut a = vec!["cut", "--dry-run", "--format", "json"];
    a.extend_from_slice(extra);
    let o = run_in(dir, &a);
    assert_code(&o, 0);
    stdout(&o)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn cut_by_default_is_the_exact_cut_the_oracle_computes() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), &["a", "b", "c"]);
    let j = answers();
    // No status file: no floor; the untagged history is kept as it is and
    // the exact cut is computed over the rest (the plan says so).
    let plans = cut_plan(d.path(), &[]);
    assert_eq!(plans.len(), 3);
    for (p, n) in plans.iter().zip(["a", "b", "c"]) {
        let want = &j["files"][n]["exact_cut"];
        assert_eq!(p["cut_position"], want["cut_position"], "{n}: {p}");
        assert_eq!(
            p["exact"]["kept_beyond_point"], want["kept_beyond_floor"],
            "{n}"
        );
        assert_eq!(
            p["exact"]["removed"].as_array().unwrap().len() as u64,
            want["removed"].as_u64().unwrap(),
            "{n}: every removed transaction is named with its reason"
        );
        assert_eq!(p["exact"]["floor"]["kind"], "first-tagged", "{n}");
    }
    // --at-point needs a point: without a status file it refuses, cutting
    // nothing; with one it keeps nothing above it (the old behaviour).
    let o = run_in(d.path(), &["cut", "--dry-run", "--at-point"]);
    assert_code(&o, 3);
    // The cut for real gives files ZODB opens at the oracle's ends.
    let o = run_in(d.path(), &["cut"]);
    assert_code(&o, 0);
    for n in ["a", "b", "c"] {
        let size = std::fs::metadata(d.path().join(format!("{n}.fs")))
            .unwrap()
            .len();
        assert_eq!(
            size,
            j["files"][n]["exact_cut"]["cut_position"].as_u64().unwrap(),
            "{n}"
        );
        let c = common::zodb(&["check", d.path().join(format!("{n}.fs")).to_str().unwrap()]);
        assert_eq!(c["fstest"], "ok", "{n}");
    }
}

#[test]
fn a_floor_from_the_status_file_never_cuts_below_it_and_at_point_cuts_there() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), &["a", "b", "c"]);
    // A point at each file's first tagged transaction.
    write_first_tagged_point(&d.path().join("tidstorage.tid"));
    let cfg = std::fs::read_to_string(d.path().join("tidstorage.toml")).unwrap();
    std::fs::write(
        d.path().join("tidstorage.toml"),
        format!("[server]\nstatus_file = \"tidstorage.tid\"\n{cfg}"),
    )
    .unwrap();
    let exact = cut_plan(d.path(), &[]);
    let at_point = cut_plan(d.path(), &["--at-point"]);
    for (e, p) in exact.iter().zip(&at_point) {
        assert!(
            e["cut_position"].as_u64() >= p["cut_position"].as_u64(),
            "{e}\n{p}"
        );
        assert_eq!(e["exact"]["floor"]["kind"], "given");
        assert!(p["exact"].is_null());
    }
    // The exact cut keeps more than the point alone somewhere (the
    // fixtures hold complete transactions above it).
    assert!(exact
        .iter()
        .zip(&at_point)
        .any(|(e, p)| e["cut_position"].as_u64() > p["cut_position"].as_u64()));
}

#[test]
fn storages_on_two_hosts_get_the_same_exact_cut_through_exported_tags() {
    let j = answers();
    // Host 2 holds c: it exports c's tags (no floor: its first tagged).
    let host2 = tempfile::tempdir().unwrap();
    setup(host2.path(), &["c"]);
    let o = run_in(host2.path(), &["tags", "c.fs", "--format", "json"]);
    assert_code(&o, 0);
    // Host 1 holds a and b; c is configured without a data_fs.
    let host1 = tempfile::tempdir().unwrap();
    setup(host1.path(), &["a", "b"]);
    let cfg = std::fs::read_to_string(host1.path().join("tidstorage.toml")).unwrap();
    std::fs::write(
        host1.path().join("tidstorage.toml"),
        format!(
            "{cfg}[[storage]]\nid = '{}'\n",
            j["ids"]["c"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::write(host1.path().join("c.tags.json"), stdout(&o)).unwrap();
    let ids = |n: &str| j["ids"][n].as_str().unwrap().to_string();
    let (ia, ib) = (ids("a"), ids("b"));
    let plans = cut_plan(
        host1.path(),
        &["--storage", &ia, "--storage", &ib, "--tags", "c.tags.json"],
    );
    for (p, n) in plans.iter().zip(["a", "b"]) {
        assert_eq!(
            p["cut_position"], j["files"][n]["exact_cut"]["cut_position"],
            "{n}"
        );
    }
    // Without c's tags, its partners cannot be proven complete: less is kept.
    let alone = cut_plan(host1.path(), &["--storage", &ia, "--storage", &ib]);
    assert!(alone
        .iter()
        .zip(&plans)
        .all(|(x, p)| x["cut_position"].as_u64() <= p["cut_position"].as_u64()));
}

#[test]
fn restore_of_a_no_server_backup_is_the_exact_cut_above_the_status_file_copy() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), &["a", "b", "c"]);
    let j = answers();
    // A point at each file's first tagged transaction, and repositories.
    let mut cfg = String::from(
        "[server]\nstatus_file = \"tidstorage.tid\"\n\
         [backup]\ntimestamp_file = \"timestamps.log\"\nstatus_file_backup_dir = \"status-copies\"\n",
    );
    for n in ["a", "b", "c"] {
        let id = j["ids"][n].as_str().unwrap();
        std::fs::create_dir(d.path().join(format!("repo-{n}"))).unwrap();
        cfg.push_str(&format!(
            "[[storage]]\nid = '{id}'\ndata_fs = \"{n}.fs\"\nrepository = \"repo-{n}\"\n"
        ));
    }
    std::fs::write(d.path().join("tidstorage.toml"), cfg).unwrap();
    write_first_tagged_point(&d.path().join("tidstorage.tid"));
    let exact = cut_plan(d.path(), &[]);
    let at_point = cut_plan(d.path(), &["--at-point"]);
    let o = run_in(d.path(), &["backup", "--no-server"]);
    assert_code(&o, 0);
    let o = run_in(d.path(), &["restore", "--output-dir", "out"]);
    assert_code(&o, 0);
    let o = run_in(
        d.path(),
        &["restore", "--output-dir", "out-point", "--at-point"],
    );
    assert_code(&o, 0);
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        let f = |dir: &str| {
            let p = common::restored_under(&d.path().join(dir), &d.path().join(format!("{n}.fs")));
            std::fs::metadata(p).unwrap().len()
        };
        assert_eq!(Some(f("out")), exact[i]["cut_position"].as_u64(), "{n}");
        assert_eq!(
            Some(f("out-point")),
            at_point[i]["cut_position"].as_u64(),
            "{n}"
        );
    }
    assert!(
        (0..3).any(|i| exact[i]["cut_position"].as_u64() > at_point[i]["cut_position"].as_u64())
    );
}
