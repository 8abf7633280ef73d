//! The TOML configuration (src/config.rs, `Config::from_str_at`) on
//! arbitrary text.
//!
//! Checks: never a panic; a refusal is a usage error (exit 2) with a
//! message naming the file; an accepted configuration has unique,
//! non-empty storage ids without newlines, and every path resolved against
//! the (absolute) base directory.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tidstorage::config::Config;
use tidstorage::error::ExitKind;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_str_at(text, Path::new("/etc/fuzz.toml"), Path::new("/etc")) {
        Err(e) => {
            assert!(matches!(e.kind, ExitKind::Usage), "{e:?}");
            assert!(e.message.starts_with("/etc/fuzz.toml"), "{}", e.message);
        }
        Ok(c) => {
            assert!(c.server.status_file.is_absolute());
            for p in [&c.server.log_file, &c.server.pidfile, &c.bootstrap.command]
                .into_iter()
                .chain([&c.backup.timestamp_file, &c.backup.status_file_backup_dir])
                .flatten()
            {
                assert!(p.is_absolute(), "{p:?}");
            }
            for (i, s) in c.storages.iter().enumerate() {
                assert!(!s.id.is_empty() && !s.id.contains('\n'), "{:?}", s.id);
                assert!(c.storages[..i].iter().all(|o| o.id != s.id));
                for p in s.data_fs.iter().chain(&s.repository) {
                    assert!(p.is_absolute(), "{p:?}");
                }
            }
        }
    }
});
