//! Where ZODB keeps blob files (ZODB 6.4 `ZODB/blob.py`).
//!
//! ```text
//! blob_dir/
//!   .layout                  "bushy" or "lawn" (written by ZODB at creation)
//!   tmp/                     uncommitted files (BUC*, mkstemp): never a source
//!   bushy: 0x00/0x00/0x00/0x00/0x00/0x00/0x12/0x34/   one level per oid byte,
//!                            most significant first, "0x%02x"
//!   lawn:  0x1234/           one directory per oid, oid_repr
//!   <oid dir>/0x03ec1a2b3c4d5e6f.blob   tid_repr(tid) + ".blob", read-only
//!   <oid dir>/0x03ec...XXXXXX.tmp       blob_mkstemp: uncommitted, never a source
//! ```
//!
//! `oid_repr` / `tid_repr`: "0x" + hex with leading zeros stripped, then
//! one zero put back when the digit count is odd; "0x00" for 0.
//! Without `.layout`, ZODB (`auto_layout_select`) picks `bushy` for a
//! missing directory or one holding only hidden names, else `lawn`.

use std::io;
use std::path::{Path, PathBuf};

use super::{Error, ErrorKind, Result};
use crate::tid::Tid;

pub const LAYOUT_MARKER: &str = ".layout";
pub const TMP_DIR: &str = "tmp";
pub const BLOB_SUFFIX: &str = ".blob";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Bushy,
    Lawn,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Bushy => "bushy",
            Layout::Lawn => "lawn",
        }
    }

    pub fn from_name(s: &str) -> Option<Layout> {
        match s {
            "bushy" => Some(Layout::Bushy),
            "lawn" => Some(Layout::Lawn),
            _ => None,
        }
    }

    /// The oid's directory, relative to the blob directory.
    pub fn oid_dir(self, oid: u64) -> PathBuf {
        match self {
            Layout::Bushy => {
                let mut p = PathBuf::new();
                for b in oid.to_be_bytes() {
                    p.push(format!("0x{b:02x}"));
                }
                p
            }
            Layout::Lawn => PathBuf::from(repr(oid)),
        }
    }

    /// The blob file of (oid, tid), relative to the blob directory, as
    /// `FilesystemHelper.getBlobFilename` computes it.
    pub fn blob_path(self, oid: u64, tid: Tid) -> PathBuf {
        self.oid_dir(oid).join(blob_file_name(tid))
    }

    /// The oid of a relative directory path, or `None` when it is not an
    /// oid directory of this layout (`path_to_oid`).
    pub fn parse_oid_dir(self, rel: &Path) -> Option<u64> {
        let parts: Vec<&str> = rel
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<Vec<_>>>()?;
        match self {
            Layout::Bushy => {
                if parts.len() != 8 {
                    return None;
                }
                let mut oid = 0u64;
                for p in parts {
                    let h = p.strip_prefix("0x")?;
                    if h.is_empty()
                        || h.len() > 2
                        || !h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                    {
                        return None;
                    }
                    oid = (oid << 8) | u64::from_str_radix(h, 16).ok()?;
                }
                Some(oid)
            }
            Layout::Lawn => {
                if parts.len() != 1 || parts[0].is_empty() {
                    return None;
                }
                parse_repr(parts[0])
            }
        }
    }
}

/// ZODB's `oid_repr` / `tid_repr` of an 8-byte value.
pub fn repr(v: u64) -> String {
    let hex = format!("{v:x}");
    if v == 0 {
        "0x00".into()
    } else if hex.len() % 2 == 1 {
        format!("0x0{hex}")
    } else {
        format!("0x{hex}")
    }
}

/// `repr_to_oid`: optional "0x", then an even number of hex digits (at
/// most 16).
pub fn parse_repr(s: &str) -> Option<u64> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    if h.len() % 2 != 0 || h.len() > 16 || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    if h.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(h, 16).ok()
}

/// `<tid repr>.blob`.
pub fn blob_file_name(tid: Tid) -> String {
    format!("{}{BLOB_SUFFIX}", repr(tid.0))
}

