//! The `tidstorage` executable: argv (and argv[0]) in, exit status out.
//! Everything else lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    // A write past `ulimit -f` must fail with EFBIG, reported like any
    // write error, instead of SIGXFSZ killing the process mid-write.
    // SAFETY: setting a signal's disposition to SIG_IGN at start-up,
    // before any thread exists.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    match tidstorage::cli::run(std::env::args_os().collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() && e.kind != tidstorage::error::ExitKind::BrokenPipe {
                eprintln!("tidstorage: {}", e.message);
            }
            ExitCode::from(e.kind.code())
        }
    }
}
