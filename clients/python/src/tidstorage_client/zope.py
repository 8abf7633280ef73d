"""Zope configuration: ``<product-config tidstorage>`` in zope.conf.

Owns reading the section and installing the client from it. It must not
fail Zope's start-up: a missing or wrong section is logged and the site runs
unreported, as with the original product.

    <product-config tidstorage>
      backend-ip 10.0.0.9
      backend-port 9001
      # optional: the <host>:<port-or-pid> part of transaction ids
      client-id 10.0.0.7:8080
    </product-config>
"""

import logging

log = logging.getLogger("tidstorage_client")

SECTION = "tidstorage"


class ConfigError(ValueError):
    pass


def settings_from_product_config(section):
    """``section``: the dict Zope gives for the section. Returns install()
    keyword arguments, or raises ConfigError saying what to fix."""
    if section is None:
        raise ConfigError("missing section <product-config %s> in zope.conf; add it with "
                          "backend-ip and backend-port" % SECTION)
    ip = section.get("backend-ip")
    port = section.get("backend-port")
    if not ip or not port:
        raise ConfigError("<product-config %s> needs backend-ip and backend-port" % SECTION)
    try:
        port = int(port)
    except ValueError:
        raise ConfigError("<product-config %s>: backend-port must be an integer, not %r"
                          % (SECTION, port)) from None
    settings = {"address": (ip, port)}
    if section.get("client-id"):
        settings["client_id"] = section["client-id"]
    if section.get("reconnect-interval"):
        try:
            settings["reconnect_interval"] = float(section["reconnect-interval"])
        except ValueError:
            raise ConfigError("<product-config %s>: reconnect-interval must be a number of "
                              "seconds, not %r" % (SECTION, section["reconnect-interval"])) from None
    return settings


def initialize(context=None):
    """Zope product initializer: installs the client from zope.conf."""
    from App.config import getConfiguration

    product_config = getattr(getConfiguration(), "product_config", None) or {}
    try:
        settings = settings_from_product_config(product_config.get(SECTION))
    except ConfigError as e:
        log.error("tidstorage client not installed: %s", e)
        return None
    from . import install

    client = install(**settings)
    log.info("tidstorage client: reporting commits to %s:%d", *client.sender.address)
    return client
