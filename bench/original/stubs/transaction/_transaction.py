# Stand-in: the Zope-side patch wraps Transaction._commitResources at import.


class Transaction(object):
    def _commitResources(self, *args, **kw):
        raise RuntimeError('transaction stand-in: not available in the benchmark')
