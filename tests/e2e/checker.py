"""Reads every Data.fs read-only with ZODB and reports, as JSON, which
transactions of the e2e workload each holds, which are complete (present in
every database they touched) and which are partially present (violations).

    checker.py DB0/Data.fs DB1/Data.fs DB2/Data.fs
"""

import json
import sys

import ZODB
from ZODB.FileStorage import FileStorage


def read(path, used_index):
    st = FileStorage(path, read_only=True)
    used_index[path] = bool(st._used_index)
    db = ZODB.DB(st)
    found = {}
    try:
        with db.transaction() as conn:
            for key, tree in conn.root().items():
                if key.startswith("w"):
                    for seq, tag in tree.items():
                        found[seq] = tag
    finally:
        db.close()
    return found


def main(paths):
    names = ["db%d" % i for i in range(len(paths))]
    used_index = {}
    found = {n: read(p, used_index) for n, p in zip(names, paths)}
    tags = {}
    for n in names:
        tags.update(found[n])
    violations, complete = [], []
    for seq in sorted(tags):
        touched = tags[seq].split(",")
        missing = [n for n in touched if seq not in found[n]]
        if missing:
            violations.append({"seq": seq, "touched": touched, "missing": missing})
        else:
            complete.append(seq)
    json.dump({"violations": violations, "complete": complete,
               "per_db": {n: len(found[n]) for n in names},
               "used_index": [used_index[p] for p in paths]}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
