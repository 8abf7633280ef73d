# Stand-in: imported by the daemon (bootstrap) and by the Zope-side patch
# (which wraps tpc_finish); never called in the benchmark.


class ClientStorage(object):
    def __init__(self, *args, **kw):
        raise RuntimeError('ZEO stand-in: bootstrap through ZEO is not available in the benchmark')

    def tpc_finish(self, txn, f=None):
        raise RuntimeError('ZEO stand-in: not a real ClientStorage')
