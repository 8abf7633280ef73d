//! The command-line surface: the subcommand table, argv[0] dispatch, and
//! man page / completion generation from the same clap definitions.
//!
//! Owns no behaviour of its own: each subcommand's flags live with its code
//! in `crate::cmd`, and this module only routes to them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};

use crate::cmd;
use crate::error::{CliError, Result};

/// The reference part of `tidstorage --help` and of tidstorage(1).
const AFTER_LONG_HELP: &str = "\
Configuration:
  -c FILE, else $TIDSTORAGE_CONFIG, else ./tidstorage.toml, else
  /etc/tidstorage.toml (TOML; sections [server], [bootstrap], [backup] and
  one [[storage]] per database with id, data_fs, repository, mountpoint,
  blob_dir).
  Unknown keys and bad values are errors naming the file and line; relative
  paths are relative to the file's directory; flags override the file.

TIDs are accepted as a decimal integer, 16 hex digits (0x optional), the
base64 of the 8 bytes, or a UTC time (2026-11-21T16:24:18Z).

Exit status:
  0  success
  1  the answer is no (bootstrap-status: incomplete)
  2  usage or configuration error
  3  runtime failure (I/O, damaged data, unreachable daemon, failed storage)

Files:
  Data.fs.lock    held by a running ZEO/ZODB: cut and restore refuse the file
  Data.fs.index   rewritten by cut and restore so ZODB opens without a scan
  Data.fs.tail-*  bytes removed by cut (unless --discard-tail)

See the README and docs/ of the source tree for the operator's guide.";

#[derive(Debug, Parser)]
#[command(
    name = "tidstorage",
    version,
    about = "Coherency points across ZODB databases: the daemon, backups and crash recovery",
    long_about = "tidstorage watches two-phase commits across several ZODB databases, \
                  derives coherency points (one TID per database such that no transaction \
                  is split) and uses them to cut, back up and restore every Data.fs \
                  consistently.\n\nIt is also a multi-call binary: invoked as \
                  tidstorage-<subcommand> (or tidstoraged for serve) it runs that subcommand.",
    propagate_version = true,
    disable_help_subcommand = true,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: cmd::Context,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommand table: one variant per subcommand, each with its flags.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon Zope clients notify of every commit.
    Serve(cmd::serve::ServeArgs),
    /// Print the coherency point, from a running daemon or a status file (offline).
    Dump(cmd::dump::DumpArgs),
    /// Tell whether the daemon's bootstrap is complete (exit 0) or not (exit 1).
    BootstrapStatus(cmd::bootstrap_status::BootstrapStatusArgs),
    /// List in-flight and orphaned transactions: what each holds back, for how long, from where.
    Inflight(cmd::inflight::InFlightArgs),
    /// Declare a stuck transaction finished: the daemon stops waiting for it (exit 1 if none).
    Resolve(cmd::resolve::ResolveArgs),
    /// Back up every Data.fs (repozo-compatible) up to the daemon's coherency point.
    Backup(cmd::backup::BackupArgs),
    /// Rebuild every Data.fs from its repository and cut it at the backup's coherency point.
    Restore(cmd::restore::RestoreArgs),
    /// Cut Data.fs files at the last coherency point after a crash.
    Cut(cmd::cut::CutArgs),
    /// Print the commit tags of one Data.fs above a floor (text, or JSON for another host).
    Tags(cmd::tags::TagsArgs),
    /// Report transactions above the point that are incomplete right now (live files, read only).
    Check(cmd::check::CheckArgs),
    /// Write man pages and shell completions (for packagers; `make generate`).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// The names of the user-facing subcommands, for argv[0] dispatch.
pub fn subcommand_names() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

/// Rewrites argv so `tidstorage-cut ARGS` reads as `tidstorage cut ARGS`
/// and `tidstoraged ARGS` as `tidstorage serve ARGS`.
pub fn dispatch_argv0(args: Vec<OsString>) -> Vec<OsString> {
    let Some(first) = args.first() else {
        return args;
    };
    let base = Path::new(first)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sub = if base == "tidstoraged" {
        Some("serve".to_string())
    } else {
        base.strip_prefix("tidstorage-").map(str::to_string)
    };
    match sub {
        Some(s) if subcommand_names().contains(&s) => {
            let mut out = Vec::with_capacity(args.len() + 1);
            out.push(OsString::from("tidstorage"));
            out.push(OsString::from(s));
            out.extend(args.into_iter().skip(1));
            out
        }
        _ => args,
    }
}

/// Parses argv (after argv[0] dispatch) and runs the subcommand.
pub fn run(args: Vec<OsString>) -> Result<()> {
    let args = dispatch_argv0(args);
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            return match e.kind() {
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand => {
                    // Help goes to stdout; a closed pipe is not an error.
                    let _ = e.print();
                    if e.kind() == DisplayHelpOnMissingArgumentOrSubcommand {
                        Err(CliError::usage(String::new()))
                    } else {
                        Ok(())
                    }
                }
                _ => Err(CliError::usage(
                    e.render().to_string().trim_end().to_string(),
                )),
            };
        }
    };
    match cli.command {
        Command::Serve(a) => cmd::serve::run(a, &cli.global),
        Command::Dump(a) => cmd::dump::run(a, &cli.global),
        Command::BootstrapStatus(a) => cmd::bootstrap_status::run(a, &cli.global),
        Command::Inflight(a) => cmd::inflight::run(a, &cli.global),
        Command::Resolve(a) => cmd::resolve::run(a, &cli.global),
        Command::Backup(a) => cmd::backup::run(a, &cli.global),
        Command::Restore(a) => cmd::restore::run(a, &cli.global),
        Command::Cut(a) => cmd::cut::run(a, &cli.global),
        Command::Tags(a) => cmd::tags::run(a, &cli.global),
        Command::Check(a) => cmd::check::run(a, &cli.global),
        Command::Generate(a) => generate(a),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub what: GenerateWhat,
    /// Output directory.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GenerateWhat {
    Man,
    Completions,
}

