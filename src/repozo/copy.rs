//! Byte movers with md5: a range of a Data.fs into a backup file (plain or
//! gzip), and a backup file (plain or gzip) back out.
//!
//! md5 is the slowest part of a copy, so one thread does nothing but hash
//! while two others read and write (and decompress or compress): a copy
//! costs about its md5 when a second core is free. Buffers are recycled,
//! so memory stays at a few MiB whatever the file size, and what a copy
//! writes (and a restore reads from the repository) is kept out of the
//! page cache ([`WritebackFile`], `DropBehind`); the live Data.fs a backup
//! reads is left cached. Must not decide names or write anything but the
//! writer it is given.

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
/// Chunks in flight between the threads of a copy.
const DEPTH: usize = 8;

pub use crate::progress::{NoProgress, Progress};

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A chunk buffer of CHUNK bytes (zeroed once, then recycled) and the
/// count of bytes filled.
struct Chunk {
    mem: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            mem: vec![0u8; CHUNK],
            len: 0,
        }
    }

    fn space(&mut self) -> &mut [u8] {
        &mut self.mem
    }

    fn bytes(&self) -> &[u8] {
        &self.mem[..self.len]
    }
}

/// Moves bytes chunk by chunk through three threads: a reader (`fill` puts
/// the next chunk in a buffer and returns how many bytes it put there, 0
/// at the end), a hasher computing the md5, and the calling thread, which
/// `drain`s (writes) each chunk after it is hashed. Returns the md5 (hex) of
/// all the bytes filled.
///
/// md5 is the slowest part of a copy (about 650 MB/s per core here), so
/// the hasher does nothing else; the read copy, the write, compression or
/// decompression run on the other two threads, which also wait for the
/// disk on their own (a restore reads a repository file that is not
/// cached while its writes wait for writeback: in one thread, the two
/// waits in a row were slower than the md5). Each chunk is passed on by
/// value (reader, hasher, writer, back to the reader), so no two threads
/// ever share one; at most `DEPTH` chunks exist.
fn pipeline(
    mut fill: impl FnMut(&mut [u8]) -> io::Result<usize> + Send,
    mut drain: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<String> {
    let (read_tx, read_rx) = mpsc::sync_channel::<Chunk>(DEPTH);
    let (hashed_tx, hashed_rx) = mpsc::sync_channel::<Chunk>(DEPTH);
    let (free_tx, free_rx) = mpsc::sync_channel::<Chunk>(DEPTH);
    std::thread::scope(|s| {
        // Each stage ends when its input channel closes (the stage before
        // ended) or its output channel does (the stage after stopped).
        let reader = s.spawn(move || -> io::Result<()> {
            let mut allocated = 0;
            loop {
                let mut c = if allocated < DEPTH {
                    allocated += 1;
                    Chunk::new()
                } else {
                    match free_rx.recv() {
                        Ok(c) => c,
                        Err(_) => return Ok(()),
                    }
                };
                c.len = fill(c.space())?;
                if c.len == 0 || read_tx.send(c).is_err() {
                    return Ok(());
                }
            }
        });
        let hasher = s.spawn(move || {
            let mut h = Md5::new();
            for c in read_rx.iter() {
                h.update(c.bytes());
                if hashed_tx.send(c).is_err() {
                    break;
                }
            }
            h.finalize()
        });
        let mut written = Ok(());
        for c in hashed_rx.iter() {
            if let Err(e) = drain(c.bytes()) {
                written = Err(e);
                break;
            }
            // The reader may be done already.
            let _ = free_tx.send(c);
        }
        // Stops the reader and the hasher if the drain failed.
        drop(hashed_rx);
        drop(free_tx);
        // Neither thread can panic except on a bug worth seeing.
        let read = reader.join().expect("reader thread");
        let md5 = hasher.join().expect("md5 thread");
        read?;
        written?;
        Ok(hex(&md5))
    })
}

/// Fills `buf` from `[*pos, end)` of `src` (at most `buf.len()` bytes),
/// advancing `*pos`; 0 at `end`. A source shorter than `end` is an error.
fn fill_range(src: &File, pos: &mut u64, end: u64, buf: &mut [u8]) -> io::Result<usize> {
    let n = (end.saturating_sub(*pos)).min(buf.len() as u64) as usize;
    src.read_exact_at(&mut buf[..n], *pos).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the source ended before offset {end} (it shrank during the copy?)"),
            )
        } else {
            e
        }
    })?;
    *pos += n as u64;
    Ok(n)
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
    let mut pos = start;
    let end = start
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflows"))?;
    let fill = |buf: &mut [u8]| fill_range(src, &mut pos, end, buf);
    let md5 = if gzip {
        let w = WritebackFile::new(out, 0);
        let mut enc = GzEncoder::new(w, Compression::new(GZIP_LEVEL));
        let md5 = pipeline(fill, |b| {
            enc.write_all(b)?;
            progress.advance(b.len() as u64);
            Ok(())
        })?;
        enc.finish()?;
        md5
    } else {
        let mut w = WritebackFile::new(out, 0);
        pipeline(fill, |b| {
            w.write_all(b)?;
            progress.advance(b.len() as u64);
            Ok(())
        })?
    };
    out.flush()?;
    Ok(md5)
}

