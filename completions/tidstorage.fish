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
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "cut" -d 'Cut Data.fs files at the last coherency point after a crash'
complete -c tidstorage -n "__fish_tidstorage_needs_command" -f -a "generate" -d 'Write man pages and shell completions (for packagers; `make generate`)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l address -d 'Address to listen on [default: 127.0.0.1]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s p -l port -d 'Port to listen on; 0 picks a free one and logs it [default: 9001]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s s -l status-file -d 'Status file (TID log) to replay at start-up and append to [default: ./tidstorage.tid]' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l burst-period -d 'Minimum time between two `d` records (humantime, or seconds) [default: 1s]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l full-dump-period -d 'Time between two `f` records [default: 5m]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l fsync -d 'When to fsync the status file [default: always]' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -s l -l log -d 'Server log file [default: standard error]' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l pidfile -d 'Pid file, locked while the daemon runs (a second daemon refuses to start)' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l user -d 'User to run as after binding (name or number, from /etc/passwd)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l group -d 'Group to run as after binding (name or number, from /etc/group)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand serve" -l allow -d 'Accept connections only from this address block (repeatable; CIDR)' -r
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
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -l wait -d 'Poll until complete, for at most this long (e.g. 5m); exit 1 if still incomplete' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s h -l help -d 'Print help'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand bootstrap-status" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l tid-log -d 'Status file to take the point from (default: [server] status_file)' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l server -d 'Take the point from a daemon still running (HOST:PORT): fresher than the status file when only the ZEO servers crashed' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l storage -d 'Cut only this configured storage (repeatable)' -r
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l format -d 'Output format of the plan' -r -f -a "text\t'Aligned columns for people'
json\t'One JSON document (machine-stable keys)'
tsv\t'Tab-separated rows, no header'"
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l lenient -d 'Skip damaged status-file lines instead of refusing'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s n -l dry-run -d 'Print the plan and change nothing'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l discard-tail -d 'Do not keep the removed bytes in Data.fs.tail-<tid hex>'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -l verify -d 'Also verify every kept transaction (fstest-style, reads the whole file) before cutting; without it only the transactions around the cut are checked, which costs O(bytes removed)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand cut" -s V -l version -d 'Print version'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s c -l config -d 'Configuration file (TOML). Default: $TIDSTORAGE_CONFIG, then ./tidstorage.toml, then /etc/tidstorage.toml' -r -F
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s v -l verbose -d 'More output (repeat for more)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s q -l quiet -d 'Less output (repeat for less)'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s h -l help -d 'Print help'
complete -c tidstorage -n "__fish_tidstorage_using_subcommand generate" -s V -l version -d 'Print version'
