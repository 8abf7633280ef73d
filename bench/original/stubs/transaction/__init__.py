# Stand-in package: see ../README.


def commit():
    raise RuntimeError('transaction stand-in: not available in the benchmark')
