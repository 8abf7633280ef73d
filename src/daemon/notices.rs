//! The rate limit of engine notices in the server log. A broken client can
//! cause one anomaly per event; past a per-kind budget per window the kind
//! is muted in the engine (counted there, not even formatted) and one line
//! per window says how many were left out. It decides only what is
//! *logged*: what a notice makes the daemon *do* (bootstrap) is the loop's.

use std::time::Duration;

use crate::engine::{Engine, Level, Notice, NoticeKind};

/// Notices of one kind logged per window before the rest are only counted
/// (a broken client can cause one per event: hundreds of thousands a
/// second would fill the disk). Counters in INFO still count every one.
const NOTICES_PER_WINDOW: u32 = 20;
const NOTICE_WINDOW: Duration = Duration::from_secs(10);

/// Rate limit of engine notices in the log, per kind. Over the budget a
/// kind is muted in the engine (counted there, not even formatted) until
/// the window ends.
pub struct NoticeLimiter {
    window_start: Duration,
    /// (kind, logged in this window, suppressed in this window)
    seen: Vec<(NoticeKind, u32, u64)>,
}

impl NoticeLimiter {
    pub fn new() -> NoticeLimiter {
        NoticeLimiter {
            window_start: Duration::ZERO,
            seen: Vec::new(),
        }
    }

    fn entry(&mut self, kind: NoticeKind) -> &mut (NoticeKind, u32, u64) {
        let i = match self.seen.iter().position(|(k, _, _)| *k == kind) {
            Some(i) => i,
            None => {
                self.seen.push((kind, 0, 0));
                self.seen.len() - 1
            }
        };
        &mut self.seen[i]
    }

    /// Logs `n` unless its kind is over the limit; then mutes the kind.
    pub fn log(&mut self, engine: &mut Engine, n: Notice) {
        let entry = self.entry(n.kind);
        if entry.1 >= NOTICES_PER_WINDOW {
            entry.2 += 1;
            engine.mute(n.kind);
            return;
        }
        entry.1 += 1;
        match n.level {
            Level::Critical => log::error!("CRITICAL: {}", n.message),
            Level::Error => log::error!("{}", n.message),
            Level::Warn => log::warn!("{}", n.message),
            Level::Info => log::info!("{}", n.message),
        }
    }

    /// Whether the window that started last has ended at `now`.
    pub fn window_over(&self, now: Duration) -> bool {
        now >= self.window_start + NOTICE_WINDOW
    }

    /// At the end of a window (or of the daemon): says how many were left
    /// out, unmutes, and starts a new window.
    pub fn roll(&mut self, engine: &mut Engine, now: Duration) {
        for (kind, skipped) in engine.take_muted() {
            self.entry(kind).2 += skipped;
        }
        for (kind, _, suppressed) in &self.seen {
            if *suppressed > 0 {
                let kind = serde_json::to_string(kind).unwrap_or_default();
                log::warn!(
                    "{suppressed} more {kind} notice(s) in the last {}s were not logged \
                     (more than {NOTICES_PER_WINDOW} per window); INFO counts them all",
                    NOTICE_WINDOW.as_secs()
                );
            }
        }
        self.seen.clear();
        self.window_start = now;
    }
}
