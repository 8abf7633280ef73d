//! The `.dat` file of a full backup: one line per file of its chain,
//! `PATH START END MD5` separated by single spaces, as repozo `print()`s
//! them. PATH is the repository directory joined with the file name as
//! the writer spelled it; every reader (repozo's and ours) uses only its
//! base name. START/END are byte offsets in the Data.fs; MD5 is the hex
//! digest of the uncompressed bytes `[START, END)`.
//!
//! Must not: rewrite a `.dat` in place (appending goes through a temporary
//! copy and a rename, so a crash leaves the old or the new file).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Error, ErrorKind, Result};
use crate::fsutil;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatLine {
    /// As written (may hold a directory part).
    pub path: String,
    pub start: u64,
    pub end: u64,
    pub md5: String,
}

impl DatLine {
    /// The file name the line is about (repozo joins it to the repository).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn render(&self) -> String {
        format!("{} {} {} {}\n", self.path, self.start, self.end, self.md5)
    }
}

/// Parses a whole `.dat`; `path` is for messages.
pub fn parse(text: &str, path: &Path) -> Result<Vec<DatLine>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || Error {
            path: path.to_path_buf(),
            kind: ErrorKind::BadDatLine {
                line: i + 1,
                text: line.to_string(),
            },
        };
        // repozo splits on whitespace; a path with spaces breaks repozo
        // itself, so it is damage here too.
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 {
            return Err(bad());
        }
        let start: u64 = f[1].parse().map_err(|_| bad())?;
        let end: u64 = f[2].parse().map_err(|_| bad())?;
        let md5 = f[3];
        if end < start || md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        out.push(DatLine {
            path: f[0].to_string(),
            start,
            end,
            md5: md5.to_ascii_lowercase(),
        });
    }
    Ok(out)
}

pub fn read(path: &Path) -> Result<Vec<DatLine>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path)
}

/// Writes `lines` as the `.dat` at `path` durably (temp, fsync, rename).
/// Used both to create a full's `.dat` and to append an incremental's line.
pub fn write(path: &Path, lines: &[DatLine]) -> Result<()> {
    let mut tmp = fsutil::TempFile::beside(path).map_err(|e| Error::io(path, e))?;
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.render());
    }
    tmp.file()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e))
}

/// The PATH column repozo would write for `name` in `repo`.
pub fn line_path(repo: &Path, name: &str) -> String {
    let p: PathBuf = repo.join(name);
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repozo_lines() {
        let t = "/b/r/2024-01-01-00-00-00.fs 0 1000 0123456789abcdef0123456789ABCDEF\n\
                 /b/r/2024-01-02-00-00-00.deltafsz 1000 1500 00000000000000000000000000000000\n";
        let l = parse(t, Path::new("x.dat")).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].file_name(), "2024-01-02-00-00-00.deltafsz");
        assert_eq!((l[1].start, l[1].end, l[1].len()), (1000, 1500, 500));
        assert_eq!(l[0].md5, "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn bad_lines_name_the_line() {
        for t in [
            "a 0 10\n",
            "a x 10 0123456789abcdef0123456789abcdef\n",
            "a 10 0 0123456789abcdef0123456789abcdef\n",
            "a 0 10 0123\n",
        ] {
            let e = parse(
                &format!("ok 0 1 {}\n{t}", "0".repeat(32)),
                Path::new("r/x.dat"),
            )
            .unwrap_err();
            assert!(e.to_string().starts_with("r/x.dat:2: "), "{e}");
        }
    }
}