/// What a file name in an oid directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A committed-or-not blob file of this tid.
    Blob(Tid),
    /// An uncommitted temporary (`blob_mkstemp`'s `<tid repr>XXXXXXXX.tmp`,
    /// or any `*.tmp-*` name). Its tid is not parsed: mkstemp's random
    /// characters may be hex digits too.
    Temp,
    Other,
}

pub fn classify(name: &str) -> FileKind {
    if let Some(stem) = name.strip_suffix(BLOB_SUFFIX) {
        if let Some(t) = parse_repr(stem) {
            if stem.starts_with("0x") {
                return FileKind::Blob(Tid(t));
            }
        }
        return FileKind::Other;
    }
    if name.ends_with(".tmp") || name.contains(".tmp-") {
        return FileKind::Temp;
    }
    FileKind::Other
}

/// The layout ZODB would use for `dir` (`auto_layout_select`).
pub fn read_layout(dir: &Path) -> Result<Layout> {
    let marker = dir.join(LAYOUT_MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(s) => {
            let s = s.trim();
            Layout::from_name(s)
                .ok_or_else(|| Error::new(&marker, ErrorKind::UnknownLayout(s.to_string())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let rd = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Layout::Bushy),
                Err(e) => return Err(Error::io(dir, e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| Error::io(dir, e))?;
                if !ent.file_name().as_encoded_bytes().starts_with(b".") {
                    return Ok(Layout::Lawn);
                }
            }
            Ok(Layout::Bushy)
        }
        Err(e) => Err(Error::io(&marker, e)),
    }
}

/// One file found under a blob directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Relative to the blob directory.
    pub rel: PathBuf,
    pub oid: u64,
    pub kind: FileKind,
    pub size: u64,
}

/// Everything under a blob directory: the files in its oid directories
/// (blobs and temporaries, with their oids) and the files under `tmp/`.
/// Directories that are not oid directories of `layout` are descended
/// (bushy levels) but their own files are ignored, as ZODB ignores them.
#[derive(Debug, Default)]
pub struct Walked {
    pub files: Vec<Found>,
    /// Files under `tmp/` (relative paths, sizes).
    pub tmp: Vec<(PathBuf, u64)>,
}

pub fn walk(dir: &Path, layout: Layout) -> Result<Walked> {
    let mut w = Walked::default();
    walk_in(dir, Path::new(""), layout, &mut w)?;
    w.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    w.tmp.sort();
    Ok(w)
}

fn walk_in(root: &Path, rel: &Path, layout: Layout, w: &mut Walked) -> Result<()> {
    let here = root.join(rel);
    let rd = std::fs::read_dir(&here).map_err(|e| Error::io(&here, e))?;
    let oid = layout.parse_oid_dir(rel);
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(&here, e))?;
        let name = ent.file_name();
        let child = rel.join(&name);
        let ft = ent
            .file_type()
            .map_err(|e| Error::io(&root.join(&child), e))?;
        if ft.is_dir() {
            if rel.as_os_str().is_empty() && name == TMP_DIR {
                walk_tmp(root, &child, w)?;
            } else {
                walk_in(root, &child, layout, w)?;
            }
            continue;
        }
        let Some(oid) = oid else { continue };
        let Some(name) = name.to_str() else { continue };
        let kind = classify(name);
        if kind == FileKind::Other {
            continue;
        }
        let size = ent
            .metadata()
            .map_err(|e| Error::io(&root.join(&child), e))?
            .len();
        w.files.push(Found {
            rel: child,
            oid,
            kind,
            size,
        });
    }
    Ok(())
}

fn walk_tmp(root: &Path, rel: &Path, w: &mut Walked) -> Result<()> {
    let here = root.join(rel);
    let rd = std::fs::read_dir(&here).map_err(|e| Error::io(&here, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(&here, e))?;
        let child = rel.join(ent.file_name());
        let ft = ent
            .file_type()
            .map_err(|e| Error::io(&root.join(&child), e))?;
        if ft.is_dir() {
            walk_tmp(root, &child, w)?;
        } else {
            let size = ent
                .metadata()
                .map_err(|e| Error::io(&root.join(&child), e))?
                .len();
            w.tmp.push((child, size));
        }
    }
    Ok(())
}

