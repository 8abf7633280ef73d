//! Byte movers with md5: a range of a Data.fs into a backup file (plain or
//! gzip), and a backup file (plain or gzip) back out.
//!
//! Reading and hashing run on one thread while writing (and compressing)
//! runs on another, so a copy costs the slower of the two instead of their
//! sum; buffers are recycled, so memory stays at a few MiB whatever the
//! file size. Must not decide names or write anything but the writer it is
//! given.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use md5::{Digest, Md5};

use super::GZIP_LEVEL;

/// Chunk size: large enough that syscalls and channel hops are noise.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the two threads.
const DEPTH: usize = 4;

pub use crate::progress::{NoProgress, Progress};

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `fill` (reading + hashing) on a helper thread and `drain` (writing)
/// on this one, passing recycled buffers between them. `fill` gets an empty
/// buffer with capacity CHUNK and fills it; it returns Ok(false) at the end.
fn pipeline(
    mut fill: impl FnMut(&mut Vec<u8>) -> io::Result<bool> + Send,
    mut drain: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(DEPTH);
    let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 1);
    for _ in 0..DEPTH {
        // Cannot fail: the channel has room for DEPTH + 1 and we hold rx.
        let _ = free_tx.send(Vec::with_capacity(CHUNK));
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            while let Ok(mut buf) = free_rx.recv() {
                buf.clear();
                match fill(&mut buf) {
                    Ok(true) => {
                        if full_tx.send(Ok(buf)).is_err() {
                            return;
                        }
                    }
                    Ok(false) => return,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        // The helper ends when it is done, fails, or we drop free_tx.
        let mut result = Ok(());
        for msg in full_rx.iter() {
            match msg.and_then(|buf| {
                drain(&buf)?;
                Ok(buf)
            }) {
                Ok(buf) => {
                    // The helper may be gone after queueing its last chunks:
                    // keep draining what it sent.
                    let _ = free_tx.send(buf);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(free_tx);
        result
    })
}

/// Copies `[start, start + len)` of `src` into `out` (gzipped when `gzip`),
/// returning the md5 of the raw bytes. `out` is flushed (and the gzip
/// trailer written) but not fsynced.
pub fn copy_range(
    src: &File,
    start: u64,
    len: u64,
    out: &mut File,
    gzip: bool,
    progress: &dyn Progress,
) -> io::Result<String> {
    let mut hasher = Md5::new();
    let mut pos = start;
    let end = start
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflows"))?;
    let fill = |buf: &mut Vec<u8>| -> io::Result<bool> {
        if pos >= end {
            return Ok(false);
        }
        let n = (end - pos).min(CHUNK as u64) as usize;
        buf.resize(n, 0);
        src.read_exact_at(buf, pos).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the source ended before offset {end} (it shrank during the copy?)"),
                )
            } else {
                e
            }
        })?;
        hasher.update(&buf[..]);
        pos += n as u64;
        Ok(true)
    };
    if gzip {
        let mut enc = GzEncoder::new(&mut *out, Compression::new(GZIP_LEVEL));
        pipeline(fill, |b| {
            enc.write_all(b)?;
            progress.advance(b.len() as u64);
            Ok(())
        })?;
        enc.finish()?;
    } else {
        let mut written = 0u64;
        let mut flushed = 0u64;
        pipeline(fill, |b| {
            out.write_all(b)?;
            written += b.len() as u64;
            if written - flushed >= WRITEBACK {
                start_writeback(out, flushed, written - flushed);
                flushed = written;
            }
            progress.advance(b.len() as u64);
            Ok(())
        })?;
    }
    out.flush()?;
    Ok(hex(&hasher.finalize()))
}

/// Dirty bytes after which the kernel is asked to start writing them.
const WRITEBACK: u64 = 16 << 20;

/// Starts (without waiting for) the writeback of `[off, off + len)`: the
/// final fsync then has little left to do instead of the whole file, and
/// the copy does not fill the page cache with dirty pages. Advisory: a
/// failure changes nothing (the fsync still makes the file durable).
fn start_writeback(f: &File, off: u64, len: u64) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: plain syscall on a valid fd; no memory is passed.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// md5 of `[start, start + len)` of `src` (no output).
pub fn md5_range(src: &File, start: u64, len: u64, progress: &dyn Progress) -> io::Result<String> {
    let mut hasher = Md5::new();
    let mut pos = start;
    let end = start.saturating_add(len);
    let mut buf = vec![0u8; CHUNK];
    while pos < end {
        let n = (end - pos).min(CHUNK as u64) as usize;
        src.read_exact_at(&mut buf[..n], pos)?;
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
        pos += n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// Opens a backup file for reading its raw (uncompressed) bytes.
pub fn open_backup(path: &Path, gzip: bool) -> io::Result<Box<dyn Read + Send>> {
    let f = File::open(path)?;
    Ok(if gzip {
        // Python's gzip reads concatenated members; so do we.
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(CHUNK, f)))
    } else {
        Box::new(f)
    })
}

