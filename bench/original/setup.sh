#!/bin/sh
# Installs the original TIDStorage daemon (Products.TIDStorage 5.5.0, Python
# 2.7, from PyPI) into bench/work/orig-py2 for the side-by-side benchmark.
#
#   bench/original/setup.sh            # idempotent; run.sh calls it if needed
#
# Needs: pyenv's Python 2.7.18 (PYTHON2 overrides), network access to PyPI.
# Zope/ZODB/ZEO are not installed: bench/original/stubs stands in for the
# modules the daemon imports (see stubs/README).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target="$root/bench/work/orig-py2"
python2=${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}

if [ ! -x "$python2" ]; then
    echo "setup.sh: no Python 2.7 at $python2; install it with 'pyenv install 2.7.18' or set PYTHON2" >&2
    exit 2
fi
case $("$python2" -c 'import sys; print("%d.%d" % sys.version_info[:2])') in
    2.7) ;;
    *) echo "setup.sh: $python2 is not Python 2.7" >&2; exit 2 ;;
esac

if [ -f "$target/.installed" ]; then
    exit 0
fi
rm -rf "$target"
mkdir -p "$target"
# --no-deps: its only requirement is Zope2, which the stubs replace.
# --target rather than a virtualenv: pyenv's 2.7 has no virtualenv module and
# this keeps pyenv's own site-packages untouched.
"$python2" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$target" 'Products.TIDStorage==5.5.0'
if [ ! -f "$target/Products/TIDStorage/bin/tidstorage.py" ]; then
    echo "setup.sh: Products.TIDStorage installed, but its daemon is not at $target/Products/TIDStorage/bin/tidstorage.py" >&2
    exit 3
fi
# pip --target leaves the Products namespace to a .pth file that only a
# site directory would read; give Python 2 a package __init__ instead.
cp "$here/stubs/Products/__init__.py" "$target/Products/__init__.py"
# Import check: fails here, not in the middle of a benchmark.
PYTHONPATH="$here/stubs:$target" "$python2" -c 'import Products.TIDStorage.ExchangeProtocol, Products.TIDStorage.transaction_transaction'
touch "$target/.installed"
echo "installed the original daemon in $target"
