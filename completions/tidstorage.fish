# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tidstorage_global_optspecs
    string join \n c/config= v/verbose q/quiet h/help V/version
end

function __fish_tidstorage_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tidstorage_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tidstorage_using_subcommand
    set -l cmd (__fish_tidstorage_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tidstorage -n "__fish_tidstorage_needs_command" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_needs_command" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "serve" -d 'Run the daemon Zope clients notify of every commit'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "dump" -d 'Print the coherency point, from a running daemon or a status file (offline)'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "bootstrap-status" -d 'Tell whether the daemon\'s bootstrap is complete (exit 0) or not (exit 1)'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "inflight" -d 'List in-flight and orphaned transactions: what each holds back, for how long, from where'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "resolve" -d 'Declare a stuck transaction finished: the daemon stops waiting for it (exit 1 if none)'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "backup" -d 'Back up every Data.fs (repozo-compatible) up to the daemon\'s coherency point'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "restore" -d 'Rebuild every Data.fs from its repository and cut it at the backup\'s coherency point'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "cut" -d 'Cut Data.fs files at the last coherency point after a crash'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "tags" -d 'Print the commit tags of one Data.fs above a floor (text, or JSON for another host)'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "check" -d 'Report transactions above the point that are incomplete right now (live files, read only)'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "generate" -d 'Write man pages and shell completions (for packagers; `make generate`)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l address -d 'Address to listen on [default: 127.0.0.1]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s p -l port -d 'Port to listen on; 0 picks a free one and logs it [default: 9001]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s s -l status-file -d 'Status file (TID log) to replay at start-up and append to [default: tidstorage.tid beside the configuration file, or in the working directory without one]' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l burst-period -d 'Minimum time between two `d` records (humantime, or seconds) [default: 1s]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l full-dump-period -d 'Time between two `f` records [default: 5m]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l fsync -d 'When to fsync the status file: always, interval (at most once a second), interval:DURATION, never [default: always]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s l -l log -d 'Server log file [default: standard error]' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l pidfile -d 'Pid file, locked while the daemon runs (a second daemon refuses to start)' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l user -d 'User to run as after binding (name or number, from /etc/passwd)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l group -d 'Group to run as after binding (name or number, from /etc/group)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l allow -d 'Accept connections only from this address block (repeatable; CIDR)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l metrics-address -d 'Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks a free one and logs it) [default: [server] metrics_address, else none]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s d -l daemon -d 'Detach: double fork, setsid, chdir /, umask 027'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s n -l nofork -l fg -d 'Stay in the foreground (the default; accepted for compatibility)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s h -l help -d 'Print help'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand dump" -l server -d 'Daemon to ask, HOST:PORT [default: [server] address:port of the configuration]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand dump" -l status-file -d 'Replay and validate this status file offline instead of asking the daemon' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand dump" -l format -d 'Output format' -r -f -a "text\t'Aligned columns for people'
json\t'One JSON document (machine-stable keys)'
tsv\t'Tab-separated rows, no header'"
complete -c tidstorage -n "__fish_tidstorage_using_subcommand dump" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand dump" -l lenient -d 'With --status-file: skip damaged lines instead of failing (their count is reported)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand dump" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand dump" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand dump" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand dump" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -l server -d 'Daemon to ask, HOST:PORT [default: [server] address:port of the configuration]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -l wait -d 'Poll until complete, for at most this long (e.g. 5m), also while the daemon is not reachable yet; exit 1 if still incomplete (3 if never reached)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s h -l help -d 'Print help'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand inflight" -l server -d 'Daemon to ask, HOST:PORT [default: [server] address:port of the configuration]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand inflight" -l format -d 'Output format' -r -f -a "text\t'Aligned columns for people'
json\t'`{"transactions": [...]}` (machine-stable keys)'"
complete -c tidstorage -n "__fish_tidstorage_using_subcommand inflight" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand inflight" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand inflight" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand inflight" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand inflight" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand resolve" -l server -d 'Daemon to ask, HOST:PORT [default: [server] address:port of the configuration]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand resolve" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand resolve" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand resolve" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand resolve" -s h -l help -d 'Print help'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand resolve" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -l server -d 'Daemon to take the coherency point from, HOST:PORT [default: [server] address:port]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -l storage -d 'Back up only this configured storage (repeatable)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -l keep-full -d 'After the backup, remove what is older than the N-th newest full backup of each repository, and older status-file copies [default: [backup] keep_full]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -l bootstrap-wait -d 'How long to wait for the daemon to know storages missing from its point (bootstrap after a daemon start)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -l max-lag -d 'Do not back up a storage whose coherent TID is more than DURATION (TID time) older than the newest transaction in its Data.fs (exit 3, naming the transactions holding it back); the others are backed up [default: [backup] max_lag, else no limit]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -l no-server -d 'Do not ask the daemon: back up each Data.fs to its current end (the original TIDStorage behaviour); restore then cuts with the status file'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -s F -l full -d 'Start a new chain with a full backup even if an incremental would do'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -s Q -l quick -d 'Check only the last backup file against the Data.fs (its md5 range) instead of the whole repository, like repozo\'s --quick'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -s z -l gzip -d 'gzip new backup files (.fsz, .deltafsz) [default: [backup] gzip]'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -l no-gzip -d 'Do not gzip, whatever [backup] gzip says'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -s h -l help -d 'Print help'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand backup" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -s D -l date -d 'Restore the state as of this UTC date, yyyy-mm-dd[-hh[-mm[-ss]]] (repozo\'s format) [default: the last line of [backup] timestamp_file, else now]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l storage -d 'Restore only this configured storage (repeatable)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l tid-log -d 'Cut at the last point of this status file instead of the backup\'s manifests' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l output-dir -d 'Restore into this directory (the configured data_fs and blob_dir paths recreated under it) instead of over the configured files' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l lenient -d 'Skip damaged status-file lines instead of refusing (with --tid-log)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l no-cut -d 'Do not cut: restore exactly what the repository holds (like repozo -R)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l at-point -d 'Where the point comes from a status file (a --no-server run\'s copy, or --tid-log), cut at that point itself; by default it is a floor above which the exact cut over the restored files keeps every transaction their commit tags show complete (see tidstorage-cut(1))'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l force -d 'Replace existing Data.fs files (each kept as Data.fs.before-restore-<time>) and blob directories (kept as <blob_dir>.before-restore-<unix time>)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l check -d 'Restore to temporary files, compare with the live Data.fs files (and blob directories with the run\'s files at the same TID), change nothing (exit 1 when one differs)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l verify -d 'Check every repository (chain contiguity, sizes, md5s, gzip included; with a blob_dir, every blob record of the newest chain has its file, right size and crc32) and write nothing, like repozo -V (exit 1 on a problem)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -l incremental -d 'Where an output Data.fs exists and is byte for byte a prefix of the chain being restored (checked by md5 against the .dat), append only the missing bytes, then cut at the run\'s point; otherwise restore it in full, replacing it as --force does (the reason is printed). A missing output is restored in full. Needs no --force'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -s Q -l quick -d 'With --verify: check sizes only, not md5s. With --incremental: check only the last chunk of the chain the output covers, and only when the output is unchanged since the restore that wrote it (size, mtime, ctime and inode recorded beside it); otherwise its whole prefix'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -s h -l help -d 'Print help'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand restore" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l tid-log -d 'Status file to take the point from (default: [server] status_file)' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l server -d 'Take the point from a daemon still running (HOST:PORT): fresher than the status file when only the ZEO servers crashed' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l since -d 'With the exact cut: this TID is the floor known to be consistent on every storage, instead of the point (e.g. when there is no status file)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l tags -d 'With the exact cut: the tag summary of a storage on another host (`tidstorage tags FILE --since TID --format json` there); repeatable' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l blob-dir -d 'With FILE: its blob directory, cut at the same TID (files above it move to <DIR>.tail-<tid hex>/, tmp/ is emptied). Without it the one-file form leaves blob files alone' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l storage -d 'Cut only this configured storage (repeatable)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l format -d 'Output format of the plan. TSV rows: storage, data_fs, tid, tid hex, current size, cut position, bytes removed, transactions removed, index action' -r -f -a "text\t'Aligned columns for people'
json\t'One JSON document (machine-stable keys)'
tsv\t'Tab-separated rows, no header'"
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l lenient -d 'Skip damaged status-file lines instead of refusing'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l at-point -d 'Cut at the point itself (the status file\'s or the daemon\'s), the behaviour before commit tags; by default the cut keeps, above the point, every transaction that the commit tags show complete on every storage it names (the exact cut, docs/tags.md)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s n -l dry-run -d 'Print the plan and change nothing'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l discard-tail -d 'Do not keep the removed bytes in Data.fs.tail-<tid hex>'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l verify -d 'Also verify every kept transaction (fstest-style, reads the whole file) before cutting; without it only the transactions around the cut are checked, which costs O(bytes removed)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand tags" -l since -d 'The floor: list only transactions above this TID (the storage\'s coherency point, a backup\'s). Without it the floor is the file\'s first tagged transaction (what was written before tagging began is taken as it is)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand tags" -l storage -d 'The configured storage id of FILE [default: the [[storage]] whose data_fs is FILE]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand tags" -l format -d 'Output format' -r -f -a "text\t'One line per transaction, for people'
json\t'The summary other hosts import (`cut/restore/check --tags FILE`)'"
complete -c tidstorage -n "__fish_tidstorage_using_subcommand tags" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand tags" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand tags" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand tags" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand tags" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -l tid-log -d 'Status file to take the point from (default: [server] status_file)' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -l server -d 'Take the point from a running daemon (HOST:PORT)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -l since -d 'Use this TID as every storage\'s floor instead of a point' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -l storage -d 'Check only this configured storage (repeatable); the others\' tags count as outside the configuration' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -l tags -d 'A storage of another host, as exported there by `tidstorage tags --format json` (repeatable)' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -l older-than -d 'Report only transactions whose commit started at least this long ago' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -l format -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -l lenient -d 'Skip damaged status-file lines instead of refusing'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -s h -l help -d 'Print help'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand check" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s h -l help -d 'Print help'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s V -l version -d 'Print version'
