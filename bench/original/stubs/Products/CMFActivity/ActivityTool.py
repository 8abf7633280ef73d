# Stand-in: the Zope-side patch names its transactions after this address.


def getServerAddress():
    return '127.0.0.1:0'
