//! The timestamp file (`[backup] timestamp_file`): one UTC
//! `YYYY-MM-DD-HH-MM-SS` line per complete backup run, the newest last.
//! `backup` appends a run once every configured storage succeeded;
//! `restore` without `--date` restores the last line's run.
//!
//! Must not: rewrite earlier lines (the append is the old content plus the
//! new line, replaced durably).

use std::io::Write;
use std::path::Path;

use super::{Error, ErrorKind, Result, Stamp};
use crate::fsutil;

/// The last non-blank line of the timestamp file, as a stamp; `None` when
/// the file is missing or empty.
pub fn last(path: &Path) -> Result<Option<Stamp>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(Error {
                path: path.to_path_buf(),
                kind: ErrorKind::IoDoing {
                    doing: "cannot read the timestamp file",
                    error,
                },
            })
        }
    };
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        None => Ok(None),
        Some(l) => Stamp::parse(l.trim()).map(Some).ok_or_else(|| {
            Error::broken(
                path,
                format!(
                    "the timestamp file ends with {l:?}, not a YYYY-MM-DD-HH-MM-SS line; fix it"
                ),
            )
        }),
    }
}

/// Appends `line` durably: the old content plus the line, into a temporary
/// file renamed over the old one.
pub fn append(path: &Path, line: &str) -> std::io::Result<()> {
    let mut text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(line.as_bytes());
    text.push(b'\n');
    let mut tmp = fsutil::TempFile::beside(path)?;
    tmp.file().write_all(&text)?;
    tmp.persist(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_wins_and_appends_keep_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("timestamps.log");
        assert_eq!(last(&p).unwrap(), None);
        append(&p, "2024-05-01-12-00-00").unwrap();
        std::fs::write(&p, b"2024-05-01-12-00-00").unwrap(); // no final newline
        append(&p, "2024-05-02-12-00-00").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "2024-05-01-12-00-00\n2024-05-02-12-00-00\n"
        );
        assert_eq!(last(&p).unwrap().unwrap().text(), "2024-05-02-12-00-00");
        std::fs::write(&p, "2024-05-01-12-00-00\nnot a date\n").unwrap();
        let e = last(&p).unwrap_err();
        assert!(e.is_damage() && e.to_string().contains("not a date"), "{e}");
    }
}
