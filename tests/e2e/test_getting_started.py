"""docs/getting-started.md works as written: its `sh` blocks run in order
in a fresh directory (the install block is replaced by this checkout's venv
and debug build; the ports by free ones)."""

import os
import re
import subprocess
import sys

import tidharness

DOC = os.path.join(tidharness.REPO, "docs", "getting-started.md")


def test_getting_started_walkthrough_runs(tmp_path):
    text = open(DOC).read()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    assert len(blocks) >= 6, "the walk-through lost its sh blocks"
    # ClientStorage sortKey is "1:('127.0.0.1', PORT)": keep main's port first
    # as text, so main finishes first as in the doc.
    zeo = sorted((tidharness.free_port() for _ in range(2)), key=str)
    while zeo[0] == zeo[1]:
        zeo[1] = tidharness.free_port()
        zeo.sort(key=str)
    ports = {"8100": str(zeo[0]), "8101": str(zeo[1]), "9001": str(tidharness.free_port())}
    script = "\n".join(blocks)
    for old, new in ports.items():
        script = script.replace(old, new)
    prelude = (
        "set -euo pipefail\n"
        "trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT\n")
    env = tidharness.python_env({
        "ZODB_ENV": sys.prefix,
        "PATH": os.path.dirname(tidharness.tidstorage_bin()) + os.pathsep + os.environ["PATH"],
    })
    r = subprocess.run(["bash", "-c", prelude + script], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "committed up to 20" in out and "committed up to 25" in out
    assert "crashed half-way through a commit" in out
    assert "PARTIAL COMMIT" in out
    assert "main: 25 catalog: 25" in out, out
    assert os.listdir(str(tmp_path / "demo" / "zeo1"))
    assert any(f.startswith("Data.fs.tail-") for f in os.listdir(str(tmp_path / "demo" / "zeo1")))
