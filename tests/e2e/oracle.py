"""The test's own answer to "what is the greatest consistent cut of these
crashed files?", computed independently of tidstorage from what each
transaction of the e2e workload recorded in its description
(`e2e SEQ db0,db2`): per database, the longest prefix such that every
workload transaction kept anywhere is kept on every database it touched.
Prints, as JSON, the sequence numbers that cut keeps and each file's cut
length in transactions.

    oracle.py DB0/Data.fs DB1/Data.fs ...
"""

import json
import sys

from ZODB.FileStorage import FileStorage


def transactions(path):
    """[(seq or None, touched)] in file order, as ZODB reads the file (it
    stops at a transaction still in its two-phase commit)."""
    st = FileStorage(path, read_only=True)
    out = []
    try:
        for t in st.iterator():
            d = t.description.decode() if isinstance(t.description, bytes) else t.description
            parts = d.split()
            if len(parts) == 3 and parts[0] == "e2e":
                out.append((int(parts[1]), parts[2].split(",")))
            else:
                out.append((None, []))  # set-up, bootstrap: one database
    finally:
        st.close()
    return out


def main(paths):
    names = ["db%d" % i for i in range(len(paths))]
    files = {n: transactions(p) for n, p in zip(names, paths)}
    keep = {n: len(files[n]) for n in names}
    while True:
        kept = {n: {s for s, _ in files[n][:keep[n]] if s is not None} for n in names}
        changed = False
        for n in names:
            for i, (s, touched) in enumerate(files[n][:keep[n]]):
                if s is not None and any(s not in kept[m] for m in touched):
                    keep[n] = i
                    changed = True
                    break
        if not changed:
            break
    seqs = sorted(set().union(*kept.values()))
    json.dump({"kept": seqs, "keep": keep}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
