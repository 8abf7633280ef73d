//! The TID: a ZODB transaction id, a u64 that is also a timestamp.
//!
//! Owns the four textual forms every subcommand accepts and prints (SPEC §5):
//! decimal, 16 hex digits (`0x` optional), the base64 of the 8 big-endian
//! bytes (as repozo and ZODB's tools print them), and the UTC time decoded
//! from ZODB's `TimeStamp` layout. Pure: no I/O, no clock.
//!
//! TimeStamp layout (big-endian):
//!
//! ```text
//! bytes 0..4  minutes since 1900-01-01 00:00, packed as
//!             ((((year-1900)*12 + month-1)*31 + day-1)*24 + hour)*60 + minute
//! bytes 4..8  seconds within that minute, scaled by 2^32/60
//! ```
//!
//! Parsing rule for ambiguous text: a `0x` prefix or exactly 16 hex digits is
//! hex (the form ZODB's own tools print); other all-digit text is decimal;
//! 11-12 base64 characters (ending `=` when 12) are base64; anything with a
//! `-` and a `:` is a time.

use std::fmt;
use std::str::FromStr;

/// A ZODB transaction id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tid(pub u64);

/// Why a textual TID was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseTidError {
    pub input: String,
    pub reason: String,
}

impl fmt::Display for ParseTidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid TID {:?}: {}; give a decimal integer, 16 hex digits (0x optional), \
             the base64 of the 8 bytes, or a UTC time like 2024-11-21T18:05:45.671234Z",
            self.input, self.reason
        )
    }
}

impl std::error::Error for ParseTidError {}

/// 2^32 / 60: TimeStamp's scale for the seconds word.
const SECONDS_SCALE: f64 = 4294967296.0 / 60.0;

/// A broken-down UTC time as TimeStamp stores it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TidTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    /// Seconds within the minute, fractional.
    pub second: f64,
}

impl Tid {
    pub const MAX: Tid = Tid(u64::MAX);

    pub fn from_bytes(b: [u8; 8]) -> Tid {
        Tid(u64::from_be_bytes(b))
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// The 16 lower-case hex digits ZODB's tools print.
    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Standard base64 of the 8 bytes (12 characters, one `=`).
    pub fn base64(self) -> String {
        base64_encode(&self.to_bytes())
    }

    /// The broken-down time the TimeStamp encodes.
    pub fn time(self) -> TidTime {
        let hi = (self.0 >> 32) as u32;
        let lo = self.0 as u32;
        let mut v = hi;
        let minute = v % 60;
        v /= 60;
        let hour = v % 24;
        v /= 24;
        let day = v % 31 + 1;
        v /= 31;
        let month = v % 12 + 1;
        v /= 12;
        let year = v + 1900;
        TidTime {
            year,
            month,
            day,
            hour,
            minute,
            second: lo as f64 / SECONDS_SCALE,
        }
    }

    /// RFC 3339 UTC time with microseconds, e.g. `2024-11-21T18:05:45.671234Z`.
    ///
    /// Microseconds are truncated, never rounded up, so the printed time never
    /// reaches the next second or minute.
    pub fn rfc3339(self) -> String {
        let t = self.time();
        let micros = ((self.0 as u32) as u128 * 60_000_000u128) >> 32;
        let sec = (micros / 1_000_000) as u32;
        let frac = (micros % 1_000_000) as u32;
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year, t.month, t.day, t.hour, t.minute, sec, frac
        )
    }

    /// The smallest TID whose TimeStamp is at or after the given UTC time.
    pub fn from_time(t: &TidTime) -> Result<Tid, String> {
        if t.year < 1900 {
            return Err(format!("year {} is before 1900", t.year));
        }
        if !(1..=12).contains(&t.month) {
            return Err(format!("month {} is out of range", t.month));
        }
        if t.day < 1 || t.day > days_in_month(t.year, t.month) {
            return Err(format!("day {} is out of range for the month", t.day));
        }
        if t.hour > 23 || t.minute > 59 || !(0.0..60.0).contains(&t.second) {
            return Err("time of day is out of range".into());
        }
        let minutes =
            ((((t.year as u64 - 1900) * 12 + t.month as u64 - 1) * 31 + t.day as u64 - 1) * 24
                + t.hour as u64)
                * 60
                + t.minute as u64;
        if minutes > u32::MAX as u64 {
            return Err(format!("year {} is too late for a TID", t.year));
        }
        let lo = (t.second * SECONDS_SCALE).ceil();
        let lo = if lo >= 4294967296.0 {
            u32::MAX as u64
        } else {
            lo as u64
        };
        Ok(Tid((minutes << 32) | lo))
    }

