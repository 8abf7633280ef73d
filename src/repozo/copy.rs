//! Byte movers with md5: a range of a Data.fs into a backup file (plain or
//! gzip), and a backup file (plain or gzip) back out.
//!
//! Reading and hashing run on one thread while writing (and compressing)
//! runs on another, so a copy costs the slower of the two instead of their
//! sum; buffers are recycled, so memory stays at a few MiB whatever the
//! file size. Must not decide names or write anything but the writer it is
//! given.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;

use flate2::bufread;
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

/// A file written sequentially from offset `start` whose dirty pages the
/// kernel is asked to write back as it goes (every [`WRITEBACK`] bytes),
/// so the final fsync of a restore has little left to wait for, as for a
/// backup's copy.
pub struct WritebackFile<'a> {
    file: &'a mut File,
    written: u64,
    flushed: u64,
}

impl<'a> WritebackFile<'a> {
    /// `file` positioned at `start` (where the writes go).
    pub fn new(file: &'a mut File, start: u64) -> WritebackFile<'a> {
        WritebackFile {
            file,
            written: start,
            flushed: start,
        }
    }
}

impl Write for WritebackFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed >= WRITEBACK {
            start_writeback(self.file, self.flushed, self.written - self.flushed);
            self.flushed = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

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
        Box::new(GzMembers::new(BufReader::with_capacity(CHUNK, f)))
    } else {
        Box::new(f)
    })
}

/// The members of a gzip file, read one after the other as Python's gzip
/// module (repozo) does: zero padding after a member is skipped; anything
/// else that is not a gzip header is damage, said as such (a decoder that
/// takes every trailing byte for a new member calls it "invalid gzip
/// header", which sends the operator after the wrong thing).
struct GzMembers<R: BufRead> {
    input: Option<R>,
    member: Option<bufread::GzDecoder<R>>,
}

impl<R: BufRead> GzMembers<R> {
    fn new(input: R) -> Self {
        GzMembers {
            input: Some(input),
            member: None,
        }
    }

    /// Starts the next member; `false` at the end of the file.
    fn next_member(&mut self) -> io::Result<bool> {
        let mut input = match self.member.take() {
            Some(m) => m.into_inner(),
            None => self.input.take().expect("input or member"),
        };
        loop {
            let buf = input.fill_buf()?;
            if buf.is_empty() {
                self.input = Some(input);
                return Ok(false);
            }
            let zeros = buf.iter().take_while(|b| **b == 0).count();
            if zeros > 0 {
                input.consume(zeros);
                continue;
            }
            if buf.len() >= 2 && buf[..2] != [0x1f, 0x8b] || buf.len() < 2 && buf[0] != 0x1f {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the gzip data ends before the file does: trailing bytes (at least {}) \
                         that are not a gzip member follow (the file is damaged or was appended to)",
                        buf.len()
                    ),
                ));
            }
            self.member = Some(bufread::GzDecoder::new(input));
            return Ok(true);
        }
    }
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.member.is_none() && !self.next_member()? {
                return Ok(0);
            }
            let m = self.member.as_mut().expect("started above");
            match m.read(out)? {
                0 if !out.is_empty() => {
                    // The member ended (its trailer checked): the next one.
                    if !self.next_member()? {
                        return Ok(0);
                    }
                }
                n => return Ok(n),
            }
        }
    }
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

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_members_padding_and_trailing_garbage() {
        let read = |bytes: Vec<u8>| {
            let mut out = Vec::new();
            GzMembers::new(&bytes[..])
                .read_to_end(&mut out)
                .map(|_| out)
        };
        let mut two = gz(b"abc");
        two.extend(gz(b"def"));
        assert_eq!(read(two.clone()).unwrap(), b"abcdef");
        let mut padded = two.clone();
        padded.extend([0u8; 100]);
        assert_eq!(read(padded).unwrap(), b"abcdef");
        let mut garbage = two;
        garbage.extend(b"not gzip at all");
        let e = read(garbage).unwrap_err();
        assert!(
            e.to_string().contains("trailing bytes (at least 15)"),
            "{e}"
        );
        // A damaged member is still the decoder's own error.
        let mut bad = gz(b"abcdefgh");
        let n = bad.len();
        bad[n - 3] ^= 0xff;
        assert!(read(bad).is_err());
    }

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
