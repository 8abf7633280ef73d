//! What every subcommand gets besides its own flags: the global flags
//! (`-c`, `-v`, `-q`) and the logging they ask for.
//!
//! Owned here, not by `cli`, so that `cli` depends on `cmd` and never the
//! reverse: `cli` only parses argv into a [`Context`] and a subcommand's
//! `Args`, then calls the subcommand's `run`.

use std::path::PathBuf;

/// Flags every subcommand accepts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Context {
    /// Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then
    /// ./tidstorage.toml, then /etc/tidstorage.toml.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More output (repeat for more).
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output (repeat for less).
    #[arg(short = 'q', long = "quiet", global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

impl Context {
    /// The log level the -v/-q balance asks for, starting from `base`.
    pub fn level(&self, base: log::LevelFilter) -> log::LevelFilter {
        use log::LevelFilter::*;
        let order = [Off, Error, Warn, Info, Debug, Trace];
        let i = order.iter().position(|l| *l == base).unwrap_or(3) as i32;
        let j = (i + self.verbose as i32 - self.quiet as i32).clamp(0, 5);
        order[j as usize]
    }

    /// True with at least one -q: no progress bars.
    pub fn quiet(&self) -> bool {
        self.quiet > 0
    }

    /// The configuration named by -c (or found by the default search).
    pub fn load_config(&self) -> crate::error::Result<crate::config::Config> {
        crate::config::Config::load(self.config.as_deref())
    }

    /// Sets up logging to stderr for the client subcommands (serve has its
    /// own, in the daemon).
    pub fn init_stderr_log(&self) {
        let cfg = simplelog::ConfigBuilder::new()
            .set_time_level(log::LevelFilter::Off)
            .set_target_level(log::LevelFilter::Off)
            .set_thread_level(log::LevelFilter::Off)
            .build();
        let _ = simplelog::TermLogger::init(
            self.level(log::LevelFilter::Warn),
            cfg,
            simplelog::TerminalMode::Stderr,
            simplelog::ColorChoice::Never,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity() {
        let g = Context {
            config: None,
            verbose: 2,
            quiet: 0,
        };
        assert_eq!(g.level(log::LevelFilter::Warn), log::LevelFilter::Debug);
        let g = Context {
            config: None,
            verbose: 0,
            quiet: 5,
        };
        assert_eq!(g.level(log::LevelFilter::Warn), log::LevelFilter::Off);
    }
}
