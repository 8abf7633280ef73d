//! The byte layout of a ZODB FileStorage file (`Data.fs`), and the pure
//! decoding of its fixed-size headers.
//!
//! Owns the offsets and the raw decode of 23-byte transaction headers and
//! 42-byte data record headers. Must not do I/O and must not judge what it
//! decodes: every check lives in the reader, the verifier and the cut code,
//! so the order of checks can mirror ZODB's.
//!
//! All integers are big-endian and unsigned.
//!
//! ```text
//! file
//!   0      4   magic: "FS30" (what ZODB 5+/Python 3 writes, including for a
//!              new empty storage) or "FS21" (Python 2 era, same layout)
//!   4      ..  transaction records, back to back, up to the end of the file
//!
//! transaction record at offset T (tlen = record length - 8)
//!   T+0    8   tid
//!   T+8    8   tlen
//!   T+16   1   status: b' ' done, b'p' packed, b'u' undone (legacy),
//!              b'c' checkpoint (voted, never finished)
//!   T+17   2   ulen, length of the user name
//!   T+19   2   dlen, length of the description
//!   T+21   2   elen, length of the extension (a pickled dict)
//!   T+23   ulen + dlen + elen   user, description, extension
//!   T+23+ulen+dlen+elen ..      data records, up to T+tlen
//!   T+tlen 8   tlen again (the redundant length that lets a reader walk
//!              backward from the end of the file)
//!   next transaction at T+tlen+8
//!
//! data record at offset D, inside the transaction at T
//!   D+0    8   oid
//!   D+8    8   tid, equal to the transaction's tid
//!   D+16   8   prev: offset of the previous record of this oid (0: none)
//!   D+24   8   tloc: T, the offset of the transaction holding this record
//!   D+32   2   vlen: version length, always 0 since ZODB 3.9
//!   D+34   8   plen: pickle length
//!   D+42   plen bytes of pickle when plen > 0, or when plen == 0 an 8-byte
//!              back pointer: the offset of an older data record whose
//!              pickle this record reuses (undo), 0 meaning "no object"
//! ```

/// What ZODB on Python 3 writes (`ZODB._compat.FILESTORAGE_MAGIC`).
pub const MAGIC_FS30: [u8; 4] = *b"FS30";
/// What ZODB on Python 2 wrote; the record layout is the same.
pub const MAGIC_FS21: [u8; 4] = *b"FS21";
pub const MAGIC_LEN: u64 = 4;
/// Offset of the first transaction record.
pub const FIRST_TXN: u64 = MAGIC_LEN;

// Transaction header fields, each starting where the previous one ends.
pub const TXN_TID: usize = 0;
pub const TXN_TLEN: usize = TXN_TID + 8;
pub const TXN_STATUS: usize = TXN_TLEN + 8;
pub const TXN_ULEN: usize = TXN_STATUS + 1;
pub const TXN_DLEN: usize = TXN_ULEN + 2;
pub const TXN_ELEN: usize = TXN_DLEN + 2;
pub const TXN_HEADER_LEN: usize = TXN_ELEN + 2;

/// Length of the redundant trailing transaction length.
pub const TXN_TRAILER_LEN: u64 = 8;

// Data record header fields, same chaining.
pub const DATA_OID: usize = 0;
pub const DATA_TID: usize = DATA_OID + 8;
pub const DATA_PREV: usize = DATA_TID + 8;
pub const DATA_TLOC: usize = DATA_PREV + 8;
pub const DATA_VLEN: usize = DATA_TLOC + 8;
pub const DATA_PLEN: usize = DATA_VLEN + 2;
pub const DATA_HEADER_LEN: usize = DATA_PLEN + 8;

/// Length of the back pointer that replaces the pickle when plen is 0.
pub const BACK_POINTER_LEN: u64 = 8;

pub const STATUS_DONE: u8 = b' ';
pub const STATUS_PACKED: u8 = b'p';
pub const STATUS_UNDONE: u8 = b'u';
pub const STATUS_CHECKPOINT: u8 = b'c';

const _: () = assert!(TXN_HEADER_LEN == 23);
const _: () = assert!(DATA_HEADER_LEN == 42);

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A transaction header exactly as stored, nothing checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTxnHeader {
    pub tid: u64,
    pub tlen: u64,
    pub status: u8,
    pub ulen: u16,
    pub dlen: u16,
    pub elen: u16,
}

impl RawTxnHeader {
    pub fn decode(b: &[u8; TXN_HEADER_LEN]) -> RawTxnHeader {
        RawTxnHeader {
            tid: be_u64(b, TXN_TID),
            tlen: be_u64(b, TXN_TLEN),
            status: b[TXN_STATUS],
            ulen: be_u16(b, TXN_ULEN),
            dlen: be_u16(b, TXN_DLEN),
            elen: be_u16(b, TXN_ELEN),
        }
    }

    /// Header plus user, description and extension; cannot overflow.
    pub fn header_len(&self) -> u64 {
        TXN_HEADER_LEN as u64 + self.ulen as u64 + self.dlen as u64 + self.elen as u64
    }
}

/// A data record header exactly as stored, nothing checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDataHeader {
    pub oid: u64,
    pub tid: u64,
    pub prev: u64,
    pub tloc: u64,
    pub vlen: u16,
    pub plen: u64,
}

impl RawDataHeader {
    pub fn decode(b: &[u8; DATA_HEADER_LEN]) -> RawDataHeader {
        RawDataHeader {
            oid: be_u64(b, DATA_OID),
            tid: be_u64(b, DATA_TID),
            prev: be_u64(b, DATA_PREV),
            tloc: be_u64(b, DATA_TLOC),
            vlen: be_u16(b, DATA_VLEN),
            plen: be_u64(b, DATA_PLEN),
        }
    }

    /// Whole record length (header + pickle or back pointer), `None` when
    /// plen is so large the sum overflows (then it cannot fit any file).
    pub fn record_len(&self) -> Option<u64> {
        let body = if self.plen == 0 {
            BACK_POINTER_LEN
        } else {
            self.plen
        };
        body.checked_add(DATA_HEADER_LEN as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_transaction_header_field_by_field() {
        let mut b = [0u8; TXN_HEADER_LEN];
        b[..8].copy_from_slice(&0x0102030405060708u64.to_be_bytes());
        b[8..16].copy_from_slice(&300u64.to_be_bytes());
        b[16] = b'p';
        b[17..19].copy_from_slice(&1u16.to_be_bytes());
        b[19..21].copy_from_slice(&2u16.to_be_bytes());
        b[21..23].copy_from_slice(&0xffffu16.to_be_bytes());
        let h = RawTxnHeader::decode(&b);
        assert_eq!(h.tid, 0x0102030405060708);
        assert_eq!(h.tlen, 300);
        assert_eq!(h.status, b'p');
        assert_eq!((h.ulen, h.dlen, h.elen), (1, 2, 0xffff));
        assert_eq!(h.header_len(), 23 + 1 + 2 + 0xffff);
    }

    #[test]
    fn record_len_uses_the_back_pointer_when_plen_is_zero_and_never_overflows() {
        let mut b = [0u8; DATA_HEADER_LEN];
        let h = RawDataHeader::decode(&b);
        assert_eq!(h.record_len(), Some(50));
        b[34..42].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(RawDataHeader::decode(&b).record_len(), None);
    }
}
