//! Configuration: the TOML file of SPEC §7, validated into one [`Config`]
//! before any work starts. Flags override it in each subcommand.
//!
//! Owns: finding the file (`-c`, then `$TIDSTORAGE_CONFIG`, then
//! `./tidstorage.toml`, then `/etc/tidstorage.toml`), rejecting unknown keys
//! and bad values with the file and line, resolving relative paths against
//! the file's directory, and the defaults. It never opens anything the
//! configuration names.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::error::CliError;
use crate::statuslog::FsyncPolicy;

pub const DEFAULT_ADDRESS: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 9001;
pub const DEFAULT_STATUS_FILE: &str = "tidstorage.tid";

/// Parses a duration the way every flag and key accepts it: a humantime
/// string (`30s`, `5m`, `1h 30m`, `250ms`) or a bare integer of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("duration {s:?} is too large"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"30s\", \"5m\" or 30"))
}

/// A duration in the file: a string or an integer number of seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like \"30s\" or an integer number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                u64::try_from(v)
                    .map(|v| DurationValue(Duration::from_secs(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// One allow-list entry: an address block in CIDR form (a bare address is a
/// /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen on a dual-stack socket as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad =
            || format!("invalid address block {s:?}; write e.g. \"10.0.0.0/8\" or \"::1/128\"");
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// When the status file is fsynced: the status log's own policy
/// (`always`, `interval` = at most once a second, `interval:5s`, `never`),
/// read from a string in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsyncValue(pub FsyncPolicy);

impl<'de> Deserialize<'de> for FsyncValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(FsyncValue).map_err(de::Error::custom)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: ServerFile,
    #[serde(default)]
    bootstrap: BootstrapFile,
    #[serde(default)]
    backup: BackupFile,
    #[serde(default)]
    storage: Vec<StorageFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    address: Option<String>,
    port: Option<u16>,
    status_file: Option<PathBuf>,
    burst_period: Option<DurationValue>,
    full_dump_period: Option<DurationValue>,
    fsync: Option<FsyncValue>,
    log_file: Option<PathBuf>,
    pidfile: Option<PathBuf>,
    allow: Option<Vec<Cidr>>,
    user: Option<String>,
    group: Option<String>,
    max_connections: Option<usize>,
    max_field: Option<usize>,
    max_list: Option<usize>,
    max_command: Option<usize>,
    max_output: Option<usize>,
    stale_after: Option<DurationValue>,
    max_future: Option<DurationValue>,
    metrics_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BootstrapFile {
    url: Option<String>,
    command: Option<PathBuf>,
    retry: Option<DurationValue>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupFile {
    timestamp_file: Option<PathBuf>,
    status_file_backup_dir: Option<PathBuf>,
    keep_full: Option<u32>,
    gzip: Option<bool>,
    max_lag: Option<DurationValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageFile {
    id: toml::Spanned<String>,
    data_fs: Option<PathBuf>,
    repository: Option<PathBuf>,
    mountpoint: Option<String>,
    blob_dir: Option<PathBuf>,
}

/// `[server]`, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub address: String,
    pub port: u16,
    pub status_file: PathBuf,
    pub burst_period: Duration,
    pub full_dump_period: Duration,
    pub fsync: FsyncPolicy,
    pub log_file: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub allow: Vec<Cidr>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub max_connections: usize,
    pub max_field: usize,
    pub max_list: usize,
    pub max_command: usize,
    pub max_output: usize,
    pub stale_after: Duration,
    pub max_future: Duration,
    /// `HOST:PORT` of the Prometheus metrics listener (`GET /metrics`);
    /// none by default.
    pub metrics_address: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            address: DEFAULT_ADDRESS.into(),
            port: DEFAULT_PORT,
            status_file: PathBuf::from(DEFAULT_STATUS_FILE),
            burst_period: Duration::from_secs(1),
            full_dump_period: Duration::from_secs(300),
            fsync: FsyncPolicy::Always,
            log_file: None,
            pidfile: None,
            allow: Vec::new(),
            user: None,
            group: None,
            max_connections: 4096,
            max_field: 64 * 1024,
            max_list: 10_000,
            max_command: 4 * 1024 * 1024,
            max_output: 16 * 1024 * 1024,
            stale_after: Duration::from_secs(600),
            max_future: Duration::from_secs(3600),
            metrics_address: None,
        }
    }
}

/// `[bootstrap]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapConfig {
    pub url: Option<String>,
    pub command: Option<PathBuf>,
    pub retry: Duration,
    /// PEM certificates trusted for an `https://` url instead of the
    /// bundled Mozilla roots (a site's private CA, a self-signed Zope).
    pub ca_file: Option<PathBuf>,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            url: None,
            command: None,
            retry: Duration::from_secs(60),
            ca_file: None,
        }
    }
}

