# Stand-in package: see ../README.


def DB(*args, **kw):
    raise RuntimeError('ZODB stand-in: bootstrap through ZODB is not available in the benchmark')
