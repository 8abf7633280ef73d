//! The Prometheus text exposition format, version 0.0.4: `# HELP` and
//! `# TYPE` lines, then one sample per line, label values escaped.
//! Integers are written exactly (a TID is a u64 near 2.9e17, beyond what
//! an f64 holds exactly); floats as Prometheus parses them (`NaN`, `+Inf`).
//!
//! Pure text building; the names are the caller's and must already be
//! valid metric and label names (they are constants in `metrics`).

use std::fmt::Write as _;

/// The content type of a 0.0.4 exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type, as 0.0.4 spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A sample value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

/// Builds one exposition text.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Samples of the
    /// family follow with the same `name` (a counter's name ends in
    /// `_total`, which 0.0.4 keeps in both the TYPE line and the samples).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = write!(self.out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
    }

    /// One sample line: `name{l1="v1",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in val.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match v {
            Value::Int(n) => {
                let _ = write!(self.out, "{n}");
            }
            Value::Float(f) if f.is_nan() => self.out.push_str("NaN"),
            Value::Float(f) if f.is_infinite() => {
                self.out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" })
            }
            // Rust prints finite floats in plain decimal (no exponent),
            // which every Prometheus parser reads.
            Value::Float(f) => {
                let _ = write!(self.out, "{f}");
            }
        }
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut e = Exposition::new();
        e.family("x_total", Kind::Counter, "a \\ b\nc");
        e.sample("x_total", &[("k", "a\"b\\c\nd")], Value::Int(u64::MAX));
        e.family("g", Kind::Gauge, "g");
        e.sample("g", &[], Value::Float(0.5));
        e.sample("g", &[("a", "1"), ("b", "2")], Value::Float(f64::NAN));
        e.sample("g", &[], Value::Float(f64::NEG_INFINITY));
        e.sample("g", &[], Value::Float(1e20));
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
             x_total{k=\"a\\\"b\\\\c\\nd\"} 18446744073709551615\n\
             # HELP g g\n# TYPE g gauge\ng 0.5\ng{a=\"1\",b=\"2\"} NaN\ng -Inf\n\
             g 100000000000000000000\n"
        );
    }
}
