//! One storage of a backup or restore run, prepared the same way for both:
//! its configuration, its Data.fs path, its repository and the repository
//! lock (held for the whole run, so two runs never write one repository).

use std::path::PathBuf;

use super::{Error, Result};
use crate::config::{Config, StorageConfig};
use crate::fsutil;
use crate::repozo::{RepoLock, Repository};

/// A configured storage with its repository locked.
pub struct StorageJob<'a> {
    pub cfg: &'a StorageConfig,
    /// The configured Data.fs with symlinks resolved.
    pub data_fs: PathBuf,
    pub repo: Repository,
    _lock: RepoLock,
}

impl<'a> StorageJob<'a> {
    /// Checks that the storage has a `data_fs` and a `repository`, and
    /// locks the repository.
    pub fn prepare(s: &'a StorageConfig, c: &Config) -> Result<StorageJob<'a>> {
        let data_fs = s
            .data_fs
            .as_deref()
            .ok_or_else(|| Error::config(format!("no data_fs in the {}", c.describe_source())))?;
        let data_fs =
            fsutil::resolve(data_fs).map_err(|e| Error::io(data_fs, e).doing("cannot resolve"))?;
        let dir = s.repository.clone().ok_or_else(|| {
            Error::config(format!("no repository in the {}", c.describe_source()))
        })?;
        let repo = Repository::new(dir);
        let lock = repo.lock()?;
        Ok(StorageJob {
            cfg: s,
            data_fs,
            repo,
            _lock: lock,
        })
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }
}