    /// Seconds since the Unix epoch of this TID's time (UTC).
    pub fn unix_seconds(self) -> f64 {
        let t = self.time();
        // Linear in the day, so a TimeStamp's "day 31" of a 30-day month
        // lands on the next day, as ZODB's own timeTime() computes it.
        let days = days_from_civil(t.year as i64, t.month, t.day);
        (days * 86400 + t.hour as i64 * 3600 + t.minute as i64 * 60) as f64 + t.second
    }

    /// The smallest TID at or after the given Unix time (seconds, UTC).
    pub fn from_unix_seconds(secs: f64) -> Tid {
        let whole = secs.floor();
        let days = (whole / 86400.0).floor() as i64;
        let rem = whole as i64 - days * 86400;
        let (year, month, day) = civil_from_days(days);
        let t = TidTime {
            year: year.max(1900) as u32,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: ((rem % 3600) / 60) as u32,
            second: (rem % 60) as f64 + (secs - whole),
        };
        if year < 1900 {
            return Tid(0);
        }
        Tid::from_time(&t).unwrap_or(Tid::MAX)
    }
}

impl fmt::Debug for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tid({} 0x{})", self.0, self.hex())
    }
}

/// Displays the decimal integer (the wire and status-file form).
impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Tid {
    type Err = ParseTidError;

    fn from_str(s: &str) -> Result<Tid, ParseTidError> {
        let err = |reason: &str| ParseTidError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("it is empty"));
        }
        if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            if h.is_empty() || h.len() > 16 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err("hex form needs 1 to 16 hex digits after 0x"));
            }
            // Checked above: 1..=16 hex digits always fit in a u64.
            return Ok(Tid(u64::from_str_radix(h, 16).expect("<= 16 hex digits")));
        }
        if t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Tid(u64::from_str_radix(t, 16).expect("16 hex digits")));
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            return t
                .parse::<u64>()
                .map(Tid)
                .map_err(|_| err("decimal value is larger than 2^64-1"));
        }
        if t.contains('-') && t.contains(':') {
            return parse_time(t).map_err(|r| err(&r));
        }
        if (t.len() == 12 && t.ends_with('=')) || t.len() == 11 {
            if let Some(b) = base64_decode8(t) {
                return Ok(Tid::from_bytes(b));
            }
            return Err(err("not valid base64 of 8 bytes"));
        }
        Err(err("not a recognised TID form"))
    }
}