/// `[backup]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackupConfig {
    pub timestamp_file: Option<PathBuf>,
    pub status_file_backup_dir: Option<PathBuf>,
    pub keep_full: Option<u32>,
    pub gzip: bool,
    /// `backup --max-lag`: a storage whose coherent TID is older than this
    /// (TID time) than its Data.fs's newest transaction is not backed up.
    pub max_lag: Option<Duration>,
}

/// One `[[storage]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    pub id: String,
    pub data_fs: Option<PathBuf>,
    pub repository: Option<PathBuf>,
    pub mountpoint: Option<String>,
    /// The storage's blob directory (the ZEO server's, never a client's
    /// cache): backed up, restored and cut with its Data.fs.
    pub blob_dir: Option<PathBuf>,
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    pub server: ServerConfig,
    pub bootstrap: BootstrapConfig,
    pub backup: BackupConfig,
    pub storages: Vec<StorageConfig>,
}

/// `p` with `.` and `..` components resolved lexically (`/x/sub/../db0`
/// is `/x/db0`), without touching the file system.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !p.is_absolute() {
                    out.push("..");
                }
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

/// Picks one of a storage's configured paths.
type PathOf = fn(&StorageConfig) -> &Option<PathBuf>;

/// Two configured paths name one file: equal once normalized, or the same
/// inode when both exist (a symlink, a bind mount).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

