# Stand-in for Zope's zLOG: the daemon imports the Zope-side patch, which
# logs once at import. Messages go to stderr like the daemon's own log.
import sys

INFO = 0
WARNING = 100
ERROR = 200


def LOG(subsystem, severity, summary, detail='', error=None):
    sys.stderr.write('%s: %s\n' % (subsystem, summary))
