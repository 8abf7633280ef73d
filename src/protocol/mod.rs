//! The TIDStorage wire protocol (SPEC §2): a sans-I/O codec.
//!
//! Owns the framing of fields, lists and dicts, the decoding of client
//! commands ([`Decoder`]), the decoding of server answers for clients
//! ([`ResponseDecoder`]) and the encoding of both directions. It is fed bytes
//! and yields values, or renders values into a caller's buffer. It must never
//! touch a socket, a file or the clock, and never decide what a command
//! *means* (a COMMIT of an unknown transaction is the engine's business, not a
//! frame error).
//!
//! # Framing
//!
//! ```text
//! field  = *byte-but-LF LF        ; CR bytes anywhere are dropped on input
//! list   = count-field *field     ; exactly `count` fields follow
//! dict   = list-of-keys *value    ; as many value fields as keys, no 2nd count
//! count  = 1*DIGIT                ; decimal, at most Limits::max_list
//! value  = 1*DIGIT                ; decimal TID, at most 2^64-1
//! ```
//!
//! | command       | fields after the word       | answer                  |
//! |---------------|-----------------------------|-------------------------|
//! | `BEGIN`       | txn id; list of storage ids | none                    |
//! | `ABORT`       | txn id                      | none                    |
//! | `COMMIT`      | txn id; dict storage -> TID | none                    |
//! | `DUMP`        |                             | dict storage -> TID     |
//! | `BOOTSTRAPED` |                             | one field, `1` or `0`   |
//! | `QUIT`        |                             | the server hangs up     |
//! | `INFO`        |                             | one field: a JSON object|
//! | `INFLIGHT`    |                             | one field: a JSON object|
//! | `RESOLVE`     | txn id                      | one field: a JSON object|
//!
//! `INFO`, `INFLIGHT` and `RESOLVE` are extensions (words the original
//! clients never send): `INFLIGHT` lists every in-flight and orphaned
//! transaction with what it holds back, `RESOLVE` is `tidstorage resolve`.
//!
//! # Decisions (the original is silent or accidental on these)
//!
//! - **Command words** are compared ASCII case-insensitively (the original
//!   lower-cases them; its clients send lower case, ours send upper case).
//!   The word must match exactly: `DUMP ` with a trailing blank is unknown, as
//!   it is for the original.
//! - **An empty field where a command word is expected** is skipped without a
//!   trace: the original ignores it too, and it lets a human press Enter in a
//!   telnet session. Everywhere else an empty field is a value: an empty
//!   transaction id or storage id is passed on as the empty string (both are
//!   opaque), an empty count or TID is a frame error.
//! - **Unknown words** decode to [`Command::Unknown`] (lossy UTF-8, for a log
//!   line) and consume nothing else; the daemon logs them at debug and goes
//!   on, as the original does silently.
//! - **`\r`** is dropped wherever it appears, inside ids too (`a\rb` is the id
//!   `ab`): that is what the original does, so two clients cannot disagree on
//!   an id. The field length limit counts bytes as received, `\r` included,
//!   so that a stream of `\r` cannot grow the buffer without bound.
//! - **Ids must be UTF-8.** Storage and transaction ids are opaque, but the
//!   rest of tidstorage (status file, JSON, logs) handles them as text, and a
//!   lossy decoding would merge distinct ids. The original's clients only send
//!   ASCII (`json.dumps` output and `host:port_hexthread`), so invalid UTF-8 is
//!   a frame error.
//! - **Numbers** are plain decimal digits, leading zeros allowed. A leading
//!   `-` is reported as negative, more digits than fit as out of range, and
//!   anything else (blanks, `+`, `0x`) as not an integer. The original's
//!   Python `int()` is laxer (blanks, `+`), but its clients send `str(int)`.
//! - **A TID value `None`** (exactly) is accepted and its storage left out of
//!   the decoded COMMIT. The original Zope client sends `str(None)` when a
//!   storage reports no last committed TID; the original daemon then throws
//!   the whole COMMIT away. Leaving just that storage out makes the COMMIT
//!   name fewer storages than its BEGIN, which the engine treats as a partial
//!   commit (it keeps blocking, and says so in the log) instead of closing the
//!   connection and losing the other Zope threads' pipelined commands.
//! - **Duplicates** (a storage twice in a BEGIN list or a COMMIT dict) are
//!   passed on in order; the engine decides.
//! - **After a frame error** the decoder is poisoned: every later call
//!   returns the same error. The connection is to be closed; there is no way
//!   to find the next command boundary again.
//! - **Limits** bound memory per connection: a field longer than
//!   [`Limits::max_field`] is reported as soon as `max_field + 1` bytes without
//!   a newline have arrived (the rest is never buffered); a count above
//!   [`Limits::max_list`] is reported before any item is read.

pub mod answers;
mod decode;
mod encode;
mod fields;
mod response;

pub use decode::{Command, Decoder};
pub use encode::{
    encode_abort, encode_begin, encode_bootstraped, encode_commit, encode_dump, encode_info,
    encode_resolve, encode_word, EncodeError,
};
pub use response::{Expect, Response, ResponseDecoder};

use std::fmt;

/// Per-connection bounds on what a peer may make us buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest field in bytes, `\r` included, `\n` excluded.
    pub max_field: usize,
    /// Largest count of a list or dict.
    pub max_list: usize,
    /// Most bytes of ids one BEGIN or COMMIT may hold: without it a peer
    /// could legally claim `max_list` ids of `max_field` bytes each (655 MB
    /// at the defaults) in a single command.
    pub max_command: usize,
}

impl Limits {
    /// SPEC §2 defaults: 64 KiB fields, 10,000 items; 4 MiB per command
    /// (10,000 ids of 400 bytes).
    pub const DEFAULT: Limits = Limits {
        max_field: 64 * 1024,
        max_list: 10_000,
        max_command: 4 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// What was wrong with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameErrorKind {
    /// A list or dict count that is not a decimal integer.
    InvalidCount,
    /// A list or dict count with a minus sign.
    NegativeCount,
    /// A count above [`Limits::max_list`] (or above what a u64 holds).
    ListTooLong,
    /// A TID value that is not a decimal integer.
    InvalidTid,
    /// A TID value with a minus sign.
    NegativeTid,
    /// A TID value above 2^64-1.
    TidOutOfRange,
    /// A field longer than [`Limits::max_field`].
    FieldTooLong,
    /// A BEGIN or COMMIT whose ids add up to more than [`Limits::max_command`].
    CommandTooLong,
    /// An id or answer field that is not UTF-8.
    InvalidUtf8,
    /// Client side: an answer that is not what the command calls for.
    InvalidAnswer,
    /// Client side: bytes from the server that no command asked for.
    UnexpectedData,
}

/// A malformed frame: the connection it came from must be closed.
///
/// `offset` is the position, in bytes received on the connection since it
/// opened, of the first byte of the offending field; the daemon adds the
/// peer address when it logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub kind: FrameErrorKind,
    pub detail: String,
    pub offset: u64,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed frame at byte {} of the stream: {}",
            self.offset, self.detail
        )
    }
}

impl std::error::Error for FrameError {}

#[cfg(test)]
mod compat_tests;