/// Dirty bytes after which the kernel is asked to start writing them.
const WRITEBACK: u64 = 16 << 20;

/// A file written sequentially from offset `start` through the page cache
/// with "drop-behind": every [`WRITEBACK`] bytes the kernel is asked to
/// start writing the window just written, waits for the window before it
/// (started one window earlier: usually done by now) and drops that one's
/// pages. None of this is a durability point: the caller's fsync is.
///
/// So a copy of any size holds at most two windows of the page cache,
/// instead of evicting what the live databases need with pages nobody reads
/// again soon (a backup file is read back at restore, a restored file by
/// its ZEO server, later); the final fsync has little left to wait for; and
/// the copy keeps writing into the same few recycled pages. That matters
/// here: writing 1 GB into fresh page-cache pages cost 2.9 s of system time
/// on this project's machine against 0.4 s on recycled ones (a virtual
/// machine whose free memory is handed back to the host, so that every
/// fresh page faults in the host), time taken on the core the md5 needs.
///
/// (`O_DIRECT` writes were tried too: 0.1 to 0.2 s less CPU per GB when
/// the source is cached, but one synchronous write at a time made a
/// backup from an uncached source, or a restore, 1.2 to 1.5 times slower
/// than through the page cache, where writeback keeps the disk busy.)
pub struct WritebackFile<'a> {
    file: &'a mut File,
    written: u64,
    /// Writeback started for everything before it.
    flushed: u64,
    /// Written back and dropped before it.
    dropped: u64,
}

impl<'a> WritebackFile<'a> {
    /// `file` positioned at `start` (where the writes go).
    pub fn new(file: &'a mut File, start: u64) -> WritebackFile<'a> {
        WritebackFile {
            file,
            written: start,
            flushed: start,
            dropped: start,
        }
    }
}

impl Write for WritebackFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed >= WRITEBACK {
            start_writeback(self.file, self.flushed, self.written - self.flushed);
            if self.flushed > self.dropped {
                drop_behind(self.file, self.dropped, self.flushed - self.dropped);
                self.dropped = self.flushed;
            }
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
    sync_range(f, off, len, libc::SYNC_FILE_RANGE_WRITE);
}

/// Waits for the writeback of `[off, off + len)` (started earlier) and
/// drops its now clean pages from the page cache. Advisory like
/// [`start_writeback`]: this is not a durability point (no metadata, no
/// disk cache flush: the final fsync is), and a page still dirty is
/// simply kept.
fn drop_behind(f: &File, off: u64, len: u64) {
    sync_range(
        f,
        off,
        len,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    );
    advise(f, off, len, libc::POSIX_FADV_DONTNEED);
}

/// `sync_file_range(2)` on `[off, off + len)`; its result is ignored (both
/// callers are advisory).
fn sync_range(f: &File, off: u64, len: u64, flags: libc::c_uint) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: plain syscall on a valid fd; no memory is passed.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            flags,
        );
    }
}

