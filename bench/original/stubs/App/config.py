# Stand-in: a configuration without product_config makes the Zope-side
# patch keep its default address (unused by the daemon).


class _Configuration(object):
    product_config = None


def getConfiguration():
    return _Configuration()
