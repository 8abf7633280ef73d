#!/bin/sh
# Runs the original TIDStorage daemon in the foreground on 127.0.0.1.
#
#   bench/original/run.sh PORT STATUSFILE
#
# Its log goes to stdout; its pidfile is STATUSFILE.pid. Status file periods
# match what bench/daemon.sh gives tidstorage: 1 s bursts, 300 s full dumps.
# Stop it with SIGTERM (or SIGINT).
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 PORT STATUSFILE" >&2
    exit 2
fi
port=$1
status=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target="$root/bench/work/orig-py2"
python2=${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}

"$here/setup.sh"
# -m keeps the module's package-relative imports working; -n = no fork.
# -W ignore: the daemon imports the deprecated `sets` module.
PYTHONPATH="$here/stubs:$target" exec "$python2" -W ignore -u \
    -m Products.TIDStorage.bin.tidstorage \
    -n -a 127.0.0.1 -p "$port" -s "$status" -b 1 -F 300 \
    --pidfile "$status.pid"
