# Products is a namespace package spread over this directory and the
# directory Products.TIDStorage was installed into.
from pkgutil import extend_path
__path__ = extend_path(__path__, __name__)
