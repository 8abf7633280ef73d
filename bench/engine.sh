#!/bin/sh
# Engine alone, side by side: tidstorage's engine (benches/engine.rs, release
# build) and the original Products.TIDStorage 5.5.0 engine (its TIDStorage
# class, in-process under Python 2.7: bench/original/engine.py), on the same
# generated events (same generator and seed), for 20, 200 and 2,000
# storages. Figures are events per second of CPU time.
#
# Usage: bench/engine.sh [ORIGINAL_TXNS]   (default 20000; ours runs 400,000:
# the original's cost per event grows with the number of storages, so a
# shorter run keeps it to a minute). Needs pyenv's Python 2.7 (PYTHON2
# overrides) and PyPI access the first time (bench/original/setup.sh).
set -eu
cd "$(dirname "$0")/.."
TXNS=${1:-20000}
PYTHON2=${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}
export PYTHON2
sh bench/original/setup.sh
for n in 20 200 2000; do
    BENCH_STORAGES=$n cargo bench --quiet --bench engine 2>/dev/null | grep "storages:" | sed 's/^ */tidstorage: /'
    PYTHONPATH=bench/original/stubs:bench/work/orig-py2 "$PYTHON2" -W ignore \
        bench/original/engine.py "$TXNS" "$n" 2>/dev/null | grep "storages:" | sed 's/^/original:   /'
done