/// md5 of `[start, start + len)` of `src` (no output): reading on this
/// thread, hashing on another.
pub fn md5_range(src: &File, start: u64, len: u64, progress: &dyn Progress) -> io::Result<String> {
    let mut pos = start;
    let end = start.saturating_add(len);
    pipeline(
        |buf| fill_range(src, &mut pos, end, buf),
        |b| {
            progress.advance(b.len() as u64);
            Ok(())
        },
    )
}

/// Opens a backup file for reading its raw (uncompressed) bytes, dropping
/// from the page cache what has been read (see [`DropBehind`]).
pub fn open_backup(path: &Path, gzip: bool) -> io::Result<Box<dyn Read + Send>> {
    let f = DropBehind::new(File::open(path)?);
    Ok(if gzip {
        Box::new(GzMembers::new(BufReader::with_capacity(CHUNK, f)))
    } else {
        Box::new(f)
    })
}

/// A file read sequentially once, whose pages are dropped from the page
/// cache behind the reader (every [`WRITEBACK`] bytes): a backup file is
/// read by a restore or a check and then not again soon, and its pages
/// would only evict what the live databases need. The kernel is also told
/// the reads are sequential (a larger read-ahead). Both advisory. (Asking
/// for more read-ahead, `POSIX_FADV_WILLNEED` two windows ahead, cost more
/// system time than it saved here.)
struct DropBehind {
    file: File,
    pos: u64,
    /// Dropped from the page cache before it.
    dropped: u64,
}

impl DropBehind {
    fn new(file: File) -> DropBehind {
        advise(&file, 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        DropBehind {
            file,
            pos: 0,
            dropped: 0,
        }
    }
}

impl Read for DropBehind {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        if self.pos - self.dropped >= WRITEBACK {
            advise(
                &self.file,
                self.dropped,
                self.pos - self.dropped,
                libc::POSIX_FADV_DONTNEED,
            );
            self.dropped = self.pos;
        }
        Ok(n)
    }
}

/// posix_fadvise, advisory: a failure changes nothing but speed.
fn advise(f: &File, off: u64, len: u64, advice: libc::c_int) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: plain syscall on a valid fd; no memory is passed.
    unsafe {
        libc::posix_fadvise(
            f.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            advice,
        );
    }
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
    let mut total = 0u64;
    let fill = |buf: &mut [u8]| -> io::Result<usize> {
        let mut n = 0;
        // Fill whole chunks: decoders return small reads.
        while n < buf.len() {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
        Ok(n)
    };
    let md5 = match out {
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
    };
    Ok((total, md5))
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
    fn writeback_file_writes_every_byte_in_order_over_many_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut f = File::create(&path).unwrap();
        let mut want = Vec::new();
        let mut w = WritebackFile::new(&mut f, 0);
        // Writes of every size, more than three drop-behind windows in all.
        let sizes = [CHUNK, 12345, 1, 4096];
        for i in 0..(4 * WRITEBACK as usize / CHUNK + 8) {
            let n = sizes[i % sizes.len()];
            let b: Vec<u8> = (0..n).map(|j| (i * 31 + j * 7) as u8).collect();
            w.write_all(&b).unwrap();
            want.extend_from_slice(&b);
        }
        w.flush().unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn a_restore_writer_takes_backup_files_back_to_back() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * CHUNK + 5).map(|i| (i % 253) as u8).collect();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, &data[..CHUNK + 100]).unwrap();
        std::fs::write(&b, &data[CHUNK + 100..]).unwrap();
        let mut f = File::create(dir.path().join("restored")).unwrap();
        let mut w = WritebackFile::new(&mut f, 0);
        for p in [&a, &b] {
            read_backup(p, false, Some(&mut w), &NoProgress).unwrap();
        }
        w.flush().unwrap();
        drop(f);
        assert_eq!(std::fs::read(dir.path().join("restored")).unwrap(), data);
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
