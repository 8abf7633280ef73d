//! Rendering commands (client side) and answers (server side) into bytes.
//!
//! Every function appends to the caller's buffer and writes nothing at all
//! when it refuses a value, so a half-written frame can never reach a peer.
//! Must not do I/O.

use crate::tid::Tid;
use std::fmt;

/// A value the protocol cannot carry: a field containing `\n` (it would end
/// the field) or `\r` (the receiver would silently drop it and see another
/// id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// The refused field, lossily shortened for the message.
    pub field: String,
    pub reason: &'static str,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot send the field {}: it {}; the protocol has no escaping, \
             so ids must not contain line breaks",
            self.field, self.reason
        )
    }
}

impl std::error::Error for EncodeError {}

fn check(field: &str) -> Result<(), EncodeError> {
    let reason = if field.contains('\n') {
        "contains a newline"
    } else if field.contains('\r') {
        "contains a carriage return"
    } else {
        return Ok(());
    };
    Err(EncodeError {
        field: super::fields::shown(field.as_bytes()),
        reason,
    })
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(field);
    out.push(b'\n');
}

fn put_number(out: &mut Vec<u8>, n: u64) {
    // Decimal without a temporary String: this is on the DUMP hot path.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put(out, &digits[i..]);
}

/// Writes a dict (count, keys, then values); refuses it whole if any key is
/// unsendable.
fn put_dict<S: AsRef<str>>(out: &mut Vec<u8>, entries: &[(S, Tid)]) -> Result<(), EncodeError> {
    for (k, _) in entries {
        check(k.as_ref())?;
    }
    put_number(out, entries.len() as u64);
    for (k, _) in entries {
        put(out, k.as_ref().as_bytes());
    }
    for (_, tid) in entries {
        put_number(out, tid.0);
    }
    Ok(())
}

/// Server: the answer to DUMP, a dict storage id -> TID.
pub fn encode_dump<'a>(
    out: &mut Vec<u8>,
    point: impl IntoIterator<Item = (&'a str, Tid)>,
) -> Result<(), EncodeError> {
    let entries: Vec<(&str, Tid)> = point.into_iter().collect();
    put_dict(out, &entries)
}

/// Server: the answer to BOOTSTRAPED, `1` or `0` as the original sends.
pub fn encode_bootstraped(out: &mut Vec<u8>, done: bool) {
    put(out, if done { b"1" } else { b"0" });
}

/// Server: the answer to INFO (and to the INFLIGHT and RESOLVE
/// extensions), one field. `json` must be compact JSON
/// (serde_json's `to_string` never emits a raw line break).
pub fn encode_info(out: &mut Vec<u8>, json: &str) -> Result<(), EncodeError> {
    check(json)?;
    put(out, json.as_bytes());
    Ok(())
}

/// Client: a bare command word (`DUMP`, `BOOTSTRAPED`, `INFO`, `QUIT`).
pub fn encode_word(out: &mut Vec<u8>, word: &str) -> Result<(), EncodeError> {
    check(word)?;
    put(out, word.as_bytes());
    Ok(())
}

/// Client: `BEGIN txn <list of storage ids>`.
pub fn encode_begin<S: AsRef<str>>(
    out: &mut Vec<u8>,
    txn: &str,
    storages: &[S],
) -> Result<(), EncodeError> {
    check(txn)?;
    for s in storages {
        check(s.as_ref())?;
    }
    put(out, b"BEGIN");
    put(out, txn.as_bytes());
    put_number(out, storages.len() as u64);
    for s in storages {
        put(out, s.as_ref().as_bytes());
    }
    Ok(())
}

/// Client: `COMMIT txn <dict storage id -> TID>`.
pub fn encode_commit<S: AsRef<str>>(
    out: &mut Vec<u8>,
    txn: &str,
    tids: &[(S, Tid)],
) -> Result<(), EncodeError> {
    check(txn)?;
    for (k, _) in tids {
        check(k.as_ref())?;
    }
    put(out, b"COMMIT");
    put(out, txn.as_bytes());
    put_dict(out, tids)
}

/// Client (extension): `RESOLVE txn`, the operator declaring `txn`
/// finished; the answer is one JSON field.
pub fn encode_resolve(out: &mut Vec<u8>, txn: &str) -> Result<(), EncodeError> {
    check(txn)?;
    put(out, b"RESOLVE");
    put(out, txn.as_bytes());
    Ok(())
}

/// Client: `ABORT txn`.
pub fn encode_abort(out: &mut Vec<u8>, txn: &str) -> Result<(), EncodeError> {
    check(txn)?;
    put(out, b"ABORT");
    put(out, txn.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_answer_matches_the_original_layout() {
        let mut out = Vec::new();
        encode_dump(&mut out, [("a", Tid(1)), ("b", Tid(u64::MAX))]).unwrap();
        assert_eq!(out, b"2\na\nb\n1\n18446744073709551615\n");
        out.clear();
        encode_dump(&mut out, std::iter::empty()).unwrap();
        assert_eq!(out, b"0\n");
    }

    #[test]
    fn client_commands_render_as_fields() {
        let mut out = Vec::new();
        encode_begin(&mut out, "t1", &["s0", "s1"]).unwrap();
        encode_commit(&mut out, "t1", &[("s0", Tid(5)), ("s1", Tid(0))]).unwrap();
        encode_abort(&mut out, "t2").unwrap();
        encode_word(&mut out, "DUMP").unwrap();
        encode_bootstraped(&mut out, true);
        encode_bootstraped(&mut out, false);
        encode_info(&mut out, r#"{"version":"0.1.0"}"#).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "BEGIN\nt1\n2\ns0\ns1\nCOMMIT\nt1\n2\ns0\ns1\n5\n0\nABORT\nt2\nDUMP\n1\n0\n\
             {\"version\":\"0.1.0\"}\n"
        );
    }

    #[test]
    fn line_breaks_are_refused_and_nothing_is_written() {
        let mut out = b"DUMP\n".to_vec();
        let e = encode_begin(&mut out, "t", &["ok", "bad\nid"]).unwrap_err();
        assert_eq!(e.reason, "contains a newline");
        assert!(e.to_string().contains("\"bad\\nid\""), "{e}");
        assert!(encode_commit(&mut out, "t\r", &[("a", Tid(1))]).is_err());
        assert!(encode_commit(&mut out, "t", &[("a\r", Tid(1))]).is_err());
        assert!(encode_abort(&mut out, "\n").is_err());
        assert!(encode_dump(&mut out, [("a", Tid(1)), ("\n", Tid(2))]).is_err());
        assert!(encode_info(&mut out, "{\n}").is_err());
        assert!(encode_word(&mut out, "DUMP\n").is_err());
        assert_eq!(out, b"DUMP\n");
    }
}
