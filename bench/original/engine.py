"""The original daemon's coherency engine alone, for the side-by-side engine
benchmark (bench/engine.sh): Products.TIDStorage 5.5.0's TIDStorage class,
driven in-process under Python 2.7 by the same workload as
benches/engine.rs (same generator, same seed: the same events).

Usage: PYTHONPATH=bench/original/stubs:bench/work/orig-py2 \
           python2 bench/original/engine.py TXNS STORAGES...
Prints one line per configuration: storages, events, CPU seconds, events/s.
"""

import resource
import sys

import Products.TIDStorage.bin.tidstorage as original

MASK = (1 << 64) - 1


class Rng(object):
    """xorshift64*, as benches/engine.rs."""

    def __init__(self, seed):
        self.x = seed

    def below(self, n):
        x = self.x
        x ^= x >> 12
        x ^= (x << 25) & MASK
        x ^= x >> 27
        self.x = x
        return ((x * 0x2545F4914F6CDD1D) & MASK) % n


def workload(storages, txns, overlap):
    """benches/engine.rs's workload(): 1 to 3 storages per transaction,
    `overlap` in flight, one end in twenty an abort, increasing TIDs."""
    names = ['[[["10.0.%d.%d", 8100]], "%d"]' % (i // 256, i % 256, i)
             for i in range(storages)]
    rng = Rng(0x0123456789ABCDEF)
    open_ = []
    evs = []
    tid = 0x03E0000000000000
    for n in range(txns):
        k = 1 + rng.below(3)
        st = sorted(set(names[rng.below(storages)] for _ in range(k)))
        ident = '10.0.0.7:8080_%x' % n
        evs.append(('b', ident, st))
        open_.append((ident, st))
        if len(open_) > overlap:
            ident, st = open_.pop(rng.below(4))
            if rng.below(20) == 0:
                evs.append(('a', ident, None))
            else:
                tid += 1 + rng.below(1000)
                evs.append(('c', ident, dict((s, tid) for s in st)))
    return evs


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv):
    txns = int(argv[0])
    # As after bootstrap, with no status file: every end recomputes.
    original.has_bootstraped = True
    original.tid_file = None
    for storages in [int(a) for a in argv[1:]]:
        evs = workload(storages, txns, 16)
        engine = original.TIDStorage()
        t0 = cpu()
        for kind, ident, arg in evs:
            if kind == 'b':
                engine.begin(ident, arg)
            elif kind == 'c':
                engine.commit(ident, arg)
            else:
                engine.abort(ident)
        secs = cpu() - t0
        published = len(engine.dump())
        assert published > 0, 'the point never advanced'
        print('%d storages: %d events in %.3f s CPU: %.0f events/s (%d published)'
              % (storages, len(evs), secs, len(evs) / secs, published))
        sys.stdout.flush()


if __name__ == '__main__':
    main(sys.argv[1:])
