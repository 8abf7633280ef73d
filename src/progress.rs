//! Progress of long operations: the [`Progress`] trait the byte movers
//! (copy, md5, restore streams) report through, and the one terminal bar
//! (`indicatif`) every command draws.
//!
//! Must not decide anything: a bar is hidden when stderr is not a terminal
//! (cron, logs) or with `-q`, and the work is the same either way.

use std::io::IsTerminal;

/// Something told about progress (bytes done since the last call).
pub trait Progress: Sync {
    fn advance(&self, bytes: u64);
}

impl Progress for indicatif::ProgressBar {
    fn advance(&self, bytes: u64) {
        self.inc(bytes)
    }
}

/// No progress reporting.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _: u64) {}
}

/// A bar on stderr for an operation over `len` bytes (0: set later),
/// hidden when `quiet` or when stderr is not a terminal.
pub fn bar(len: u64, msg: String, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        // The template is a literal known to parse.
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

/// A callback for the Data.fs walks (`verify_upto`, `index_for_prefix`),
/// which report `(done, total)` positions rather than increments.
pub fn positions(pb: &indicatif::ProgressBar) -> impl FnMut(u64, u64) + '_ {
    move |done, total| {
        if pb.length() != Some(total) {
            pb.set_length(total);
        }
        pb.set_position(done.min(total));
    }
}
