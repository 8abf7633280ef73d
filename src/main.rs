//! The `tidstorage` executable: argv (and argv[0]) in, exit status out.
//! Everything else lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
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