fn generate(a: GenerateArgs) -> Result<()> {
    let io =
        |e: std::io::Error| CliError::runtime(format!("cannot write to {}: {e}", a.dir.display()));
    std::fs::create_dir_all(&a.dir).map_err(io)?;
    match a.what {
        GenerateWhat::Man => write_man_pages(&a.dir).map_err(io),
        GenerateWhat::Completions => write_completions(&a.dir).map_err(io),
    }
}

/// The clap command with hidden entries removed (what users see).
fn public_command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

/// One page for `tidstorage` and one per subcommand (`tidstorage-cut.1`...),
/// with no date in them so a staleness test can compare bytes.
pub fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    let cmd = public_command();
    std::fs::write(dir.join("tidstorage.1"), man_page(cmd.clone())?)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("tidstorage-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("tidstorage {}", sub.get_name()));
        std::fs::write(dir.join(format!("{name}.1")), man_page(sub)?)?;
    }
    Ok(())
}

/// clap_mangen's page with two sections of our own: a SYNOPSIS that names
/// each option's value (`--server HOST:PORT`, not `--server`), and the
/// examples and notes after the options kept line by line (clap_mangen
/// fills them into one paragraph).
fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone()).date("");
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    buf.extend_from_slice(synopsis(&cmd).as_bytes());
    man.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut buf)?;
    }
    if let Some(text) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        buf.extend_from_slice(b".SH EXAMPLES\n.nf\n");
        for line in text.to_string().lines() {
            buf.extend_from_slice(roff_line(line).as_bytes());
            buf.push(b'\n');
        }
        buf.extend_from_slice(b".fi\n");
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut buf)?;
    }
    // Each section rendered alone repeats the apostrophe definition; the
    // page needs it once, at the top.
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut seen = std::collections::HashSet::new();
    let mut out = String::new();
    for l in text.lines() {
        if (l.starts_with(".ie \\n(.g") || l.starts_with(".el .ds Aq"))
            && !seen.insert(l.to_string())
        {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Text for roff: backslashes and hyphens escaped, no line starting with
/// a control character.
fn roff_line(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// `.SH SYNOPSIS` with every option's value name.
fn synopsis(cmd: &clap::Command) -> String {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut line = format!("\\fB{}\\fR", roff_line(name));
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let flag = match (a.get_short(), a.get_long()) {
            (Some(s), Some(l)) => format!("\\fB\\-{s}\\fR|\\fB\\-\\-{}\\fR", roff_line(l)),
            (Some(s), None) => format!("\\fB\\-{s}\\fR"),
            (None, Some(l)) => format!("\\fB\\-\\-{}\\fR", roff_line(l)),
            (None, None) => {
                let v = a
                    .get_value_names()
                    .and_then(|v| v.first().map(|s| s.to_string()))
                    .unwrap_or_else(|| a.get_id().to_string());
                line.push_str(&format!(" [\\fI{}\\fR]", roff_line(&v)));
                continue;
            }
        };
        let takes_value = a.get_num_args().is_some_and(|n| n.takes_values())
            && !matches!(
                a.get_action(),
                clap::ArgAction::SetTrue | clap::ArgAction::Count
            );
        let value = if takes_value {
            let v = a
                .get_value_names()
                .and_then(|v| v.first().map(|s| s.to_string()))
                .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
            format!(" \\fI{}\\fR", roff_line(&v))
        } else {
            String::new()
        };
        let repeat = if matches!(
            a.get_action(),
            clap::ArgAction::Count | clap::ArgAction::Append
        ) {
            "..."
        } else {
            ""
        };
        line.push_str(&format!(" [{flag}{value}]{repeat}"));
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        line.push_str(" <\\fIsubcommand\\fR>");
    }
    format!(".SH SYNOPSIS\n{line}\n")
}

/// bash, zsh and fish completions.
pub fn write_completions(dir: &Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "tidstorage.bash"),
        (Shell::Zsh, "_tidstorage"),
        (Shell::Fish, "tidstorage.fish"),
    ] {
        let mut cmd = public_command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "tidstorage", &mut buf);
        std::fs::write(dir.join(file), buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn argv0_dispatch() {
        let v = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            dispatch_argv0(v(&["/usr/bin/tidstorage-cut", "--dry-run"])),
            v(&["tidstorage", "cut", "--dry-run"])
        );
        assert_eq!(
            dispatch_argv0(v(&["tidstorage", "dump"])),
            v(&["tidstorage", "dump"])
        );
        // Unknown suffixes and the hidden generator are not dispatched.
        assert_eq!(
            dispatch_argv0(v(&["tidstorage-nope"])),
            v(&["tidstorage-nope"])
        );
        assert_eq!(
            dispatch_argv0(v(&["tidstorage-generate", "man"])),
            v(&["tidstorage-generate", "man"])
        );
    }
}