/// A failure writing the output of [`read_backup`] (a full disk under the
/// restored file), told apart from reading the backup file.
#[derive(Debug)]
pub struct OutputError {
    pub error: io::Error,
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for OutputError {}

/// True when `e` came from writing the output, not from reading.
pub fn is_output_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<OutputError>())
}

/// Streams a backup file's raw bytes into `out` (when given), returning
/// their count and md5. A damaged gzip stream is an `InvalidData`/
/// `InvalidInput`/`UnexpectedEof` error.
pub fn read_backup(
    path: &Path,
    gzip: bool,
    out: Option<&mut dyn Write>,
    progress: &dyn Progress,
) -> io::Result<(u64, String)> {
    let mut r = open_backup(path, gzip)?;
    let mut hasher = Md5::new();
    let mut total = 0u64;
    let fill = |buf: &mut Vec<u8>| -> io::Result<bool> {
        buf.resize(CHUNK, 0);
        let mut n = 0;
        // Fill whole chunks: decoders return small reads.
        while n < CHUNK {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(n);
        hasher.update(&buf[..]);
        total += n as u64;
        Ok(n > 0)
    };
    match out {
        Some(w) => pipeline(fill, |b| {
            w.write_all(b)
                .map_err(|error| io::Error::new(error.kind(), OutputError { error }))?;
            progress.advance(b.len() as u64);
            Ok(())
        })?,
        None => pipeline(fill, |b| {
            progress.advance(b.len() as u64);
            Ok(())
        })?,
    }
    Ok((total, hex(&hasher.finalize())))
}

/// The raw size of a backup file without hashing: the file size, or for
/// gzip the decompressed length (which needs a full read, as in repozo).
pub fn raw_size(path: &Path, gzip: bool) -> io::Result<u64> {
    if !gzip {
        return Ok(std::fs::metadata(path)?.len());
    }
    let mut r = open_backup(path, true)?;
    io::copy(&mut r, &mut io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_of(b: &[u8]) -> String {
        hex(&Md5::digest(b))
    }

    #[test]
    fn copies_and_hashes_ranges_plain_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        // Not a multiple of CHUNK, several chunks long.
        let data: Vec<u8> = (0..(3 * CHUNK + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        for gzip in [false, true] {
            let out_path = dir.path().join(format!("out{gzip}"));
            let mut out = File::create(&out_path).unwrap();
            let (a, b) = (1000u64, 2 * CHUNK as u64 + 777);
            let sum = copy_range(&src, a, b - a, &mut out, gzip, &NoProgress).unwrap();
            drop(out);
            let want = &data[a as usize..b as usize];
            assert_eq!(sum, md5_of(want));
            assert_eq!(md5_range(&src, a, b - a, &NoProgress).unwrap(), sum);
            let mut back = Vec::new();
            let (n, s2) = read_backup(&out_path, gzip, Some(&mut back), &NoProgress).unwrap();
            assert_eq!((n, &s2), (b - a, &sum));
            assert_eq!(back, want);
            assert_eq!(raw_size(&out_path, gzip).unwrap(), b - a);
        }
    }

    #[test]
    fn short_source_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("src");
        std::fs::write(&p, b"abc").unwrap();
        let src = File::open(&p).unwrap();
        let mut out = File::create(dir.path().join("o")).unwrap();
        let e = copy_range(&src, 0, 10, &mut out, false, &NoProgress).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn damaged_gzip_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, vec![7u8; 100_000]).unwrap();
        let src = File::open(&src_path).unwrap();
        let gz = dir.path().join("x.fsz");
        let mut out = File::create(&gz).unwrap();
        copy_range(&src, 0, 100_000, &mut out, true, &NoProgress).unwrap();
        drop(out);
        let mut b = std::fs::read(&gz).unwrap();
        let n = b.len();
        b.truncate(n - 5);
        std::fs::write(&gz, &b).unwrap();
        assert!(read_backup(&gz, true, None, &NoProgress).is_err());
    }
}
