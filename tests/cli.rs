//! The command-line surface: help, version, exit codes, argv[0] dispatch,
//! configuration errors, and generated man pages/completions being fresh.

mod common;
use common::*;

#[test]
fn help_and_version_work_without_config() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(dir.path(), &["--help"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("cut"), "{}", stdout(&o));
    let o = run_in(dir.path(), &["--version"]);
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("tidstorage "));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(dir.path(), &["no-such-subcommand"]);
    assert_code(&o, 2);
    let o = run_in(dir.path(), &["cut", "/nonexistent/Data.fs", "not-a-tid"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("invalid TID \"not-a-tid\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_config_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(&cfg, "[server]\nport = 9001\nsttus_file = \"x\"\n").unwrap();
    let o = run_in(
        dir.path(),
        &["-c", cfg.to_str().unwrap(), "cut", "--dry-run"],
    );
    assert_code(&o, 2);
    let e = stderr(&o);
    assert!(e.contains(&format!("{}:3:", cfg.display())), "{e}");
    assert!(e.contains("sttus_file"), "{e}");
    // A missing explicit config is a usage error naming it.
    let o = run_in(dir.path(), &["-c", "/nonexistent.toml", "cut"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("/nonexistent.toml"));
}

#[test]
fn config_found_through_environment_and_cwd() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tidstorage.toml"), "bogus = 1\n").unwrap();
    // ./tidstorage.toml is read when nothing else is given.
    let o = run_in(dir.path(), &["cut", "--dry-run"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("tidstorage.toml:1:"), "{}", stderr(&o));
    // $TIDSTORAGE_CONFIG wins over ./tidstorage.toml.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[server]\nport = \"x\"\n").unwrap();
    let o = std::process::Command::new(bin())
        .args(["cut", "--dry-run"])
        .current_dir(dir.path())
        .env("TIDSTORAGE_CONFIG", &other)
        .output()
        .unwrap();
    assert_code(&o, 2);
    assert!(stderr(&o).contains("other.toml:2:"), "{}", stderr(&o));
}

#[test]
fn argv0_multi_call() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("tidstorage-cut");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let o = std::process::Command::new(&link)
        .arg("--help")
        .output()
        .unwrap();
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("--discard-tail"),
        "cut's help expected:\n{out}"
    );
    let link = dir.path().join("tidstorage-dump");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let o = std::process::Command::new(&link)
        .arg("--help")
        .output()
        .unwrap();
    assert!(stdout(&o).contains("--status-file"));
}

#[test]
fn man_pages_and_completions_are_fresh() {
    let dir = tempfile::tempdir().unwrap();
    for (what, committed) in [("man", "man"), ("completions", "completions")] {
        let out = dir.path().join(what);
        let o = run_in(dir.path(), &["generate", what, out.to_str().unwrap()]);
        assert_code(&o, 0);
        let mut names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        let mut have: Vec<_> = std::fs::read_dir(repo_path(committed))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        have.sort();
        assert_eq!(names, have, "{committed}/ is stale: run `make generate`");
        for n in names {
            let fresh = std::fs::read(out.join(&n)).unwrap();
            let old = std::fs::read(repo_path(committed).join(&n)).unwrap();
            assert!(
                fresh == old,
                "{committed}/{} is stale: run `make generate`",
                n.to_string_lossy()
            );
        }
    }
}
