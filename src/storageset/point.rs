//! Where a coherency point comes from: the replay of a status file (the
//! configured one, `--tid-log`, or a backup's copy), or a running daemon.

use std::path::Path;

use super::Result;
use crate::client::DaemonClient;
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