fn is_leap(y: u32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses `YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|+HH:MM|-HH:MM]`; no zone = UTC.
fn parse_time(s: &str) -> Result<Tid, String> {
    let bad = || "time must look like 2024-11-21T18:05:45.671234Z".to_string();
    let (date, rest) = s.split_at(s.find(['T', 't', ' ']).ok_or_else(bad)?);
    let rest = &rest[1..];
    let mut dp = date.split('-');
    let year: u32 = dp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let month: u32 = dp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let day: u32 = dp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    if dp.next().is_some() {
        return Err(bad());
    }
    // Split off the zone.
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (c, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = &z[1..];
        let (zh, zm) = z.split_once(':').ok_or_else(bad)?;
        let zh: i64 = zh.parse().map_err(|_| bad())?;
        let zm: i64 = zm.parse().map_err(|_| bad())?;
        if zh > 23 || zm > 59 {
            return Err(bad());
        }
        (c, sign * (zh * 60 + zm))
    } else {
        (rest, 0)
    };
    let mut cp = clock.split(':');
    let hour: u32 = cp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let minute: u32 = cp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let second: f64 = match cp.next() {
        None => 0.0,
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            v.parse().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
    };
    if cp.next().is_some() || hour > 23 || minute > 59 || second >= 60.0 {
        return Err(bad());
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!(
            "{year:04}-{month:02}-{day:02} is not a calendar date"
        ));
    }
    if offset_min == 0 {
        return Tid::from_time(&TidTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        });
    }
    // Shift to UTC through day arithmetic.
    let total_min =
        days_from_civil(year as i64, month, day) * 1440 + hour as i64 * 60 + minute as i64
            - offset_min;
    let days = total_min.div_euclid(1440);
    let mins = total_min.rem_euclid(1440);
    let (y, m, d) = civil_from_days(days);
    if y < 1900 {
        return Err("time is before 1900".into());
    }
    Tid::from_time(&TidTime {
        year: y as u32,
        month: m,
        day: d,
        hour: (mins / 60) as u32,
        minute: (mins % 60) as u32,
        second,
    })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(b: &[u8; 8]) -> String {
    let mut out = String::with_capacity(12);
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (if n > 1 { chunk[1] as u32 } else { 0 }) << 8
            | (if n > 2 { chunk[2] as u32 } else { 0 });
        for i in 0..4 {
            if i <= n {
                out.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode8(s: &str) -> Option<[u8; 8]> {
    let s = s.strip_suffix('=').unwrap_or(s);
    if s.len() != 11 {
        return None;
    }
    let mut acc: u128 = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u128;
        acc = acc << 6 | v;
    }
    // 66 bits: the last 2 must be zero padding.
    if acc & 3 != 0 {
        return None;
    }
    Some(((acc >> 2) as u64).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A TID generated by ZODB 6.4 (`transaction.commit()` on a FileStorage),
    // with what `str(persistent.TimeStamp.TimeStamp(tid))` and
    // `base64.encodebytes(tid)` printed for it.
    #[test]
    fn known_zodb_tid() {
        let t: Tid = "040d2b184daeb8aa".parse().unwrap();
        assert_eq!(t.0, 291936934231455914);
        assert_eq!(t.rfc3339(), "2026-11-21T16:24:18.206837Z");
        assert_eq!(t.base64(), "BA0rGE2uuKo=");
        assert_eq!("BA0rGE2uuKo=".parse::<Tid>().unwrap(), t);
    }

    #[test]
    fn forms_round_trip() {
        for v in [0u64, 1, 285899593185544149, u64::MAX, 0x03f1b1a2cb5c4e00] {
            let t = Tid(v);
            assert_eq!(t.to_string().parse::<Tid>().unwrap(), t);
            assert_eq!(t.hex().parse::<Tid>().unwrap(), t);
            assert_eq!(format!("0x{}", t.hex()).parse::<Tid>().unwrap(), t);
            assert_eq!(t.base64().parse::<Tid>().unwrap(), t);
            assert_eq!(t.base64().len(), 12);
        }
    }

    #[test]
    fn time_round_trip_is_within_a_microsecond() {
        for v in [
            0x03f1b1a2cb5c4e00u64,
            285899593185544149,
            0x03e0000000000000,
        ] {
            let t = Tid(v);
            let back: Tid = t.rfc3339().parse().unwrap();
            assert!(back <= t, "{back:?} > {t:?}");
            // One microsecond is 2^32/60e6 ~ 71.6 units of the low word.
            assert!(t.0 - back.0 < 72, "{back:?} vs {t:?}");
        }
    }

    #[test]
    fn time_with_offset_and_space() {
        let a: Tid = "2024-11-21T17:30:00Z".parse().unwrap();
        let b: Tid = "2024-11-21 18:30:00+01:00".parse().unwrap();
        let c: Tid = "2024-11-21T17:30".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.rfc3339(), "2024-11-21T17:30:00.000000Z");
    }

    #[test]
    fn unix_seconds_round_trip() {
        let t = Tid::from_unix_seconds(1732212345.5);
        assert!((t.unix_seconds() - 1732212345.5).abs() < 1e-6);
        assert_eq!(t.rfc3339(), "2024-11-21T18:05:45.500000Z");
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "-1",
            "18446744073709551616",
            "0x",
            "0x12345678901234567",
            "2024-02-30T00:00:00Z",
            "2024-11-21T25:00:00Z",
            "hello",
            "AAAAAAAAAAA!",
        ] {
            assert!(bad.parse::<Tid>().is_err(), "{bad:?} accepted");
        }
    }
}
