//! One client connection: its socket, its decoder, its output buffer and
//! its closing flags. Its poll interest is derived from those buffers:
//! writable only while answers are queued.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::protocol::Decoder;

pub struct Conn {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    pub decoder: Decoder,
    /// Answers not yet written; bytes before `out_pos` are already sent.
    pub out: Vec<u8>,
    out_pos: usize,
    /// QUIT received: flush the answers, then close.
    pub closing: bool,
    /// The client closed its side: flush, then close.
    pub peer_closed: bool,
    interest: Interest,
}

pub enum ReadOutcome {
    /// The read budget ran out with data possibly left: read again soon.
    More,
    /// Read until WouldBlock.
    Drained,
    /// The peer closed its side.
    Eof,
    Error(io::Error),
}

impl Conn {
    pub fn new(sock: TcpStream, peer: SocketAddr, decoder: Decoder) -> Conn {
        Conn {
            sock,
            peer,
            decoder,
            out: Vec::new(),
            out_pos: 0,
            closing: false,
            peer_closed: false,
            interest: Interest::READABLE,
        }
    }

    /// Reads into the decoder until WouldBlock, EOF, or `budget` bytes,
    /// through the loop's scratch buffer (allocated once: zeroing 64 KiB
    /// per read would cost more than the read).
    pub fn read_some(&mut self, buf: &mut [u8], budget: usize) -> ReadOutcome {
        let mut total = 0;
        loop {
            if total >= budget {
                return ReadOutcome::More;
            }
            match self.sock.read(buf) {
                Ok(0) => return ReadOutcome::Eof,
                Ok(n) => {
                    self.decoder.feed(&buf[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return ReadOutcome::Error(e),
            }
        }
    }

    pub fn has_output(&self) -> bool {
        self.out_pos < self.out.len()
    }

    pub fn pending_output(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes queued answers until done or WouldBlock.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > 1 << 20 && self.out_pos * 2 > self.out.len() {
            // Keep the buffer from growing with what was already sent.
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Re-registers when the wanted interest changed.
    pub fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let want = if self.has_output() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if want != self.interest {
            registry.reregister(&mut self.sock, token, want)?;
            self.interest = want;
        }
        Ok(())
    }
}
