//! Where a coherency point comes from: the replay of a status file (the
//! configured one, `--tid-log`, or a backup's copy), or a running daemon;
//! and the exact cut above it, or the point itself when that fails.

use std::path::Path;

use super::Result;
use crate::client::DaemonClient;
use crate::datafs;
use crate::exactcut::{self, TagSummary};
use crate::statuslog::{self, Point, ReplayOptions};

/// The last point of a status file. A damaged last line (a torn write) is
/// ignored with a warning, as the status file's rules say; damage
/// elsewhere is an error unless `lenient`.
pub fn from_status_file(path: &Path, lenient: bool) -> Result<Point> {
    let r = statuslog::replay_file(path, ReplayOptions { lenient })?;
    if let Some((line, why)) = &r.torn_last_line {
        log::warn!(
            "{}: damaged last line {line} ignored ({why}); using the point before it",
            path.display()
        );
    }
    Ok(r.point)
}

/// The point a daemon publishes now.
pub fn from_daemon(addr: &str) -> Result<Point> {
    Ok(DaemonClient::connect(addr)?.dump()?.into_iter().collect())
}

/// The exact cut over summaries read above their floors, or `None` (with
/// a warning saying the point is used instead, `fallback`) when one cannot
/// be read or the plan cannot be made: backup and restore then keep to
/// the point, which is always consistent. `reads` are (storage id, read).
pub fn exact_or_point<'a>(
    reads: impl IntoIterator<Item = (&'a str, std::result::Result<TagSummary, datafs::Error>)>,
    fallback: &str,
) -> Option<exactcut::Plan> {
    let mut inputs = Vec::new();
    for (id, read) in reads {
        match read {
            Ok(x) => inputs.push(x),
            Err(e) => {
                log::warn!("storage {id}: its commit tags cannot be read ({e}); {fallback}");
                return None;
            }
        }
    }
    match exactcut::exact_cut(&inputs) {
        Ok(p) => Some(p),
        Err(e) => {
            log::warn!("no exact cut ({e}); {fallback}");
            None
        }
    }
}