impl Config {
    /// Finds and loads the configuration. `explicit` is `-c FILE`; a missing
    /// explicit file is an error, a missing default one means defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, CliError> {
        if let Some(p) = explicit {
            return Config::from_file(p);
        }
        if let Some(p) = std::env::var_os("TIDSTORAGE_CONFIG").filter(|v| !v.is_empty()) {
            return Config::from_file(Path::new(&p));
        }
        for p in ["tidstorage.toml", "/etc/tidstorage.toml"] {
            if Path::new(p).exists() {
                return Config::from_file(Path::new(p));
            }
        }
        Ok(Config::default())
    }

    pub fn from_file(path: &Path) -> Result<Config, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!(
                "cannot read configuration file {}: {e}; check the path given with -c or $TIDSTORAGE_CONFIG",
                path.display()
            ))
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Absolute, so paths recorded from the configuration (manifests,
        // logs) mean the same file from any directory.
        let base = if base.is_absolute() {
            base.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| CliError::runtime(format!("cannot read the current directory: {e}")))?
                .join(base)
        };
        let mut c = Config::from_str_at(&text, path, &base)?;
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// Parses TOML `text`; `name` is used in messages, `base` resolves
    /// relative paths.
    pub fn from_str_at(text: &str, name: &Path, base: &Path) -> Result<Config, CliError> {
        let f: FileConfig = toml::from_str(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| line_col(text, s.start))
                .unwrap_or((0, 0));
            let msg = e.message().trim_end().to_string();
            if line > 0 {
                CliError::usage(format!(
                    "{}:{line}:{col}: {msg}; fix the configuration file (see tidstorage(1), CONFIGURATION)",
                    name.display()
                ))
            } else {
                CliError::usage(format!("{}: {msg}; fix the configuration file", name.display()))
            }
        })?;
        let at = |span: std::ops::Range<usize>| {
            let (l, c) = line_col(text, span.start);
            format!("{}:{l}:{c}", name.display())
        };
        let resolve = |p: PathBuf| normalize(&if p.is_absolute() { p } else { base.join(p) });

        let d = ServerConfig::default();
        let s = f.server;
        let server = ServerConfig {
            address: s.address.unwrap_or(d.address),
            port: s.port.unwrap_or(d.port),
            // The default too is beside the configuration, so `serve`,
            // `cut` and `backup` find the same file from any directory.
            status_file: resolve(s.status_file.unwrap_or(d.status_file)),
            burst_period: s.burst_period.map(|v| v.0).unwrap_or(d.burst_period),
            full_dump_period: s
                .full_dump_period
                .map(|v| v.0)
                .unwrap_or(d.full_dump_period),
            fsync: s.fsync.map(|v| v.0).unwrap_or(d.fsync),
            log_file: s.log_file.map(resolve),
            pidfile: s.pidfile.map(resolve),
            allow: s.allow.unwrap_or_default(),
            user: s.user,
            group: s.group,
            max_connections: s.max_connections.unwrap_or(d.max_connections),
            max_field: s.max_field.unwrap_or(d.max_field),
            max_list: s.max_list.unwrap_or(d.max_list),
            max_command: s.max_command.unwrap_or(d.max_command),
            max_output: s.max_output.unwrap_or(d.max_output),
            stale_after: s.stale_after.map(|v| v.0).unwrap_or(d.stale_after),
            max_future: s.max_future.map(|v| v.0).unwrap_or(d.max_future),
            metrics_address: s.metrics_address,
        };
        let bootstrap = BootstrapConfig {
            ca_file: f.bootstrap.ca_file.map(resolve),
            url: f.bootstrap.url,
            command: f.bootstrap.command.map(resolve),
            retry: f
                .bootstrap
                .retry
                .map(|v| v.0)
                .unwrap_or(BootstrapConfig::default().retry),
        };
        if bootstrap.url.is_some() && bootstrap.command.is_some() {
            return Err(CliError::usage(format!(
                "{}: [bootstrap] has both url and command; keep the one the daemon should use",
                name.display()
            )));
        }
        if let Some(u) = &bootstrap.url {
            if !u.starts_with("http://") && !u.starts_with("https://") {
                return Err(CliError::usage(format!(
                    "{}: [bootstrap] url {u:?} must start with http:// or https://",
                    name.display()
                )));
            }
        }
        let backup = BackupConfig {
            timestamp_file: f.backup.timestamp_file.map(resolve),
            status_file_backup_dir: f.backup.status_file_backup_dir.map(resolve),
            keep_full: f.backup.keep_full,
            max_lag: f.backup.max_lag.map(|v| v.0),
            gzip: f.backup.gzip.unwrap_or(false),
        };
        let mut storages: Vec<StorageConfig> = Vec::new();
        for st in f.storage {
            let span = st.id.span();
            let id = st.id.into_inner();
            if id.is_empty() {
                return Err(CliError::usage(format!(
                    "{}: storage id is empty",
                    at(span)
                )));
            }
            if id.contains('\n') {
                return Err(CliError::usage(format!(
                    "{}: storage id contains a newline, which the wire protocol cannot carry",
                    at(span)
                )));
            }
            if storages.iter().any(|o| o.id == id) {
                return Err(CliError::usage(format!(
                    "{}: storage id {id:?} is configured twice; each [[storage]] needs its own id",
                    at(span)
                )));
            }
            if st.mountpoint.is_none() && bootstrap.url.as_deref().is_some_and(|u| u.contains("%s"))
            {
                return Err(CliError::usage(format!(
                    "{}: storage {id:?} has no mountpoint, which [bootstrap] url needs for its %s; \
                     add mountpoint = \"...\" (the Zope mount point of this database)",
                    at(span)
                )));
            }
            let data_fs = st.data_fs.map(resolve);
            let repository = st.repository.map(resolve);
            let blob_dir = st.blob_dir.map(resolve);
            let fields: [(&str, &Option<PathBuf>, PathOf); 3] = [
                ("data_fs", &data_fs, |o| &o.data_fs),
                ("repository", &repository, |o| &o.repository),
                ("blob_dir", &blob_dir, |o| &o.blob_dir),
            ];
            for (what, mine, theirs) in fields {
                let Some(mine) = mine else { continue };
                let same =
                    |o: &&StorageConfig| theirs(o).as_ref().is_some_and(|t| same_file(t, mine));
                if let Some(o) = storages.iter().find(same) {
                    return Err(CliError::usage(format!(
                        "{}: storage {id:?} has the same {what} as storage {:?} ({}); each \
                         database needs its own",
                        at(span),
                        o.id,
                        mine.display()
                    )));
                }
            }
            storages.push(StorageConfig {
                id,
                data_fs,
                repository,
                mountpoint: st.mountpoint,
                blob_dir,
            });
        }
        Ok(Config {
            source: None,
            server,
            bootstrap,
            backup,
            storages,
        })
    }

    /// The storages named by `--storage` (all when empty), in config order.
    pub fn select_storages(&self, ids: &[String]) -> Result<Vec<&StorageConfig>, CliError> {
        if ids.is_empty() {
            return Ok(self.storages.iter().collect());
        }
        let mut out = Vec::new();
        for id in ids {
            match self.storages.iter().find(|s| &s.id == id) {
                Some(s) => out.push(s),
                None => {
                    return Err(CliError::usage(format!(
                        "storage {id:?} is not in the configuration{}; configured: {}",
                        self.source
                            .as_ref()
                            .map(|p| format!(" ({})", p.display()))
                            .unwrap_or_default(),
                        if self.storages.is_empty() {
                            "none".to_string()
                        } else {
                            self.storages
                                .iter()
                                .map(|s| format!("{:?}", s.id))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )))
                }
            }
        }
        Ok(out)
    }

    /// A short "in FILE" for messages.
    pub fn describe_source(&self) -> String {
        match &self.source {
            Some(p) => format!("configuration file {}", p.display()),
            None => "configuration (no file found: -c, $TIDSTORAGE_CONFIG, ./tidstorage.toml, /etc/tidstorage.toml)".into(),
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, CliError> {
        Config::from_str_at(t, Path::new("/etc/t.toml"), Path::new("/etc"))
    }

    const FULL: &str = r#"
[server]
address = "127.0.0.1"
port = 9001
status_file = "tid/tidstorage.tid"
burst_period = "30s"
full_dump_period = 300
log_file = "/var/log/tidstorage/tidstorage.log"
pidfile = "/run/tidstorage.pid"
allow = ["127.0.0.0/8", "10.0.0.0/8", "::1"]

[bootstrap]
url = "http://zope.example:8080/erp5/%s/modifyContext"
retry = "60s"

[backup]
timestamp_file = "/var/backup/zodb/timestamps.log"
status_file_backup_dir = "status"
keep_full = 3
gzip = true

[[storage]]
id = '[[["10.0.0.5", 8100]], "1"]'
data_fs = "/srv/zeo1/var/Data.fs"
repository = "zeo1"
mountpoint = "erp5_root"
"#;

    #[test]
    fn full_example_parses_and_resolves_paths() {
        let c = parse(FULL).unwrap();
        assert_eq!(
            c.server.status_file,
            PathBuf::from("/etc/tid/tidstorage.tid")
        );
        assert_eq!(c.server.burst_period, Duration::from_secs(30));
        assert_eq!(c.server.full_dump_period, Duration::from_secs(300));
        assert_eq!(c.server.allow.len(), 3);
        assert_eq!(
            c.backup.status_file_backup_dir,
            Some(PathBuf::from("/etc/status"))
        );
        assert_eq!(c.storages[0].id, r#"[[["10.0.0.5", 8100]], "1"]"#);
        assert_eq!(c.storages[0].repository, Some(PathBuf::from("/etc/zeo1")));
        assert_eq!(
            c.storages[0].data_fs,
            Some(PathBuf::from("/srv/zeo1/var/Data.fs"))
        );
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let e = parse("[server]\nport = 1\nprot = 2\n").unwrap_err();
        assert_eq!(e.kind, crate::error::ExitKind::Usage);
        assert!(e.message.starts_with("/etc/t.toml:3:"), "{}", e.message);
        assert!(e.message.contains("prot"), "{}", e.message);
    }

    #[test]
    fn bad_values_name_the_line() {
        for (t, line, what) in [
            ("[server]\nburst_period = \"soon\"\n", 2, "invalid duration"),
            ("[server]\nport = 70000\n", 2, ""),
            ("[server]\nallow = [\"10.0.0.0/33\"]\n", 2, "address block"),
            ("[server]\nfsync = \"sometimes\"\n", 2, ""),
            ("\n\n[[storage]]\nid = 5\n", 4, ""),
            (
                "[[storage]]\nid = \"a\"\n[[storage]]\nid = \"a\"\n",
                4,
                "twice",
            ),
            ("[server\n", 1, ""),
        ] {
            let e = parse(t).unwrap_err();
            assert!(
                e.message.starts_with(&format!("/etc/t.toml:{line}:")),
                "{t:?}: {}",
                e.message
            );
            assert!(e.message.contains(what), "{t:?}: {}", e.message);
        }
    }

    #[test]
    fn bootstrap_trigger_mistakes_are_refused() {
        let e = parse("[bootstrap]\nurl = \"http://z/%s\"\ncommand = \"/bin/true\"\n").unwrap_err();
        assert!(e.message.contains("both url and command"), "{}", e.message);
        // %s needs every storage's mountpoint.
        let t = "[bootstrap]\nurl = \"http://z/%s/touch\"\n\
                 [[storage]]\nid = \"a\"\nmountpoint = \"m\"\n[[storage]]\nid = \"b\"\n";
        let e = parse(t).unwrap_err();
        assert!(e.message.starts_with("/etc/t.toml:7:"), "{}", e.message);
        assert!(
            e.message.contains("\"b\" has no mountpoint"),
            "{}",
            e.message
        );
        // A URL without %s needs none.
        parse("[bootstrap]\nurl = \"http://z/touch\"\n[[storage]]\nid = \"b\"\n").unwrap();
    }

    #[test]
    fn default_status_file_is_beside_the_configuration() {
        assert_eq!(
            parse("").unwrap().server.status_file,
            PathBuf::from("/etc/tidstorage.tid")
        );
        assert_eq!(
            Config::default().server.status_file,
            PathBuf::from("tidstorage.tid"),
            "without a configuration file: the working directory"
        );
    }

    #[test]
    fn fsync_policies() {
        let c = parse("[server]\nfsync = \"interval:5s\"\n").unwrap();
        assert_eq!(
            c.server.fsync,
            FsyncPolicy::Interval(Duration::from_secs(5))
        );
        let c = parse("[server]\nfsync = \"never\"\n").unwrap();
        assert_eq!(c.server.fsync, FsyncPolicy::Never);
        assert_eq!(parse("").unwrap().server.fsync, FsyncPolicy::Always);
    }

    #[test]
    fn defaults_without_file() {
        let c = parse("").unwrap();
        assert_eq!(c.server.port, 9001);
        assert_eq!(c.server.address, "127.0.0.1");
        assert_eq!(c.server.burst_period, Duration::from_secs(1));
        assert!(c.storages.is_empty());
    }

    #[test]
    fn cidr_matching() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn https_bootstrap_url_ca_file_and_metrics_address() {
        let c = parse(
            "[server]\nmetrics_address = \"127.0.0.1:9002\"\n\
             [bootstrap]\nurl = \"https://z/touch\"\nca_file = \"ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.server.metrics_address.as_deref(), Some("127.0.0.1:9002"));
        assert_eq!(c.bootstrap.url.as_deref(), Some("https://z/touch"));
        assert_eq!(c.bootstrap.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        let e = parse("[bootstrap]\nurl = \"ftp://z/touch\"\n").unwrap_err();
        assert!(e.message.contains("http:// or https://"), "{}", e.message);
    }

    #[test]
    fn blob_dir_is_resolved_beside_the_file_and_never_shared() {
        let c = parse(
            "[[storage]]\nid = \"a\"\ndata_fs = \"a/Data.fs\"\nblob_dir = \"a/../a/blobs\"\n",
        )
        .unwrap();
        assert_eq!(c.storages[0].blob_dir, Some(PathBuf::from("/etc/a/blobs")));
        let e = parse(
            "[[storage]]\nid = \"a\"\nblob_dir = \"b\"\n\
             [[storage]]\nid = \"c\"\nblob_dir = \"./b\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("the same blob_dir"), "{}", e.message);
    }
}