/// The files of `dir` that a cut at `upto` removes: blob files with a tid
/// above it (committed or not) and the temporaries in oid directories.
pub fn files_above(dir: &Path, layout: Layout, upto: Tid) -> Result<Vec<Found>> {
    Ok(walk(dir, layout)?
        .files
        .into_iter()
        .filter(|f| removed_by_cut(f.kind, upto))
        .collect())
}

/// Whether a cut at `upto` takes a file of this kind out of an oid
/// directory.
pub fn removed_by_cut(kind: FileKind, upto: Tid) -> bool {
    match kind {
        FileKind::Blob(t) => t > upto,
        FileKind::Temp => true,
        FileKind::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_zodbs() {
        // Values from ZODB: fshelper.getBlobFilename(p64(0x1234), p64(0x03ec...)).
        assert_eq!(
            Layout::Bushy.blob_path(0x1234, Tid(0x03ec_1a2b_3c4d_5e6f)),
            PathBuf::from("0x00/0x00/0x00/0x00/0x00/0x00/0x12/0x34/0x03ec1a2b3c4d5e6f.blob")
        );
        assert_eq!(
            Layout::Lawn.blob_path(0x1234, Tid(0x3ec_1a2b_3c4d_5e6f)),
            PathBuf::from("0x1234/0x03ec1a2b3c4d5e6f.blob")
        );
        assert_eq!(repr(0), "0x00");
        assert_eq!(repr(1), "0x01");
        assert_eq!(repr(0x100), "0x0100");
        assert_eq!(Layout::Lawn.oid_dir(0), PathBuf::from("0x00"));
    }

    #[test]
    fn oid_dirs_parse_back_and_others_do_not() {
        for oid in [0u64, 1, 0x1234, u64::MAX] {
            for l in [Layout::Bushy, Layout::Lawn] {
                assert_eq!(l.parse_oid_dir(&l.oid_dir(oid)), Some(oid));
            }
        }
        assert_eq!(Layout::Bushy.parse_oid_dir(Path::new("tmp")), None);
        assert_eq!(Layout::Bushy.parse_oid_dir(Path::new("0x00/0x01")), None);
        assert_eq!(Layout::Lawn.parse_oid_dir(Path::new("tmp")), None);
        assert_eq!(Layout::Lawn.parse_oid_dir(Path::new("0x123")), None);
        // bushy accepts one-digit levels, like its regex.
        assert_eq!(
            Layout::Bushy.parse_oid_dir(Path::new("0x0/0x0/0x0/0x0/0x0/0x0/0x0/0x7")),
            Some(7)
        );
    }

    #[test]
    fn names_are_classified() {
        assert_eq!(classify("0x03ec.blob"), FileKind::Blob(Tid(0x3ec)));
        assert_eq!(classify("0x3ec.blob"), FileKind::Other);
        assert_eq!(classify(".layout"), FileKind::Other);
        assert_eq!(classify("0x03ec1a2b3c4d5e6fab12cd.tmp"), FileKind::Temp);
        assert_eq!(classify("x.tmp-12"), FileKind::Temp);
    }

    #[test]
    fn layout_is_guessed_like_zodb() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path().join("blobs");
        assert_eq!(read_layout(&b).unwrap(), Layout::Bushy);
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join(".hidden"), "").unwrap();
        assert_eq!(read_layout(&b).unwrap(), Layout::Bushy);
        std::fs::create_dir(b.join("tmp")).unwrap();
        assert_eq!(read_layout(&b).unwrap(), Layout::Lawn);
        std::fs::write(b.join(".layout"), "bushy\n").unwrap();
        assert_eq!(read_layout(&b).unwrap(), Layout::Bushy);
        std::fs::write(b.join(".layout"), "zeocache").unwrap();
        let e = read_layout(&b).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::UnknownLayout(_)));
        assert!(e.to_string().contains("never a source"), "{e}");
    }
}
